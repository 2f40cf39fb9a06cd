"""Visual encoders: one interface, three backends, a feature pyramid at ``pyramid_strides``.

Each encoder maps ``image (B, 1, H, W)`` (intensities ~[0, 1], H and W multiples of the largest
stride) plus its 2D MIND-SSC ``mind (B, 4, H, W)`` to a list of maps ``(B, C_l, H / s_l, W / s_l)``,
one per stride ``s_l``, and exposes ``out_channels``.

* ``vmgga``: the project's compact CNN, instance-normalised throughout (modality robustness).
* ``dinov2``: a frozen DINOv2 from a local directory; its patch map is resized to each stride and
  projected (1x1 convolutions, trained).
* ``mind``: no visual model: average-pooled [normalised intensity, MIND] (the ``use_visual_guidance``
  ablation and the training-free baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.errors import look_up_option
from vmgga.models.config import EncoderBackend, MatcherConfig
from vmgga.models.dinov2 import dinov2_patch_features, load_dinov2
from vmgga.models.mind2d import MIND2D_CHANNELS


def normalise_image(image: Tensor) -> Tensor:
    """Zero mean, unit standard deviation per image; ``(B, 1, H, W)`` -> same shape."""
    mean = image.mean(dim=(2, 3), keepdim=True)
    std = image.std(dim=(2, 3), keepdim=True)
    return (image - mean) / (std + 1e-6)


class ConvBlock(nn.Sequential):
    """3x3 convolution, instance norm (affine), GELU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.GELU(),
        )


class ResidualStage(nn.Module):
    """A strided :class:`ConvBlock` followed by a residual pair of :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.down = ConvBlock(in_channels, out_channels, stride)
        self.body = nn.Sequential(*(ConvBlock(out_channels, out_channels) for _ in range(2)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return x + self.body(x)


class CnnEncoder(nn.Module):
    """The ``vmgga`` backend: one residual stage per pyramid level."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        self.out_channels = tuple(config.encoder_channels)
        ratios = _stride_ratios(config.pyramid_strides)
        widths = (1, *self.out_channels)
        self.stages = nn.ModuleList(
            [ResidualStage(widths[i], widths[i + 1], ratio) for i, ratio in enumerate(ratios)]
        )

    def forward(self, image: Tensor, mind: Tensor | None = None) -> list[Tensor]:
        x, pyramid = normalise_image(image), []
        for stage in self.stages:
            x = stage(x)
            pyramid.append(x)
        return pyramid

    def first_level(self, image: Tensor, mind: Tensor | None = None) -> Tensor:
        """``forward(image)[0]`` without the coarser stages (what the pixel head reads)."""
        return self.stages[0](normalise_image(image))


class MindEncoder(nn.Module):
    """The ``mind`` backend: [normalised intensity, MIND] average-pooled to every stride (no weights)."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        self.strides = tuple(config.pyramid_strides)
        self.out_channels = (1 + MIND2D_CHANNELS,) * len(self.strides)

    def forward(self, image: Tensor, mind: Tensor | None = None) -> list[Tensor]:
        if mind is None:
            raise ValueError("the mind encoder needs the MIND descriptor of the image")
        x = torch.cat([normalise_image(image), mind], dim=1)
        return [F.avg_pool2d(x, s) if s > 1 else x for s in self.strides]

    def first_level(self, image: Tensor, mind: Tensor | None = None) -> Tensor:
        """``forward(image, mind)[0]``."""
        return self(image, mind)[0]


class Dinov2Encoder(nn.Module):
    """The ``dinov2`` backend: frozen DINOv2 patch map, resized and projected to each level."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        self.backbone = load_dinov2(config.dinov2_path)
        self.scale, self.strides = config.dinov2_input_scale, tuple(config.pyramid_strides)
        self.out_channels = tuple(config.encoder_channels)
        hidden = int(self.backbone.config.hidden_size)
        self.projections = nn.ModuleList([nn.Conv2d(hidden, c, 1) for c in self.out_channels])

    def forward(self, image: Tensor, mind: Tensor | None = None) -> list[Tensor]:
        patches = dinov2_patch_features(self.backbone, image, self.scale)  # (B, hidden, Hp, Wp)
        h, w = image.shape[-2:]
        levels = []
        for stride, projection in zip(self.strides, self.projections, strict=True):
            size = (h // stride, w // stride)
            resized = F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
            levels.append(projection(resized))
        return levels

    def first_level(self, image: Tensor, mind: Tensor | None = None) -> Tensor:
        """``forward(image, mind)[0]``."""
        return self(image, mind)[0]


def _stride_ratios(strides: tuple[int, ...]) -> list[int]:
    """Per-stage downsampling factors: (2, 4, 8) -> [2, 2, 2]."""
    previous = (1, *strides[:-1])
    ratios = [s // p for s, p in zip(strides, previous, strict=True)]
    if any(r * p != s for r, p, s in zip(ratios, previous, strides, strict=True)):
        raise ValueError(f"each pyramid stride must be a multiple of the previous one: {strides}")
    return ratios


def build_encoder(config: MatcherConfig) -> nn.Module:
    """The encoder of ``config.backend`` (``mind`` whenever ``use_visual_guidance`` is False)."""
    if not config.use_visual_guidance:
        return MindEncoder(config)
    backend = look_up_option(config.backend, EncoderBackend, "backend")
    classes = {"vmgga": CnnEncoder, "dinov2": Dinov2Encoder, "mind": MindEncoder}
    return classes[backend](config)
