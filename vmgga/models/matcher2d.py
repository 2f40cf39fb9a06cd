"""2D matching API: the trained network, or training-free matching of MIND-SSC / DINOv2 features.

:class:`Matcher2D` is what ``vmgga match`` and the 2D benchmarks call. Backends:

* ``vmgga``: :class:`MatcherNet` from a checkpoint (``weights`` or the shipped file).
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
from vmgga.extras import import_optional
from vmgga.models import head
from vmgga.models.calibration import ConfidenceCalibration, load_calibration, setting_key
from vmgga.models.checkpoint import resolve_weights
from vmgga.models.config import EncoderBackend, MatcherConfig
from vmgga.models.dinov2 import dinov2_patch_features, load_dinov2
from vmgga.models.mind2d import mind_ssc_2d
from vmgga.models.network import MatcherNet, match_descriptors, pad_to_multiple
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


def affine_from_matches(
    flow_px: Tensor, confidence: Tensor, foreground: Tensor, step: int = 4, threshold_px: float = 3.0
) -> Tensor | None:
    """Robust (RANSAC) affine ``(2, 3)`` of one image's matches: ``A @ [x, y, 1] = x + flow``.

    Args:
        flow_px: ``(2, H, W)`` (x, y) flow of one image pair, pixels.
        confidence: ``(H, W)`` match confidence; only the more confident half of the samples is used.
        foreground: ``(H, W)`` bool: pixels worth matching (e.g. image0 above its background).
        step: sampling step of the grid of matches (px).
        threshold_px: RANSAC inlier distance.

    Returns:
        The affine as a float64 tensor, or None when fewer than 12 matches or RANSAC fails.
    """
    import numpy as np

    cv2 = import_optional("cv2", extra="match", feature="vmgga match --refine (robust affine)")
    h, w = confidence.shape
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    keep = foreground[ys, xs].cpu().numpy()
    conf = confidence[ys, xs].cpu().numpy()
    if keep.sum() >= 12:
        keep &= conf >= np.median(conf[keep])
    if keep.sum() < 12:
        return None
    flow = flow_px[:, ys, xs].cpu().numpy()
    src = np.stack([xs[keep], ys[keep]], axis=1).astype(np.float32)
    dst = src + np.stack([flow[0][keep], flow[1][keep]], axis=1).astype(np.float32)
    affine, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold_px)
    return None if affine is None else torch.from_numpy(affine)


def affine_positions(affine: Tensor, height: int, width: int) -> Tensor:
    """``(2, H, W)`` (x, y): where ``affine (2, 3)`` sends every pixel of an ``H x W`` grid."""
    return (
        torch.einsum("ij,jhw->ihw", affine[:, :2], head.grid_xy(height, width, affine)[0])
        + affine[:, 2, None, None]
    )


def sample_at(image: Tensor, positions_px: Tensor) -> Tensor:
    """Bilinear samples of ``image (C, H1, W1)`` at ``positions_px (2, H, W)`` (x, y; outside: 0)."""
    h1, w1 = image.shape[-2:]
    gx = 2 * positions_px[0] / max(w1 - 1, 1) - 1
    gy = 2 * positions_px[1] / max(h1 - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1)[None].to(image.dtype)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def gaussian_blur(field: Tensor, sigma_px: float) -> Tensor:
    """Separable Gaussian blur (sigma ``sigma_px``, radius 3 sigma) of ``field (B, C, H, W)``, each
    channel alone; borders: reflect padding. Same shape out."""
    radius = max(1, int(round(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    c = field.shape[1]
    out = F.pad(field, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def smooth_by_confidence(flow_px: Tensor, confidence: Tensor, sigma_px: float) -> Tensor:
    """Normalised convolution: ``G * (c flow) / G * c`` with a Gaussian ``G`` of ``sigma_px``.

    ``flow_px (B, 2, H, W)``, ``confidence (B, 1, H, W)`` -> ``(B, 2, H, W)``. Averages out the
    per-pixel noise of the matches, confident ones counting more (borders: reflect padding).
    """
    weight = confidence.clamp_min(1e-3)
    return gaussian_blur(flow_px * weight, sigma_px) / gaussian_blur(weight, sigma_px)


def foreground_local_mean(confidence: Tensor, foreground: Tensor, sigma_px: float) -> Tensor:
    """Gaussian local mean of ``confidence (B, 1, H, W)`` over the ``foreground (B, 1, H, W)`` only:
    ``G * (c m) / G * m`` with ``m`` the foreground (1) or background (1e-3) weight. Same shape out.

    A smoothed match is as sure as its neighbourhood *in the object*: the background (air, zero
    padding) has no matches to trust, and counting its low confidence would make every match near
    the object's outline (the scalp of a whole head) look unsure. Far from any foreground the
    weights are equal, i.e. the plain local mean.
    """
    weight = torch.where(foreground, 1.0, 1e-3).to(confidence.dtype)
    return (gaussian_blur(confidence * weight, sigma_px) / gaussian_blur(weight, sigma_px)).clamp(0.0, 1.0)


def image_gradient(image: Tensor, sigma_px: float = 1.0) -> Tensor:
    """``(B, 2, H, W)`` (d/dx, d/dy) of ``image (B, 1, H, W)`` after a Gaussian blur of ``sigma_px``
    (central differences, one-sided at the borders)."""
    blurred = gaussian_blur(image, sigma_px)
    padded = F.pad(blurred, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    dy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return torch.cat([dx, dy], dim=1)


def gradient_agreement(image0: Tensor, image1: Tensor, flow_px: Tensor, sigma_px: float) -> Tensor:
    """How well image0 and image1 agree after the match: ``(B, 1, H, W)`` in [0, 1].

    ``W = image1`` sampled at ``p + flow_px(p)`` (:func:`sample_at`); with the gradients ``g0`` of
    image0 and ``g1`` of ``W`` (:func:`image_gradient`), the agreement is
    ``G * (g0 . g1)^2 / G * (|g0|^2 |g1|^2)`` (Gaussian ``G`` of ``sigma_px``): 1 where the edges of
    the two images run the same way in the whole neighbourhood (whatever their contrasts: the sign
    and size of each edge do not count), 0 on flat regions. Images ``(B, 1, H, W)``, flow
    ``(B, 2, H, W)`` in pixels (x, y). Used by the calibration of the confidence.
    """
    grid = head.grid_xy(*image0.shape[-2:], flow_px)[0]  # (2, H, W) pixel positions (x, y)
    warped = torch.stack([sample_at(image1[b], grid + flow_px[b]) for b in range(image0.shape[0])])
    g0, g1 = image_gradient(image0.to(warped.dtype)), image_gradient(warped)
    dot = (g0 * g1).sum(dim=1, keepdim=True)
    norms = (g0 * g0).sum(dim=1, keepdim=True) * (g1 * g1).sum(dim=1, keepdim=True)
    agreement = gaussian_blur(dot * dot, sigma_px) / (gaussian_blur(norms, sigma_px) + 1e-12)
    return agreement.clamp(0.0, 1.0)


def pair_confidence(confidence: Tensor, image0: Tensor, foreground_level: float = 0.05) -> Tensor:
    """``(B,)`` mean of ``confidence (B, 1, H, W)`` over image0's foreground (intensity above
    ``foreground_level``; all pixels when there is none): how sure the matcher is of the pair."""
    foreground = (image0 > foreground_level).to(confidence.dtype)
    empty = foreground.flatten(1).sum(dim=1) == 0
    foreground[empty] = 1.0
    return (confidence * foreground).flatten(1).sum(dim=1) / foreground.flatten(1).sum(dim=1)


def calibrated_confidence(
    calibration: ConfidenceCalibration, image0: Tensor, image1: Tensor, result: MatchResult
) -> Tensor:
    """``result.confidence`` mapped by ``calibration``, with the agreement and pair confidence of the
    match when the map is a table (:class:`ConfidenceCalibration`)."""
    if not calibration.needs_agreement:
        return calibration.apply(result.confidence)
    agreement = gradient_agreement(image0, image1, result.flow_px, calibration.agreement_sigma_px)
    pair = pair_confidence(result.confidence, image0)
    return calibration.apply(result.confidence, agreement.to(result.confidence.dtype), pair)


def refine_with_affine(
    match: Callable[[Tensor, Tensor, float | None], MatchResult],
    image0: Tensor,
    image1: Tensor,
    first: MatchResult,
    search_px: float,
    foreground_level: float = 0.05,
    smooth_px: float | None = None,
) -> MatchResult:
    """Second, local pass: undo the robust affine of the first matches, match again, compose.

    Image1 is resampled at ``A(p)`` (``A``: :func:`affine_from_matches` of ``first``), matched
    again with the coarse search limited to ``search_px``, and the flow becomes ``A(p + g(p)) - p``
    for the second flow ``g``. A pair whose affine cannot be fitted keeps ``first``. Images are
    ``(B, 1, H, W)``; the result is a :class:`MatchResult` of image0 to the *original* image1
    (flow, confidence; the coarse/fine fields are the second pass's, in the resampled frame).
    ``smooth_px``: the second flow is first smoothed (:func:`smooth_by_confidence`, Gaussian sigma),
    and its confidence becomes the Gaussian local mean (same sigma) of the second pass's confidence
    over image0's foreground (:func:`foreground_local_mean`, intensity above ``foreground_level``):
    a smoothed match is an average over that neighbourhood, so it is as sure as the neighbourhood
    (on real pairs this is what separates right from wrong smoothed matches, see
    ``benchmarks/matcher_calibration.py``).
    """
    h, w = image0.shape[-2:]
    flows, confidences, warped, affines = [], [], [], []
    for b in range(image0.shape[0]):
        affine = affine_from_matches(
            first.flow_px[b], first.confidence[b, 0], image0[b, 0] > foreground_level
        )
        affines.append(affine)
        positions = affine_positions(affine, h, w) if affine is not None else None
        warped.append(
            sample_at(image1[b], positions.to(image1.device)) if positions is not None else image1[b]
        )
    second = match(image0, torch.stack(warped), search_px)
    if smooth_px:
        smoothed = smooth_by_confidence(second.flow_px, second.confidence, smooth_px)
        local = foreground_local_mean(second.confidence, image0 > foreground_level, smooth_px)
        second = dataclasses.replace(second, flow_px=smoothed, confidence=local)
    for b, affine in enumerate(affines):
        if affine is None:
            flows.append(first.flow_px[b])
            confidences.append(first.confidence[b])
            continue
        grid = head.grid_xy(h, w, affine)[0]
        target = grid + second.flow_px[b].cpu().to(affine.dtype)
        moved = torch.einsum("ij,jhw->ihw", affine[:, :2], target) + affine[:, 2, None, None]
        flows.append((moved - grid).to(first.flow_px.dtype).to(first.flow_px.device))
        confidences.append(second.confidence[b])
    return dataclasses.replace(second, flow_px=torch.stack(flows), confidence=torch.stack(confidences))


class Matcher2D:
    """A 2D matcher chosen by backend name; call it with two ``(B, 1, H, W)`` images in ~[0, 1].

    ``refine_px``: when set, a second local pass (:func:`refine_with_affine`) with the coarse search
    limited to this many pixels, after a robust affine of the first pass's matches; ``smooth_px``
    smooths that second flow by confidence (Gaussian sigma, pixels).

    ``calibrate``: map the final confidence through the calibration fitted on real pairs for these
    weights and this setting (:mod:`vmgga.models.calibration`, a file beside the weights), when
    there is one; ``self.calibration`` is the map used (None: the raw confidence is returned).
    """

    def __init__(
        self,
        backend: str = "vmgga",
        weights: str | Path | None = None,
        dinov2_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        max_displacement_px: float | None = None,
        refine_px: float | None = None,
        smooth_px: float | None = None,
        calibrate: bool = True,
    ) -> None:
        self.refine_px, self.smooth_px = refine_px, smooth_px
        self.backend = look_up_option(backend, EncoderBackend, "backend")
        self.device, self.max_displacement_px = torch.device(device), max_displacement_px
        self.network: MatcherNet | None = None
        self.weights: Path | None = None
        self.config = MatcherConfig(max_displacement_px=max_displacement_px)
        if self.backend == "vmgga" or (self.backend == "dinov2" and weights is not None):
            self.weights = resolve_weights(weights)
            overrides = {"dinov2_path": str(dinov2_path)} if dinov2_path is not None else {}
            self.network = MatcherNet.from_checkpoint(self.weights, self.device, **overrides)
            self.config = dataclasses.replace(self.network.config, max_displacement_px=max_displacement_px)
        self.calibration: ConfidenceCalibration | None = None
        if calibrate and self.weights is not None:
            setting = setting_key(max_displacement_px, refine_px, smooth_px)
            self.calibration = load_calibration(self.weights, setting)
        if self.network is None and self.backend == "dinov2":
            self.dinov2 = load_dinov2(dinov2_path, self.device)
            self.config = dataclasses.replace(self.config, backend="dinov2", dinov2_path=str(dinov2_path))

    def describe(self) -> dict:
        """JSON-friendly description: backend, weights file and its training record."""
        record = getattr(self.network, "record", None) if self.network is not None else None
        return {
            "backend": self.backend,
            "weights": str(self.weights) if self.weights else None,
            "max_displacement_px": self.max_displacement_px,
            "refine_px": self.refine_px,
            "smooth_px": self.smooth_px,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "record": record,
        }

    @torch.no_grad()
    def __call__(self, image0: Tensor, image1: Tensor) -> MatchResult:
        image0, image1 = image0.to(self.device, torch.float32), image1.to(self.device, torch.float32)
        result = self._match(image0, image1, self.max_displacement_px)
        if self.refine_px is not None:
            result = refine_with_affine(
                self._match, image0, image1, result, self.refine_px, smooth_px=self.smooth_px
            )
        if self.calibration is None:
            return result
        confidence = calibrated_confidence(self.calibration, image0, image1, result)
        return dataclasses.replace(result, confidence=confidence)

    def _match(self, image0: Tensor, image1: Tensor, search_px: float | None) -> MatchResult:
        """One matching pass with the coarse search limited to ``search_px`` (None: global)."""
        if self.network is not None:
            return self.network.match(image0, image1, max_displacement_px=search_px)
        config = dataclasses.replace(self.config, max_displacement_px=search_px)
        if self.backend == "mind":
            return training_free_match(image0, image1, lambda im: mind_maps(im, config), config)
        return training_free_match(image0, image1, lambda im: dinov2_maps(self.dinov2, im, config), config)
