"""The learned path's stride-1 pixel descriptors: in the network, as a 3D feature volume, and when
``dense.features.backend=auto`` picks them."""

from __future__ import annotations

import pytest
import torch

from vmgga.config import DenseConfig, FeatureConfig, MatchingConfig, make_config
from vmgga.errors import ConfigError, InputError
from vmgga.features.base import resolve_feature_backend
from vmgga.features.hybrid import HybridFeatureExtractor
from vmgga.features.learned import LearnedFeatureExtractor, use_channels_last
from vmgga.features.mind import MindSscExtractor
from vmgga.models.checkpoint import save_checkpoint
from vmgga.models.config import MatcherConfig
from vmgga.models.mind2d import mind_ssc_2d
from vmgga.models.network import MatcherNet

torch.set_num_threads(1)


def _model(pixel_dim: int = 4) -> MatcherNet:
    torch.manual_seed(0)
    return MatcherNet(MatcherConfig(fine_dim=8, pixel_dim=pixel_dim, pixel_width=6)).eval()


def test_pixel_descriptors_are_unit_norm_at_every_pixel_of_any_size():
    model = _model()
    image = torch.rand(2, 1, 21, 30)  # not a multiple of the coarse stride
    described = model.describe_pixels(image)
    assert described.shape == (2, 4, 21, 30)
    torch.testing.assert_close(described.norm(dim=1), torch.ones(2, 21, 30), atol=1e-5, rtol=0)


def test_the_head_reads_the_image_its_mind_and_the_first_level_at_the_pixels():
    """The inputs, rebuilt by hand: the image, MIND of it, and the stride-2 level interpolated
    bilinearly between cell centres (cell u is centred on pixel 2u + 0.5, so pixel x sits at cell
    (x - 0.5) / 2)."""
    model = _model()
    image = torch.rand(1, 1, 16, 24)  # a multiple of 8: no padding
    got_image, got_mind, got_level = model.pixel_head_inputs(image)
    torch.testing.assert_close(got_image, image)
    torch.testing.assert_close(
        got_mind, mind_ssc_2d(image, model.config.mind_radius, model.config.mind_dilation)
    )
    level = model.encoder(image, got_mind)[0]  # (1, C0, 8, 12)
    # pixel (y, x) = (5, 9) lies at cell ((5 - 0.5) / 2, (9 - 0.5) / 2) = (2.25, 4.25)
    expected = (
        0.5625 * level[..., 2, 4]
        + 0.1875 * level[..., 2, 5]
        + 0.1875 * level[..., 3, 4]
        + 0.0625 * level[..., 3, 5]
    )
    torch.testing.assert_close(got_level[..., 5, 9], expected)


def test_the_channels_last_layout_changes_the_speed_not_the_descriptors():
    """The extractor runs the encoder and head in channels-last layout; a default-layout copy of the
    same network gives the same descriptors, and the weights keep their values."""
    reference, model = _model(), _model()
    use_channels_last(model)
    for (name, a), (_, b) in zip(reference.named_parameters(), model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert model.pixel_head.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    slices = torch.rand(5, 1, 19, 26)
    torch.testing.assert_close(
        model.describe_pixels(slices), reference.describe_pixels(slices), atol=1e-5, rtol=0
    )


def test_a_network_without_the_head_says_so():
    with pytest.raises(InputError, match="no stride-1 pixel head"):
        _model(pixel_dim=0).describe_pixels(torch.rand(1, 1, 16, 16))
    config = DenseConfig(features=FeatureConfig(learned_descriptors="pixel"))
    with pytest.raises(ConfigError, match="has no pixel head"):
        LearnedFeatureExtractor(config, model=_model(pixel_dim=0))


def test_the_feature_volume_is_each_slice_described_and_follows_a_shift_across_slices():
    """Every slice along the axis is described (no interpolation), so moving the volume by one slice
    moves its features by one slice: what the Adam loss needs to see through-plane motion too."""
    model, volume = _model(), torch.rand(1, 1, 6, 16, 24)
    config = DenseConfig(features=FeatureConfig(pixel_axes=(0,)))
    extractor = LearnedFeatureExtractor(config, model=_model())  # its own copy, channels-last
    assert extractor.uses_pixels and extractor.channels == 4
    features = extractor.extract(volume)
    for k in range(6):
        torch.testing.assert_close(
            features[0, :, k], model.describe_pixels(volume[:, :, k])[0], atol=1e-5, rtol=0
        )
    shifted = extractor.extract(torch.roll(volume, 1, dims=2))
    torch.testing.assert_close(shifted[:, :, 1:], features[:, :, :-1], atol=1e-5, rtol=0)


def test_every_axis_family_is_each_slice_along_that_axis_described_on_its_own():
    """A volume with air around a block, all three axes: every slice along every axis, empty or
    not, has the descriptors the network gives that slice on its own (rows and columns as
    vmgga.models.slicewise orders them)."""
    model = _model()
    volume = torch.zeros(1, 1, 7, 12, 10)
    volume[:, :, 2:5, 3:9, 4:7] = torch.rand(1, 1, 3, 6, 3) + 0.1
    extractor = LearnedFeatureExtractor(DenseConfig(), model=_model())  # axes (0, 1, 2)
    features = extractor.extract(volume) * 3**0.5
    for k in range(7):
        expected = model.describe_pixels(volume[:, :, k])[0]
        torch.testing.assert_close(features[0, 0:4, k], expected, atol=1e-5, rtol=0)
    for j in range(12):
        expected = model.describe_pixels(volume[:, :, :, j])[0]  # rows k, cols i
        torch.testing.assert_close(features[0, 4:8, :, j], expected, atol=1e-5, rtol=0)
    for i in range(10):
        expected = model.describe_pixels(volume[:, :, :, :, i])[0]  # rows k, cols j
        torch.testing.assert_close(features[0, 8:12, :, :, i], expected, atol=1e-5, rtol=0)


def test_several_axes_are_concatenated_with_unit_norm_overall():
    model, volume = _model(), torch.rand(1, 1, 8, 16, 24)
    config = DenseConfig(features=FeatureConfig(pixel_axes=(0, 2)))
    extractor = LearnedFeatureExtractor(config, model=model)
    features = extractor.extract(volume)
    assert features.shape == (1, 8, 8, 16, 24) and extractor.channels == 8
    torch.testing.assert_close(features.norm(dim=1), torch.ones(1, 8, 16, 24), atol=1e-5, rtol=0)
    for family, axis in enumerate((0, 2)):
        alone = DenseConfig(features=FeatureConfig(pixel_axes=(axis,)))
        expected = LearnedFeatureExtractor(alone, model=model).extract(volume)
        got = features[:, 4 * family : 4 * family + 4] * 2**0.5
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_the_hybrid_weighs_pixel_descriptors_by_pixel_weight():
    model, volume = _model(), torch.rand(1, 1, 6, 16, 16)
    config = DenseConfig(features=FeatureConfig(backend="mind+vmgga", pixel_weight=4.0, learned_weight=0.3))
    learned = LearnedFeatureExtractor(config, model=model)
    features = HybridFeatureExtractor(config, learned=learned).extract(volume)
    torch.testing.assert_close(features[:, :12], MindSscExtractor().extract(volume))
    torch.testing.assert_close(features[:, 12:], 2.0 * learned.extract(volume))


def test_auto_takes_the_learned_path_only_for_the_learned_matcher_with_a_pixel_head(tmp_path):
    with_head = save_checkpoint(_model(), tmp_path / "head.pt")
    without = save_checkpoint(_model(pixel_dim=0), tmp_path / "plain.pt")

    def backend(matcher: str, weights) -> str:
        features = FeatureConfig(weights=str(weights))
        return resolve_feature_backend(
            DenseConfig(features=features, matching=MatchingConfig(matcher=matcher))
        )

    assert backend("vmgga", with_head) == backend("fused", with_head) == "mind+vmgga"
    assert backend("cost_volume", with_head) == backend("auto", with_head) == "mind"
    assert backend("vmgga", without) == "mind"
    explicit = DenseConfig(
        features=FeatureConfig(backend="mind", weights=str(with_head)),
        matching=MatchingConfig(matcher="vmgga"),
    )
    assert resolve_feature_backend(explicit) == "mind"  # a backend the user names is kept
    assert make_config("fast").dense.features.backend == "auto"


@pytest.mark.parametrize("axes", [(), (0, 0), (3,)])
def test_pixel_axes_are_checked(axes):
    with pytest.raises(ConfigError, match="pixel_axes"):
        make_config(**{"dense.features.pixel_axes": axes})
