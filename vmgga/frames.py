"""Coordinate frames and axis order: the one place where flips and reversals live.

Conventions used everywhere in ``vmgga``:

* Physical space is ITK's **LPS**, in millimetres (``*_lps_mm``). 3D Slicer uses RAS; the only
  conversion is :data:`RAS_FROM_LPS` (a flip of the first two axes), applied here and nowhere else.
* A SimpleITK image index is ``(i, j, k)`` (``*_ijk``, x fastest). ``sitk.GetArrayFromImage`` and
  torch volumes store the same voxels as ``(k, j, i)``, i.e. ``(D, H, W)``. The reversal happens
  only in :func:`array_zyx_from_xyz` / :func:`xyz_from_array_zyx` and in the vector helpers below.
* Dense displacement fields in torch are ``(B, 3, D, H, W)`` with channels in **(i, j, k)** order,
  in voxels of the grid they live on (``disp_ijk``). That is the order ``grid_sample`` expects in the
  last axis of its sampling grid.
* ``grid_sample`` is always called with ``align_corners=True``: normalised coordinate -1 is the
  centre of the first voxel and +1 the centre of the last one (``*_norm``), which is the same voxel
  centre convention as ITK.
* A coarse grid at stride ``s`` (control grids, network tokens) has its cell ``c`` at the centre of
  the fine block it covers, fine position ``s c + (s - 1) / 2`` (:func:`fine_from_coarse`).
* A 2D slice of a volume has (i, j, k) index axes for its columns and rows given by
  :func:`slice_axes_xy`; flat (row-major) indices convert with :func:`ijk_from_flat`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

#: ``grid_sample``/``affine_grid`` convention, decided once.
ALIGN_CORNERS = True

#: Maps LPS coordinates to RAS coordinates (and back: it is its own inverse).
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """The sampling grid of an image in LPS millimetres.

    Attributes:
        size_ijk: Number of voxels along i, j, k.
        spacing_mm: Voxel spacing along i, j, k in mm.
        origin_lps_mm: Physical position of voxel (0, 0, 0), LPS mm.
        direction: (3, 3) matrix whose columns are the i, j, k axis directions in LPS.
    """

    size_ijk: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, as SimpleITK stores it

    @property
    def direction_matrix(self) -> np.ndarray:
        """(3, 3) direction cosine matrix; column c is the LPS direction of index axis c."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def shape_dhw(self) -> tuple[int, int, int]:
        """Array/tensor shape ``(D, H, W) = (k, j, i)`` of this grid."""
        return (self.size_ijk[2], self.size_ijk[1], self.size_ijk[0])

    def lps_from_ijk_matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix mapping voxel index (i, j, k) to LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix @ np.diag(self.spacing_mm)
        matrix[:3, 3] = self.origin_lps_mm
        return matrix

    def to_dict(self) -> dict:
        """JSON-friendly description (used in reports)."""
        return {
            "size_ijk": list(self.size_ijk),
            "spacing_mm": list(self.spacing_mm),
            "origin_lps_mm": list(self.origin_lps_mm),
            "direction": list(self.direction),
        }


def geometry_of(image: sitk.Image) -> Geometry:
    """The :class:`Geometry` of a 3D SimpleITK image."""
    return Geometry(
        size_ijk=tuple(int(s) for s in image.GetSize()),
        spacing_mm=tuple(float(s) for s in image.GetSpacing()),
        origin_lps_mm=tuple(float(s) for s in image.GetOrigin()),
        direction=tuple(float(s) for s in image.GetDirection()),
    )


def apply_geometry(image: sitk.Image, geometry: Geometry) -> sitk.Image:
    """Set spacing, origin and direction of ``image`` (in place) and return it."""
    image.SetSpacing(geometry.spacing_mm)
    image.SetOrigin(geometry.origin_lps_mm)
    image.SetDirection(geometry.direction)
    return image


# --- axis order ------------------------------------------------------------------------------


def array_zyx_from_xyz(array_xyz: np.ndarray) -> np.ndarray:
    """Reverse the first three axes: ``(i, j, k, ...)`` -> ``(k, j, i, ...)``."""
    return np.ascontiguousarray(np.swapaxes(array_xyz, 0, 2))


def xyz_from_array_zyx(array_zyx: np.ndarray) -> np.ndarray:
    """Reverse the first three axes: ``(k, j, i, ...)`` -> ``(i, j, k, ...)``."""
    return np.ascontiguousarray(np.swapaxes(array_zyx, 0, 2))


def array_from_image(image: sitk.Image) -> np.ndarray:
    """Voxel array of a scalar or vector image, shape ``(D, H, W)`` or ``(D, H, W, C)`` (a copy)."""
    return sitk.GetArrayFromImage(image)


def array_view_from_image(image: sitk.Image) -> np.ndarray:
    """Read-only view of the voxels, ``(D, H, W)`` or ``(D, H, W, C)``; valid while ``image`` lives."""
    return sitk.GetArrayViewFromImage(image)


def image_from_array(array_dhw: np.ndarray, geometry: Geometry, is_vector: bool = False) -> sitk.Image:
    """SimpleITK image from a ``(D, H, W)`` (or ``(D, H, W, C)`` vector) array on ``geometry``."""
    image = sitk.GetImageFromArray(array_dhw, isVector=is_vector)
    return apply_geometry(image, geometry)


# --- points ----------------------------------------------------------------------------------


def lps_from_ijk(points_ijk: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Continuous voxel indices ``(N, 3)`` in (i, j, k) order -> LPS mm ``(N, 3)``."""
    matrix = geometry.lps_from_ijk_matrix()
    return np.asarray(points_ijk, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def ijk_from_lps(points_lps_mm: np.ndarray, geometry: Geometry) -> np.ndarray:
    """LPS mm ``(N, 3)`` -> continuous voxel indices ``(N, 3)`` in (i, j, k) order."""
    matrix = geometry.lps_from_ijk_matrix()
    offset = np.asarray(points_lps_mm, dtype=np.float64) - matrix[:3, 3]
    return np.linalg.solve(matrix[:3, :3], offset.T).T


def ras_from_lps(points_lps_mm: np.ndarray) -> np.ndarray:
    """LPS mm ``(N, 3)`` -> RAS mm ``(N, 3)``."""
    return np.asarray(points_lps_mm, dtype=np.float64) @ RAS_FROM_LPS.T


def lps_from_ras(points_ras_mm: np.ndarray) -> np.ndarray:
    """RAS mm ``(N, 3)`` -> LPS mm ``(N, 3)`` (the same flip)."""
    return np.asarray(points_ras_mm, dtype=np.float64) @ RAS_FROM_LPS.T


def ras_matrix_from_lps(matrix_lps: np.ndarray) -> np.ndarray:
    """Conjugate a (4, 4) homogeneous LPS->LPS map into the RAS->RAS map of the same motion."""
    flip = np.eye(4)
    flip[:3, :3] = RAS_FROM_LPS
    return flip @ np.asarray(matrix_lps, dtype=np.float64) @ flip


# --- normalised grid_sample coordinates -------------------------------------------------------


def norm_from_ijk(points_ijk: torch.Tensor, size_ijk: tuple[int, int, int]) -> torch.Tensor:
    """Voxel indices ``(..., 3)`` (i, j, k) -> ``grid_sample`` coordinates in [-1, 1]."""
    scale = _norm_scale(size_ijk, points_ijk)
    return points_ijk * scale - 1.0


def ijk_from_norm(points_norm: torch.Tensor, size_ijk: tuple[int, int, int]) -> torch.Tensor:
    """``grid_sample`` coordinates ``(..., 3)`` -> voxel indices (i, j, k)."""
    scale = _norm_scale(size_ijk, points_norm)
    return (points_norm + 1.0) / scale


def norm_from_ijk_matrix(size_ijk: tuple[int, int, int]) -> np.ndarray:
    """``(4, 4)`` homogeneous matrix of :func:`norm_from_ijk` (to compose it with other linear maps)."""
    matrix = np.diag([*_norm_scale_values(size_ijk), 1.0])
    matrix[:3, 3] = -1.0
    return matrix


def _norm_scale(size_ijk: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
    """:func:`_norm_scale_values` as a tensor like ``like``."""
    return torch.tensor(_norm_scale_values(size_ijk), dtype=like.dtype, device=like.device)


def _norm_scale_values(size_ijk: tuple[int, int, int]) -> list[float]:
    """Per-axis factor 2 / (N - 1) (1 for singleton axes, which have one centre only)."""
    return [2.0 / (n - 1) if n > 1 else 1.0 for n in size_ijk]


def identity_grid_ijk(shape_dhw: tuple[int, int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel index of every voxel, shape ``(1, D, H, W, 3)`` with (i, j, k) in the last axis."""
    d, h, w = shape_dhw
    k, j, i = torch.meshgrid(
        torch.arange(d, device=device, dtype=dtype),
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((i, j, k), dim=-1)[None]


def sampling_grid_norm(disp_ijk: torch.Tensor) -> torch.Tensor:
    """Sampling grid for ``grid_sample`` from a displacement field.

    Args:
        disp_ijk: ``(B, 3, D, H, W)`` displacement in voxels, channels (i, j, k).

    Returns:
        ``(B, D, H, W, 3)`` normalised positions ``x + disp(x)``, last axis (i, j, k).
    """
    d, h, w = disp_ijk.shape[2:]
    grid_ijk = identity_grid_ijk((d, h, w), disp_ijk.device, disp_ijk.dtype)
    points_ijk = grid_ijk + disp_ijk.permute(0, 2, 3, 4, 1)  # (B, D, H, W, 3)
    return norm_from_ijk(points_ijk, (w, h, d))


# --- displacement vectors ---------------------------------------------------------------------


def disp_lps_from_ijk(disp_ijk: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Voxel displacements ``(3, D, H, W)`` (i, j, k) -> LPS mm vectors ``(D, H, W, 3)``.

    The vector of a displacement of ``d`` voxels is ``direction @ diag(spacing) @ d``.
    """
    linear = geometry.direction_matrix @ np.diag(geometry.spacing_mm)
    vectors_ijk = np.moveaxis(np.asarray(disp_ijk, dtype=np.float64), 0, -1)  # (D, H, W, 3)
    return vectors_ijk @ linear.T


def disp_ijk_from_lps(disp_lps_mm: np.ndarray, geometry: Geometry) -> np.ndarray:
    """LPS mm vectors ``(D, H, W, 3)`` -> voxel displacements ``(3, D, H, W)`` (i, j, k)."""
    linear = geometry.direction_matrix @ np.diag(geometry.spacing_mm)
    vectors_ijk = np.asarray(disp_lps_mm, dtype=np.float64) @ np.linalg.inv(linear).T
    return np.moveaxis(vectors_ijk, -1, 0)


# --- coarse grids: cells at block centres -------------------------------------------------------


def fine_from_coarse(points_coarse, stride):
    """Coarse-cell positions -> fine-grid positions: cell ``c`` sits at ``s c + (s - 1) / 2``.

    Block-centre convention: coarse cell ``c`` covers the fine samples ``[s c, s c + s)`` and sits
    at their centre, which is what ``avg_pool`` and ``F.interpolate(..., align_corners=False)`` by an
    integer factor assume. Element-wise, on tensors or arrays of any shape (one stride for all axes
    or one per axis in the last dimension).
    """
    return points_coarse * stride + (stride - 1) / 2.0


def coarse_from_fine(points_fine, stride):
    """Fine-grid positions -> continuous coarse-cell positions (inverse of :func:`fine_from_coarse`)."""
    return (points_fine - (stride - 1) / 2.0) / stride


_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample_cells(values: torch.Tensor, stride: int, size: tuple[int, ...]) -> torch.Tensor:
    """A map on coarse cells at ``stride`` -> the fine grid, cropped to its low-end ``size`` corner.

    ``values`` is ``(B, C, *coarse)`` with 1 to 3 spatial axes (``(B, C, h, w)`` network maps,
    ``(B, C, d, h, w)`` control grids and cost-volume grids); the result is ``(B, C, *size)``. Values
    are interpolated linearly between cell centres placed as :func:`fine_from_coarse` says
    (``align_corners=False`` by an integer factor; constant beyond the outer centres) and are not
    rescaled: a displacement in coarse units still needs multiplying by ``stride``.
    """
    if len(size) != values.ndim - 2 or len(size) not in _LINEAR_MODES:
        raise ValueError(f"size {size} does not fit a map of shape {tuple(values.shape)} (B, C, 1-3 axes)")
    fine = values
    if stride != 1:
        fine = F.interpolate(values, scale_factor=stride, mode=_LINEAR_MODES[len(size)], align_corners=False)
    return fine[(..., *(slice(0, n) for n in size))]


# --- flat indices -------------------------------------------------------------------------------


def ijk_from_flat(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Row-major flat indices ``(N,)`` of an array of ``shape`` -> indices ``(N, ndim)``, fastest first.

    For ``shape = (D, H, W)`` the columns are (i, j, k); for an image ``(H, W)`` they are (x, y).
    """
    columns = []
    rest = flat
    for size in reversed(shape):
        columns.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.stack(columns, dim=-1)


def flat_from_ijk(points: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`ijk_from_flat`: integer indices ``(..., ndim)``, fastest first -> flat ``(...)``."""
    flat = torch.zeros_like(points[..., 0])
    for axis, size in enumerate(shape):  # slowest axis first: (k, j, i) for (D, H, W)
        flat = flat * size + points[..., len(shape) - 1 - axis]
    return flat


# --- slices of a volume -------------------------------------------------------------------------

#: Array axis a slice is taken along (0 = D, fixed k; 1 = H, fixed j; 2 = W, fixed i) -> the (i, j, k)
#: index axes of the slice's columns and rows, i.e. of a 2D position or flow ``(x, y)``. The slice
#: keeps the remaining array axes in order: rows are the slower one, columns the faster one.
_SLICE_AXES_XY: dict[int, tuple[int, int]] = {0: (0, 1), 1: (0, 2), 2: (1, 2)}


def slice_axes_xy(slicing_axis: int) -> tuple[int, int]:
    """``(column_axis, row_axis)`` in (i, j, k) numbering of a slice along array axis ``slicing_axis``.

    Example: an axial slice ``volume_dhw[k]`` (axis 0) has columns along i and rows along j: ``(0, 1)``.
    """
    if slicing_axis not in _SLICE_AXES_XY:
        raise ValueError(f"slicing_axis must be 0, 1 or 2 (D, H, W), got {slicing_axis!r}")
    return _SLICE_AXES_XY[slicing_axis]
