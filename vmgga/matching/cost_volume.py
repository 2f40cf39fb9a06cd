"""Discrete displacement search: an SSD cost volume of block-pooled features, then convex coupling."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from vmgga.config import DenseConfig
from vmgga.errors import ConfigError
from vmgga.field import resize
from vmgga.matching.base import DenseMatch
from vmgga.matching.convex import (
    coupled_convex,
    coupling_schedule,
    make_inverse_consistent,
    softmin_confidence,
)


def displacement_steps(search_radius: int) -> torch.Tensor:
    """All integer displacements of the search window, ``(L, 3)`` in (i, j, k), ``L = (2R + 1)^3``.

    Candidate ``l`` is ``(di, dj, dk)`` with ``dk`` slowest and ``di`` fastest.
    """
    span = range(-search_radius, search_radius + 1)
    return torch.tensor([(di, dj, dk) for dk, dj, di in itertools.product(span, span, span)])


def ssd_cost_volume(
    fixed_coarse: torch.Tensor, moving_coarse: torch.Tensor, search_radius: int
) -> torch.Tensor:
    """Sum of squared feature differences for every candidate displacement, box-smoothed.

    Args:
        fixed_coarse: ``(1, C, d, h, w)`` features on the coarse grid.
        moving_coarse: ``(1, C, d, h, w)`` features on the same grid.
        search_radius: ``R``; candidates are the integer shifts of :func:`displacement_steps`.

    Returns:
        ``(L, d, h, w)``: ``cost[l](x) = sum_c (fixed(x) - moving(x + step_l))^2``, smoothed over a
        3^3 neighbourhood of ``x`` (the moving volume is border-replicated outside).
    """
    radius = search_radius
    padded = F.pad(moving_coarse, (radius,) * 6, mode="replicate")
    d, h, w = fixed_coarse.shape[2:]
    steps = displacement_steps(radius).tolist()
    cost = fixed_coarse.new_empty((len(steps), d, h, w))
    for index, (di, dj, dk) in enumerate(steps):
        k0, j0, i0 = radius + dk, radius + dj, radius + di
        shifted = padded[0, :, k0 : k0 + d, j0 : j0 + h, i0 : i0 + w]  # moving(x + step)
        cost[index] = (fixed_coarse[0] - shifted).pow(2).sum(0)
    return resize.box_smooth(cost[None], passes=1)[0]


class CostVolumeMatcher:
    """:class:`~vmgga.matching.base.Matcher`: discrete search on a coarse grid + coupled convex steps."""

    def __init__(self, config: DenseConfig, device: str | torch.device = "cpu"):
        if config.matching.grid_spacing_vox < 1 or config.matching.search_radius_steps < 1:
            raise ConfigError(
                f"dense.matching.grid_spacing_vox and search_radius_steps must be >= 1; got {config.matching.grid_spacing_vox}, "
                f"{config.matching.search_radius_steps}"
            )
        self.config = config
        self.device = torch.device(device)

    @torch.no_grad()
    def match(
        self,
        fixed_work: torch.Tensor,
        moving_work: torch.Tensor,
        fixed_feat: torch.Tensor,
        moving_feat: torch.Tensor,
    ) -> DenseMatch:
        """Features ``(1, C, D, H, W)`` -> :class:`DenseMatch` at full working resolution."""
        spacing = self.config.matching.grid_spacing_vox
        shape = tuple(fixed_feat.shape[2:])
        padded = resize.padded_shape(shape, spacing)
        fixed_coarse = resize.pool(resize.pad_to(fixed_feat.to(self.device), padded), spacing)
        moving_coarse = resize.pool(resize.pad_to(moving_feat.to(self.device), padded), spacing)
        disp_steps, confidence = self._coarse_field(fixed_coarse, moving_coarse)
        disp_ijk = resize.crop_to(resize.upsample_disp(disp_steps, spacing), shape)
        confidence = resize.crop_to(resize.upsample_scalar(confidence, spacing), shape)
        return DenseMatch(disp_ijk=disp_ijk.contiguous(), confidence=confidence.clamp(0, 1).contiguous())

    def _coarse_field(self, fixed_coarse: torch.Tensor, moving_coarse: torch.Tensor) -> tuple:
        """Coarse features -> (field ``(1, 3, d, h, w)`` in coarse voxels, confidence ``(1, 1, d, h, w)``)."""
        config = self.config
        steps = displacement_steps(config.matching.search_radius_steps).to(self.device)
        couplings = coupling_schedule(
            config.matching.convex_coupling_first,
            config.matching.convex_coupling_last,
            config.matching.convex_iterations,
        )
        cost = ssd_cost_volume(fixed_coarse, moving_coarse, config.matching.search_radius_steps)
        forward = coupled_convex(cost, steps, couplings)
        confidence = softmin_confidence(cost, config.matching.confidence_temperature)
        if config.matching.inverse_consistent:
            cost = ssd_cost_volume(moving_coarse, fixed_coarse, config.matching.search_radius_steps)
            backward = coupled_convex(cost, steps, couplings)
            forward = make_inverse_consistent(forward, backward)
        return forward, confidence
