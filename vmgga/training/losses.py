"""Training losses of the matcher network, on plain tensors (no model needed).

Frames: images ``(B, 1, H, W)``; flows ``(B, 2, H, W)`` in pixels with channels (x, y); image-0
pixel ``x`` corresponds to image-1 position ``x + flow01(x)``. Points are ``(B, N, 2)`` pixel
positions (x, y). Coarse tokens at stride ``s`` are row-major cells ``[s r, s r + s) x [s c, s c + s)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.frames import (
    ALIGN_CORNERS,
    coarse_from_fine,
    fine_from_coarse,
    flat_from_ijk,
    ijk_from_flat,
    norm_from_ijk,
)

_EPS = 1e-8


# --- sampling helpers -----------------------------------------------------------------------


def pixel_grid(batch: int, height: int, width: int, like: Tensor) -> Tensor:
    """Pixel positions ``(B, 2, H, W)``, channels (x, y)."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=like.dtype, device=like.device),
        torch.arange(width, dtype=like.dtype, device=like.device),
        indexing="ij",
    )
    return torch.stack([x, y])[None].expand(batch, 2, height, width)


def sample_at_px(field: Tensor, points_px: Tensor, stride: int = 1) -> Tensor:
    """Bilinear samples of ``field (B, C, h, w)`` at pixel points ``(B, N, 2)`` -> ``(B, N, C)``.

    ``field`` lives at ``stride``: its cell ``u`` is centred on pixel ``s u + (s - 1) / 2``.
    Points outside are clamped to the border.
    """
    height, width = field.shape[-2:]
    coords = coarse_from_fine(points_px, stride)  # (B, N, 2) in field cells
    grid = norm_from_ijk(coords, (width, height))[:, :, None]  # (B, N, 1, 2)
    out = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=ALIGN_CORNERS)
    return out[..., 0].transpose(1, 2)  # (B, N, C)


def sample_valid_points(valid: Tensor, n_points: int, generator: torch.Generator) -> Tensor:
    """``n_points`` random pixel positions ``(B, N, 2)`` (x, y) drawn among ``valid (B, 1, H, W)``."""
    batch, _, height, width = valid.shape
    weights = valid.flatten(1).float() + 1e-6  # (B, H W); tiny weight keeps empty masks usable
    index = torch.multinomial(weights, n_points, replacement=False, generator=generator)
    return ijk_from_flat(index, (height, width)).float()  # (B, N, 2) (x, y)


def anchors_and_matches(
    allowed: Tensor, flow01_px: Tensor, n_points: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``n_points`` anchor pixels ``(B, N, 2)`` of image 0 drawn among ``allowed (B, 1, H, W)``, and
    their true matches in image 1, ``anchor + flow01(anchor)`` (bilinear), both (x, y)."""
    points0 = sample_valid_points(allowed, n_points, generator)
    return points0, points0 + sample_at_px(flow01_px, points0)


# --- contrastive ------------------------------------------------------------------------------


def info_nce(
    desc0: Tensor,
    desc1: Tensor,
    temperature: float,
    negative_mask: Tensor | None = None,
    hardest_negatives: int | None = None,
) -> Tensor:
    """Symmetric InfoNCE between L2-normalised descriptors ``(B, N, C)``; pair ``(i, i)`` is positive.

    Args:
        negative_mask: ``(B, N, N)`` bool, True where ``(i, j)`` may serve as a negative (e.g. far
            enough from the positive). The diagonal is ignored. None: all off-diagonal pairs.
        hardest_negatives: Keep only this many most similar negatives per anchor (hard mining).

    Returns:
        Scalar mean of ``-log(exp(s_ii / t) / (exp(s_ii / t) + sum_neg exp(s_ij / t)))`` over both
        directions.
    """
    d0, d1 = F.normalize(desc0, dim=-1), F.normalize(desc1, dim=-1)
    logits = torch.einsum("bnc,bmc->bnm", d0, d1) / temperature  # (B, N, N)
    n = logits.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)[None]
    allowed = ~eye if negative_mask is None else negative_mask & ~eye
    forward = _nce_rows(logits, allowed, hardest_negatives)
    backward = _nce_rows(logits.transpose(1, 2), allowed.transpose(1, 2), hardest_negatives)
    return 0.5 * (forward + backward)


def _nce_rows(logits: Tensor, allowed: Tensor, hardest: int | None) -> Tensor:
    """Mean over rows of the InfoNCE loss with positives on the diagonal."""
    positive = torch.diagonal(logits, dim1=1, dim2=2)  # (B, N)
    negatives = logits.masked_fill(~allowed, float("-inf"))
    if hardest is not None and hardest < negatives.shape[-1]:
        negatives = negatives.topk(hardest, dim=-1).values  # (B, N, k)
    all_logits = torch.cat([positive[..., None], negatives], dim=-1)
    return (torch.logsumexp(all_logits, dim=-1) - positive).mean()


def dense_contrastive_loss(
    feature0: Tensor,
    feature1: Tensor,
    flow01_px: Tensor,
    valid: Tensor,
    stride: int,
    generator: torch.Generator,
    n_points: int = 256,
    temperature: float = 0.07,
    exclusion_radius_px: float = 4.0,
    hardest_negatives: int | None = 32,
) -> Tensor:
    """Dense InfoNCE over corresponding pixels of two feature maps ``(B, C, h, w)`` at ``stride``.

    Anchors are ``n_points`` valid pixels of image 0; their positives are the ground-truth image-1
    positions; negatives are the other points' image-1 positions farther than
    ``exclusion_radius_px`` from the positive, of which the ``hardest_negatives`` most similar count.
    """
    points0, points1 = anchors_and_matches(valid, flow01_px, n_points, generator)
    desc0, desc1 = sample_at_px(feature0, points0, stride), sample_at_px(feature1, points1, stride)
    far = torch.cdist(points1, points1) > exclusion_radius_px  # (B, N, N)
    return info_nce(desc0, desc1, temperature, far, hardest_negatives)


def window_offsets(radius_px: int, like: Tensor) -> Tensor:
    """The ``(K, 2)`` integer offsets (x, y) of a ``(2 r + 1)^2`` window, row-major; the centre is
    entry ``K // 2``."""
    steps = torch.arange(-radius_px, radius_px + 1, dtype=like.dtype, device=like.device)
    y, x = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def local_window_nce(
    desc0: Tensor,
    desc1: Tensor,
    flow01_px: Tensor,
    anchors: Tensor,
    generator: torch.Generator,
    n_points: int = 256,
    radius_px: int = 4,
    temperature: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Localisation loss of stride-1 descriptors: each anchor against every pixel near its match.

    Anchors are ``n_points`` pixels of image 0 drawn among ``anchors (B, 1, H, W)``; image 1's
    descriptors are sampled (bilinear) at the true match ``q = p + flow01(p)`` and at ``q + o`` for
    every integer offset ``o`` of a ``(2 radius_px + 1)^2`` window. The loss is the cross-entropy of
    a softmax over the window (cosine / ``temperature``) with the target at ``o = 0``: the descriptor
    must be closer to its match than to any pixel around it, which is what an SSD similarity needs
    to be lowest exactly at the truth.

    Args:
        desc0, desc1: ``(B, C, H, W)`` unit-norm descriptors at stride 1.
        flow01_px: ``(B, 2, H, W)`` true flow (x, y) from image 0 to image 1, pixels.

    Returns:
        The scalar loss and the share of anchors whose window maximum is at ``o = 0`` (top-1).
    """
    points0, points1 = anchors_and_matches(anchors, flow01_px, n_points, generator)
    offsets = window_offsets(radius_px, points1)  # (K, 2)
    batch, count, _ = points1.shape
    window = (points1[:, :, None] + offsets[None, None]).reshape(batch, -1, 2)  # (B, N K, 2)
    d0 = sample_at_px(desc0, points0)  # (B, N, C)
    d1 = F.normalize(sample_at_px(desc1, window).reshape(batch, count, offsets.shape[0], -1), dim=-1)
    logits = torch.einsum("bnc,bnkc->bnk", d0, d1).reshape(batch * count, -1) / temperature
    target = torch.full((batch * count,), offsets.shape[0] // 2, device=logits.device)
    top1 = (logits.argmax(-1) == target).float().mean()
    return F.cross_entropy(logits, target), top1


# --- matching ---------------------------------------------------------------------------------


def coarse_targets(flow01_px: Tensor, valid: Tensor, stride: int, shape1_hw: tuple[int, int]):
    """Ground-truth coarse matches: for every image-0 cell, the image-1 cell holding its centre.

    Args:
        flow01_px: ``(B, 2, H, W)`` ground truth.
        valid: ``(B, 1, H, W)`` bool.
        stride: Coarse stride ``s``.
        shape1_hw: ``(H1, W1)`` of image 1 in pixels.

    Returns:
        ``index1 (B, N0)`` long (row-major cell of image 1) and ``ok (B, N0)`` bool (the cell centre is
        valid and lands inside image 1).
    """
    batch, _, height, width = flow01_px.shape
    hc, wc = height // stride, width // stride
    centres = fine_from_coarse(pixel_grid(batch, hc, wc, flow01_px), stride)  # (B, 2, hc, wc)
    points0 = centres.flatten(2).transpose(1, 2)  # (B, N0, 2)
    points1 = points0 + sample_at_px(flow01_px, points0)
    ok = sample_at_px(valid.float(), points0)[..., 0] > 0.999
    h1c, w1c = shape1_hw[0] // stride, shape1_hw[1] // stride
    col, row = torch.floor(points1[..., 0] / stride), torch.floor(points1[..., 1] / stride)
    ok &= (col >= 0) & (col < w1c) & (row >= 0) & (row < h1c)
    cells1 = torch.stack((col.clamp(0, w1c - 1), row.clamp(0, h1c - 1)), dim=-1)  # (B, N0, 2) (x, y)
    index1 = flat_from_ijk(cells1, (h1c, w1c)).long()
    return index1, ok


def coarse_nll(coarse_prob: Tensor, index1: Tensor, ok: Tensor) -> Tensor:
    """Mean ``-log P(i -> index1(i))`` over cells with ``ok``; ``coarse_prob (B, N0, N1)``."""
    chosen = torch.gather(coarse_prob, 2, index1[..., None])[..., 0]  # (B, N0)
    nll = -torch.log(chosen.clamp_min(_EPS))
    return (nll * ok).sum() / ok.sum().clamp_min(1)


def endpoint_error(flow_px: Tensor, flow_true_px: Tensor) -> Tensor:
    """Euclidean end-point error ``(B, 1, H, W)`` in pixels."""
    return torch.linalg.vector_norm(flow_px - flow_true_px, dim=1, keepdim=True)


def fine_regression_loss(flow_px: Tensor, flow_true_px: Tensor, valid: Tensor, cap_px: float = 8.0) -> Tensor:
    """Mean Charbonnier end-point error over ``valid`` pixels, each capped at ``cap_px``."""
    epe = torch.sqrt(((flow_px - flow_true_px) ** 2).sum(1, keepdim=True) + 1e-6)
    epe = torch.clamp(epe, max=cap_px)
    return (epe * valid).sum() / valid.sum().clamp_min(1)


# --- geometric consistency --------------------------------------------------------------------


def warp_flow(flow_px: Tensor, by_px: Tensor) -> Tensor:
    """``flow`` ``(B, 2, H, W)`` sampled at ``x + by(x)`` (bilinear, border), same shape."""
    batch, _, height, width = by_px.shape
    points = (pixel_grid(batch, height, width, by_px) + by_px).flatten(2).transpose(1, 2)
    return sample_at_px(flow_px, points).transpose(1, 2).reshape(batch, 2, height, width)


def cycle_error(flow01_px: Tensor, flow10_px: Tensor) -> tuple[Tensor, Tensor]:
    """Forward-backward error ``|f01(x) + f10(x + f01(x))|`` ``(B, 1, H, W)`` and its inside mask."""
    batch, _, height, width = flow01_px.shape
    back = warp_flow(flow10_px, flow01_px)
    target = pixel_grid(batch, height, width, flow01_px) + flow01_px
    inside = (target[:, :1] >= 0) & (target[:, :1] <= width - 1)
    inside &= (target[:, 1:] >= 0) & (target[:, 1:] <= height - 1)
    return torch.linalg.vector_norm(flow01_px + back, dim=1, keepdim=True), inside


def cycle_loss(flow01_px: Tensor, flow10_px: Tensor, cap_px: float = 8.0) -> Tensor:
    """Mean capped forward-backward error over pixels that land inside image 1."""
    error, inside = cycle_error(flow01_px, flow10_px)
    return (error.clamp(max=cap_px) * inside).sum() / inside.sum().clamp_min(1)


def smoothness_loss(flow_px: Tensor) -> Tensor:
    """Diffusion regulariser: mean squared forward differences of ``flow (B, 2, H, W)``, both axes."""
    dx = flow_px[..., :, 1:] - flow_px[..., :, :-1]
    dy = flow_px[..., 1:, :] - flow_px[..., :-1, :]
    return 0.5 * ((dx**2).mean() + (dy**2).mean())


# --- confidence ---------------------------------------------------------------------------------


def correct_matches(flow_px: Tensor, flow_true_px: Tensor, tolerance_px: float) -> Tensor:
    """``(B, 1, H, W)`` float: 1 where the end-point error is below ``tolerance_px``."""
    return (endpoint_error(flow_px, flow_true_px) < tolerance_px).float()


def confidence_bce(confidence: Tensor, correct: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy of ``confidence (B, 1, H, W)`` in (0, 1) against ``correct``, on ``valid``."""
    p = confidence.clamp(1e-6, 1 - 1e-6)
    bce = -(correct * torch.log(p) + (1 - correct) * torch.log(1 - p))
    return (bce * valid).sum() / valid.sum().clamp_min(1)


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int = 10):
    """Per equal-width confidence bin: count, mean confidence, accuracy (each ``(n_bins,)``)."""
    conf, hit = confidence.flatten().double(), correct.flatten().double()
    index = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).double()
    mean_conf = torch.bincount(index, weights=conf, minlength=n_bins) / count.clamp_min(1)
    accuracy = torch.bincount(index, weights=hit, minlength=n_bins) / count.clamp_min(1)
    return count, mean_conf, accuracy


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 10) -> float:
    """ECE = sum over bins of ``(n_b / n) |accuracy_b - confidence_b|``."""
    count, mean_conf, accuracy = reliability_bins(confidence, correct, n_bins)
    return float((count / count.sum() * (accuracy - mean_conf).abs()).sum())
