"""Second matching pass after a robust affine of the first (``Matcher2D(refine_px=...)``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from vmgga.models.matcher2d import Matcher2D, affine_from_matches, refine_with_affine
from vmgga.models.types import MatchResult

torch.set_num_threads(1)


def _affine_flow(affine: np.ndarray, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    mx = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2]
    my = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2]
    return np.stack([mx - xs, my - ys])


def _result(flow: np.ndarray, confidence: np.ndarray) -> MatchResult:
    flow_t = torch.from_numpy(flow).float()[None]
    conf_t = torch.from_numpy(confidence).float()[None, None]
    empty = torch.zeros(1)
    return MatchResult(flow_t, conf_t, empty, empty, empty, 8, 2, [], [])


def test_affine_from_matches_recovers_the_affine_despite_outliers():
    h, w = 64, 80
    affine = np.array([[np.cos(0.1), -np.sin(0.1), 4.0], [np.sin(0.1), np.cos(0.1), -3.0]])
    flow = _affine_flow(affine, h, w)
    flow[:, :20, :20] += 25.0  # a block of gross outliers
    fitted = affine_from_matches(torch.from_numpy(flow), torch.ones(h, w), torch.ones(h, w, dtype=torch.bool))
    np.testing.assert_allclose(fitted.numpy(), affine, atol=1e-3)


def test_refinement_composes_the_second_flow_through_the_affine():
    h, w = 48, 56
    affine = np.array([[1.0, 0.05, 3.0], [-0.05, 1.0, 2.0]])
    first = _result(_affine_flow(affine, h, w), np.ones((h, w)))
    g = np.stack([np.full((h, w), 0.5), np.full((h, w), -1.25)])  # the second pass's flow

    def second_pass(image0, image1, search_px):
        assert search_px == 6.0
        return _result(g, np.full((h, w), 0.7))

    image = torch.rand(1, 1, h, w) + 0.1
    out = refine_with_affine(second_pass, image, image, first, 6.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = xs + g[0], ys + g[1]
    expected = np.stack([affine[0, 0] * tx + affine[0, 1] * ty + affine[0, 2] - xs,
                         affine[1, 0] * tx + affine[1, 1] * ty + affine[1, 2] - ys])  # fmt: skip
    np.testing.assert_allclose(out.flow_px[0].numpy(), expected, atol=1e-4)
    assert torch.allclose(out.confidence, torch.full_like(out.confidence, 0.7))


@pytest.mark.parametrize("shift_xy", [(5.0, -7.0), (-9.0, 4.0)])
def test_mind_matcher_with_refinement_recovers_a_shift(shift_xy):
    rng = np.random.default_rng(0)
    h, w = 96, 104
    base = ndimage.gaussian_filter(rng.random((h + 40, w + 40)), 2.5)
    base = (base - base.min()) / (base.max() - base.min())
    dx, dy = shift_xy
    image1 = base[20 : 20 + h, 20 : 20 + w]
    image0 = ndimage.shift(base, (-dy, -dx), order=1)[20 : 20 + h, 20 : 20 + w]  # image0(p) = image1(p + s)
    tensors = [torch.from_numpy(x.astype(np.float32))[None, None] for x in (image0, 1.0 - image1)]
    result = Matcher2D("mind", refine_px=8.0)(*tensors)
    flow = result.flow_px[0].numpy()[:, 16:-16, 16:-16]
    error = np.hypot(flow[0] - dx, flow[1] - dy)
    assert np.median(error) < 0.5


def test_smoothing_by_confidence_is_a_normalised_gaussian_convolution():
    from vmgga.models.matcher2d import smooth_by_confidence

    rng = np.random.default_rng(1)
    h, w, sigma = 40, 48, 2.0
    flow = rng.normal(size=(2, h, w))
    conf = rng.uniform(0.05, 1.0, size=(h, w))
    out = smooth_by_confidence(torch.from_numpy(flow)[None], torch.from_numpy(conf)[None, None], sigma)[0]
    radius = int(round(3 * sigma))

    def blur(a):
        return ndimage.gaussian_filter(a, sigma, mode="mirror", truncate=radius / sigma)

    expected = np.stack([blur(flow[c] * conf) / blur(conf) for c in range(2)])
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    constant = torch.full((1, 2, h, w), 3.5, dtype=torch.float64)
    assert torch.allclose(smooth_by_confidence(constant, torch.from_numpy(conf)[None, None], sigma), constant)


def test_smoothed_refinement_reports_the_local_mean_confidence():
    h, w, sigma = 48, 56, 3.0
    first = _result(np.zeros((2, h, w)), np.ones((h, w)))
    ys, xs = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(2)
    conf = np.where(xs < w // 2, 0.9, 0.1) * rng.uniform(0.8, 1.0, (h, w))  # sure left, unsure right

    def second_pass(image0, image1, search_px):
        return _result(np.zeros((2, h, w)), conf)

    image = torch.rand(1, 1, h, w) + 0.1
    plain = refine_with_affine(second_pass, image, image, first, 6.0)
    smoothed = refine_with_affine(second_pass, image, image, first, 6.0, smooth_px=sigma)
    np.testing.assert_allclose(plain.confidence[0, 0].numpy(), conf, atol=1e-6)
    radius = int(round(3 * sigma))
    expected = ndimage.gaussian_filter(conf, sigma, mode="mirror", truncate=radius / sigma)
    np.testing.assert_allclose(smoothed.confidence[0, 0].numpy(), expected, atol=1e-5)
