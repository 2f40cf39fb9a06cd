"""Overlap scores shared by the bundle's evaluation, batch jobs and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vmgga.errors import InputError


def dice_per_label(
    labels0: np.ndarray, labels1: np.ndarray, label_ids: Iterable[int] | None = None
) -> dict[int, float]:
    """Dice ``2|A & B| / (|A| + |B|)`` of each label between two label arrays on one grid.

    Args:
        labels0: Integer label array, any shape (e.g. the fixed map, ``(D, H, W)``).
        labels1: Label array of the same shape (e.g. the warped moving map).
        label_ids: Labels to score; None scores every non-zero label present in either array.

    Returns:
        ``{label: dice}`` in the order of ``label_ids``. A label absent from **both** arrays has no
        overlap to measure: its value is NaN (never a division by zero, never silently dropped), so
        that a mean over labels must say how it treats it (``np.nanmean`` leaves it out).

    Raises:
        InputError: if the arrays differ in shape.
    """
    a, b = np.asarray(labels0), np.asarray(labels1)
    if a.shape != b.shape:
        raise InputError(f"label maps differ in size: {a.shape} vs {b.shape}")
    if label_ids is None:
        label_ids = [v for v in np.union1d(np.unique(a), np.unique(b)).tolist() if v != 0]
    scores: dict[int, float] = {}
    for label in label_ids:
        in_a, in_b = a == label, b == label
        total = int(in_a.sum()) + int(in_b.sum())
        overlap = int(np.logical_and(in_a, in_b).sum())
        scores[int(label)] = 2.0 * overlap / total if total else float("nan")
    return scores
