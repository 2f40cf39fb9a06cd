"""Learned 3D feature volumes: the matcher network's dense descriptors, slice-wise along three axes.

``LearnedFeatureExtractor.extract`` runs :meth:`MatcherNet.describe` (visual encoder + multi-scale
fusion + the gated MIND fusion of the checkpoint's config, no attention: image-only) on every
``slice_step``-th slice along each axis, interpolates them across the other slices, upsamples them
to the slice resolution (bilinear), stacks them into volumes, averages the axes and L2-normalises. The instance optimisation can then use them instead of,
or together with, MIND.

A network with a stride-1 pixel head (:mod:`vmgga.models.pixel_head`) gives its pixel descriptors
instead (``dense.features.learned_descriptors``): run on *every* slice along each of
``dense.features.pixel_axes`` (interpolating across slices would make them shift-variant along the
slicing axis), one family of channels per axis, concatenated and scaled to unit norm overall.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.config import DenseConfig
from vmgga.errors import ConfigError
from vmgga.frames import upsample_cells
from vmgga.models.loading import load_matcher_model
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig, slice_view, slices_along, stack_features

#: Slices per pixel-head call (:func:`pixel_feature_volume`).
PIXEL_BATCH_SLICES = 4


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
        self.uses_pixels = uses_pixel_descriptors(config.features.learned_descriptors, self.model)
        self.pixel_axes = tuple(config.features.pixel_axes)
        if self.uses_pixels:
            use_channels_last(self.model)

    @property
    def channels(self) -> int:
        """Number of feature channels."""
        if self.uses_pixels:
            return self.model.config.pixel_dim * len(self.pixel_axes)
        return self.model.config.fine_dim

    @torch.no_grad()
    def extract(self, volume: Tensor) -> Tensor:
        """``(1, 1, D, H, W)`` in ~[0, 1] -> ``(1, C, D, H, W)`` learned features of unit norm."""
        volume = volume.to(self.device, torch.float32)
        if self.uses_pixels:
            return pixel_feature_volume(self.model, volume, self.pixel_axes)
        stride = self.model.config.fine_stride
        stacked = stack_features(
            volume, self.model.describe, self.slicewise, lambda f, size: upsample_cells(f, stride, size)
        )
        return F.normalize(stacked, dim=1)


def uses_pixel_descriptors(choice: str, model: MatcherNet) -> bool:
    """``dense.features.learned_descriptors`` for ``model``: ``auto`` takes the pixel head if there is one.

    Raises:
        ConfigError: ``pixel`` for a network without a pixel head.
    """
    if choice == "pixel" and not model.has_pixel_head:
        raise ConfigError(
            "dense.features.learned_descriptors=pixel, but this matcher checkpoint has no pixel head "
            "(pixel_dim 0); use auto or fine, or weights trained with one (configs/train_cpu_v7.yaml)"
        )
    return choice == "pixel" or (choice == "auto" and model.has_pixel_head)


def use_channels_last(model: MatcherNet) -> MatcherNet:
    """Put the encoder's and the pixel head's convolution weights in channels-last layout, in place
    (the values are unchanged; oneDNN runs these small convolutions several times faster in it)."""
    model.encoder.to(memory_format=torch.channels_last)
    if model.has_pixel_head:
        model.pixel_head.to(memory_format=torch.channels_last)
    return model


def pixel_feature_volume(
    model: MatcherNet, volume: Tensor, axes: tuple[int, ...], batch_slices: int = PIXEL_BATCH_SLICES
) -> Tensor:
    """Pixel descriptors of ``volume (1, 1, D, H, W)`` on every slice along each of ``axes``:
    ``(1, pixel_dim x len(axes), D, H, W)``, the axes' families concatenated, unit norm overall.

    A few slices per network call (``batch_slices``): the full-resolution activations of a small
    batch stay in the CPU caches (64 slices of 144 x 128 px: 0.77 s in calls of 64, 0.24 s in calls
    of 4 with :func:`use_channels_last`). Each batch is written straight into its place in the
    output (no stacking, permuting and concatenating of whole volumes afterwards).
    """
    dim, scale = model.config.pixel_dim, len(axes) ** -0.5
    _, _, d, h, w = volume.shape
    out = volume.new_empty((1, dim * len(axes), d, h, w))
    for family, axis in enumerate(axes):
        slices = slices_along(volume, axis)  # (N, 1, rows, cols)
        target = slice_view(out[:, family * dim : (family + 1) * dim], axis)  # (N, dim, rows, cols)
        for start in range(0, slices.shape[0], batch_slices):
            batch = slices[start : start + batch_slices]
            # a one-channel slice is already channels-last; the descriptors come out channels-last and
            # are copied into the permuted view as they are
            target[start : start + batch_slices] = model.describe_pixels(batch).mul_(scale)
    return out
