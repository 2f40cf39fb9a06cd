"""Confidence calibration maps: isotonic fit, application, the file beside the weights, Matcher2D."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from vmgga.errors import InputError
from vmgga.models import calibration as cal
from vmgga.models import checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.matcher2d import Matcher2D
from vmgga.models.network import MatcherNet
from vmgga.training.losses import expected_calibration_error


def _best_monotone_by_search(values, weights, grid):
    """Brute force: the non-decreasing sequence on ``grid`` with the least weighted squared error."""
    best, best_cost = None, np.inf
    for candidate in itertools.combinations_with_replacement(grid, len(values)):
        cost = float(np.sum(weights * (np.array(candidate) - values) ** 2))
        if cost < best_cost:
            best, best_cost = np.array(candidate), cost
    return best


def test_pool_adjacent_violators_is_the_least_squares_monotone_fit():
    values, weights = np.array([0.2, 0.6, 0.4, 0.8, 0.5]), np.array([1.0, 1.0, 3.0, 1.0, 1.0])
    fitted = cal.pool_adjacent_violators(values, weights)
    # the optimum pools (0.6 w1, 0.4 w3) -> 0.45 and (0.8, 0.5) -> 0.65; a grid of 0.05 contains both
    expected = _best_monotone_by_search(values, weights, np.round(np.arange(0, 1.0001, 0.05), 2))
    np.testing.assert_allclose(fitted, expected, atol=1e-9)
    assert np.all(np.diff(fitted) >= 0)


def test_isotonic_map_recovers_a_known_reliability_curve_and_removes_the_ece():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, raw.size) < np.sqrt(raw)  # true P(right | raw) = sqrt(raw): under-confident
    raw_knots, cal_knots = cal.fit_isotonic(raw, correct, n_bins=20)
    np.testing.assert_allclose(cal_knots, np.sqrt(raw_knots), atol=0.03)
    calibration = cal.ConfidenceCalibration(raw_knots, cal_knots, 2.0, "s")
    fresh = rng.uniform(0, 1, 200_000)
    fresh_correct = torch.from_numpy(rng.uniform(0, 1, fresh.size) < np.sqrt(fresh))
    before = expected_calibration_error(torch.from_numpy(fresh), fresh_correct)
    after = expected_calibration_error(calibration.apply(torch.from_numpy(fresh)), fresh_correct)
    assert before > 0.1 and after < 0.02


def test_apply_is_piecewise_linear_between_knots_and_constant_outside():
    calibration = cal.ConfidenceCalibration((0.2, 0.5, 0.9), (0.1, 0.7, 0.8), 2.0, "s")
    x = torch.linspace(0, 1, 101, dtype=torch.float32).reshape(1, 1, 101)
    expected = np.interp(x.numpy().ravel(), [0.2, 0.5, 0.9], [0.1, 0.7, 0.8])
    out = calibration.apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_allclose(out.numpy().ravel(), expected, atol=1e-6)


def test_knots_are_validated():
    with pytest.raises(InputError):
        cal.ConfidenceCalibration((0.5, 0.2), (0.1, 0.2), 2.0, "s")
    with pytest.raises(InputError):
        cal.ConfidenceCalibration((0.2, 0.5), (0.3, 0.2), 2.0, "s")
    with pytest.raises(InputError):
        cal.ConfidenceCalibration((0.2, 0.5), (0.3, 1.2), 2.0, "s")


def test_file_is_bound_to_the_weights_and_the_setting(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights one")
    setting = cal.setting_key(None, 12.0, 8.0)
    assert setting == "search=global,refine=12,smooth=8"
    calibration = cal.ConfidenceCalibration((0.1, 0.9), (0.3, 0.95), 2.0, setting, "split")
    path = cal.save_calibration(weights, calibration)
    assert path == tmp_path / "w.calibration.json"
    assert cal.load_calibration(weights, setting) == calibration
    assert cal.load_calibration(weights, cal.setting_key(16.0, None, None)) is None
    weights.write_bytes(b"weights two")  # other weights: the map does not apply
    assert cal.load_calibration(weights, setting) is None
    assert json.loads(path.read_text())["maps"][setting]["fitted_on"] == "split"


def test_matcher2d_applies_the_map_of_its_weights_and_setting(tmp_path):
    torch.manual_seed(0)
    weights = checkpoint.save_checkpoint(MatcherNet(MatcherConfig()), tmp_path / "w.pt")
    setting = cal.setting_key(None, None, None)
    calibration = cal.ConfidenceCalibration((0.0, 1.0), (0.2, 0.6), 2.0, setting)
    cal.save_calibration(weights, calibration)
    gen = torch.Generator().manual_seed(1)
    image0, image1 = torch.rand(1, 1, 48, 48, generator=gen), torch.rand(1, 1, 48, 48, generator=gen)
    raw = Matcher2D("vmgga", weights, calibrate=False)(image0, image1)
    mapped = Matcher2D("vmgga", weights)(image0, image1)
    torch.testing.assert_close(mapped.confidence, 0.2 + 0.4 * raw.confidence)
    torch.testing.assert_close(mapped.flow_px, raw.flow_px)
    other = Matcher2D("vmgga", weights, max_displacement_px=16.0)  # no map fitted for this setting
    assert other.calibration is None and Matcher2D("mind").calibration is None
    assert Matcher2D("vmgga", weights).describe()["calibration"]["setting"] == setting
