"""Hyper-parameters of the matcher network (:class:`MatcherConfig`).

The config is saved inside every checkpoint (``dataclasses.asdict``) so that a checkpoint rebuilds
its own model; :func:`matcher_config_from_dict` reads it back (JSON lists become tuples).
Ablations are switches here, never code edits: ``use_visual_guidance``, ``use_gating``,
``use_mind_fusion`` and ``matching``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from vmgga.errors import ConfigError, look_up_option


class EncoderBackend(str, Enum):
    """Which visual model produces the feature pyramid."""

    CNN = "vmgga"  # the project's own compact CNN (trained by vmgga.training)
    DINOV2 = "dinov2"  # transformers Dinov2Model from a local directory (frozen) + trained projections
    MIND = "mind"  # 2D MIND-SSC + raw intensity only (no visual model)


class MatchingMode(str, Enum):
    """Dense (detector-free) matching or sparse detect-then-match (ablation)."""

    DENSE = "dense"  # coarse dual-softmax over all tokens + fine window refinement
    SPARSE = "sparse"  # OpenCV SIFT/ORB keypoints described by the dense descriptors, mutual NN


class MindEncoding(str, Enum):
    """How the MIND descriptor reaches the per-location gate (``use_mind_fusion``)."""

    POOLED = "pooled"  # MIND averaged over each cell (4 channels), 1x1 projection (first shipped runs)
    PATCH = "patch"  # MIND cell layout kept (space-to-depth) + 3x3 projection: a patch descriptor


class AttentionKind(str, Enum):
    """Attention over coarse tokens."""

    AUTO = "auto"  # full softmax attention up to max_full_attention_tokens, linear attention above
    FULL = "full"  # softmax attention (N x N)
    LINEAR = "linear"  # kernelised linear attention (elu + 1), O(N)


@dataclass(frozen=True)
class MatcherConfig:
    """Architecture and matching hyper-parameters of :class:`vmgga.models.network.MatcherNet`."""

    backend: str = "vmgga"  # vmgga | dinov2 | mind: the visual encoder (see EncoderBackend)
    dinov2_path: str | None = None  # local directory of a Dinov2Model (backend=dinov2)
    dinov2_input_scale: float = 1.75  # image upscaling before DINOv2 (14/8: patch grid ~ stride 8)
    encoder_channels: tuple[int, ...] = (16, 32, 64)  # channels of the pyramid levels
    pyramid_strides: tuple[int, ...] = (2, 4, 8)  # stride of each pyramid level (px)
    coarse_dim: int = 64  # width of the coarse tokens (attention and coarse matching)
    fine_dim: int = 32  # width of the fine dense descriptors
    # width of the stride-1 pixel descriptors (vmgga.models.pixel_head) for the 3D instance
    # optimisation; 0 = no such head (checkpoints older than the field have none)
    pixel_dim: int = 0
    pixel_width: int = 16  # hidden width of that head's convolutions
    coarse_stride: int = 8  # stride of the coarse tokens (px); must be one of pyramid_strides
    fine_stride: int = 2  # stride of the fine descriptors (px); must be one of pyramid_strides
    attention_layers: int = 2  # number of (self, cross) attention pairs
    attention_heads: int = 4  # heads per attention layer
    attention: str = "auto"  # auto | full | linear (see AttentionKind)
    max_full_attention_tokens: int = 2048  # auto: full attention up to this many tokens per image
    use_gating: bool = True  # x + sigmoid(W[x, msg]) * msg; False: plain residual x + msg
    use_visual_guidance: bool = True  # False: pyramid from MIND + raw intensity only (ablation)
    use_mind_fusion: bool = True  # per-location gated fusion of visual features with 2D MIND-SSC
    mind_encoding: str = "pooled"  # pooled | patch: the MIND branch of the gate (see MindEncoding)
    mind_radius: int = 1  # 2D MIND-SSC patch radius (px)
    mind_dilation: int = 2  # 2D MIND-SSC neighbour distance (px)
    matching: str = "dense"  # dense | sparse (see MatchingMode)
    coarse_temperature: float = 0.1  # dual-softmax temperature on cosine similarities
    max_displacement_px: float | None = None  # coarse matches farther than this are excluded
    fine_window: int = 7  # side of the fine correlation window (fine cells, odd)
    fine_temperature: float = 0.05  # softmax temperature of the fine correlation (cosine)
    confidence_hidden: int = 16  # hidden width of the confidence calibration head
    sparse_detector: str = "sift"  # sift | orb (matching=sparse)
    sparse_max_keypoints: int = 1024  # keypoints per image (matching=sparse)

    def __post_init__(self) -> None:
        look_up_option(self.backend, EncoderBackend, "backend")
        look_up_option(self.matching, MatchingMode, "matching")
        look_up_option(self.attention, AttentionKind, "attention")
        look_up_option(self.mind_encoding, MindEncoding, "mind_encoding")
        _check_strides(self)
        if self.fine_window < 3 or self.fine_window % 2 == 0:
            raise ConfigError(f"fine_window must be odd and >= 3, got {self.fine_window}")
        if self.pixel_dim < 0 or self.pixel_width < 1:
            raise ConfigError(
                f"pixel_dim must be >= 0 and pixel_width >= 1, got {self.pixel_dim}, {self.pixel_width}"
            )
        if self.coarse_dim % self.attention_heads:
            raise ConfigError(
                f"coarse_dim={self.coarse_dim} must be divisible by attention_heads={self.attention_heads}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in checkpoints)."""
        return dataclasses.asdict(self)


def _check_strides(config: MatcherConfig) -> None:
    """Validate the pyramid: strides increasing, one channel count each, coarse/fine among them."""
    strides = config.pyramid_strides
    if len(strides) != len(config.encoder_channels):
        raise ConfigError(
            f"pyramid_strides {strides} and encoder_channels {config.encoder_channels} differ in length"
        )
    if list(strides) != sorted(set(strides)) or strides[0] < 1:
        raise ConfigError(f"pyramid_strides must be increasing and positive, got {strides}")
    for name in ("coarse_stride", "fine_stride"):
        if getattr(config, name) not in strides:
            raise ConfigError(f"{name}={getattr(config, name)} must be one of pyramid_strides {strides}")
    if config.fine_stride >= config.coarse_stride:
        raise ConfigError(f"fine_stride={config.fine_stride} must be < coarse_stride={config.coarse_stride}")


def matcher_config_from_dict(values: dict[str, Any]) -> MatcherConfig:
    """Rebuild a :class:`MatcherConfig` from :meth:`MatcherConfig.to_dict` output (or JSON).

    Raises:
        ConfigError: for a field the config does not have.
    """
    names = {f.name for f in dataclasses.fields(MatcherConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown MatcherConfig fields {unknown}; expected some of {sorted(names)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    fixed.setdefault("mind_encoding", MindEncoding.POOLED.value)  # checkpoints older than the field
    return MatcherConfig(**fixed)
