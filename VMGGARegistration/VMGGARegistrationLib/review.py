"""Review images computed from two volumes on the same grid: checkerboard and difference.

Arrays are ``(D, H, W)`` voxel arrays as Slicer's ``arrayFromVolume`` returns them. CT and MR
intensities are not comparable, so both images are first mapped to [0, 1] by robust percentiles.
"""

from __future__ import annotations

import numpy as np


def normalise_percentiles(volume: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``..``high`` percentile range of ``volume`` to [0, 1] (clipped), float32."""
    values = np.asarray(volume, dtype=np.float32)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def checkerboard_dhw(first: np.ndarray, second: np.ndarray, tiles: int = 8) -> np.ndarray:
    """``first`` in the even tiles and ``second`` in the odd ones of a 3D checkerboard.

    Both inputs are normalised to [0, 1] first; ``tiles`` is the number of tiles along each axis.
    """
    if first.shape != second.shape:
        raise ValueError(f"volumes differ in shape: {first.shape} vs {second.shape}")
    parity = sum(
        (np.arange(n) * tiles // max(n, 1)).reshape([-1 if a == axis else 1 for a in range(3)])
        for axis, n in enumerate(first.shape)
    )
    return np.where(parity % 2 == 0, normalise_percentiles(first), normalise_percentiles(second))


def difference_dhw(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Signed difference of the two volumes after percentile normalisation, in [-1, 1]."""
    if first.shape != second.shape:
        raise ValueError(f"volumes differ in shape: {first.shape} vs {second.shape}")
    return normalise_percentiles(first) - normalise_percentiles(second)
