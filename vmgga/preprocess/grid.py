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
    """``image`` low-passed for a grid of ``target_spacing_mm``; unchanged if no axis is finer.

    The Gaussian wanted per axis has variance ``0.25 (target^2 - spacing^2)`` mm^2. Axes at least
    3 times finer than the target are first averaged in blocks of ``f = floor(target / (1.5 spacing))``
    voxels (a box filter of variance ``(f^2 - 1) / 12`` voxels^2 that shrinks the image ``f``-fold,
    so that a clinical CT is not smoothed at full resolution); a Gaussian on the shrunk grid
    supplies the rest of the variance. The shrunk grid stays finer than ``target / 1.5``, so that
    Gaussian still damps what the target grid would alias about as well as the full one (tested).
    Physical positions are kept (voxel centres move to block
    centres); the upper edge is padded by replication to a whole block.
    """
    spacing = np.asarray(geometry_of(image).spacing_mm)
    variance_mm2 = 0.25 * np.clip(target_spacing_mm**2 - spacing**2, 0.0, None)
    if not np.any(np.sqrt(variance_mm2) > 0.25 * spacing):
        return image
    factors = np.maximum(1, np.floor(target_spacing_mm / (1.5 * spacing) + 1e-6).astype(int))
    source = sitk.Cast(image, sitk.sitkFloat32)
    if np.any(factors > 1):
        source = _block_averaged(source, factors)
        variance_mm2 = np.clip(variance_mm2 - (factors**2 - 1) / 12.0 * spacing**2, 0.0, None)
        spacing = spacing * factors
    sigma_mm = np.maximum(np.sqrt(variance_mm2), 1e-3 * spacing)
    return sitk.SmoothingRecursiveGaussian(source, [float(s) for s in sigma_mm])


def _block_averaged(image: sitk.Image, factors_ijk: np.ndarray) -> sitk.Image:
    """Means over blocks of ``factors_ijk`` voxels (``sitk.BinShrink``), the upper edge replicated
    to a whole block first so that no voxel is dropped."""
    size = np.asarray(image.GetSize())
    pad = (-size) % factors_ijk
    if np.any(pad):
        image = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], [int(p) for p in pad])
    return sitk.BinShrink(image, [int(f) for f in factors_ijk])
