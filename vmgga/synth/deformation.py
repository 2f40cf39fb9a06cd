"""Random smooth deformation plus affine, with an exact dense ground truth.

Convention (the one the matcher's ``MatchResult.flow_px`` uses): image 0 pixel ``x = (x, y)``
(column, row) corresponds to image 1 position ``x + flow01_px(x)``. Image 0 is made by *sampling*
the source at those positions, so the ground truth is exact by construction, with no inversion:
``positions_px(x) = c + A (x - c) + t + v(x)`` with ``c`` the crop centre, ``A`` rotation x
scale x shear, ``t`` a translation and ``v`` a smooth field (a coarse random grid, cubic upsampled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True, eq=False)
class DeformationParams:
    """One random geometric transform of image 0 relative to image 1 (pixels, (x, y) order)."""

    angle_rad: float  # rotation
    log_scale_xy: tuple[float, float]  # log of the scale along x and y
    shear: float  # x += shear * y
    translation_px: tuple[float, float]  # (x, y)
    control_px: np.ndarray  # (2, h, w) coarse displacement grid, channels (x, y), pixels


@dataclass(frozen=True)
class RandomDeformation:
    """Draws :class:`DeformationParams`. Each field is a maximum (uniform draws) or a std."""

    max_angle_deg: float = 12.0  # rotation ~ U(-max, max)
    max_log_scale: float = 0.1  # per axis ~ U(-max, max)
    max_shear: float = 0.08  # ~ U(-max, max)
    max_translation_px: float = 6.0  # per axis ~ U(-max, max)
    max_smooth_px: float = 2.5  # std of the control displacements ~ U(0, max)
    control_grid: tuple[int, int] = (3, 6)  # control grid size ~ U{low..high} per pair

    def __call__(self, rng: np.random.Generator) -> DeformationParams:
        size = int(rng.integers(self.control_grid[0], self.control_grid[1] + 1))
        return DeformationParams(
            angle_rad=float(np.deg2rad(rng.uniform(-self.max_angle_deg, self.max_angle_deg))),
            log_scale_xy=tuple(rng.uniform(-self.max_log_scale, self.max_log_scale, 2).tolist()),
            shear=float(rng.uniform(-self.max_shear, self.max_shear)),
            translation_px=tuple(rng.uniform(-self.max_translation_px, self.max_translation_px, 2).tolist()),
            control_px=rng.normal(0, rng.uniform(0, self.max_smooth_px), (2, size, size)),
        )


def identity_deformation(translation_px: tuple[float, float] = (0.0, 0.0)) -> DeformationParams:
    """No deformation (optionally a pure translation)."""
    return DeformationParams(0.0, (0.0, 0.0), 0.0, translation_px, np.zeros((2, 2, 2)))


def affine_matrix(params: DeformationParams) -> np.ndarray:
    """(2, 2) linear part ``A = R(angle) @ diag(scale) @ [[1, shear], [0, 1]]`` in (x, y)."""
    cos, sin = np.cos(params.angle_rad), np.sin(params.angle_rad)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return rotation @ np.diag(np.exp(params.log_scale_xy)) @ np.array([[1.0, params.shear], [0.0, 1.0]])


def smooth_field_px(control_px: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Cubic upsampling of a ``(2, h, w)`` control grid to ``(2, H, W)`` (corners aligned)."""
    height, width = shape_hw
    rows = np.linspace(0, control_px.shape[1] - 1, height)
    cols = np.linspace(0, control_px.shape[2] - 1, width)
    coords = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    return np.stack([ndimage.map_coordinates(c, coords, order=3, mode="nearest") for c in control_px])


def flow01_px(params: DeformationParams, shape_hw: tuple[int, int]) -> np.ndarray:
    """Ground-truth flow ``(2, H, W)``, channels (x, y): image-0 pixel x -> image-1 x + flow(x)."""
    height, width = shape_hw
    y, x = np.meshgrid(np.arange(height, dtype=float), np.arange(width, dtype=float), indexing="ij")
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    offset = np.stack([x - centre[0], y - centre[1]])  # (2, H, W)
    moved = np.einsum("ij,jhw->ihw", affine_matrix(params), offset)
    moved += centre[:, None, None] + np.asarray(params.translation_px)[:, None, None]
    moved += smooth_field_px(params.control_px, shape_hw)
    return (moved - np.stack([x, y])).astype(np.float32)


def valid_mask(flow_px: np.ndarray, shape1_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the corresponding position lies inside image 1 (``shape1_hw``)."""
    height, width = flow_px.shape[1:]
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    px, py = x + flow_px[0], y + flow_px[1]
    return (px >= 0) & (px <= shape1_hw[1] - 1) & (py >= 0) & (py <= shape1_hw[0] - 1)


def sample_nearest(source_hw: np.ndarray, positions_xy: np.ndarray, fill: int = 0) -> np.ndarray:
    """Nearest-neighbour lookup of ``source[round(y), round(x)]`` at ``(2, H, W)`` positions."""
    col = np.floor(positions_xy[0] + 0.5).astype(int)
    row = np.floor(positions_xy[1] + 0.5).astype(int)
    inside = (row >= 0) & (row < source_hw.shape[0]) & (col >= 0) & (col < source_hw.shape[1])
    out = np.full(positions_xy.shape[1:], fill, dtype=source_hw.dtype)
    out[inside] = source_hw[row[inside], col[inside]]
    return out


def sample_linear(source_hw: np.ndarray, positions_xy: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an intensity image at ``(2, H, W)`` positions (x, y); 0 outside."""
    coords = np.stack([positions_xy[1], positions_xy[0]])
    return ndimage.map_coordinates(source_hw, coords, order=1, mode="constant", cval=0.0)
