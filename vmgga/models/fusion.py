"""Multi-scale fusion of the pyramid and gated fusion of visual features with MIND."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resample_to_stride(feature: Tensor, stride: int, target_stride: int, size_hw: tuple[int, int]) -> Tensor:
    """Bring a ``(B, C, H/s, W/s)`` map to the grid of ``target_stride`` (``size_hw`` cells).

    Finer maps are average-pooled, coarser maps bilinearly upsampled.
    """
    if stride < target_stride:
        return F.avg_pool2d(feature, target_stride // stride)
    if stride > target_stride:
        return F.interpolate(feature, size=size_hw, mode="bilinear", align_corners=False)
    return feature


class ScaleFusion(nn.Module):
    """All pyramid levels resampled to one stride, concatenated, then a small conv head."""

    def __init__(self, in_channels: tuple[int, ...], strides: tuple[int, ...], target_stride: int, dim: int):
        super().__init__()
        self.strides, self.target_stride = tuple(strides), target_stride
        self.head = nn.Sequential(
            nn.Conv2d(sum(in_channels), dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1)
        )

    def forward(self, pyramid: list[Tensor], image_hw: tuple[int, int]) -> Tensor:
        """Pyramid of ``(B, C_l, H/s_l, W/s_l)`` -> ``(B, dim, H/t, W/t)`` with ``t = target_stride``."""
        size = (image_hw[0] // self.target_stride, image_hw[1] // self.target_stride)
        levels = [
            resample_to_stride(f, s, self.target_stride, size)
            for f, s in zip(pyramid, self.strides, strict=True)
        ]
        return self.head(torch.cat(levels, dim=1))


def mind_cells(mind: Tensor, stride: int, encoding: str) -> Tensor:
    """MIND ``(B, M, H, W)`` on the grid of ``stride`` for :class:`MindGate`.

    ``pooled``: the cell mean ``(B, M, H/s, W/s)``. ``patch``: the cell's layout kept, as a 4x4 (or
    ``s x s`` when smaller) grid of sub-cell means stacked in channels: ``(B, M * min(s, 4)^2, H/s, W/s)``.
    """
    if encoding == "pooled":
        return F.avg_pool2d(mind, stride) if stride > 1 else mind
    side = min(stride, 4)
    sub = F.avg_pool2d(mind, stride // side) if stride > side else mind
    return F.pixel_unshuffle(sub, side) if side > 1 else sub


def mind_cell_channels(mind_channels: int, stride: int, encoding: str) -> int:
    """Channels of :func:`mind_cells`."""
    return mind_channels if encoding == "pooled" else mind_channels * min(stride, 4) ** 2


class MindGate(nn.Module):
    """Per-location choice between visual features and MIND: ``g * visual + (1 - g) * W mind``.

    ``W`` is a 1x1 convolution (``kernel_size=1``) or, for patch-encoded MIND, a 3x3 one that also
    sees the neighbouring cells.
    """

    def __init__(self, dim: int, mind_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.mind_proj = nn.Conv2d(mind_channels, dim, kernel_size, padding=kernel_size // 2)
        self.gate_proj = nn.Conv2d(2 * dim, 1, 1)

    def gate(self, visual: Tensor, mind_feature: Tensor) -> Tensor:
        """Weight of the visual features, ``(B, 1, H, W)`` in (0, 1)."""
        return torch.sigmoid(self.gate_proj(torch.cat([visual, mind_feature], dim=1)))

    def forward(self, visual: Tensor, mind: Tensor) -> Tensor:
        """``visual (B, dim, h, w)``, ``mind (B, M, h, w)`` (same grid) -> ``(B, dim, h, w)``."""
        mind_feature = self.mind_proj(mind)
        weight = self.gate(visual, mind_feature)
        return weight * visual + (1.0 - weight) * mind_feature
