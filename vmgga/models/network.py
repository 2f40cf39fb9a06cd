"""The VMGGA matcher network (skeleton: interface fixed, implementation in progress).

``VMGGANet.match`` is the training/inference API; ``forward(pair)`` is the single-tensor interface
for MONAI bundles and TorchScript tracing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from vmgga.models.checkpoint import config_from_checkpoint, load_checkpoint_dict
from vmgga.models.config import MatcherConfig
from vmgga.models.types import MatchResult


class VMGGANet(nn.Module):
    """Visual-model-guided gated-attention dense matcher (2D)."""

    def __init__(self, config: MatcherConfig | None = None) -> None:
        super().__init__()
        self.config = config or MatcherConfig()

    def encode(self, image: Tensor) -> list[Tensor]:
        """Visual encoder pyramid of ``image (B, 1, H, W)``: one map per ``pyramid_strides``."""
        raise NotImplementedError

    def match(
        self, image0: Tensor, image1: Tensor, mind0: Tensor | None = None, mind1: Tensor | None = None
    ) -> MatchResult:
        """Dense matches from ``image0 (B,1,H,W)`` to ``image1 (B,1,H,W)`` (intensities ~[0, 1])."""
        raise NotImplementedError

    def forward(self, pair: Tensor) -> Tensor:
        """``pair (B, 2, H, W)`` -> ``(B, 3, H, W)`` = [flow_x_px, flow_y_px, confidence]."""
        result = self.match(pair[:, :1], pair[:, 1:2])
        return torch.cat([result.flow_px, result.confidence], dim=1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> VMGGANet:
        """Rebuild the model saved by :func:`vmgga.models.checkpoint.save_checkpoint`."""
        payload = load_checkpoint_dict(path, map_location)
        model = cls(config_from_checkpoint(payload))
        model.load_state_dict(payload["state_dict"], strict=False)
        return model
