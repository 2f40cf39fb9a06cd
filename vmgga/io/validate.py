"""Checks that an image is a usable 3D volume; each error names the image and the problem.

Decisions:

* A 2D image (or a 3D image with a single slice) is refused; a 4D image needs a volume index.
* Left-handed direction frames (determinant -1) are valid: ITK maps them correctly. A direction
  matrix that is not orthonormal (sheared or scaled axes) is refused.
* CT values are checked for integer overflow: voxels below ``CT_MIN_HU`` or above ``CT_MAX_HU``
  cannot be real Hounsfield units. A single distinct value below the range is padding outside
  the field of view (a warning); anything else is an :class:`~vmgga.errors.IntensityError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from vmgga.errors import GeometryError, IntensityError

CT_MIN_HU = -4096.0  # nothing real is below air (-1000 HU); -1024/-2000/-3024 are usual paddings
CT_MAX_HU = 32767.0  # the top of the int16 range in which scanners store HU


@dataclass(frozen=True)
class VolumeLimits:
    """Size limits of an input volume."""

    min_size: int = 8  # fewest voxels allowed along any axis
    max_voxels: int = 1024**3  # most voxels allowed in one volume
    max_bytes: int = 4 * 1024**3  # most bytes of the float32 copy the pipeline makes
    orthogonality_tolerance: float = 1e-3  # max |D^T D - I| of the direction matrix


# --- header-level checks (no voxels needed) ----------------------------------------------------


def check_dimension(size: tuple[int, ...], name: str) -> None:
    """3D only: 2D images and single slices are refused, 4D images need ``--volume-index``."""
    if len(size) == 2 or (len(size) == 3 and 1 in size):
        raise GeometryError(
            f"{name}: is a 2D image (size {tuple(size)}); a 3D volume is needed "
            "(for a DICOM series, pass its folder rather than one file)"
        )
    if len(size) == 4:
        raise GeometryError(
            f"{name}: is a 4D image with {size[3]} volumes (size {tuple(size)}); "
            f"choose one with --volume-index N (0 to {size[3] - 1})"
        )
    if len(size) != 3:
        raise GeometryError(f"{name}: has {len(size)} dimensions (size {tuple(size)}); a 3D volume is needed")


def check_components(num_components: int, name: str) -> None:
    """Scalar voxels only (RGB and vector images are refused)."""
    if num_components != 1:
        raise IntensityError(
            f"{name}: has {num_components} components per voxel (RGB or vector image); "
            "a single-channel grey-level volume is needed"
        )


def check_size(size_ijk: tuple[int, ...], name: str, limits: VolumeLimits = VolumeLimits()) -> None:
    """Refuse tiny (fewer than ``min_size`` voxels on an axis) and huge volumes."""
    if min(size_ijk) < limits.min_size:
        raise GeometryError(
            f"{name}: is too small (size {tuple(size_ijk)}); at least {limits.min_size} voxels "
            "are needed along every axis"
        )
    voxels = int(np.prod(np.asarray(size_ijk, dtype=np.int64)))
    gigabytes = 4 * voxels / 1024**3
    if voxels > limits.max_voxels or 4 * voxels > limits.max_bytes:
        raise GeometryError(
            f"{name}: is too large (size {tuple(size_ijk)}, {voxels} voxels, {gigabytes:.1f} GB as float32); "
            f"the limit is {limits.max_voxels} voxels and {limits.max_bytes / 1024**3:.1f} GB: crop or "
            "downsample it first"
        )


def check_direction(
    direction: tuple[float, ...],
    spacing_mm: tuple[float, ...],
    name: str,
    limits: VolumeLimits = VolumeLimits(),
) -> None:
    """Spacing must be positive and the direction matrix orthonormal (left-handed is fine)."""
    if min(spacing_mm) <= 0 or not np.all(np.isfinite(spacing_mm)):
        raise GeometryError(f"{name}: has an invalid voxel spacing {tuple(spacing_mm)} mm")
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or abs(float(np.linalg.det(matrix))) < 1e-6:
        raise GeometryError(
            f"{name}: has a singular direction matrix {tuple(round(v, 4) for v in direction)} (determinant 0: "
            "a zero or repeated voxel axis); fix the header's orientation"
        )
    error = float(np.abs(matrix.T @ matrix - np.eye(3)).max()) if np.all(np.isfinite(matrix)) else np.inf
    if error > limits.orthogonality_tolerance:
        raise GeometryError(
            f"{name}: has a non-orthogonal direction matrix {tuple(round(v, 4) for v in direction)} "
            f"(max |D^T D - I| = {error:.3g}); sheared voxel grids are not supported"
        )


# --- voxel-level checks ------------------------------------------------------------------------


def check_finite(array: np.ndarray, name: str) -> None:
    """Refuse NaN and Inf voxels (integer voxels are always finite)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    bad = ~np.isfinite(array)
    if bad.any():
        nans, infs = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise IntensityError(f"{name}: has {nans} NaN and {infs} Inf voxels; all voxel values must be finite")


def check_not_constant(array: np.ndarray, name: str) -> None:
    """Refuse an image whose voxels all have one value."""
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise IntensityError(
            f"{name}: is a constant image (every voxel is {low:g}); there is nothing to register"
        )


def check_ct_values(array_hu: np.ndarray, name: str) -> list[str]:
    """Refuse CT values outside the plausible HU range (integer overflow, wrong rescale).

    Returns:
        Warnings (a single padding value below the range).
    """
    if array_hu.size and array_hu.min() >= CT_MIN_HU and array_hu.max() <= CT_MAX_HU:
        return []  # the usual case, in two quick passes
    too_high = array_hu > CT_MAX_HU
    too_low = array_hu < CT_MIN_HU
    low_values = np.unique(array_hu[too_low]) if too_low.any() else np.array([])
    if too_high.any() or len(low_values) > 1:
        count = int(too_high.sum() + too_low.sum())
        raise IntensityError(
            f"{name}: has {count} voxels outside the plausible CT range [{CT_MIN_HU:g}, {CT_MAX_HU:g}] HU "
            f"(min {float(array_hu.min()):g}, max {float(array_hu.max()):g}): integer overflow or a wrong "
            "rescale slope/intercept; check the export of this scan"
        )
    if len(low_values) == 1:
        return [f"{name}: {int(too_low.sum())} voxels have the padding value {float(low_values[0]):g} HU"]
    return []


# --- all together ------------------------------------------------------------------------------


def check_header(image_or_reader, name: str, limits: VolumeLimits = VolumeLimits()) -> None:
    """Dimension, components and size checks from an image or an ``ImageFileReader`` (after
    ``ReadImageInformation``): nothing large is read or allocated."""
    size = tuple(int(s) for s in image_or_reader.GetSize())
    check_dimension(size, name)
    components = getattr(image_or_reader, "GetNumberOfComponentsPerPixel", None)
    components = components or image_or_reader.GetNumberOfComponents
    check_components(int(components()), name)
    check_size(size, name, limits)


def validate_volume(
    image: sitk.Image, name: str, *, modality: str | None = None, limits: VolumeLimits = VolumeLimits()
) -> list[str]:
    """Check that ``image`` is a usable 3D scalar volume.

    Args:
        image: The image as read (any pixel type).
        name: What to call it in messages (file name or role).
        modality: ``"ct"`` also checks the HU range.
        limits: Size limits.

    Returns:
        Warnings that do not stop the run.

    Raises:
        GeometryError: 2D/4D, tiny, huge, bad spacing, non-orthogonal direction.
        IntensityError: RGB/vector voxels, NaN/Inf, constant image, implausible CT values.
    """
    check_header(image, name, limits)
    check_direction(image.GetDirection(), image.GetSpacing(), name, limits)
    array = sitk.GetArrayViewFromImage(image)
    check_finite(array, name)
    check_not_constant(array, name)
    return check_ct_values(array, name) if modality == "ct" else []
