"""Checkerboard, difference and similarity measures used for reviewing a registration."""

from __future__ import annotations

import numpy as np
import pytest
from VMGGARegistrationLib.review import checkerboard_dhw, difference_dhw, normalise_percentiles
from VMGGARegistrationLib.similarity import mutual_information, normalized_cross_correlation


def test_normalise_percentiles_maps_the_robust_range_to_unit_interval():
    volume = np.arange(101, dtype=np.float32)  # percentiles 1 and 99 are 1 and 99
    normalised = normalise_percentiles(volume)
    assert normalised[1] == pytest.approx(0.0) and normalised[99] == pytest.approx(1.0)
    assert normalised[50] == pytest.approx(49 / 98)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    assert np.all(normalise_percentiles(np.full((3, 3), 7.0)) == 0)


def test_checkerboard_alternates_tiles():
    first = np.zeros((4, 6, 8))
    second = np.full((4, 6, 8), 5.0)
    first[0, 0, 0] = 1.0  # give the first image a range so it normalises to 0 almost everywhere
    board = checkerboard_dhw(first, second + np.arange(8), tiles=2)
    tile = (np.arange(4)[:, None, None] * 2 // 4) + (np.arange(6)[None, :, None] * 2 // 6)
    tile = tile + (np.arange(8)[None, None, :] * 2 // 8)
    from_second = tile % 2 == 1
    assert np.all(board[~from_second] == normalise_percentiles(first)[~from_second])
    assert np.all(board[from_second] == normalise_percentiles(second + np.arange(8))[from_second])
    assert 0 < from_second.mean() < 1


def test_difference_is_zero_for_an_intensity_rescaled_copy():
    rng = np.random.default_rng(1)
    mr = rng.uniform(0, 500, (5, 6, 7))
    assert np.allclose(difference_dhw(mr, 3.0 * mr + 40.0), 0.0, atol=1e-6)
    assert np.abs(difference_dhw(mr, rng.uniform(0, 500, mr.shape))).mean() > 0.1


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ in shape"):
        checkerboard_dhw(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        difference_dhw(np.zeros((2, 2, 2)), np.zeros((3, 2, 2)))


def test_normalized_cross_correlation_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 7, 8))
    assert normalized_cross_correlation(a, 2.5 * a - 3.0) == pytest.approx(1.0)
    assert normalized_cross_correlation(a, -a) == pytest.approx(-1.0)
    assert normalized_cross_correlation(a, np.ones_like(a)) == 0.0
    b = rng.normal(size=a.shape)
    mixed = a + b  # corr(a, a + b) = 1 / sqrt(2) for independent unit-variance a, b
    expected = np.corrcoef(a.ravel(), mixed.ravel())[0, 1]
    assert normalized_cross_correlation(a, mixed) == pytest.approx(expected)


def test_ncc_mask_selects_voxels():
    a = np.array([1.0, 2.0, 3.0, 10.0])
    b = np.array([2.0, 4.0, 6.0, -50.0])
    assert normalized_cross_correlation(a, b) < 0
    assert normalized_cross_correlation(a, b, mask=np.array([1, 1, 1, 0])) == pytest.approx(1.0)


def test_mutual_information_known_values():
    labels = np.repeat(np.arange(4), 250).astype(float)  # uniform over 4 values: H = log 4
    assert mutual_information(labels, labels, bins=4) == pytest.approx(np.log(4))
    assert mutual_information(labels, 10 - 3 * labels, bins=4) == pytest.approx(np.log(4))  # any bijection
    rng = np.random.default_rng(2)
    independent = rng.permutation(labels)
    assert mutual_information(labels, independent, bins=4) < 0.02
