"""DINOv2 from a local directory: a tiny randomly initialised model saved with save_pretrained."""

from __future__ import annotations

import pytest
import torch

from vmgga.config import DenseConfig, FeatureConfig
from vmgga.errors import ConfigError, InputError
from vmgga.features.dinov2 import Dinov2FeatureExtractor, random_projection
from vmgga.models.checkpoint import FROZEN_PREFIX, save_checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.dinov2 import dinov2_patch_features, load_dinov2
from vmgga.models.matcher2d import Matcher2D
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=24, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=4, image_size=32
    )
    folder = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(config).save_pretrained(folder)
    return folder


def test_patch_features_have_the_patch_grid_shape_and_are_deterministic(dinov2_dir):
    model = load_dinov2(dinov2_dir)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    image = torch.rand(2, 1, 40, 48)
    features = dinov2_patch_features(model, image, scale=1.0)
    assert features.shape == (2, 24, 10, 12)  # 40 / 4, 48 / 4 patches, hidden 24
    torch.testing.assert_close(dinov2_patch_features(model, image, scale=1.0), features, rtol=0, atol=0)
    again = dinov2_patch_features(load_dinov2(dinov2_dir), image, scale=1.0)
    torch.testing.assert_close(again, features, rtol=0, atol=0)
    assert dinov2_patch_features(model, image, scale=2.0).shape == (2, 24, 20, 24)


def test_loading_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs a local model directory"):
        load_dinov2(None)
    with pytest.raises(InputError, match="no config.json"):
        load_dinov2(tmp_path)


def test_dinov2_backend_network_checkpoint_leaves_the_backbone_out(dinov2_dir, tmp_path):
    torch.manual_seed(0)
    model = MatcherNet(
        MatcherConfig(backend="dinov2", dinov2_path=str(dinov2_dir), dinov2_input_scale=1.0)
    ).eval()
    pair = torch.rand(1, 2, 32, 40)
    with torch.no_grad():
        out = model(pair)
    assert out.shape == (1, 3, 32, 40)
    path = save_checkpoint(model, tmp_path / "d.pt")
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith(FROZEN_PREFIX) for k in stored) and any(
        k.startswith("encoder.") for k in stored
    )
    rebuilt = MatcherNet.from_checkpoint(path, dinov2_path=str(dinov2_dir))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(pair), out, rtol=0, atol=0)


def test_training_free_dinov2_matcher_and_3d_extractor(dinov2_dir):
    matcher = Matcher2D("dinov2", dinov2_path=dinov2_dir)
    result = matcher(torch.rand(1, 1, 32, 40), torch.rand(1, 1, 32, 40))
    assert result.flow_px.shape == (1, 2, 32, 40) and result.confidence.shape == (1, 1, 32, 40)
    extractor = Dinov2FeatureExtractor(DenseConfig(features=FeatureConfig(backend="dinov2", dinov2_path=str(dinov2_dir))),
                                       slicewise=SlicewiseConfig(slice_step=2))  # fmt: skip
    assert extractor.name == "dinov2"
    features = extractor.extract(torch.rand(1, 1, 9, 16, 20))
    assert features.shape == (1, 16, 9, 16, 20)
    assert torch.isfinite(features).all()


def test_random_projection_is_orthonormal_and_fixed():
    projection = random_projection(24, 16)
    torch.testing.assert_close(projection.T @ projection, torch.eye(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(random_projection(24, 16), projection, rtol=0, atol=0)
