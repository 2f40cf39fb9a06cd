"""QC panels as pure functions on 2D display slices: each returns an RGB image or line coordinates.

Inputs are 2D arrays already in display orientation (see :mod:`vmgga.qc.slices`); intensities are
normalised to [0, 1] with :func:`normalise`. RGB outputs are float arrays ``(H, W, 3)`` in [0, 1].
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from scipy import ndimage

#: Colour of the warped/moving image's edges drawn over the fixed image (green).
EDGE_RGB = (0.1, 1.0, 0.1)
#: Colour marking folding voxels (Jacobian determinant <= 0) on the Jacobian map (yellow).
FOLDING_RGB = (1.0, 0.9, 0.0)
#: Jacobian determinants shown from 0 (dark blue, shrinking) through 1 (white) to this value (red).
JACOBIAN_MAX = 2.0


def intensity_window(
    volume: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.5)
) -> tuple[float, float]:
    """Robust display window of a whole volume (not per slice, so all views share it)."""
    finite = np.asarray(volume, dtype=np.float64)[np.isfinite(volume)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, percentiles)
    return float(low), float(high if high > low else low + 1.0)


def normalise(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``window`` to [0, 1] and clip; NaN becomes 0."""
    low, high = window
    scaled = (np.asarray(image, dtype=np.float32) - low) / (high - low)
    return np.clip(np.nan_to_num(scaled), 0.0, 1.0)


def grey_rgb(image_norm: np.ndarray) -> np.ndarray:
    """Grey RGB ``(H, W, 3)`` of a [0, 1] image."""
    return np.repeat(np.asarray(image_norm, dtype=np.float32)[..., None], 3, axis=-1)


def checkerboard(fixed_norm: np.ndarray, moving_norm: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternating square tiles of the two images (fixed in the top-left tile), grey RGB.

    Args:
        tiles: number of tiles along the longer side.
    """
    height, width = fixed_norm.shape
    tile_px = max(1, int(np.ceil(max(height, width) / tiles)))
    rows = (np.arange(height) // tile_px)[:, None]
    cols = (np.arange(width) // tile_px)[None, :]
    use_moving = (rows + cols) % 2 == 1
    return grey_rgb(np.where(use_moving, moving_norm, fixed_norm))


def fusion_rgb(fixed_norm: np.ndarray, moving_norm: np.ndarray) -> np.ndarray:
    """Colour fusion: fixed in magenta (red + blue), moving in green; agreement looks grey."""
    return np.stack([fixed_norm, moving_norm, fixed_norm], axis=-1).astype(np.float32)


def edge_mask(image_norm: np.ndarray, quantile: float = 0.85, sigma_px: float = 1.0) -> np.ndarray:
    """Strong edges of an image: gradient magnitude (Gaussian derivative) above a quantile of the
    gradient inside the foreground. Returns a boolean ``(H, W)`` mask."""
    magnitude = ndimage.gaussian_gradient_magnitude(np.asarray(image_norm, dtype=np.float32), sigma_px)
    foreground = magnitude[image_norm > 0.05]
    if foreground.size < 16 or foreground.max() <= 0:
        return np.zeros(image_norm.shape, dtype=bool)
    threshold = max(float(np.quantile(foreground, quantile)), 1e-6)
    return magnitude > threshold


def edges_overlay(fixed_norm: np.ndarray, moving_norm: np.ndarray) -> np.ndarray:
    """The moving image's edges (green) drawn on the fixed image (grey)."""
    rgb = grey_rgb(fixed_norm)
    rgb[edge_mask(moving_norm)] = EDGE_RGB
    return rgb


def confidence_rgb(confidence: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] through the ``viridis`` colour map (0 dark purple, 1 yellow)."""
    values = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float32)), 0.0, 1.0)
    return colormaps["viridis"](values)[..., :3].astype(np.float32)


def jacobian_norm() -> TwoSlopeNorm:
    """Colour scale of the Jacobian determinant: 0 -> blue, 1 -> white, ``JACOBIAN_MAX`` -> red."""
    return TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=JACOBIAN_MAX)


def folding_mask(jacobian_determinant: np.ndarray) -> np.ndarray:
    """Voxels where the map folds: Jacobian determinant <= 0 (NaN counts as folding)."""
    values = np.asarray(jacobian_determinant, dtype=np.float32)
    return ~(values > 0)


def jacobian_rgb(jacobian_determinant: np.ndarray, folding: np.ndarray | None = None) -> np.ndarray:
    """Jacobian determinant on a blue-white-red scale with folding voxels in ``FOLDING_RGB``.

    Args:
        folding: boolean mask of folding voxels; default ``det <= 0`` of the same array (pass a
            nearest-neighbour resampled mask so that single folding voxels stay visible).
    """
    values = np.nan_to_num(np.asarray(jacobian_determinant, dtype=np.float32), nan=0.0)
    scaled = jacobian_norm()(np.clip(values, 0.0, JACOBIAN_MAX))
    rgb = colormaps["RdBu_r"](np.asarray(scaled))[..., :3].astype(np.float32)
    rgb[folding_mask(values) if folding is None else folding] = FOLDING_RGB
    return rgb


def deformation_grid_lines(disp_rc_px: np.ndarray, step_px: int = 8) -> list[np.ndarray]:
    """Lines of a regular grid moved by an in-plane displacement, for drawing.

    Args:
        disp_rc_px: ``(H, W, 2)`` displacement of each pixel in pixels, (row, column) order.
        step_px: distance between grid lines in pixels.

    Returns:
        Polylines, each ``(N, 2)`` of (row, column) positions ``x + u(x)``: first the lines of
        constant row, then the lines of constant column.
    """
    height, width = disp_rc_px.shape[:2]
    lines = []
    for row in range(0, height, step_px):
        positions = np.stack([np.full(width, row, np.float32), np.arange(width, dtype=np.float32)], -1)
        lines.append(positions + disp_rc_px[row, :, :])
    for col in range(0, width, step_px):
        positions = np.stack([np.arange(height, dtype=np.float32), np.full(height, col, np.float32)], -1)
        lines.append(positions + disp_rc_px[:, col, :])
    return lines
