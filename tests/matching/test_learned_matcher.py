"""LearnedMatcher: the 2D network slice-wise in 3D, frames of disp_ijk, weight loading."""

from __future__ import annotations

import pytest
import torch

from vmgga.config import DenseConfig, FeatureConfig, MatchingConfig
from vmgga.errors import InputError
from vmgga.matching.base import DenseMatch, Matcher
from vmgga.matching.learned import LearnedMatcher
from vmgga.models import checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.loading import capture_range_vox
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig


def _shifted_volumes(shift_ijk: tuple[int, int, int], shape_dhw=(6, 64, 64)):
    """moving(x) = fixed(x - shift): fixed voxel x is found at x + shift in moving."""
    gen = torch.Generator().manual_seed(0)
    d, h, w = shape_dhw
    big = torch.rand(1, 1, d + 32, h + 32, w + 32, generator=gen)
    si, sj, sk = shift_ijk
    fixed = big[..., 16 : 16 + d, 16 : 16 + h, 16 : 16 + w]
    moving = big[..., 16 - sk : 16 - sk + d, 16 - sj : 16 - sj + h, 16 - si : 16 - si + w]
    return fixed.contiguous(), moving.contiguous()


def test_in_plane_shift_lands_in_the_right_ijk_channels():
    """Axial slices only (axis 0 = fixed k): a shift (i, j) = (8, -8) appears in channels 0 and 1."""
    torch.manual_seed(0)
    model = MatcherNet(MatcherConfig(fine_temperature=1e-3))
    matcher = LearnedMatcher(DenseConfig(), model=model, slicewise=SlicewiseConfig(axes=(0,), slice_step=2))
    assert isinstance(matcher, Matcher)
    fixed, moving = _shifted_volumes((8, -8, 0))
    result = matcher.match(fixed, moving, fixed, moving)
    assert isinstance(result, DenseMatch)
    assert result.disp_ijk.shape == (1, 3, 6, 64, 64) and result.confidence.shape == (1, 1, 6, 64, 64)
    interior = result.disp_ijk[0, :, :, 18:46, 18:46]
    expected = torch.tensor([8.0, -8.0, 0.0]).view(3, 1, 1, 1).expand_as(interior)
    torch.testing.assert_close(interior, expected, atol=0.05, rtol=0)
    assert 0 <= float(result.confidence.min()) and float(result.confidence.max()) <= 1


def test_weights_are_loaded_from_the_config_with_the_capture_range(tmp_path):
    torch.manual_seed(0)
    path = checkpoint.save_checkpoint(MatcherNet(MatcherConfig(fine_dim=16)), tmp_path / "w.pt", {"steps": 1})
    config = DenseConfig(
        features=FeatureConfig(weights=str(path)),
        matching=MatchingConfig(learned_capture_range_vox=7.5, grid_spacing_vox=6),
    )
    matcher = LearnedMatcher(config)
    assert matcher.model.config.fine_dim == 16
    assert matcher.model.config.max_displacement_px == capture_range_vox(config) == 7.5  # not 6 x 3


def test_missing_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    with pytest.raises(InputError, match="no trained VMGGA matcher weights are shipped yet"):
        LearnedMatcher(DenseConfig())
    with pytest.raises(InputError, match="do not exist"):
        LearnedMatcher(DenseConfig(features=FeatureConfig(weights=str(tmp_path / "nope.pt"))))


def test_slice_step_comes_from_the_dense_config():
    from vmgga.features.learned import LearnedFeatureExtractor

    model = MatcherNet(MatcherConfig()).eval()
    assert (
        LearnedMatcher(
            DenseConfig(features=FeatureConfig(slice_step_vox=2)), model=model
        ).slicewise.slice_step
        == 2
    )
    assert (
        LearnedFeatureExtractor(
            DenseConfig(features=FeatureConfig(slice_step_vox=3)), model=model
        ).slicewise.slice_step
        == 3
    )
