"""Scaling and squaring: the exponential of a stationary velocity field."""

from __future__ import annotations

import torch

from vmgga.errors import ConfigError
from vmgga.field.warp import compose


def integrate_velocity(velocity_ijk: torch.Tensor, integration_steps: int) -> torch.Tensor:
    """Displacement of ``exp(v)`` by scaling and squaring.

    Args:
        velocity_ijk: ``(B, 3, D, H, W)`` stationary velocity in voxels, channels (i, j, k).
        integration_steps: number of squarings ``N``; ``v / 2^N`` is composed with itself ``N``
            times. ``0`` returns the velocity itself (a plain displacement field).

    Returns:
        ``(B, 3, D, H, W)`` displacement in voxels of the integrated, diffeomorphic map.
    """
    if integration_steps < 0:
        raise ConfigError(f"integration_steps must be >= 0; got {integration_steps}")
    disp_ijk = velocity_ijk / (2**integration_steps)
    for _ in range(integration_steps):
        disp_ijk = compose(disp_ijk, disp_ijk)
    return disp_ijk
