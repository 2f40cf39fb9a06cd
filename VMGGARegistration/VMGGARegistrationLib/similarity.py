"""Image similarity on voxel arrays, used by the module's self-test to judge a registration."""

from __future__ import annotations

import numpy as np


def _masked_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float64 values of ``a`` and ``b`` (same shape) inside ``mask``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"arrays differ in shape: {a.shape} vs {b.shape}")
    if mask is None:
        return a.ravel(), b.ravel()
    mask = np.asarray(mask, dtype=bool)
    return a[mask], b[mask]


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of the voxel values, in [-1, 1]; 0 when either image is constant."""
    x, y = _masked_pair(a, b, mask)
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32, mask: np.ndarray | None = None) -> float:
    """Mutual information (nats) of the joint intensity histogram with ``bins`` bins per image."""
    x, y = _masked_pair(a, b, mask)
    joint, _, _ = np.histogram2d(x, y, bins=bins)
    p_xy = joint / joint.sum()
    p_x = p_xy.sum(axis=1, keepdims=True)
    p_y = p_xy.sum(axis=0, keepdims=True)
    nonzero = p_xy > 0
    return float((p_xy[nonzero] * np.log(p_xy[nonzero] / (p_x @ p_y)[nonzero])).sum())
