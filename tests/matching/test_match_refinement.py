"""Refinement of 3D matches: Gaussian smoothing by confidence, second pass on the warped volume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from vmgga.config import DenseConfig, MatchingConfig
from vmgga.errors import ConfigError
from vmgga.matching.base import DenseMatch
from vmgga.matching.learned import LearnedMatcher
from vmgga.matching.refine import (
    gaussian_blur_3d,
    match_coarser,
    multi_pass_match,
    pooled_gaussian_blur_3d,
    refine_match,
    smooth_match,
)
from vmgga.models.config import MatcherConfig
from vmgga.models.network import MatcherNet

SHAPE_DHW = (20, 24, 28)
MARGIN = 6  # voxels of the border left out of the comparisons of the translation search


def smooth_volume(shape_dhw=SHAPE_DHW, seed: int = 0) -> torch.Tensor:
    """``(1, 1, D, H, W)`` blurred noise (a texture with a clear SSD minimum at every shift)."""
    noise = np.random.default_rng(seed).random(shape_dhw)
    return torch.from_numpy(ndimage.gaussian_filter(noise, 1.0, mode="wrap")).float()[None, None]


def shifted(volume: torch.Tensor, shift_ijk: tuple[int, int, int]) -> torch.Tensor:
    """``moving(x) = volume(x - shift)`` (circular): fixed voxel ``x`` is at ``x + shift`` in moving."""
    si, sj, sk = shift_ijk
    return torch.roll(volume, shifts=(sk, sj, si), dims=(2, 3, 4))


def translation_search(capture_vox: int, margin: int = MARGIN):
    """A matching pass: the integer translation within ``capture_vox`` per axis that minimises the
    SSD of the two volumes' interiors (``margin`` voxels left out), as a constant field with
    confidence 1."""

    def match(fixed: torch.Tensor, moving: torch.Tensor) -> DenseMatch:
        inner = (..., slice(margin, -margin), slice(margin, -margin), slice(margin, -margin))
        best, best_ssd = (0, 0, 0), float("inf")
        for t in itertools.product(range(-capture_vox, capture_vox + 1), repeat=3):
            # moving sampled at x + t, i.e. rolled by -t
            ssd = float(((shifted(moving, tuple(-v for v in t))[inner] - fixed[inner]) ** 2).sum())
            if ssd < best_ssd:
                best, best_ssd = t, ssd
        disp = torch.tensor(best, dtype=fixed.dtype).view(1, 3, 1, 1, 1).expand(1, 3, *fixed.shape[2:])
        return DenseMatch(disp_ijk=disp.contiguous(), confidence=torch.ones_like(fixed))

    return match


def test_gaussian_blur_3d_agrees_with_scipy():
    volume = torch.from_numpy(np.random.default_rng(1).random((2, 9, 10, 11))).float()[None]
    ours = gaussian_blur_3d(volume, 1.3)[0].numpy()
    for c in range(2):
        expected = ndimage.gaussian_filter(volume[0, c].numpy(), 1.3, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(ours[c], expected, atol=1e-5)


def test_the_pooled_blur_is_close_to_the_exact_one_for_a_large_sigma():
    """Sigma 6 computed at half resolution: a smooth volume (wavelength 20-40 voxels, odd sizes) blurs
    to what scipy gives, within 1 % of its range inside, 4 % at the border (replicated there at the
    coarse level); a constant stays constant."""
    k, j, i = np.meshgrid(np.arange(31), np.arange(26), np.arange(37), indexing="ij")
    volume = np.sin(2 * np.pi * i / 40) * np.cos(2 * np.pi * j / 30) + 0.5 * np.sin(2 * np.pi * k / 20)
    ours = pooled_gaussian_blur_3d(torch.from_numpy(volume).float()[None, None], 6.0, 2)[0, 0].numpy()
    expected = ndimage.gaussian_filter(volume, 6.0, mode="nearest", truncate=3.0)
    assert ours.shape == volume.shape
    error = np.abs(ours - expected) / np.ptp(volume)
    assert error[5:-5, 5:-5, 5:-5].max() < 0.01 and error.max() < 0.04
    constant = torch.full((1, 2, 9, 10, 11), 3.5)
    torch.testing.assert_close(pooled_gaussian_blur_3d(constant, 6.0, 2), constant)


def test_smoothing_keeps_a_constant_field_and_discounts_an_unsure_outlier():
    disp = torch.ones(1, 3, 9, 9, 9) * torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1, 1)
    confidence = torch.rand(1, 1, 9, 9, 9, generator=torch.Generator().manual_seed(0))
    smoothed = smooth_match(DenseMatch(disp, confidence), 1.5)
    torch.testing.assert_close(smoothed.disp_ijk, disp)
    torch.testing.assert_close(smoothed.confidence, gaussian_blur_3d(confidence, 1.5))
    outlier, sure = disp.clone(), torch.ones(1, 1, 9, 9, 9)
    outlier[:, :, 4, 4, 4] = 30.0
    sure[:, :, 4, 4, 4] = 0.0  # clamped to the smallest weight, 1e-3
    centre = smooth_match(DenseMatch(outlier, sure), 1.5).disp_ijk[0, :, 4, 4, 4]
    assert float((centre - disp[0, :, 4, 4, 4]).abs().max()) < 0.05


def test_a_second_pass_on_the_warped_volume_composes_to_the_true_shift():
    """The first search reaches 2 voxels per axis; the true shift is (3, -4, 2): one refinement with
    the same reach finds the rest on the warped volume, and the composition adds it (the wrong warp
    direction would leave a residual of shift + first pass = (5, -6, 4), beyond the second search's reach)."""
    fixed = smooth_volume()
    moving = shifted(fixed, (3, -4, 2))
    first = translation_search(2)(fixed, moving)
    assert first.disp_ijk[0, :, 0, 0, 0].tolist() == [2.0, -2.0, 2.0]
    refined = refine_match(fixed, moving, first, translation_search(2))
    inner = refined.disp_ijk[0, :, MARGIN:-MARGIN, MARGIN:-MARGIN, MARGIN:-MARGIN]
    expected = torch.tensor([3.0, -4.0, 2.0]).view(3, 1, 1, 1).expand_as(inner)
    torch.testing.assert_close(inner, expected)
    again = multi_pass_match(fixed, moving, translation_search(2), translation_search(2), 2, sigma_vox=1.0)
    torch.testing.assert_close(again.disp_ijk[0, :, MARGIN:-MARGIN, MARGIN:-MARGIN, MARGIN:-MARGIN], expected)


def test_matching_on_a_coarser_grid_comes_back_in_input_voxels():
    """Sides are even and the shift (4, -2, 2) is even, so the block-averaged moving volume is the
    block-averaged fixed one shifted by (2, -1, 1) coarse voxels: that, times 2, everywhere."""
    fixed = smooth_volume()
    moving = shifted(fixed, (4, -2, 2))
    seen = []

    def search(fixed_coarse: torch.Tensor, moving_coarse: torch.Tensor) -> DenseMatch:
        seen.append(tuple(fixed_coarse.shape[2:]))
        return translation_search(2, margin=3)(fixed_coarse, moving_coarse)

    result = match_coarser(fixed, moving, search, 2)
    assert seen == [(10, 12, 14)]
    assert result.disp_ijk.shape == (1, 3, *SHAPE_DHW) and result.confidence.shape == (1, 1, *SHAPE_DHW)
    expected = torch.tensor([4.0, -2.0, 2.0]).view(1, 3, 1, 1, 1).expand(1, 3, *SHAPE_DHW)
    torch.testing.assert_close(result.disp_ijk, expected)


def test_no_refinement_returns_the_first_pass_unchanged():
    fixed = smooth_volume()
    moving = shifted(fixed, (1, 0, -1))
    once = multi_pass_match(fixed, moving, translation_search(1), translation_search(1), 0)
    torch.testing.assert_close(once.disp_ijk[0, :, 0, 0, 0], torch.tensor([1.0, 0.0, -1.0]))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("learned_refine_passes", -1, "learned_refine_passes must be >= 0"),
        ("learned_refine_capture_range_vox", 0.0, "learned_refine_capture_range_vox must be positive"),
        ("learned_smooth_sigma_vox", -2.0, "learned_smooth_sigma_vox must be >= 0"),
        ("learned_pool_factor", 0, "learned_pool_factor must be >= 1"),
    ],
)
def test_out_of_range_refinement_settings_are_refused(field, value, message):
    config = DenseConfig(matching=MatchingConfig(**{field: value}))
    with pytest.raises(ConfigError, match=message):
        LearnedMatcher(config, model=MatcherNet(MatcherConfig()))
