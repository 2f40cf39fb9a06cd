"""2.5D: a 2D matcher run slice-wise along the three axes of a volume, fused into a 3D field.

Axis conventions (:mod:`vmgga.frames`): a volume is ``(1, C, D, H, W)`` = ``(.., k, j, i)``. A slice
is an image whose rows are its first remaining axis and columns its second, and a 2D flow has
channels ``(x, y)`` = (column, row). Hence (:data:`IN_PLANE_COMPONENTS`):

==============  ============  ===========  ================
slicing axis    slice (rows,  flow x is    flow y is
(volume dim)    cols)
==============  ============  ===========  ================
0 (D, fixed k)  (j, i)        i            j
1 (H, fixed j)  (k, i)        i            k
2 (W, fixed i)  (k, j)        j            k
==============  ============  ===========  ================

Each displacement component is seen by two slicing axes; the fused component is their
confidence-weighted mean. Slices may be subsampled (every ``slice_step``-th, then linear
interpolation across slices) to save time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vmgga.frames import slice_axes_xy

#: Slicing axis (0, 1, 2 = D, H, W of the volume) -> indices in (i, j, k) of the flow's (x, y).
IN_PLANE_COMPONENTS: dict[int, tuple[int, int]] = {axis: slice_axes_xy(axis) for axis in (0, 1, 2)}

#: ``(image0 (N, 1, r, c), image1 (N, 1, r, c)) -> (flow_px (N, 2, r, c), confidence (N, 1, r, c))``.
SliceMatchFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: ``image (N, 1, r, c) -> features (N, C, r, c)``.
SliceFeatureFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SlicewiseConfig:
    """How the 2D matcher is applied to a volume."""

    axes: tuple[int, ...] = (0, 1, 2)  # slicing axes (0 = D/k, 1 = H/j, 2 = W/i)
    slice_step: int = 4  # match every n-th slice (plus the last), interpolate the others
    batch_slices: int = 32  # slices per network call


def slices_along(volume: Tensor, axis: int) -> Tensor:
    """``(1, C, D, H, W)`` -> slices ``(N, C, rows, cols)`` along ``axis`` (see module table), a copy."""
    return slice_view(volume, axis).contiguous()


def slice_view(volume: Tensor, axis: int) -> Tensor:
    """:func:`slices_along` as a view of ``volume`` (no copy): writing a slice writes the volume."""
    permutations = {0: (1, 0, 2, 3), 1: (2, 0, 1, 3), 2: (3, 0, 1, 2)}
    return volume[0].permute(*permutations[axis])


def volume_from_slices(slices: Tensor, axis: int) -> Tensor:
    """Inverse of :func:`slices_along`: ``(N, C, rows, cols)`` -> ``(1, C, D, H, W)``."""
    inverse = {0: (1, 0, 2, 3), 1: (1, 2, 0, 3), 2: (1, 2, 3, 0)}
    return slices.permute(*inverse[axis])[None].contiguous()


def sampled_slice_indices(count: int, step: int) -> list[int]:
    """Every ``step``-th index of ``range(count)``, always including the last one."""
    indices = list(range(0, count, max(1, step)))
    if indices[-1] != count - 1:
        indices.append(count - 1)
    return indices


def interpolate_slices(values: Tensor, indices: list[int], count: int) -> Tensor:
    """Linear interpolation of ``values (n, ...)`` known at sorted ``indices`` to all ``count`` slices."""
    if len(indices) == count:
        return values
    targets = np.arange(count, dtype=np.float64)
    upper = np.clip(np.searchsorted(indices, targets, side="left"), 1, len(indices) - 1)
    lower = upper - 1
    lo, hi = np.asarray(indices)[lower], np.asarray(indices)[upper]
    weight = torch.as_tensor((targets - lo) / (hi - lo), dtype=values.dtype, device=values.device)
    shape = (-1,) + (1,) * (values.ndim - 1)
    lower_t, upper_t = torch.as_tensor(lower), torch.as_tensor(upper)
    return torch.lerp(values.index_select(0, lower_t), values.index_select(0, upper_t), weight.view(shape))


def _batched(fn: Callable[..., Tensor | tuple[Tensor, ...]], inputs: list[Tensor], batch: int):
    """Apply ``fn`` to chunks of ``batch`` slices of every input; concatenate the outputs."""
    outputs = [fn(*(x[s : s + batch] for x in inputs)) for s in range(0, inputs[0].shape[0], batch)]
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))
    return torch.cat(outputs)


def match_along_axis(
    fixed: Tensor, moving: Tensor, axis: int, match_fn: SliceMatchFn, config: SlicewiseConfig
) -> tuple[Tensor, Tensor]:
    """In-plane flow ``(1, 2, D, H, W)`` (x, y of the slices) and confidence ``(1, 1, D, H, W)``."""
    fixed_slices, moving_slices = slices_along(fixed, axis), slices_along(moving, axis)
    indices = sampled_slice_indices(fixed_slices.shape[0], config.slice_step)
    chosen = torch.as_tensor(indices)
    flow, confidence = _batched(match_fn, [fixed_slices[chosen], moving_slices[chosen]], config.batch_slices)
    flow = interpolate_slices(flow, indices, fixed_slices.shape[0])
    confidence = interpolate_slices(confidence, indices, fixed_slices.shape[0])
    return volume_from_slices(flow, axis), volume_from_slices(confidence, axis)


def fuse_axis_flows(
    flows: dict[int, Tensor], confidences: dict[int, Tensor], eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """Confidence-weighted fusion of per-axis in-plane flows into a 3D displacement.

    Args:
        flows: slicing axis -> ``(1, 2, D, H, W)`` in-plane flow (x, y of that axis's slices), voxels.
        confidences: slicing axis -> ``(1, 1, D, H, W)`` in [0, 1].

    Returns:
        ``disp_ijk (1, 3, D, H, W)`` (a component no axis sees stays 0) and ``confidence
        (1, 1, D, H, W)``: the mean confidence of the axes.
    """
    reference = next(iter(flows.values()))
    shape = (1, 1, *reference.shape[2:])
    total = reference.new_zeros((1, 3, *reference.shape[2:]))
    weight = reference.new_zeros((1, 3, *reference.shape[2:]))
    for axis, flow in flows.items():
        conf = confidences[axis].clamp_min(eps)
        for channel, component in enumerate(IN_PLANE_COMPONENTS[axis]):
            total[:, component] += conf[:, 0] * flow[:, channel]
            weight[:, component] += conf[:, 0]
    disp_ijk = torch.where(weight > 0, total / weight.clamp_min(eps), torch.zeros_like(total))
    confidence = sum(confidences.values()) / len(confidences)
    return disp_ijk, confidence.reshape(shape)


def match_volume(fixed: Tensor, moving: Tensor, match_fn: SliceMatchFn, config: SlicewiseConfig):
    """2.5D matching of two ``(1, 1, D, H, W)`` volumes -> ``disp_ijk (1, 3, D, H, W)``, confidence."""
    flows, confidences = {}, {}
    for axis in config.axes:
        flows[axis], confidences[axis] = match_along_axis(fixed, moving, axis, match_fn, config)
    return fuse_axis_flows(flows, confidences)


def stack_features(
    volume: Tensor,
    feature_fn: SliceFeatureFn,
    config: SlicewiseConfig,
    upsample_fn: Callable[[Tensor, tuple[int, int]], Tensor] | None = None,
) -> Tensor:
    """Slice-wise 2D features stacked into a feature volume, averaged over ``config.axes``.

    ``feature_fn`` returns features at the slice resolution, or at a lower one that
    ``upsample_fn(features, (rows, cols))`` brings to it after the interpolation across slices
    (cheaper). ``(1, 1, D, H, W)`` -> ``(1, C, D, H, W)``.
    """
    total = None
    for axis in config.axes:
        slices = slices_along(volume, axis)
        indices = sampled_slice_indices(slices.shape[0], config.slice_step)
        features = _batched(
            feature_fn, [slices.index_select(0, torch.as_tensor(indices))], config.batch_slices
        )
        features = interpolate_slices(features, indices, slices.shape[0])
        if upsample_fn is not None:
            features = upsample_fn(features, (slices.shape[-2], slices.shape[-1]))
        stacked = volume_from_slices(features, axis)
        total = stacked if total is None else total.add_(stacked)
    return total.div_(len(config.axes))
