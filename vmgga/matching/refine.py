"""Refining dense 3D matches: confidence-weighted smoothing and a second pass on the warped volume.

The 3D counterpart of the 2D matcher's refinement (:func:`vmgga.models.matcher2d.refine_with_affine`):
the first field ``u`` (smoothed) warps the moving volume, ``moving_u(y) = moving(y + u(y))``; a second
match ``g`` of fixed against ``moving_u``, with a short search, then says that fixed voxel ``x`` sits
at ``y = x + g(x)`` in ``moving_u``, i.e. at ``y + u(y)`` in the moving volume. The refined field is
that composition, ``g(x) + u(x + g(x))`` (:func:`vmgga.field.warp.compose`). All fields are
``(1, 3, D, H, W)`` in working voxels (i, j, k), confidences ``(1, 1, D, H, W)`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vmgga.errors import ConfigError
from vmgga.field import resize
from vmgga.field.warp import compose, warp
from vmgga.matching.base import DenseMatch

#: ``(fixed (1, 1, D, H, W), moving (1, 1, D, H, W)) -> DenseMatch`` of one matching pass.
VolumeMatchFn = Callable[[Tensor, Tensor], DenseMatch]

_MIN_WEIGHT = 1e-3


def gaussian_kernel_1d(sigma_vox: float, dtype=torch.float32, device=None) -> Tensor:
    """Normalised Gaussian taps ``(2 r + 1,)``, radius ``r = max(1, round(3 sigma))`` voxels."""
    if sigma_vox <= 0:
        raise ConfigError(f"sigma_vox must be positive; got {sigma_vox}")
    radius = max(1, int(round(3 * sigma_vox)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma_vox) ** 2)
    return kernel / kernel.sum()


def gaussian_blur_3d(volume: Tensor, sigma_vox: float) -> Tensor:
    """Separable Gaussian blur of ``(1, C, D, H, W)``, each channel alone; borders replicated."""
    kernel = gaussian_kernel_1d(sigma_vox, volume.dtype, volume.device)
    radius, channels = kernel.numel() // 2, volume.shape[1]
    out = volume
    for dim in range(3):  # D, H, W
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = kernel.numel()
        pad = [0] * 6
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = radius  # F.pad lists the last dim first
        weights = kernel.view(shape).expand(channels, 1, *shape[2:])
        out = F.conv3d(F.pad(out, pad, mode="replicate"), weights, groups=channels)
    return out


def pooled_gaussian_blur_3d(volume: Tensor, sigma_vox: float, factor: int) -> Tensor:
    """:func:`gaussian_blur_3d` computed ``factor`` times coarser: block means of ``factor^3`` voxels
    (borders replicated up to a multiple of ``factor``), blurred with ``sigma_vox / factor``, and
    brought back by block-centred trilinear upsampling. ``(1, C, D, H, W)`` -> the same shape; for a
    sigma of several ``factor`` the difference from the exact blur is small (about ``factor / 2``
    voxels of extra blur) at ``factor^3`` times less work."""
    if factor <= 1:
        return gaussian_blur_3d(volume, sigma_vox)
    shape = tuple(volume.shape[2:])
    coarse = resize.pool(resize.pad_to(volume, resize.padded_shape(shape, factor)), factor)
    fine = resize.upsample_scalar(gaussian_blur_3d(coarse, sigma_vox / factor), factor)
    return resize.crop_to(fine, shape).contiguous()


def match_coarser(fixed: Tensor, moving: Tensor, match_pass: VolumeMatchFn, factor: int) -> DenseMatch:
    """``match_pass`` run on the two volumes block-averaged by ``factor`` (borders replicated up to a
    multiple of it); its field (coarse voxels) comes back to the input grid in input voxels
    (block-centred trilinear, times ``factor``), its confidence likewise. ``factor`` 1: unchanged."""
    if factor <= 1:
        return match_pass(fixed, moving)
    shape = tuple(fixed.shape[2:])
    padded = resize.padded_shape(shape, factor)
    coarse = match_pass(*(resize.pool(resize.pad_to(v, padded), factor) for v in (fixed, moving)))
    disp_ijk = resize.crop_to(resize.upsample_disp(coarse.disp_ijk, factor), shape)
    confidence = resize.crop_to(resize.upsample_scalar(coarse.confidence, factor), shape)
    return DenseMatch(disp_ijk=disp_ijk.contiguous(), confidence=confidence.clamp(0.0, 1.0).contiguous())


def smoothing_factor(sigma_vox: float) -> int:
    """Coarsening of :func:`smooth_match`'s blur: one level per 3 voxels of sigma (sigma 6 -> 2)."""
    return max(1, int(sigma_vox // 3))


def smooth_match(match: DenseMatch, sigma_vox: float) -> DenseMatch:
    """Normalised convolution of the field, ``G * (c u) / G * c``, and the local mean ``G * c`` of
    the confidence (a smoothed match is as sure as its neighbourhood); ``G``: Gaussian of
    ``sigma_vox``, computed coarser for large sigmas (:func:`pooled_gaussian_blur_3d`)."""
    factor = smoothing_factor(sigma_vox)
    weight = match.confidence.clamp_min(_MIN_WEIGHT)
    stacked = torch.cat([match.disp_ijk * weight, weight, match.confidence], dim=1)
    blurred = pooled_gaussian_blur_3d(stacked, sigma_vox, factor)
    disp_ijk = blurred[:, :3] / blurred[:, 3:4].clamp_min(_MIN_WEIGHT * 0.5)
    confidence = blurred[:, 4:5].clamp(0.0, 1.0)
    return DenseMatch(disp_ijk=disp_ijk.contiguous(), confidence=confidence.contiguous())


def refine_match(
    fixed: Tensor, moving: Tensor, start: DenseMatch, match_pass: VolumeMatchFn, sigma_vox: float = 0.0
) -> DenseMatch:
    """One more pass (see module docstring): ``moving`` warped by ``start``, matched again, composed.

    Args:
        fixed, moving: ``(1, 1, D, H, W)`` volumes on one grid.
        start: the field so far (fixed voxel ``x`` -> moving voxel ``x + start.disp_ijk(x)``).
        match_pass: the matcher of the second pass (typically with a short search).
        sigma_vox: when positive, the second pass is smoothed by :func:`smooth_match` first.

    Returns:
        The composed :class:`DenseMatch` (fixed -> the original ``moving``), with the second pass's
        confidence.
    """
    second = match_pass(fixed, warp(moving, start.disp_ijk))
    if sigma_vox > 0:
        second = smooth_match(second, sigma_vox)
    return DenseMatch(disp_ijk=compose(second.disp_ijk, start.disp_ijk), confidence=second.confidence)


def multi_pass_match(
    fixed: Tensor,
    moving: Tensor,
    first_pass: VolumeMatchFn,
    refine_pass: VolumeMatchFn,
    refine_passes: int,
    sigma_vox: float = 0.0,
) -> DenseMatch:
    """``first_pass``, smoothed when ``sigma_vox > 0``, then ``refine_passes`` times :func:`refine_match`."""
    if refine_passes < 0 or sigma_vox < 0:
        raise ConfigError(f"refine_passes and sigma_vox must be >= 0; got {refine_passes} and {sigma_vox}")
    match = first_pass(fixed, moving)
    if sigma_vox > 0:
        match = smooth_match(match, sigma_vox)
    for _ in range(refine_passes):
        match = refine_match(fixed, moving, match, refine_pass, sigma_vox)
    return match
