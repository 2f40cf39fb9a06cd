"""Peak memory estimate of the dense stage, so the caller can coarsen the grid before it runs out."""

from __future__ import annotations

import math

from vmgga.config import DenseConfig
from vmgga.features.base import resolve_feature_backend
from vmgga.field.resize import padded_shape
from vmgga.matching.registry import runs_learned_matcher

_FLOAT_BYTES = 4
#: Feature channels per concrete backend (``auto`` is resolved first). ``mind+vmgga``: MIND's 12 and
#: the stride-2 fine descriptors' 32, an upper bound of the learned path's 12 + 8 per pixel axis (36).
_FEATURE_CHANNELS = {"mind": 12, "vmgga": 64, "dinov2": 384, "mind+vmgga": 44}
#: The 2.5D learned matcher: full-resolution floats it keeps (per-axis flows and confidences,
#: interpolated, and the fused result), slices per network call, attention heads, floats per
#: slice pixel of encoder activations and fine correlation windows, and a margin for the rest
#: (measured: 1.45 GB above the process baseline on a 192^3 grid with 2 threads; this gives 1.46 GB).
_MATCHER_FULL_FLOATS = 13
_MATCHER_BATCH, _MATCHER_HEADS, _MATCHER_PIXEL_FLOATS, _MATCHER_MARGIN = 32, 4, 40, 1.75
#: Live floats per sampled voxel in one Adam step (positions, displacement, moving and fixed
#: features, their difference and the gradients kept for the backward pass), per feature channel
#: and fixed.
_PER_SAMPLE_PER_CHANNEL = 4
_PER_SAMPLE_FIXED = 24
#: 3-channel control-grid copies: velocity, gradient, Adam moments, smoothing and scaling-and-
#: squaring intermediates (per integration step) kept for the backward pass.
_CONTROL_COPIES_BASE = 6


def _voxels(shape_dhw: tuple[int, int, int], factor: int) -> int:
    """Voxels of the ``factor``-pooled, padded grid."""
    return math.prod(n // factor for n in padded_shape(shape_dhw, factor))


def estimate_dense_memory_bytes(shape_dhw: tuple[int, int, int], config: DenseConfig) -> int:
    """Approximate peak bytes of :func:`~vmgga.dense.stage.estimate_dense_field` on a ``(D, H, W)`` grid.

    Counts the two full-resolution feature volumes (plus one temporary), the cost volume(s) with
    their softmin, the Adam stage's pooled features, sampled voxels and control-grid copies, and
    the full-resolution outputs.
    """
    channels = _FEATURE_CHANNELS.get(resolve_feature_backend(config), 64)
    full = math.prod(shape_dhw)
    features = 3 * channels * full
    candidates = (2 * config.matching.search_radius_steps + 1) ** 3
    coarse = _voxels(shape_dhw, config.matching.grid_spacing_vox)
    cost = (3 + (2 if config.matching.inverse_consistent else 0)) * candidates * coarse
    similarity = _voxels(shape_dhw, config.instance.feature_spacing_vox)
    samples = int(config.instance.sample_fraction * similarity)
    adam = 2 * channels * similarity + samples * (_PER_SAMPLE_PER_CHANNEL * channels + _PER_SAMPLE_FIXED)
    control_copies = (
        _CONTROL_COPIES_BASE + 2 * config.instance.integration_steps + 2 * config.instance.smoothing_passes
    )
    adam += 3 * control_copies * _voxels(shape_dhw, config.instance.grid_spacing_vox)
    outputs = 8 * full
    matcher = _learned_matcher_floats(shape_dhw) if runs_learned_matcher(config) else 0
    return int((features + cost + adam + outputs + matcher) * _FLOAT_BYTES)


def _learned_matcher_floats(shape_dhw: tuple[int, int, int]) -> int:
    """Peak floats of the 2.5D matcher: its full-resolution volumes plus one batch of the largest slices.

    A batch holds encoder activations and correlation windows per pixel and, for every slice, the
    (coarse tokens)^2 attention map of each head (with its softmax copy).
    """
    full = math.prod(shape_dhw)
    d, h, w = shape_dhw
    plane = max(h * w, d * w, d * h)
    tokens = plane // 64  # coarse stride 8
    batch = _MATCHER_BATCH * (_MATCHER_PIXEL_FLOATS * plane + 2 * _MATCHER_HEADS * tokens**2)
    return int(_MATCHER_MARGIN * (_MATCHER_FULL_FLOATS * full + batch))
