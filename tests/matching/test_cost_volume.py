"""Cost-volume matcher: exact recovery of a constant shift, confidence, factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vmgga.config import DenseConfig, FeatureConfig, MatchingConfig
from vmgga.errors import ConfigError
from vmgga.features.mind import mind_ssc
from vmgga.matching.base import DenseMatch, Matcher
from vmgga.matching.cost_volume import CostVolumeMatcher, displacement_steps, ssd_cost_volume
from vmgga.matching.registry import get_matcher, resolve_matcher_name


def _texture(shape=(32, 32, 32), seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 1, *shape), generator=generator)
    return F.avg_pool3d(F.pad(noise, (1,) * 6, mode="circular"), 3, stride=1)


def test_displacement_steps_cover_the_window_once():
    steps = displacement_steps(2)
    assert steps.shape == (125, 3)
    assert len({tuple(s) for s in steps.tolist()}) == 125
    assert steps.abs().max() == 2 and steps[62].tolist() == [0, 0, 0]  # the centre


def test_cost_volume_is_zero_at_the_true_shift():
    fixed = torch.rand(1, 4, 8, 9, 10)
    moving = torch.roll(fixed, shifts=(1, -2, 1), dims=(2, 3, 4))  # fixed(x) = moving(x + s)
    cost = ssd_cost_volume(fixed, moving, 2)
    best = displacement_steps(2)[cost[:, 3:-3, 3:-3, 3:-3].argmin(0)]
    assert (best == torch.tensor([1, -2, 1])).all()  # (i, j, k) = (+1, -2, +1)


def test_matcher_recovers_a_constant_shift_exactly():
    config = DenseConfig(matching=MatchingConfig(grid_spacing_vox=4, search_radius_steps=2))
    shift_ijk = (4, -8, 4)  # whole grid steps
    big, n, o = _texture((64, 64, 64)), 48, 8
    fixed = big[..., o : o + n, o : o + n, o : o + n]  # fixed(x) = big(x + o)
    k, j, i = (o - shift_ijk[2], o - shift_ijk[1], o - shift_ijk[0])
    moving = big[..., k : k + n, j : j + n, i : i + n]  # moving(x + s) = fixed(x)
    match = CostVolumeMatcher(config).match(fixed, moving, mind_ssc(fixed), mind_ssc(moving))
    assert isinstance(match, DenseMatch)
    assert match.disp_ijk.shape == (1, 3, n, n, n) and match.confidence.shape == (1, 1, n, n, n)
    # the border (where x + s leaves the moving image) is wrong; its influence fades inwards
    interior = match.disp_ijk[0, :, 16:-16, 16:-16, 16:-16].reshape(3, -1)
    assert torch.equal(interior, torch.tensor(shift_ijk, dtype=torch.float32)[:, None].expand_as(interior))


def test_confidence_is_higher_on_texture_than_on_a_flat_region():
    fixed = _texture()
    fixed[..., 16:] = 0.5  # flat half
    match = CostVolumeMatcher(
        DenseConfig(matching=MatchingConfig(grid_spacing_vox=4, search_radius_steps=2))
    ).match(fixed, fixed, mind_ssc(fixed), mind_ssc(fixed))
    textured, flat = match.confidence[..., 2:10].mean(), match.confidence[..., 24:].mean()
    assert 0 <= match.confidence.min() and match.confidence.max() <= 1
    assert textured > 0.5 and flat < 0.05


def test_factory():
    assert isinstance(get_matcher(DenseConfig()), CostVolumeMatcher)
    assert isinstance(get_matcher(DenseConfig()), Matcher)
    assert resolve_matcher_name(DenseConfig(features=FeatureConfig(backend="vmgga"))) == "vmgga"
    assert (
        resolve_matcher_name(
            DenseConfig(
                features=FeatureConfig(backend="vmgga"), matching=MatchingConfig(matcher="cost_volume")
            )
        )
        == "cost_volume"
    )
    with pytest.raises(ConfigError, match="dense.matching.matcher='sgm' is not allowed"):
        get_matcher(DenseConfig(matching=MatchingConfig(matcher="sgm")))
    with pytest.raises(ConfigError, match="search_radius_steps"):
        CostVolumeMatcher(DenseConfig(matching=MatchingConfig(search_radius_steps=0)))
