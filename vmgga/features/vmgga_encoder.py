"""Learned 3D feature volumes: the VMGGA network's dense descriptors, slice-wise along three axes.

``VmggaFeatureExtractor.extract`` runs :meth:`VMGGANet.describe` (visual encoder + multi-scale
fusion + the gated MIND fusion of the checkpoint's config, no attention: image-only) on every
``slice_step``-th slice along each axis, upsamples the descriptors to the slice resolution, stacks
them into volumes and averages the axes. The instance optimisation can then use them instead of,
or together with, MIND.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.config import DenseConfig
from vmgga.matching.slicewise import SlicewiseConfig, stack_features
from vmgga.models.network import VMGGANet


def describe_at_full_resolution(model: VMGGANet, slices: Tensor) -> Tensor:
    """``(N, 1, r, c)`` -> L2-normalised descriptors ``(N, C, r, c)`` (bilinear from the fine stride)."""
    descriptors = model.describe(slices)
    stride = model.config.fine_stride
    full = F.interpolate(descriptors, scale_factor=float(stride), mode="bilinear", align_corners=False)
    return F.normalize(full[..., : slices.shape[-2], : slices.shape[-1]], dim=1)


class VmggaFeatureExtractor:
    """:class:`vmgga.features.base.FeatureExtractor` of the ``vmgga`` backend."""

    name = "vmgga"

    def __init__(
        self,
        config: DenseConfig,
        device: str | torch.device = "cpu",
        model: VMGGANet | None = None,
        slicewise: SlicewiseConfig | None = None,
    ) -> None:
        if model is None:
            from vmgga.matching.vmgga_matcher import load_matcher_model

            model = load_matcher_model(config, device)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.slicewise = slicewise or SlicewiseConfig()

    @property
    def channels(self) -> int:
        """Number of feature channels."""
        return self.model.config.fine_dim

    @torch.no_grad()
    def extract(self, volume: Tensor) -> Tensor:
        """``(1, 1, D, H, W)`` in ~[0, 1] -> ``(1, C, D, H, W)`` learned features."""
        volume = volume.to(self.device, torch.float32)
        return stack_features(volume, lambda s: describe_at_full_resolution(self.model, s), self.slicewise)
