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


class MindGate(nn.Module):
    """Per-location choice between visual features and MIND: ``g * visual + (1 - g) * W mind``."""

    def __init__(self, dim: int, mind_channels: int) -> None:
        super().__init__()
        self.mind_proj = nn.Conv2d(mind_channels, dim, 1)
        self.gate_proj = nn.Conv2d(2 * dim, 1, 1)

    def gate(self, visual: Tensor, mind_feature: Tensor) -> Tensor:
        """Weight of the visual features, ``(B, 1, H, W)`` in (0, 1)."""
        return torch.sigmoid(self.gate_proj(torch.cat([visual, mind_feature], dim=1)))

    def forward(self, visual: Tensor, mind: Tensor) -> Tensor:
        """``visual (B, dim, h, w)``, ``mind (B, M, h, w)`` (same grid) -> ``(B, dim, h, w)``."""
        mind_feature = self.mind_proj(mind)
        weight = self.gate(visual, mind_feature)
        return weight * visual + (1.0 - weight) * mind_feature
