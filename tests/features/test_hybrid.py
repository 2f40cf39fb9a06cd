"""mind+vmgga: MIND-SSC and the learned features concatenated, the learned part weighted."""

from __future__ import annotations

import pytest
import torch

from vmgga.config import DenseConfig, FeatureConfig, make_config
from vmgga.errors import ConfigError
from vmgga.features.base import get_feature_extractor
from vmgga.features.hybrid import HybridFeatureExtractor, feature_families, weighted_concat
from vmgga.features.learned import LearnedFeatureExtractor
from vmgga.features.mind import MindSscExtractor
from vmgga.models.config import MatcherConfig
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig


def _learned(config: DenseConfig) -> LearnedFeatureExtractor:
    torch.manual_seed(0)
    model = MatcherNet(MatcherConfig(fine_dim=8)).eval()
    return LearnedFeatureExtractor(config, model=model, slicewise=SlicewiseConfig(axes=(0,), slice_step=1))


def test_squared_distance_is_mind_plus_weighted_learned():
    """|a - b|^2 of the concatenation = MIND's + w * the learned one's, computed apart."""
    torch.manual_seed(1)
    mind_a, mind_b = torch.rand(1, 12, 2, 3, 4), torch.rand(1, 12, 2, 3, 4)
    learned_a, learned_b = torch.randn(1, 8, 2, 3, 4), torch.randn(1, 8, 2, 3, 4)
    weight = 0.3
    both = (
        (weighted_concat(mind_a, learned_a, weight) - weighted_concat(mind_b, learned_b, weight))
        .pow(2)
        .sum(1)
    )
    expected = (mind_a - mind_b).pow(2).sum(1) + weight * (learned_a - learned_b).pow(2).sum(1)
    torch.testing.assert_close(both, expected)


def test_extractor_stacks_mind_then_learned_channels():
    config = DenseConfig(features=FeatureConfig(backend="mind+vmgga", learned_weight=0.25))
    volume = torch.rand(1, 1, 10, 12, 14)
    learned = _learned(config)
    features = HybridFeatureExtractor(config, learned=learned).extract(volume)
    assert features.shape == (1, 12 + 8, 10, 12, 14)
    torch.testing.assert_close(features[:, :12], MindSscExtractor().extract(volume))
    torch.testing.assert_close(features[:, 12:], 0.5 * learned.extract(volume))


def test_zero_weight_is_the_mind_path():
    config = DenseConfig(features=FeatureConfig(backend="mind+vmgga", learned_weight=0.0))
    volume = torch.rand(1, 1, 9, 9, 9)
    features = HybridFeatureExtractor(config, learned=_learned(config)).extract(volume)
    assert float(features[:, 12:].abs().max()) == 0.0


def test_backend_is_registered_and_validates_its_weight():
    config = make_config(**{"dense.features.backend": "mind+vmgga"})
    assert isinstance(get_feature_extractor(config.dense), HybridFeatureExtractor)  # shipped weights
    with pytest.raises(ConfigError, match="dense.features.learned_weight"):
        weighted_concat(torch.zeros(1, 12, 2, 2, 2), torch.zeros(1, 8, 2, 2, 2), -1.0)


def test_families_are_mind_then_learned_for_the_hybrid_backend_only():
    hybrid = DenseConfig(features=FeatureConfig(backend="mind+vmgga"))
    assert feature_families(hybrid, 12 + 32) == (12, 32)
    assert feature_families(DenseConfig(), 12) == (12,)
    assert feature_families(DenseConfig(features=FeatureConfig(backend="vmgga")), 32) == (32,)
