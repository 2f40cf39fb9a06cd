"""MIND-SSC: neighbourhood layout, contrast invariance, and the extractor factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vmgga.config import DenseConfig, FeatureConfig
from vmgga.errors import ConfigError
from vmgga.features.base import FeatureExtractor, get_feature_extractor, load_backend
from vmgga.features.mind import MindSscExtractor, mind_ssc, ssc_offset_pairs


def _texture(shape=(20, 22, 24), seed=0) -> torch.Tensor:
    """Smooth random texture in [0, 1], ``(1, 1, D, H, W)``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 1, *shape), generator=generator)
    smooth = F.avg_pool3d(F.pad(noise, (1,) * 6, mode="replicate"), 3, stride=1)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def test_offset_pairs_are_the_twelve_sqrt2_pairs_of_the_six_neighbourhood():
    pairs = ssc_offset_pairs(2)
    assert len(pairs) == 12 and len(set(pairs)) == 12
    for a, b in pairs:
        assert sum(abs(v) for v in a) == 2 and sum(abs(v) for v in b) == 2
        assert sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) == 8


def test_shape_and_range():
    features = mind_ssc(_texture(), radius=1, dilation=2)
    assert features.shape == (1, 12, 20, 22, 24)
    assert features.min() > 0 and features.max() <= 1.0
    assert torch.allclose(features.amax(1), torch.ones(1, 20, 22, 24))  # exp(0) at the minimum


def test_invariant_to_an_affine_intensity_change():
    volume = _texture()
    assert torch.allclose(mind_ssc(volume), mind_ssc(0.3 + 0.5 * volume), atol=1e-5)


def test_nearly_invariant_to_a_monotone_remap_unlike_raw_intensities():
    volume = _texture()
    remapped = volume**1.6
    other = _texture(seed=1)
    change_mind = (mind_ssc(volume) - mind_ssc(remapped)).abs().mean()
    other_mind = (mind_ssc(volume) - mind_ssc(other)).abs().mean()
    change_raw = (volume - remapped).abs().mean() / volume.std()
    assert change_mind < 0.25 * other_mind
    assert change_raw > 3 * change_mind / mind_ssc(volume).std()


def test_invalid_settings_are_named():
    with pytest.raises(ConfigError, match="dilation >= 1"):
        mind_ssc(_texture(), dilation=0)
    with pytest.raises(ConfigError, match=r"\(1, 1, D, H, W\)"):
        mind_ssc(torch.zeros(1, 2, 8, 8, 8))


def test_factory_returns_mind_and_names_missing_backends():
    extractor = get_feature_extractor(
        DenseConfig(features=FeatureConfig(backend="mind", mind_radius_vox=2, mind_dilation_vox=3))
    )
    assert isinstance(extractor, MindSscExtractor) and isinstance(extractor, FeatureExtractor)
    assert (extractor.radius, extractor.dilation, extractor.name) == (2, 3, "mind")
    with pytest.raises(ConfigError, match="not available"):
        load_backend("vmgga.features.no_such_module", "Nothing", "vmgga")
    with pytest.raises(ConfigError, match="dense.features.backend='sift' is not allowed"):
        get_feature_extractor(DenseConfig(features=FeatureConfig(backend="sift")))


def test_extract_matches_the_function():
    volume = _texture((10, 11, 12)).double()
    expected = mind_ssc(volume.float(), 1, 2)
    assert torch.allclose(MindSscExtractor().extract(volume), expected)
    assert torch.isfinite(expected).all()
