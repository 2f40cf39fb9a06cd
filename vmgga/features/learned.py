"""Learned 3D feature volumes: the matcher network's dense descriptors, slice-wise along three axes.

``LearnedFeatureExtractor.extract`` runs :meth:`MatcherNet.describe` (visual encoder + multi-scale
fusion + the gated MIND fusion of the checkpoint's config, no attention: image-only) on every
``slice_step``-th slice along each axis, interpolates them across the other slices, upsamples them
to the slice resolution (bilinear), stacks them into volumes, averages the axes and L2-normalises. The instance optimisation can then use them instead of,
or together with, MIND.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.config import DenseConfig
from vmgga.frames import upsample_cells
from vmgga.models.loading import load_matcher_model
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig, stack_features


def describe_at_full_resolution(model: MatcherNet, slices: Tensor) -> Tensor:
    """``(N, 1, r, c)`` -> L2-normalised descriptors ``(N, C, r, c)`` (bilinear from the fine stride)."""
    full = upsample_cells(model.describe(slices), model.config.fine_stride, tuple(slices.shape[-2:]))
    return F.normalize(full, dim=1)


class LearnedFeatureExtractor:
    """:class:`vmgga.features.base.FeatureExtractor` of the ``vmgga`` backend."""

    name = "vmgga"

    def __init__(
        self,
        config: DenseConfig,
        device: str | torch.device = "cpu",
        model: MatcherNet | None = None,
        slicewise: SlicewiseConfig | None = None,
    ) -> None:
        if model is None:
            model = load_matcher_model(config, device)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.slicewise = slicewise or SlicewiseConfig(slice_step=config.features.slice_step_vox)

    @property
    def channels(self) -> int:
        """Number of feature channels."""
        return self.model.config.fine_dim

    @torch.no_grad()
    def extract(self, volume: Tensor) -> Tensor:
        """``(1, 1, D, H, W)`` in ~[0, 1] -> ``(1, C, D, H, W)`` learned features of unit norm."""
        volume = volume.to(self.device, torch.float32)
        stride = self.model.config.fine_stride
        stacked = stack_features(
            volume, self.model.describe, self.slicewise, lambda f, size: upsample_cells(f, stride, size)
        )
        return F.normalize(stacked, dim=1)
