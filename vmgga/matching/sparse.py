"""Sparse detect-then-match (ablation ``matching="sparse"``).

OpenCV SIFT or ORB keypoints are described by the matcher network's own dense descriptors
(:meth:`MatcherNet.describe`, sampled at the keypoints), matched by mutual nearest neighbour, and, where
a dense field is needed (benchmarks, 2.5D), spread to every pixel by Gaussian-weighted averaging.
Points are ``(x, y)`` pixels (column, row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.errors import look_up_option
from vmgga.extras import import_optional
from vmgga.frames import ALIGN_CORNERS, coarse_from_fine, fine_from_coarse, norm_from_ijk
from vmgga.models.network import MatcherNet

cv2 = import_optional("cv2", extra="sparse", feature="sparse matching (OpenCV keypoints)")


@dataclass
class SparseMatches:
    """Matched keypoints of one image pair.

    Attributes:
        points0_xy: ``(N, 2)`` pixels in image0.
        points1_xy: ``(N, 2)`` matched pixels in image1.
        confidence: ``(N,)`` in [0, 1] (dual-softmax probability of the pair).
    """

    points0_xy: Tensor
    points1_xy: Tensor
    confidence: Tensor


def detect_keypoints(image: Tensor, detector: str = "sift", max_keypoints: int = 1024) -> Tensor:
    """OpenCV keypoints of ``image (H, W)`` in ~[0, 1] -> ``(N, 2)`` float (x, y) pixels."""
    detector = look_up_option(detector, ("sift", "orb"), "sparse_detector")
    pixels = (image.detach().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
    if detector == "sift":
        engine = cv2.SIFT_create(nfeatures=max_keypoints)
    else:
        engine = cv2.ORB_create(nfeatures=max_keypoints, edgeThreshold=8, patchSize=15)
    keypoints = engine.detect(pixels, None)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    return torch.from_numpy(np.unique(points, axis=0)).to(image.device)


def sample_descriptors(descriptors: Tensor, points_xy: Tensor, stride: int) -> Tensor:
    """Bilinear sample of ``descriptors (1, C, Hf, Wf)`` (cell ``u`` covers pixels ``[s u, s u + s)``)
    at ``points_xy (N, 2)`` pixels -> L2-normalised ``(N, C)``."""
    cells = coarse_from_fine(points_xy, stride)  # (N, 2) continuous cell index (x, y)
    size_xy = (descriptors.shape[-1], descriptors.shape[-2])
    grid = norm_from_ijk(cells, size_xy).view(1, 1, -1, 2)
    sampled = F.grid_sample(
        descriptors, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS
    )
    return F.normalize(sampled[0, :, 0].T, dim=1)


def mutual_nearest_neighbours(desc0: Tensor, desc1: Tensor, temperature: float = 0.1):
    """Mutual nearest neighbours of ``(N, C)`` and ``(M, C)`` unit descriptors.

    Returns:
        ``index0 (K,)``, ``index1 (K,)`` and ``probability (K,)`` (dual-softmax of the pair).
    """
    logits = desc0 @ desc1.T / temperature  # (N, M)
    prob = F.softmax(logits, dim=0) * F.softmax(logits, dim=1)
    best1, best0 = prob.argmax(dim=1), prob.argmax(dim=0)
    index0 = torch.nonzero(best0[best1] == torch.arange(len(desc0), device=desc0.device)).flatten()
    index1 = best1[index0]
    return index0, index1, prob[index0, index1]


def match_sparse(
    model: MatcherNet, image0: Tensor, image1: Tensor, max_displacement_px: float | None = None
) -> SparseMatches:
    """Sparse matches between ``image0 (1, 1, H, W)`` and ``image1 (1, 1, H1, W1)``."""
    cfg = model.config
    points = [
        detect_keypoints(im[0, 0], cfg.sparse_detector, cfg.sparse_max_keypoints) for im in (image0, image1)
    ]
    empty = image0.new_zeros((0, 2))
    if len(points[0]) == 0 or len(points[1]) == 0:
        return SparseMatches(empty, empty, image0.new_zeros(0))
    with torch.no_grad():
        desc = [
            sample_descriptors(model.describe(im), p, cfg.fine_stride)
            for im, p in zip((image0, image1), points, strict=True)
        ]
    index0, index1, prob = mutual_nearest_neighbours(*desc, temperature=cfg.coarse_temperature)
    p0, p1 = points[0][index0], points[1][index1]
    if max_displacement_px is not None:
        keep = (p1 - p0).norm(dim=1) <= max_displacement_px
        p0, p1, prob = p0[keep], p1[keep], prob[keep]
    return SparseMatches(p0, p1, prob)


def dense_from_sparse(
    matches: SparseMatches, shape_hw: tuple[int, int], sigma_px: float = 8.0, step: int = 4
):
    """Gaussian-weighted average of sparse flows at every pixel.

    Returns:
        ``flow_px (1, 2, H, W)`` (x, y) and ``confidence (1, 1, H, W)``: the weighted mean match
        confidence times ``min(1, kernel density)`` (low where no keypoint is near).
    """
    h, w = shape_hw
    device = matches.points0_xy.device
    if len(matches.points0_xy) == 0:
        return torch.zeros(1, 2, h, w, device=device), torch.zeros(1, 1, h, w, device=device)
    ys, xs = torch.meshgrid(
        torch.arange(-(-h // step), device=device), torch.arange(-(-w // step), device=device), indexing="ij"
    )
    # coarse sample c sits at the centre of its block, s c + (s - 1) / 2, where the upsampling below
    # (align_corners=False) puts it; sampling at s c instead shifted the field by (s - 1) / 2 px
    grid = fine_from_coarse(torch.stack([xs, ys], dim=-1).float().view(-1, 2), step)  # (G, 2) (x, y)
    weights = torch.exp(-(torch.cdist(grid, matches.points0_xy) ** 2) / (2 * sigma_px**2))  # (G, N)
    weights = weights * matches.confidence.clamp_min(1e-3)
    total = weights.sum(dim=1, keepdim=True)
    flow = (weights @ (matches.points1_xy - matches.points0_xy)) / total.clamp_min(1e-8)  # (G, 2)
    conf = (weights @ matches.confidence[:, None]) / total.clamp_min(1e-8) * total.clamp(max=1.0)
    coarse = torch.cat([flow, conf], dim=1).T.reshape(1, 3, *xs.shape)
    full = F.interpolate(coarse, scale_factor=float(step), mode="bilinear", align_corners=False)[..., :h, :w]
    return full[:, :2], full[:, 2:].clamp(0, 1)


def sparse_dense_flow(
    model: MatcherNet, image0: Tensor, image1: Tensor, max_displacement_px: float | None = None
):
    """Batch version for the slice-wise path: ``(N, 1, H, W)`` pairs -> flow ``(N, 2, H, W)``, conf ``(N, 1, H, W)``."""
    flows, confidences = [], []
    for a, b in zip(image0, image1, strict=True):
        matches = match_sparse(model, a[None], b[None], max_displacement_px)
        flow, conf = dense_from_sparse(matches, tuple(a.shape[-2:]))
        flows.append(flow)
        confidences.append(conf)
    return torch.cat(flows), torch.cat(confidences)
