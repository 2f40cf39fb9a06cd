"""LearnedFeatureExtractor: stacked slice-wise learned features on the working grid."""

from __future__ import annotations

import torch

from vmgga.config import DenseConfig
from vmgga.features.base import FeatureExtractor
from vmgga.features.learned import LearnedFeatureExtractor, describe_at_full_resolution
from vmgga.models.config import MatcherConfig
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig, slices_along


def _model() -> MatcherNet:
    torch.manual_seed(0)
    return MatcherNet(MatcherConfig(fine_dim=8)).eval()


def test_extract_shape_unit_norm_and_slice_interpolation():
    volume = torch.rand(1, 1, 10, 12, 14)
    extractor = LearnedFeatureExtractor(
        DenseConfig(), model=_model(), slicewise=SlicewiseConfig(axes=(0,), slice_step=2)
    )
    assert isinstance(extractor, FeatureExtractor) and extractor.name == "vmgga"
    features = extractor.extract(volume)
    assert features.shape == (1, 8, 10, 12, 14) and extractor.channels == 8
    norm = features[0].norm(dim=0)
    torch.testing.assert_close(norm, torch.ones_like(norm), atol=1e-4, rtol=0)
    interpolated = features[0, :, 1]  # between sampled slices 0 and 2: the normalised mean
    expected = torch.nn.functional.normalize(features[0, :, 0] + features[0, :, 2], dim=0)
    assert float((interpolated * expected).sum(0).min()) > 0.99


def test_axial_features_equal_the_2d_descriptors_of_each_slice():
    """With one axis and no subsampling, feature slice k is the 2D descriptor of volume slice k."""
    model, volume = _model(), torch.rand(1, 1, 3, 16, 24)
    extractor = LearnedFeatureExtractor(
        DenseConfig(), model=model, slicewise=SlicewiseConfig(axes=(0,), slice_step=1)
    )
    features = extractor.extract(volume)
    with torch.no_grad():
        slice_1 = describe_at_full_resolution(model, volume[0, :, 1][None])  # (1, C, 16, 24)
    torch.testing.assert_close(features[0, :, 1], slice_1[0], atol=1e-5, rtol=1e-4)
    coronal = LearnedFeatureExtractor(
        DenseConfig(), model=model, slicewise=SlicewiseConfig(axes=(1,), slice_step=1)
    )
    with torch.no_grad():
        slice_j = describe_at_full_resolution(model, slices_along(volume, 1)[5:6])  # rows k, cols i
    torch.testing.assert_close(coronal.extract(volume)[0, :, :, 5], slice_j[0], atol=1e-5, rtol=1e-4)
