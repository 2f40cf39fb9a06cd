"""Ground truth of the synthetic pairs: warping image-1 labels with it gives image-0 labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from vmgga.synth.deformation import RandomDeformation, flow01_px, identity_deformation
from vmgga.synth.pairs import PairSampler, RandomPair, make_pair
from vmgga.synth.sources import SourceKind, SourceVolume


def _label_volume() -> SourceVolume:
    """A (40, 50, 60) label volume of nested boxes and random blobs (many label values)."""
    rng = np.random.default_rng(3)
    labels = np.zeros((40, 50, 60), dtype=np.int16)
    labels[5:35, 5:45, 5:55] = 1
    blobs = ndimage.gaussian_filter(rng.normal(size=(6, 40, 50, 60)), (0, 3, 3, 3)).argmax(0) + 2
    labels[labels == 1] = blobs[labels == 1]
    return SourceVolume("test", SourceKind.LABELS, labels, None)


def _unambiguous(flow: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Pixels whose target is not within ``tol`` of a nearest-neighbour rounding tie."""
    h, w = flow.shape[1:]
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    frac = np.stack([x + flow[0], y + flow[1]]) % 1.0
    return np.all(np.abs(frac - 0.5) > tol, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ground_truth_flow_aligns_labels_exactly(seed):
    sampler = PairSampler([_label_volume()], RandomPair(crop_hw=(48, 64), shapes_probability=0.3))
    pair = sampler.pair(seed)
    # Independent warp: scipy nearest-neighbour lookup of image-1 labels at x + flow (rows, cols).
    h, w = pair.labels0.shape
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([y + pair.flow01_px[1], x + pair.flow01_px[0]])
    warped = ndimage.map_coordinates(pair.labels1, coords, order=0, mode="nearest")
    check = pair.valid & _unambiguous(pair.flow01_px)
    assert check.mean() > 0.5
    np.testing.assert_array_equal(warped[check], pair.labels0[check])


def test_ground_truth_agrees_with_torch_grid_sample():
    sampler = PairSampler([_label_volume()], RandomPair(crop_hw=(48, 48), shapes_probability=0.0))
    pair = sampler.pair(11)
    h, w = pair.labels1.shape
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([(x + pair.flow01_px[0]) / (w - 1), (y + pair.flow01_px[1]) / (h - 1)], -1) * 2 - 1
    labels1 = torch.from_numpy(pair.labels1.astype(np.float64))[None, None]
    warped = F.grid_sample(labels1, torch.from_numpy(grid)[None], mode="nearest", align_corners=True)
    check = pair.valid & _unambiguous(pair.flow01_px)
    np.testing.assert_array_equal(warped[0, 0].numpy()[check].astype(np.int16), pair.labels0[check])


def test_pure_translation_shifts_labels():
    source = _label_volume()
    sampler = PairSampler([source], RandomPair(crop_hw=(32, 32), shapes_probability=0.0))
    params = sampler.params(5)
    translation = identity_deformation((3.0, -2.0))
    shifted = type(params)(params.plane, translation, params.appearance0, params.appearance1)
    pair = make_pair(shifted, [source], (32, 32))
    np.testing.assert_allclose(pair.flow01_px[0], 3.0, atol=1e-5)
    np.testing.assert_allclose(pair.flow01_px[1], -2.0, atol=1e-5)
    # image-0 pixel (x, y) shows image-1 pixel (x + 3, y - 2)
    np.testing.assert_array_equal(pair.labels0[2:, :-3], pair.labels1[:-2, 3:])


def test_pairs_are_reproducible_from_seed():
    sampler = PairSampler([_label_volume()], RandomPair(crop_hw=(32, 32)))
    a, b, c = sampler.pair(7), sampler.pair(7), sampler.pair(8)
    np.testing.assert_array_equal(a.image0, b.image0)
    np.testing.assert_array_equal(a.flow01_px, b.flow01_px)
    assert not np.array_equal(a.image0, c.image0)


def test_intensity_source_pair_is_two_views_with_valid_flow():
    volume = ndimage.gaussian_filter(np.random.default_rng(0).random((30, 40, 40)), 2).astype(np.float32)
    source = SourceVolume("real", SourceKind.INTENSITY, volume)
    batch = PairSampler([source], RandomPair(crop_hw=(32, 32), shapes_probability=0.0)).batch([1, 2])
    assert batch["image0"].shape == (2, 1, 32, 32) and batch["flow01_px"].shape == (2, 2, 32, 32)
    assert 0.0 <= float(batch["image0"].min()) and float(batch["image0"].max()) <= 1.0


def test_flow_of_identity_is_zero():
    assert np.abs(flow01_px(identity_deformation(), (20, 30))).max() < 1e-5


def test_random_deformations_mostly_keep_orientation():
    folded = 0
    for seed in range(60):
        flow = flow01_px(RandomDeformation()(np.random.default_rng(seed)), (96, 96))
        gx, gy = np.gradient(flow, axis=2), np.gradient(flow, axis=1)
        jacobian = (1 + gx[0]) * (1 + gy[1]) - gx[1] * gy[0]
        folded += int(jacobian.min() <= 0)
    assert folded <= 1


def test_same_contrast_pairs_share_label_intensities():
    sampler = PairSampler([_label_volume()], RandomPair(crop_hw=(32, 32), same_contrast_probability=1.0))
    params = sampler.params(4)
    assert params.appearance0.contrast == params.appearance1.contrast
    assert np.array_equal(params.appearance0.means, params.appearance1.means)
    assert params.appearance0.corruption is not params.appearance1.corruption
