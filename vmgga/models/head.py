"""Matching head: coarse dual-softmax, fine window correlation + local expectation, confidence.

Pure functions (no weights) except :class:`ConfidenceHead`, so the training-free MIND baseline uses
the very same matching as the network. Positions and flows are ``(x, y)`` pixels; token ``n`` of a
``(Hc, Wc)`` grid is row-major (``x = n % Wc``, ``y = n // Wc``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.models.config import MatcherConfig


def grid_xy(height: int, width: int, like: Tensor) -> Tensor:
    """Cell indices ``(1, 2, H, W)``, channels (x, y)."""
    y, x = torch.meshgrid(
        torch.arange(height, device=like.device, dtype=like.dtype),
        torch.arange(width, device=like.device, dtype=like.dtype),
        indexing="ij",
    )
    return torch.stack([x, y])[None]


def coarse_logits(desc0: Tensor, desc1: Tensor, temperature: float) -> Tensor:
    """Scaled cosine similarity of all token pairs.

    ``(B, C, H0, W0)``, ``(B, C, H1, W1)`` -> logits ``(B, N0, N1)``.
    """
    d0 = F.normalize(desc0.flatten(2), dim=1)  # (B, C, N0)
    d1 = F.normalize(desc1.flatten(2), dim=1)  # (B, C, N1)
    return torch.einsum("bcn,bcm->bnm", d0, d1) / temperature


def mask_far_tokens(
    logits: Tensor, shape0: tuple[int, int], shape1: tuple[int, int], max_cells: float
) -> Tensor:
    """Set the logits of token pairs farther apart than ``max_cells`` (token units) to a large negative."""
    p0 = grid_xy(*shape0, logits).flatten(2)[0].T  # (N0, 2)
    p1 = grid_xy(*shape1, logits).flatten(2)[0].T  # (N1, 2)
    far = torch.cdist(p0, p1) > max_cells  # (N0, N1)
    return logits.masked_fill(far[None], -1e4)


def dual_softmax(logits: Tensor) -> Tensor:
    """``softmax over image1 * softmax over image0`` of ``(B, N0, N1)`` logits, in [0, 1]."""
    return F.softmax(logits, dim=2) * F.softmax(logits, dim=1)


def coarse_flow_from_prob(prob: Tensor, shape0: tuple[int, int], shape1: tuple[int, int], stride: int):
    """Best image1 token of every image0 token.

    Args:
        prob: ``(B, N0, N1)`` dual-softmax probabilities.
        shape0, shape1: Coarse grids ``(Hc, Wc)`` of the two images.
        stride: Pixels per token.

    Returns:
        ``flow_px (B, 2, H0c, W0c)`` (x, y) multiples of ``stride``, and ``max_prob (B, 1, H0c, W0c)``.
    """
    max_prob, index = prob.max(dim=2)  # (B, N0)
    x1 = torch.remainder(index, shape1[1]).to(prob.dtype)
    y1 = torch.div(index, shape1[1], rounding_mode="floor").to(prob.dtype)
    target = torch.stack([x1, y1], dim=1).reshape(prob.shape[0], 2, *shape0)
    flow_px = (target - grid_xy(*shape0, prob)) * stride
    return flow_px, max_prob.reshape(prob.shape[0], 1, *shape0)


def window_offsets(window: int, like: Tensor) -> Tensor:
    """Integer offsets ``(K, 2)`` (dx, dy) of a ``window x window`` square, row-major, K = window^2."""
    radius = window // 2
    return grid_xy(window, window, like).flatten(2)[0].T - radius


def _blocks(desc: Tensor, ratio: int) -> Tensor:
    """``(B, C, Hc * r, Wc * r)`` -> ``(B, Nc, r * r, C)``: the fine cells of each coarse cell."""
    b, c, h, w = desc.shape
    blocks = desc.reshape(b, c, h // ratio, ratio, w // ratio, ratio).permute(0, 2, 4, 3, 5, 1)
    return blocks.reshape(b, (h // ratio) * (w // ratio), ratio * ratio, c)


def _window_table(ratio: int, window: int, like: Tensor) -> Tensor:
    """``(r * r, K)``: index in a ``(r + window - 1)^2`` patch of each (fine cell, window offset)."""
    side = ratio + window - 1
    cells = grid_xy(ratio, ratio, like).flatten(2)[0].T.long()  # (r*r, 2) (x, y) in the block
    offsets = window_offsets(window, like).long() + window // 2  # (K, 2), from 0
    position = cells[:, None, :] + offsets[None]  # (r*r, K, 2)
    return position[..., 1] * side + position[..., 0]


def window_correlation(
    desc0: Tensor, desc1: Tensor, coarse_flow_cells: Tensor, ratio: int, window: int
) -> Tensor:
    """Correlation of each image0 descriptor with image1 descriptors around its coarse match.

    Every fine cell of coarse cell ``u`` is compared with the ``window x window`` fine cells of
    image1 centred on itself plus ``coarse_flow_cells(u)``. Computed per coarse cell as one matrix
    product with the ``(ratio + window - 1)^2`` patch of image1 that covers all its windows.

    Args:
        desc0: ``(B, C, Hc * ratio, Wc * ratio)`` (L2-normalised) descriptors of image0.
        desc1: ``(B, C, H1, W1)`` descriptors of image1.
        coarse_flow_cells: ``(B, 2, Hc, Wc)`` integer-valued coarse flow (x, y) in fine cells.
        ratio: Fine cells per coarse cell along each axis.
        window: Window side (odd).

    Returns:
        ``(B, K, H0, W0)`` with ``K = window^2`` in the order of :func:`window_offsets`;
        positions outside image1 correlate to 0.
    """
    b, c, h1, w1 = desc1.shape
    hc, wc, side = coarse_flow_cells.shape[-2], coarse_flow_cells.shape[-1], ratio + window - 1
    origin = grid_xy(hc, wc, desc0) * ratio + coarse_flow_cells.round() - window // 2  # patch corner
    patch = grid_xy(side, side, desc0).flatten(2)[0]  # (2, P)
    x = (origin[:, 0].flatten(1)[..., None] + patch[0]).long()  # (B, Nc, P)
    y = (origin[:, 1].flatten(1)[..., None] + patch[1]).long()
    inside = ((x >= 0) & (x < w1) & (y >= 0) & (y < h1)).to(desc1.dtype)
    index = (y.clamp(0, h1 - 1) * w1 + x.clamp(0, w1 - 1)).flatten(1)  # (B, Nc * P)
    patches = desc1.flatten(2).gather(2, index[:, None].expand(b, c, index.shape[1]))
    patches = patches.reshape(b, c, hc * wc, side * side).permute(0, 2, 1, 3) * inside[:, :, None]
    full = torch.matmul(_blocks(desc0, ratio), patches)  # (B, Nc, r*r, P)
    table = _window_table(ratio, window, desc0)  # (r*r, K)
    k = table.shape[1]
    corr = full.gather(3, table[None, None].expand(b, hc * wc, ratio * ratio, k))  # (B, Nc, r*r, K)
    corr = corr.reshape(b, hc, wc, ratio, ratio, k).permute(0, 5, 1, 3, 2, 4)
    return corr.reshape(b, k, hc * ratio, wc * ratio)


def local_expectation(logits: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sub-cell offset: softmax expectation over the 3x3 neighbourhood of the best window offset.

    Args:
        logits: ``(B, K, H, W)`` correlation / temperature.
        offsets: ``(K, 2)`` window offsets.

    Returns:
        ``offset (B, 2, H, W)`` (x, y) in cells, ``peak_prob (B, 1, H, W)`` (max of the window
        softmax) and ``local_mass (B, 1, H, W)`` (window softmax mass inside the 3x3 neighbourhood).
    """
    neighbours = (offsets[:, None, :] - offsets[None, :, :]).abs().amax(dim=-1) <= 1  # (K, K)
    near = neighbours[logits.argmax(dim=1)].permute(0, 3, 1, 2)  # (B, K, H, W)
    local = F.softmax(logits.masked_fill(~near, -1e4), dim=1)
    offset = torch.einsum("bkhw,kc->bchw", local, offsets)
    window = F.softmax(logits, dim=1)
    peak_prob = window.amax(dim=1, keepdim=True)
    local_mass = (window * near).sum(dim=1, keepdim=True)
    return offset, peak_prob, local_mass


def repeat_cells(field: Tensor, ratio: int) -> Tensor:
    """Nearest upsampling by an integer ``ratio``: ``(B, C, h, w)`` -> ``(B, C, h * ratio, w * ratio)``."""
    return field.repeat_interleave(ratio, dim=2).repeat_interleave(ratio, dim=3)


def coarse_match(coarse0: Tensor, coarse1: Tensor, config: MatcherConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Coarse matching of token maps ``(B, C, H0c, W0c)`` and ``(B, C, H1c, W1c)``.

    Returns:
        Dual-softmax ``prob (B, N0, N1)``, ``coarse_flow_px (B, 2, H0c, W0c)`` and its
        ``max_prob (B, 1, H0c, W0c)``.
    """
    shape0, shape1 = tuple(coarse0.shape[-2:]), tuple(coarse1.shape[-2:])
    logits = coarse_logits(coarse0, coarse1, config.coarse_temperature)
    if config.max_displacement_px is not None:
        logits = mask_far_tokens(logits, shape0, shape1, config.max_displacement_px / config.coarse_stride)
    prob = dual_softmax(logits)
    flow_px, max_prob = coarse_flow_from_prob(prob, shape0, shape1, config.coarse_stride)
    return prob, flow_px, max_prob


def fine_match(fine0: Tensor, fine1: Tensor, coarse_flow_px: Tensor, config: MatcherConfig):
    """Refine a coarse flow with fine descriptors ``(B, C, H0f, W0f)``, ``(B, C, H1f, W1f)``.

    ``H0f = H0c * coarse_stride / fine_stride``. Returns ``flow_px (B, 2, H0f, W0f)`` (coarse +
    fine), ``fine_offset_px`` (same shape), ``peak_prob`` and ``local_mass`` ``(B, 1, H0f, W0f)``.
    """
    ratio = config.coarse_stride // config.fine_stride
    flow_px = repeat_cells(coarse_flow_px, ratio)
    offsets = window_offsets(config.fine_window, fine0)
    desc0, desc1 = F.normalize(fine0, dim=1), F.normalize(fine1, dim=1)
    flow_cells = coarse_flow_px / config.fine_stride
    correlation = window_correlation(desc0, desc1, flow_cells, ratio, config.fine_window)
    offset, peak_prob, local_mass = local_expectation(correlation / config.fine_temperature, offsets)
    fine_offset_px = offset * config.fine_stride
    return flow_px + fine_offset_px, fine_offset_px, peak_prob, local_mass


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


class ConfidenceHead(nn.Module):
    """Calibrated match confidence from [coarse max prob, fine peak prob, fine local mass].

    ``sigmoid(w . logit(inputs) + b + MLP(logit(inputs)))``; initialised to the mean of the
    coarse and fine logits (the MLP's last layer starts at zero), then calibrated by training.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Conv2d(3, 1, 1)
        self.mlp = nn.Sequential(nn.Conv2d(3, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 1, 1))
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([0.5, 0.5, 0.0]).view(1, 3, 1, 1))
            self.linear.bias.zero_()
            self.mlp[-1].weight.zero_()
            self.mlp[-1].bias.zero_()

    def forward(self, coarse_prob: Tensor, peak_prob: Tensor, local_mass: Tensor) -> Tensor:
        """Three ``(B, 1, H, W)`` probabilities -> confidence ``(B, 1, H, W)`` in (0, 1)."""
        x = _logit(torch.cat([coarse_prob, peak_prob, local_mass], dim=1))
        return torch.sigmoid(self.linear(x) + self.mlp(x))
