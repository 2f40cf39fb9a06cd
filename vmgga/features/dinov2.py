"""The ``dinov2`` feature backend: DINOv2 patch features of a LOCAL model, slice-wise in 3D.

The model is loaded by :func:`vmgga.models.dinov2.load_dinov2` (no network access, ever).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.models.dinov2 import dinov2_patch_features, load_dinov2
from vmgga.models.slicewise import SlicewiseConfig, stack_features

#: Channels of the 3D DINOv2 feature volumes (fixed random orthogonal projection of the patch features).
DINOV2_FEATURE_CHANNELS = 16


def random_projection(hidden: int, channels: int, seed: int = 0) -> Tensor:
    """A fixed ``(hidden, channels)`` matrix with orthonormal columns (same for every volume)."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(hidden, max(channels, 1), generator=generator)
    return torch.linalg.qr(matrix)[0][:, :channels]


class Dinov2FeatureExtractor:
    """:class:`vmgga.features.base.FeatureExtractor` of the ``dinov2`` backend (training-free).

    Slice-wise DINOv2 patch features along the three axes (:mod:`vmgga.models.slicewise`),
    projected to :data:`DINOV2_FEATURE_CHANNELS` channels by a fixed random orthogonal matrix (the
    same for fixed and moving, so features stay comparable), upsampled to the slice, L2-normalised.
    """

    name = "dinov2"

    def __init__(self, config, device: str | torch.device = "cpu", slicewise=None) -> None:
        self.device = torch.device(device)
        self.model = load_dinov2(config.features.dinov2_path, self.device)
        self.scale = 14.0 / 8.0  # patch grid ~ 8 working voxels
        hidden = int(self.model.config.hidden_size)
        self.projection = random_projection(hidden, min(DINOV2_FEATURE_CHANNELS, hidden)).to(self.device)
        self.slicewise = slicewise or SlicewiseConfig(slice_step=config.features.slice_step_vox)

    def _slice_features(self, slices: Tensor) -> Tensor:
        """``(N, 1, r, c)`` -> ``(N, channels, r, c)``."""
        patches = dinov2_patch_features(self.model, slices, self.scale)  # (N, hidden, hp, wp)
        projected = torch.einsum("nchw,ck->nkhw", patches, self.projection)
        full = F.interpolate(projected, size=slices.shape[-2:], mode="bilinear", align_corners=False)
        return F.normalize(full, dim=1)

    @torch.no_grad()
    def extract(self, volume: Tensor) -> Tensor:
        """``(1, 1, D, H, W)`` in ~[0, 1] -> ``(1, channels, D, H, W)``."""
        return stack_features(volume.to(self.device, torch.float32), self._slice_features, self.slicewise)
