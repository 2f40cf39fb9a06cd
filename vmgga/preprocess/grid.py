"""The working grid: isotropic, in the fixed image's direction frame, bounded in size."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from vmgga.errors import ConfigError
from vmgga.frames import Geometry, geometry_of


def working_geometry(fixed: Geometry, spacing_mm: float, max_voxels: int) -> Geometry:
    """An isotropic grid covering ``fixed``'s extent, centred on it, in its direction frame.

    The spacing starts at ``spacing_mm`` and grows until the grid has at most ``max_voxels``.

    Args:
        fixed: Geometry of the fixed image (LPS mm).
        spacing_mm: Wanted isotropic spacing in mm.
        max_voxels: Upper bound on the number of voxels.

    Returns:
        The working grid's geometry (same direction as ``fixed``).
    """
    if spacing_mm <= 0 or max_voxels < 8**3:
        raise ConfigError(
            f"working grid needs spacing_mm > 0 and max_voxels >= 512, got {spacing_mm}, {max_voxels}"
        )
    extent_mm = np.asarray(fixed.size_ijk) * np.asarray(fixed.spacing_mm)  # edge to edge
    spacing = float(spacing_mm)
    size = _grid_size(extent_mm, spacing)
    while math.prod(size) > max_voxels:
        spacing *= (math.prod(size) / max_voxels) ** (1.0 / 3.0) * 1.001
        size = _grid_size(extent_mm, spacing)
    centre_ijk = (np.asarray(fixed.size_ijk, dtype=np.float64) - 1.0) / 2.0
    linear = fixed.direction_matrix @ np.diag(fixed.spacing_mm)
    centre_lps = np.asarray(fixed.origin_lps_mm) + linear @ centre_ijk
    half_span = fixed.direction_matrix @ (spacing * (np.asarray(size) - 1.0) / 2.0)
    return Geometry(
        size_ijk=size,
        spacing_mm=(spacing, spacing, spacing),
        origin_lps_mm=tuple(float(v) for v in centre_lps - half_span),
        direction=fixed.direction,
    )


def _grid_size(extent_mm: np.ndarray, spacing: float) -> tuple[int, int, int]:
    """Voxels per axis so that ``size * spacing`` covers ``extent_mm`` (at least 8 per axis)."""
    return tuple(max(8, int(math.ceil(e / spacing - 1e-6))) for e in extent_mm)


def reference_image(geometry: Geometry) -> sitk.Image:
    """An empty float32 image on ``geometry`` (a resampling reference)."""
    image = sitk.Image([int(s) for s in geometry.size_ijk], sitk.sitkFloat32)
    image.SetSpacing(geometry.spacing_mm)
    image.SetOrigin(geometry.origin_lps_mm)
    image.SetDirection(geometry.direction)
    return image


def resample_to_grid(
    image: sitk.Image,
    geometry: Geometry,
    transform: sitk.Transform | None = None,
    *,
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
    antialias: bool = True,
) -> sitk.Image:
    """Resample ``image`` onto ``geometry`` through ``transform`` (grid point -> image point, LPS).

    When the target grid (its finest spacing) is coarser than the image, the image is first
    smoothed with a Gaussian (sigma per axis from the spacing ratio) so the result does not alias.
    """
    source = _antialiased(image, min(geometry.spacing_mm)) if antialias else image
    return sitk.Resample(
        source,
        reference_image(geometry),
        transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity),
        interpolator,
        float(default_value),
        sitk.sitkFloat32,
    )


def _antialiased(image: sitk.Image, target_spacing_mm: float) -> sitk.Image:
    """Smooth axes whose spacing is finer than the target; unchanged if none is."""
    spacing = np.asarray(geometry_of(image).spacing_mm)
    sigma_mm = 0.5 * np.sqrt(np.clip(target_spacing_mm**2 - spacing**2, 0.0, None))
    if not np.any(sigma_mm > 0.25 * spacing):
        return image
    sigma_mm = np.maximum(sigma_mm, 1e-3 * spacing)
    return sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), [float(s) for s in sigma_mm])
