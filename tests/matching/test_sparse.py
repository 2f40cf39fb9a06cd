"""Sparse detect-then-match ablation: keypoints, descriptor sampling, mutual NN, densification."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vmgga.matching.sparse import (
    SparseMatches,
    dense_from_sparse,
    detect_keypoints,
    match_sparse,
    mutual_nearest_neighbours,
    sample_descriptors,
)
from vmgga.models.config import MatcherConfig
from vmgga.models.network import MatcherNet


def _blobs(size: int = 160) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 1, size // 4, size // 4, generator=gen)
    return F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_mutual_nearest_neighbours_recovers_a_permutation():
    gen = torch.Generator().manual_seed(0)
    desc0 = F.normalize(torch.randn(20, 16, generator=gen), dim=1)
    permutation = torch.randperm(20, generator=gen)
    desc1 = desc0[permutation]  # desc1[m] = desc0[permutation[m]]
    index0, index1, prob = mutual_nearest_neighbours(desc0, desc1)
    assert len(index0) == 20
    assert torch.equal(permutation[index1], index0)
    assert float(prob.min()) > 0.5


def test_sample_descriptors_reads_the_cell_of_a_pixel():
    descriptors = torch.zeros(1, 2, 4, 5)
    descriptors[0, 0, 2, 3] = 1.0  # cell (x=3, y=2) covers pixels x in [6, 8), y in [4, 6) at stride 2
    descriptors[0, 1] = 1e-3
    sampled = sample_descriptors(descriptors, torch.tensor([[6.5, 4.5]]), stride=2)
    assert sampled.shape == (1, 2) and float(sampled[0, 0]) > 0.99


def test_dense_from_constant_matches_is_constant_and_unsure_far_away():
    points0 = torch.tensor([[10.0, 10.0], [20.0, 12.0], [14.0, 20.0]])
    matches = SparseMatches(points0, points0 + torch.tensor([3.0, -2.0]), torch.tensor([0.9, 0.8, 1.0]))
    flow, confidence = dense_from_sparse(matches, (64, 96), sigma_px=6.0)
    assert flow.shape == (1, 2, 64, 96) and confidence.shape == (1, 1, 64, 96)
    torch.testing.assert_close(
        flow[0, :, 8:24, 8:24], torch.tensor([3.0, -2.0]).view(2, 1, 1).expand(2, 16, 16)
    )
    assert float(confidence[0, 0, 14, 14]) > 0.5 and float(confidence[0, 0, 60, 90]) < 0.01


def test_keypoints_are_found_and_shifted_image_matches_the_shift():
    torch.manual_seed(0)
    model = MatcherNet(MatcherConfig(matching="sparse")).eval()
    big = _blobs()
    image0, image1 = big[..., 32:128, 32:128], big[..., 16:112, 24:120]  # shift (x, y) = (8, 16)
    assert len(detect_keypoints(image0[0, 0])) > 10
    matches = match_sparse(model, image0, image1)
    shift = matches.points1_xy - matches.points0_xy
    correct = (shift - torch.tensor([8.0, 16.0])).norm(dim=1) < 1.0
    assert len(shift) >= 5 and float(correct.float().mean()) > 0.8


def test_orb_detector_finds_keypoints_inside_the_image():
    points = detect_keypoints(_blobs()[0, 0], "orb")
    assert points.shape[0] > 10 and points.shape[1] == 2
    assert float(points.min()) >= 0 and float(points.max()) < 160


def test_dense_from_sparse_has_no_half_block_shift():
    """A flow linear in x, matched at every pixel, must come back unshifted: flow_x(x) = a x.

    Sampling the coarse grid at ``step * c`` but upsampling it as block centres moves the field by
    ``(step - 1) / 2`` px, i.e. an error of ``a (step - 1) / 2`` (0.15 px here).
    """
    size, step, slope = 64, 4, 0.1
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    points0 = torch.stack([xs, ys], dim=-1).float().view(-1, 2)
    points1 = points0 + torch.stack([slope * points0[:, 0], torch.zeros(len(points0))], dim=1)
    matches = SparseMatches(points0, points1, torch.ones(len(points0)))
    flow, _ = dense_from_sparse(matches, (size, size), sigma_px=3.0, step=step)
    inner = slice(16, 48)  # the Gaussian weights are symmetric away from the border
    expected = slope * xs[inner, inner].float()
    assert (flow[0, 0, inner, inner] - expected).abs().max() < 0.01
    assert flow[0, 1, inner, inner].abs().max() < 1e-5
