"""Confidence-weighted field fitting: matched displacements -> a smooth control-grid field.

A matcher gives a displacement per working voxel and a confidence in [0, 1]. The control-grid
field that starts the instance optimisation is their normalised convolution: block sums of
``confidence * disp`` over block sums of ``confidence``, then ``passes`` box filters applied to
both numerator and denominator, so that confident matches fill in for unsure neighbours.
"""

from __future__ import annotations

import torch

from vmgga.errors import ConfigError
from vmgga.field.resize import box_smooth, pool

#: Weights below this (summed confidence of a block) count as "no information".
_EPS = 1e-6


def fit_control_field(
    disp_ijk: torch.Tensor, confidence: torch.Tensor, spacing: int, passes: int
) -> torch.Tensor:
    """Confidence-weighted control-grid field.

    Args:
        disp_ijk: ``(1, 3, D, H, W)`` displacement in working voxels; D, H, W multiples of ``spacing``.
        confidence: ``(1, 1, D, H, W)`` weights in [0, 1].
        spacing: control-grid spacing in working voxels.
        passes: box filters (3^3) applied on the control grid (0: block averages only).

    Returns:
        ``(1, 3, D / s, H / s, W / s)`` displacement in control-grid voxels. Where every weight
        is zero, the field is 0.
    """
    if disp_ijk.shape[2:] != confidence.shape[2:]:
        raise ConfigError(f"disp {tuple(disp_ijk.shape)} and confidence {tuple(confidence.shape)} differ")
    if spacing < 1 or passes < 0:
        raise ConfigError(f"spacing must be >= 1 and passes >= 0; got {spacing} and {passes}")
    weight = confidence.clamp(0.0, 1.0)
    numerator = box_smooth(pool(weight * disp_ijk, spacing), passes)
    denominator = box_smooth(pool(weight, spacing), passes)
    field = torch.where(denominator > _EPS, numerator / denominator.clamp_min(_EPS), 0.0)
    return field / spacing
