"""Fusing the learned matcher and the cost volume: confidence-weighted, each confidence by its mean."""

from __future__ import annotations

import pytest
import torch

from vmgga.config import DenseConfig, MatchingConfig
from vmgga.errors import ConfigError
from vmgga.matching.base import DenseMatch
from vmgga.matching.fused import FusedMatcher, fuse_matches
from vmgga.matching.registry import get_matcher


def _match(value: float, confidence: torch.Tensor) -> DenseMatch:
    return DenseMatch(disp_ijk=torch.full((1, 3, *confidence.shape[2:]), value), confidence=confidence)


def test_sure_matcher_wins_where_the_other_is_unsure():
    shape = (1, 1, 2, 2, 2)
    sure_left = torch.full(shape, 1e-4)
    sure_left[..., 0] = 0.8  # matcher A is sure on the first column only
    sure_right = torch.full(shape, 0.5)  # matcher B is equally sure everywhere
    fused = fuse_matches([_match(2.0, sure_left), _match(-1.0, sure_right)])
    # column 0: A has weight 0.8 / mean(A) = 0.8 / 0.40005 ~ 2.0, B has 1 -> (2 * 2 - 1) / 3 = 1
    expected_left = (2.0 * (0.8 / sure_left.mean()) - 1.0) / (0.8 / sure_left.mean() + 1.0)
    torch.testing.assert_close(
        fused.disp_ijk[..., 0], torch.full_like(fused.disp_ijk[..., 0], float(expected_left))
    )
    assert torch.allclose(fused.disp_ijk[..., 1], torch.tensor(-1.0), atol=1e-3)  # A nearly silent there
    torch.testing.assert_close(fused.confidence, (sure_left + sure_right) / 2)


def test_confidence_scale_does_not_matter():
    """Scaling one matcher's confidences by a constant leaves the fused field unchanged."""
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 3, 3, 3), torch.rand(1, 1, 3, 3, 3)
    first = fuse_matches([_match(1.0, a), _match(3.0, b)]).disp_ijk
    second = fuse_matches([_match(1.0, 0.1 * a), _match(3.0, b)]).disp_ijk
    torch.testing.assert_close(first, second)


def test_fused_matcher_is_selectable_and_checks_shapes():
    assert isinstance(
        get_matcher(DenseConfig(matching=MatchingConfig(matcher="fused"))), FusedMatcher
    )  # shipped weights
    with pytest.raises(ConfigError):
        fuse_matches([_match(0.0, torch.ones(1, 1, 2, 2, 2)), _match(0.0, torch.ones(1, 1, 2, 2, 3))])
