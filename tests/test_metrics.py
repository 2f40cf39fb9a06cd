"""The one ``dice_per_label`` (:mod:`vmgga.metrics`), checked against SimpleITK's overlap filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import InputError
from vmgga.metrics import dice_per_label


def _sitk_dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    measures = sitk.LabelOverlapMeasuresImageFilter()
    measures.Execute(
        sitk.GetImageFromArray((a == label).astype(np.uint8)),
        sitk.GetImageFromArray((b == label).astype(np.uint8)),
    )
    return measures.GetDiceCoefficient()


def test_dice_matches_simpleitk_overlap_measures():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    b = np.where(rng.random(a.shape) < 0.7, a, rng.integers(0, 4, size=a.shape)).astype(np.uint8)
    dice = dice_per_label(a, b, [3, 1, 2])
    assert list(dice) == [3, 1, 2]  # the caller's order
    for label, value in dice.items():
        assert value == pytest.approx(_sitk_dice(a, b, label), abs=1e-12)


def test_default_labels_are_the_nonzero_ones_of_either_map():
    a = np.array([0, 1, 1, 2])
    b = np.array([0, 1, 5, 5])
    dice = dice_per_label(a, b)
    assert list(dice) == [1, 2, 5]
    assert dice == pytest.approx({1: 2 * 1 / 3, 2: 0.0, 5: 0.0})  # hand counts: |1∩1| = 1, |A|+|B| = 3


def test_a_label_absent_from_both_maps_is_nan_not_dropped_nor_zero():
    a = np.array([0, 1, 1])
    dice = dice_per_label(a, a, [1, 7])
    assert dice[1] == 1.0
    assert set(dice) == {1, 7} and math.isnan(dice[7])


def test_a_label_lost_by_the_warp_scores_zero():
    assert dice_per_label(np.array([1, 1, 0]), np.array([0, 0, 0]), [1]) == {1: 0.0}


def test_maps_of_different_shapes_are_refused():
    with pytest.raises(InputError, match=r"differ in size: \(3,\) vs \(4,\)"):
        dice_per_label(np.zeros(3), np.zeros(4))
