"""2D matching API: the trained network, or training-free matching of MIND-SSC / DINOv2 features.

:class:`Matcher2D` is what ``vmgga match`` and the 2D benchmarks call. Backends:

* ``vmgga``: :class:`VMGGANet` from a checkpoint (``weights`` or the shipped file).
* ``mind``: no weights: 2D MIND-SSC descriptors (space-to-depth at the coarse and fine strides)
  through the same dual-softmax + fine-window head (the training-free baseline).
* ``dinov2``: a checkpoint trained with ``backend="dinov2"`` if ``weights`` is given, otherwise
  training-free matching of the DINOv2 patch features of a local model directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.errors import look_up_option
from vmgga.models import head
from vmgga.models.checkpoint import resolve_weights
from vmgga.models.config import EncoderBackend, MatcherConfig
from vmgga.models.dinov2 import dinov2_patch_features, load_dinov2
from vmgga.models.mind2d import mind_ssc_2d
from vmgga.models.network import VMGGANet, match_descriptors, pad_to_multiple
from vmgga.models.types import MatchResult

#: ``padded image (B, 1, H, W)`` -> (coarse ``(B, C, H/c, W/c)``, fine ``(B, C', H/f, W/f)``).
DescribeFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def _centred(features: Tensor) -> Tensor:
    """Remove each location's mean over channels (makes cosine similarity discriminative)."""
    return features - features.mean(dim=1, keepdim=True)


def _neighbourhood(features: Tensor) -> Tensor:
    """Stack each cell's 3x3 neighbourhood: ``(B, C, h, w)`` -> ``(B, 9 C, h, w)`` (edges replicated)."""
    padded = F.pad(features, (1, 1, 1, 1), mode="replicate")
    b, c, h, w = features.shape
    return F.unfold(padded, kernel_size=3).reshape(b, 9 * c, h, w)


def mind_maps(image: Tensor, config: MatcherConfig) -> tuple[Tensor, Tensor]:
    """Training-free coarse/fine descriptors: 2D MIND-SSC averaged over cells of each stride, with
    the 3x3 neighbouring cells stacked (a ``3 s`` pixel patch layout per cell)."""
    mind = mind_ssc_2d(image, config.mind_radius, config.mind_dilation)  # (B, 4, H, W)
    coarse = _neighbourhood(F.avg_pool2d(mind, config.coarse_stride))
    fine = _neighbourhood(F.avg_pool2d(mind, config.fine_stride))
    return _centred(coarse), _centred(fine)


def dinov2_maps(model, image: Tensor, config: MatcherConfig) -> tuple[Tensor, Tensor]:
    """Training-free coarse/fine descriptors: DINOv2 patch features resized to each stride."""
    patches = dinov2_patch_features(model, image, config.dinov2_input_scale)
    h, w = image.shape[-2:]
    maps = []
    for stride in (config.coarse_stride, config.fine_stride):
        size = (h // stride, w // stride)
        maps.append(_centred(F.interpolate(patches, size=size, mode="bilinear", align_corners=False)))
    return maps[0], maps[1]


def training_free_match(
    image0: Tensor, image1: Tensor, describe: DescribeFn, config: MatcherConfig
) -> MatchResult:
    """The network's matching head on hand-made descriptors; confidence from the untrained
    calibration head's initial rule (mean of the coarse and fine logits)."""
    hw = (image0.shape[-2], image0.shape[-1])
    image0, image1 = (pad_to_multiple(im, config.coarse_stride) for im in (image0, image1))
    (coarse0, fine0), (coarse1, fine1) = describe(image0), describe(image1)
    confidence_head = head.ConfidenceHead(1).to(image0.device)
    return match_descriptors(
        (coarse0, fine0), (coarse1, fine1), config, confidence_head, hw, ([fine0, coarse0], [fine1, coarse1])
    )


class Matcher2D:
    """A 2D matcher chosen by backend name; call it with two ``(B, 1, H, W)`` images in ~[0, 1]."""

    def __init__(
        self,
        backend: str = "vmgga",
        weights: str | Path | None = None,
        dinov2_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        max_displacement_px: float | None = None,
    ) -> None:
        self.backend = look_up_option(backend, EncoderBackend, "backend")
        self.device, self.max_displacement_px = torch.device(device), max_displacement_px
        self.network: VMGGANet | None = None
        self.weights: Path | None = None
        self.config = MatcherConfig(max_displacement_px=max_displacement_px)
        if self.backend == "vmgga" or (self.backend == "dinov2" and weights is not None):
            self.weights = resolve_weights(weights)
            overrides = {"dinov2_path": str(dinov2_path)} if dinov2_path is not None else {}
            self.network = VMGGANet.from_checkpoint(self.weights, self.device, **overrides)
            self.config = dataclasses.replace(self.network.config, max_displacement_px=max_displacement_px)
        elif self.backend == "dinov2":
            self.dinov2 = load_dinov2(dinov2_path, self.device)
            self.config = dataclasses.replace(self.config, backend="dinov2", dinov2_path=str(dinov2_path))

    def describe(self) -> dict:
        """JSON-friendly description: backend, weights file and its training record."""
        record = getattr(self.network, "record", None) if self.network is not None else None
        return {
            "backend": self.backend,
            "weights": str(self.weights) if self.weights else None,
            "record": record,
        }

    @torch.no_grad()
    def __call__(self, image0: Tensor, image1: Tensor) -> MatchResult:
        image0, image1 = image0.to(self.device, torch.float32), image1.to(self.device, torch.float32)
        if self.network is not None:
            return self.network.match(image0, image1, max_displacement_px=self.max_displacement_px)
        if self.backend == "mind":
            return training_free_match(image0, image1, lambda im: mind_maps(im, self.config), self.config)
        return training_free_match(
            image0, image1, lambda im: dinov2_maps(self.dinov2, im, self.config), self.config
        )
