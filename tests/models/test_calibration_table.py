"""Session-6 confidence calibration: the agreement of a match, the pair confidence, the
foreground local mean, and the table map (confidence x agreement x pair level): fit and use."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from vmgga.cli.match import REFINE_PX, SMOOTH_PX
from vmgga.errors import InputError
from vmgga.models import calibration as cal
from vmgga.models import checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.matcher2d import (
    Matcher2D,
    foreground_local_mean,
    gradient_agreement,
    pair_confidence,
)
from vmgga.models.network import MatcherNet

torch.set_num_threads(1)


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float64))[None, None]


def _zero_flow(h: int, w: int) -> torch.Tensor:
    return torch.zeros(1, 2, h, w, dtype=torch.float64)


# --- agreement, pair confidence, foreground local mean -------------------------------------------


def test_agreement_is_one_for_the_same_edges_in_any_contrast_and_zero_for_crossing_edges():
    h, w = 48, 64
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    vertical = 0.5 + 0.4 * np.sin(2 * np.pi * xs / 9.0)  # edges along y: gradients along x only
    horizontal = 0.5 + 0.4 * np.sin(2 * np.pi * ys / 7.0)  # gradients along y only
    inside = (slice(12, -12), slice(12, -12))
    same = gradient_agreement(_t(vertical), _t(vertical), _zero_flow(h, w), 3.0)[0, 0].numpy()
    inverted = gradient_agreement(_t(vertical), _t(1.0 - vertical), _zero_flow(h, w), 3.0)[0, 0].numpy()
    crossing = gradient_agreement(_t(vertical), _t(horizontal), _zero_flow(h, w), 3.0)[0, 0].numpy()
    # (g0 . g1)^2 = |g0|^2 |g1|^2 when g1 = +-k g0, and 0 when g0 is along x and g1 along y
    np.testing.assert_allclose(same[inside], 1.0, atol=1e-9)
    np.testing.assert_allclose(inverted[inside], 1.0, atol=1e-9)
    np.testing.assert_allclose(crossing[inside], 0.0, atol=1e-9)


def test_agreement_follows_the_flow():
    h, w, dx, dy = 56, 64, 4, -3
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.uniform(0, 1, (h, w)), 2.0)
    image0 = texture
    image1 = np.roll(texture, (dy, dx), axis=(0, 1))  # image1(p + (dx, dy)) = image0(p)
    flow = torch.zeros(1, 2, h, w, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = dx, dy
    inside = (slice(18, -18), slice(18, -18))  # clear of the border (shift 4 + blur radii 3 + 9)
    right = gradient_agreement(_t(image0), _t(image1), flow, 3.0)[0, 0].numpy()
    wrong = gradient_agreement(_t(image0), _t(image1), _zero_flow(h, w), 3.0)[0, 0].numpy()
    np.testing.assert_allclose(right[inside], 1.0, atol=1e-3)
    assert wrong[inside].mean() < 0.6
    assert right.min() >= 0.0 and right.max() <= 1.0


def test_pair_confidence_is_the_mean_over_image0_foreground():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, (2, 1, 20, 30))
    image0 = np.zeros((2, 1, 20, 30))
    image0[0, 0, 5:15, 10:25] = 0.5  # a block of foreground
    # second image: no foreground at all -> every pixel counts
    expected = [conf[0, 0, 5:15, 10:25].mean(), conf[1].mean()]
    got = pair_confidence(torch.from_numpy(conf), torch.from_numpy(image0))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_foreground_local_mean_is_the_masked_normalised_convolution():
    h, w, sigma = 40, 52, 3.0
    rng = np.random.default_rng(2)
    conf = rng.uniform(0, 1, (h, w))
    foreground = np.zeros((h, w), bool)
    foreground[8:30, 10:40] = True
    weight = np.where(foreground, 1.0, 1e-3)
    radius = int(round(3 * sigma))

    def blur(x):
        return ndimage.gaussian_filter(x, sigma, mode="mirror", truncate=radius / sigma)

    expected = np.clip(blur(conf * weight) / blur(weight), 0, 1)
    got = foreground_local_mean(_t(conf), torch.from_numpy(foreground)[None, None], sigma)[0, 0]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-9)
    # a pixel just inside the edge: the mean over the foreground only, not pulled down by the air
    assert (
        abs(got[8, 25].item() - conf[foreground].mean())
        < abs(blur(conf)[8, 25] - conf[foreground].mean()) + 0.2
    )


# --- the table map --------------------------------------------------------------------------------

RAW = (0.0, 0.5, 1.0)
AGREE = (0.2, 0.8)
TABLE = ((0.1, 0.4, 0.6), (0.3, 0.7, 0.9))
UNSURE = ((0.0, 0.2, 0.3), (0.1, 0.3, 0.5))


def _table_map(**changes) -> cal.ConfidenceCalibration:
    fields = dict(raw_knots=RAW, calibrated_knots=(0.0, 0.5, 1.0), tolerance_px=2.0, setting="s",
                  agreement_knots=AGREE, table=TABLE, unsure_table=UNSURE, unsure_pair_below=0.3)  # fmt: skip
    fields.update(changes)
    return cal.ConfidenceCalibration(**fields)


def test_table_map_is_read_bilinearly_by_hand():
    calibration = _table_map()
    conf = torch.tensor([[0.25, 0.5, 1.0, 0.75]], dtype=torch.float64)
    agree = torch.tensor([[0.5, 0.2, 0.95, 0.8]], dtype=torch.float64)
    # (0.25, 0.5): rows at 0.25 are 0.25 and 0.5, halfway between the agreement knots -> 0.375
    # (0.5, 0.2): table[0][1] = 0.4; (1.0, 0.95): agreement clamped to 0.8 -> 0.9;
    # (0.75, 0.8): between 0.7 and 0.9 -> 0.8
    expected = [0.375, 0.4, 0.9, 0.8]
    np.testing.assert_allclose(calibration.apply(conf, agree).numpy()[0], expected, atol=1e-12)
    unsure_pair = calibration.apply(conf, agree, torch.tensor([0.1]))  # pair under 0.3: unsure table
    np.testing.assert_allclose(unsure_pair.numpy()[0], [0.15, 0.2, 0.5, 0.4], atol=1e-12)
    sure_pair = calibration.apply(conf, agree, torch.tensor([0.6]))
    np.testing.assert_allclose(sure_pair.numpy()[0], expected, atol=1e-12)
    with pytest.raises(InputError):
        calibration.apply(conf)  # a table map needs the agreement


def test_table_map_is_non_decreasing_in_each_input():
    calibration = _table_map()
    grid = torch.linspace(0, 1, 21, dtype=torch.float64)
    conf, agree = torch.meshgrid(grid, grid, indexing="ij")  # (conf, agreement)
    for level in (0.1, 0.9):
        out = calibration.apply(conf, agree, torch.full_like(conf, level)).numpy()
        assert np.all(np.diff(out, axis=0) >= -1e-12) and np.all(np.diff(out, axis=1) >= -1e-12)
    low = calibration.apply(conf, agree, torch.full_like(conf, 0.1)).numpy()
    high = calibration.apply(conf, agree, torch.full_like(conf, 0.9)).numpy()
    assert np.all(high >= low - 1e-12)


def test_table_maps_are_validated():
    with pytest.raises(InputError):
        _table_map(table=((0.1, 0.4, 0.6), (0.3, 0.2, 0.9)))  # falls along the confidence
    with pytest.raises(InputError):
        _table_map(table=((0.1, 0.4, 0.6), (0.05, 0.7, 0.9)))  # falls along the agreement
    with pytest.raises(InputError):
        _table_map(unsure_table=((0.2, 0.5, 0.7), (0.3, 0.7, 0.9)))  # unsure above sure
    with pytest.raises(InputError):
        _table_map(table=((0.1, 0.4), (0.3, 0.7)))  # wrong shape


def test_table_map_round_trips_and_version_one_maps_still_load():
    calibration = _table_map()
    assert cal.ConfidenceCalibration.from_dict(calibration.to_dict()) == calibration
    old = {"raw_knots": [0.1, 0.9], "calibrated_knots": [0.2, 0.8], "tolerance_px": 2.0, "setting": "s"}
    loaded = cal.ConfidenceCalibration.from_dict(old)
    assert not loaded.needs_agreement
    np.testing.assert_allclose(loaded.apply(torch.tensor([0.5])).numpy(), [0.5], atol=1e-6)


def test_agreement_rows_recovers_a_known_two_input_reliability():
    rng = np.random.default_rng(3)
    n = 400_000
    conf, agree = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    truth = 0.1 + 0.8 * conf * agree  # non-decreasing in both
    correct = rng.uniform(0, 1, n) < truth
    edges, grid = (0.0, 0.25, 0.5, 0.75, 1.01), np.linspace(0, 1, 11)
    table = cal.agreement_rows(conf, correct, agree, edges, grid)
    centres = np.array([0.125, 0.375, 0.625, 0.8801])  # mean agreement of each bin (last: [0.75, 1])
    expected = 0.1 + 0.8 * centres[:, None] * grid[None, :]
    inner = (slice(None), slice(1, -1))  # the grid ends lie outside the bins' mean confidences
    np.testing.assert_allclose(table[inner], expected[inner], atol=0.04)
    assert np.all(np.diff(table, axis=0) >= 0) and np.all(np.diff(table, axis=1) >= 0)


def test_agreement_rows_fills_a_thin_bin_with_the_row_below_and_raises_falling_rows():
    conf = np.repeat(np.linspace(0.05, 0.95, 10), 300)
    agree = np.concatenate([np.full(1500, 0.1), np.full(1500, 0.9)])
    # bin [0, 0.5): right iff conf > 0.5; bin [0.5, 0.7): empty; bin [0.7, 1]: never right
    correct = np.where(agree < 0.5, conf > 0.5, False)
    table = cal.agreement_rows(
        conf, correct, agree, (0.0, 0.5, 0.7, 1.01), np.array([0.1, 0.9]), min_pixels=100
    )
    low = cal.agreement_rows(conf[:1500], correct[:1500], agree[:1500], (0.0, 1.01), np.array([0.1, 0.9]))
    np.testing.assert_allclose(table[0], low[0])
    np.testing.assert_allclose(table[1], table[0])  # the empty bin copies the row below
    np.testing.assert_allclose(table[2], table[0])  # "never right" is raised to the row below


def test_fit_agreement_table_keeps_unsure_pairs_under_sure_ones():
    rng = np.random.default_rng(4)
    n = 200_000
    conf, agree = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    pair = np.where(np.arange(n) < n // 2, 0.1, 0.7)
    truth = np.where(pair < 0.3, 0.2 * conf, 0.3 + 0.7 * conf)
    correct = rng.uniform(0, 1, n) < truth
    knots, sure, unsure = cal.fit_agreement_table(
        conf, correct, agree, pair, (0.0, 0.5, 1.01), 0.3, np.linspace(0, 1, 6)
    )
    np.testing.assert_allclose(knots, [0.25, 0.755])
    sure, unsure = np.array(sure), np.array(unsure)
    assert np.all(unsure <= sure)
    grid = np.broadcast_to(np.linspace(0, 1, 6)[1:-1], (2, 4))
    np.testing.assert_allclose(unsure[:, 1:-1], 0.2 * grid, atol=0.04)
    np.testing.assert_allclose(sure[:, 1:-1], 0.3 + 0.7 * grid, atol=0.04)


# --- Matcher2D with a table map ---------------------------------------------------------------------


def test_matcher2d_applies_a_table_map_with_the_agreement_of_its_own_match(tmp_path):
    torch.manual_seed(0)
    weights = checkpoint.save_checkpoint(MatcherNet(MatcherConfig()), tmp_path / "w.pt")
    setting = cal.setting_key(None, None, None)
    calibration = _table_map(setting=setting, agreement_sigma_px=2.0)
    cal.save_calibration(weights, calibration)
    gen = torch.Generator().manual_seed(1)
    image0, image1 = torch.rand(1, 1, 48, 48, generator=gen), torch.rand(1, 1, 48, 48, generator=gen)
    raw = Matcher2D("vmgga", weights, calibrate=False)(image0, image1)
    mapped = Matcher2D("vmgga", weights)(image0, image1)
    torch.testing.assert_close(mapped.flow_px, raw.flow_px)
    agreement = gradient_agreement(image0, image1, raw.flow_px, 2.0)
    pair = pair_confidence(raw.confidence, image0)
    # by hand: the pair level picks the table, which is read at (raw confidence, agreement)
    table = UNSURE if float(pair[0]) < 0.3 else TABLE
    expected = np.empty(raw.confidence.shape[-2:])
    for i, j in itertools.product(range(48), range(48)):
        c, a = float(raw.confidence[0, 0, i, j]), float(agreement[0, 0, i, j])
        rows = [np.interp(c, RAW, row) for row in table]
        expected[i, j] = np.interp(a, AGREE, rows)
    np.testing.assert_allclose(mapped.confidence[0, 0].numpy(), expected, atol=1e-5)


def test_the_shipped_weights_carry_a_table_map_for_the_match_default():
    shipped = cal.load_calibration(
        checkpoint.resolve_weights(None), cal.setting_key(None, REFINE_PX, SMOOTH_PX)
    )
    assert shipped is not None and shipped.needs_agreement  # bound to the shipped file's SHA-256
    conf = torch.linspace(0, 1, 11, dtype=torch.float64)
    low, high = torch.full_like(conf, 0.3), torch.full_like(conf, 0.99)
    sure, unsure = torch.ones(11), torch.zeros(11)
    for agreement in (low, high):
        for pair in (sure, unsure):
            assert torch.all(torch.diff(shipped.apply(conf, agreement, pair)) >= 0)
    assert torch.all(shipped.apply(conf, high, sure) >= shipped.apply(conf, low, sure))
    assert torch.all(shipped.apply(conf, high, sure) >= shipped.apply(conf, high, unsure))
