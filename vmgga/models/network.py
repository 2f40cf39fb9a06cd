"""The matcher network: visual encoder, MIND gate, gated attention, dense matching head.

``MatcherNet.match`` is the training/inference API (returns a :class:`MatchResult`);
``forward(pair)`` is the single-tensor interface for MONAI bundles and ``torch.jit.trace``.
Images are ``(B, 1, H, W)`` with intensities ~[0, 1]; any H, W work (padded inside on the
bottom/right to a multiple of ``coarse_stride``, so pixel coordinates are unchanged).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.errors import InputError
from vmgga.frames import upsample_cells
from vmgga.models import head
from vmgga.models.attention import GatedTransformer
from vmgga.models.checkpoint import FROZEN_PREFIX, config_from_checkpoint, load_checkpoint_dict
from vmgga.models.config import MatcherConfig
from vmgga.models.encoder import build_encoder
from vmgga.models.fusion import MindGate, ScaleFusion, mind_cell_channels, mind_cells
from vmgga.models.mind2d import MIND2D_CHANNELS, mind_ssc_2d
from vmgga.models.pixel_head import PixelHead
from vmgga.models.types import MatchResult


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Replicate-pad ``(B, C, H, W)`` on the bottom and right to multiples of ``multiple``."""
    h, w = image.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")


def match_descriptors(
    descriptors0: tuple[Tensor, Tensor],
    descriptors1: tuple[Tensor, Tensor],
    config: MatcherConfig,
    confidence_head: nn.Module,
    size_hw: tuple[int, int],
    features: tuple[list[Tensor], list[Tensor]],
) -> MatchResult:
    """The matching head: coarse dual-softmax, fine window refinement and confidence.

    Args:
        descriptors0, descriptors1: ``(coarse (B, C, h, w), fine (B, C', h', w'))`` of each image.
        config: strides, search limit and window of the head.
        confidence_head: maps (coarse max, fine peak, local mass) to a confidence.
        size_hw: image0's unpadded size; flow and confidence are upsampled to it.
        features: the feature pyramids of image0 and image1, stored in the result.
    """
    (coarse0, fine0), (coarse1, fine1) = descriptors0, descriptors1
    prob, coarse_flow_px, coarse_max = head.coarse_match(coarse0, coarse1, config)
    fine_flow_px, fine_offset_px, peak_prob, local_mass = head.fine_match(
        fine0, fine1, coarse_flow_px, config
    )
    coarse_max = head.repeat_cells(coarse_max, config.coarse_stride // config.fine_stride)
    confidence = confidence_head(coarse_max, peak_prob, local_mass)
    return MatchResult(
        flow_px=upsample_cells(fine_flow_px, config.fine_stride, size_hw),
        confidence=upsample_cells(confidence, config.fine_stride, size_hw),
        coarse_prob=prob,
        coarse_flow_px=coarse_flow_px,
        fine_offset_px=fine_offset_px,
        coarse_stride=config.coarse_stride,
        fine_stride=config.fine_stride,
        features0=features[0],
        features1=features[1],
    )


class MatcherNet(nn.Module):
    """Visual-model-guided gated-attention dense matcher (2D)."""

    def __init__(self, config: MatcherConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MatcherConfig()
        self.encoder = build_encoder(config)
        channels, strides = self.encoder.out_channels, config.pyramid_strides
        self.coarse_fusion = ScaleFusion(channels, strides, config.coarse_stride, config.coarse_dim)
        self.fine_fusion = ScaleFusion(channels, strides, config.fine_stride, config.fine_dim)
        self.uses_mind_gate = config.use_mind_fusion and config.use_visual_guidance
        if self.uses_mind_gate:
            encoding, kernel = config.mind_encoding, 1 if config.mind_encoding == "pooled" else 3
            coarse_in = mind_cell_channels(MIND2D_CHANNELS, config.coarse_stride, encoding)
            fine_in = mind_cell_channels(MIND2D_CHANNELS, config.fine_stride, encoding)
            self.coarse_mind_gate = MindGate(config.coarse_dim, coarse_in, kernel)
            self.fine_mind_gate = MindGate(config.fine_dim, fine_in, kernel)
        self.transformer = GatedTransformer(config)
        self.coarse_out = nn.Linear(config.coarse_dim, config.coarse_dim)
        self.confidence_head = head.ConfidenceHead(config.confidence_hidden)
        if config.pixel_dim > 0:
            self.pixel_head = PixelHead(channels[0], config.pixel_width, config.pixel_dim)

    # --- per-image features -------------------------------------------------------------------

    def _needs_mind(self) -> bool:
        return self.uses_mind_gate or not self.config.use_visual_guidance or self.config.backend == "mind"

    def _prepare(self, image: Tensor, mind: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Validate, pad, and compute the 2D MIND-SSC if the model uses it."""
        if image.ndim != 4 or image.shape[1] != 1:
            raise InputError(f"expected an image of shape (B, 1, H, W), got {tuple(image.shape)}")
        image = pad_to_multiple(image, self.config.coarse_stride)
        if not self._needs_mind():
            return image, None
        if mind is None:
            mind = mind_ssc_2d(image, self.config.mind_radius, self.config.mind_dilation)
        else:
            mind = pad_to_multiple(mind, self.config.coarse_stride)
        return image, mind

    def encode(self, image: Tensor, mind: Tensor | None = None) -> list[Tensor]:
        """Visual encoder pyramid of ``image (B, 1, H, W)``: ``(B, C_l, Hp/s_l, Wp/s_l)`` per stride.

        ``Hp, Wp`` are H, W padded up to multiples of ``coarse_stride``.
        """
        image, mind = self._prepare(image, mind)
        return self.encoder(image, mind)

    def _descriptors(self, image: Tensor, mind: Tensor | None) -> tuple[list[Tensor], Tensor, Tensor]:
        """Pyramid, coarse tokens ``(B, Cc, Hc, Wc)`` and fine descriptors ``(B, Cf, Hf, Wf)`` (padded)."""
        pyramid = self.encoder(image, mind)
        hw = (image.shape[-2], image.shape[-1])
        coarse = self.coarse_fusion(pyramid, hw)
        fine = self.fine_fusion(pyramid, hw)
        if self.uses_mind_gate:
            cfg = self.config
            coarse = self.coarse_mind_gate(coarse, mind_cells(mind, cfg.coarse_stride, cfg.mind_encoding))
            fine = self.fine_mind_gate(fine, mind_cells(mind, cfg.fine_stride, cfg.mind_encoding))
        return pyramid, coarse, fine

    def describe(self, image: Tensor, mind: Tensor | None = None) -> Tensor:
        """Dense L2-normalised fine descriptors of one image (no attention, image-only).

        ``(B, 1, H, W)`` -> ``(B, fine_dim, ceil(H / f), ceil(W / f))``, ``f = fine_stride``; cell
        ``(u, v)`` describes pixels ``[f u, f u + f)``. Used for sparse matching and 3D features.
        """
        h, w = image.shape[-2:]
        padded, mind = self._prepare(image, mind)
        fine = F.normalize(self._descriptors(padded, mind)[2], dim=1)
        stride = self.config.fine_stride
        return fine[..., : -(-h // stride), : -(-w // stride)]

    @property
    def has_pixel_head(self) -> bool:
        """Whether the network has the stride-1 :class:`~vmgga.models.pixel_head.PixelHead`."""
        return self.config.pixel_dim > 0

    def pixel_head_inputs(self, image: Tensor, mind: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """What the pixel head reads: ``image (B, 1, H, W)``, its 2D MIND-SSC ``(B, 4, H, W)`` and
        the encoder's first pyramid level brought to the pixels ``(B, C_0, H, W)`` (bilinear
        between cell centres)."""
        h, w = image.shape[-2:]
        padded, mind = self._prepare(image, mind)
        if mind is None:  # the pixel head reads MIND even where the gate does not
            mind = mind_ssc_2d(padded, self.config.mind_radius, self.config.mind_dilation)
        level = self.encoder.first_level(padded, mind)
        level = upsample_cells(level, self.config.pyramid_strides[0], (h, w))
        return padded[..., :h, :w], mind[..., :h, :w], level

    def describe_pixels(self, image: Tensor, mind: Tensor | None = None) -> Tensor:
        """Stride-1 unit-norm descriptors of ``image (B, 1, H, W)`` -> ``(B, pixel_dim, H, W)``.

        Raises:
            InputError: if the network has no pixel head (``pixel_dim`` 0: older checkpoints).
        """
        if not self.has_pixel_head:
            raise InputError("this matcher checkpoint has no stride-1 pixel head (pixel_dim 0)")
        return self.pixel_head(*self.pixel_head_inputs(image, mind))

    # --- matching -----------------------------------------------------------------------------

    def _attend(self, coarse0: Tensor, coarse1: Tensor) -> tuple[Tensor, Tensor]:
        """Gated self/cross attention over the coarse tokens; maps in, maps out."""
        tokens0 = coarse0.flatten(2).transpose(1, 2)  # (B, N0, C)
        tokens1 = coarse1.flatten(2).transpose(1, 2)  # (B, N1, C)
        tokens0, tokens1 = self.transformer(tokens0, tokens1)
        out0 = self.coarse_out(tokens0).transpose(1, 2).reshape(coarse0.shape)
        out1 = self.coarse_out(tokens1).transpose(1, 2).reshape(coarse1.shape)
        return out0, out1

    def match(
        self,
        image0: Tensor,
        image1: Tensor,
        mind0: Tensor | None = None,
        mind1: Tensor | None = None,
        max_displacement_px: float | None = None,
    ) -> MatchResult:
        """Dense matches from ``image0 (B, 1, H, W)`` to ``image1 (B, 1, H1, W1)`` (intensities ~[0, 1]).

        ``mind0``/``mind1`` (``(B, 4, H, W)``, :func:`~vmgga.models.mind2d.mind_ssc_2d`) are computed
        when not given. ``max_displacement_px`` overrides the config's coarse search limit for this
        call. See :class:`MatchResult` for the outputs' shapes and frames.
        """
        cfg, hw = self.config, (image0.shape[-2], image0.shape[-1])
        if max_displacement_px is not None:
            cfg = dataclasses.replace(cfg, max_displacement_px=max_displacement_px)
        image0, mind0 = self._prepare(image0, mind0)
        image1, mind1 = self._prepare(image1, mind1)
        pyramid0, coarse0, fine0 = self._descriptors(image0, mind0)
        pyramid1, coarse1, fine1 = self._descriptors(image1, mind1)
        coarse0, coarse1 = self._attend(coarse0, coarse1)
        return match_descriptors(
            (coarse0, fine0), (coarse1, fine1), cfg, self.confidence_head, hw, (pyramid0, pyramid1)
        )

    def forward(self, pair: Tensor) -> Tensor:
        """``pair (B, 2, H, W)`` -> ``(B, 3, H, W)`` = [flow_x_px, flow_y_px, confidence]."""
        result = self.match(pair[:, :1], pair[:, 1:2])
        return torch.cat([result.flow_px, result.confidence], dim=1)

    # --- checkpoints --------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides
    ) -> MatcherNet:
        """Rebuild the model saved by :func:`vmgga.models.checkpoint.save_checkpoint`.

        ``overrides`` replace config fields that do not change the weights (e.g. ``dinov2_path``,
        ``max_displacement_px``). The checkpoint's ``record`` is kept as ``model.record``.
        """
        payload = load_checkpoint_dict(path, map_location)
        model = cls(config_from_checkpoint(payload, **overrides))
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        missing = [k for k in missing if not k.startswith(FROZEN_PREFIX)]
        if missing or unexpected:
            raise InputError(f"{path} does not fit its config: missing {missing}, unexpected {unexpected}")
        model.record = dict(payload.get("record", {}))
        return model.to(map_location).eval()
