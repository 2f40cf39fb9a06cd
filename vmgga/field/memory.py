"""Peak memory estimate of the dense stage, so the caller can coarsen the grid before it runs out."""

from __future__ import annotations

import math

from vmgga.config import DenseConfig
from vmgga.field.resize import padded_shape

_FLOAT_BYTES = 4
_FEATURE_CHANNELS = {"mind": 12, "vmgga": 64, "dinov2": 384}
#: Live copies of a control-grid feature volume during one Adam step (pooled fixed/moving,
#: warped, difference, gradients) and of a 3-channel field (velocity, Adam moments, smoothing
#: and scaling-and-squaring intermediates kept for the backward pass).
_ADAM_FEATURE_COPIES = 5
_ADAM_FIELD_COPIES_BASE = 12


def _voxels(shape_dhw: tuple[int, int, int], factor: int) -> int:
    """Voxels of the ``factor``-pooled, padded grid."""
    return math.prod(n // factor for n in padded_shape(shape_dhw, factor))


def estimate_dense_memory_bytes(shape_dhw: tuple[int, int, int], config: DenseConfig) -> int:
    """Approximate peak bytes of :func:`~vmgga.field.dense.estimate_dense_field` on a ``(D, H, W)`` grid.

    Counts the two full-resolution feature volumes (plus one temporary), the cost volume(s), the
    Adam stage's feature and field copies, and the full-resolution outputs.
    """
    channels = _FEATURE_CHANNELS.get(config.features, 64)
    full = math.prod(shape_dhw)
    features = 3 * channels * full
    candidates = (2 * config.search_radius + 1) ** 3
    cost = (2 if config.inverse_consistent else 1) * 2 * candidates * _voxels(shape_dhw, config.grid_spacing)
    control = _voxels(shape_dhw, config.adam_grid_spacing)
    field_copies = _ADAM_FIELD_COPIES_BASE + 3 * config.integration_steps + config.adam_smoothing_passes
    adam = control * (_ADAM_FEATURE_COPIES * channels + 3 * field_copies)
    outputs = 8 * full
    return int((features + cost + adam + outputs) * _FLOAT_BYTES)
