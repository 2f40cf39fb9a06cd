"""Coupled convex optimisation of a discrete cost volume (ConvexAdam's global regularisation).

The field alternates between two easy problems: a per-location argmin of the matching cost plus a
quadratic coupling to the current smooth field, and a smoothing of that argmin field. The coupling
grows from nearly zero (pure matching) to strong (nearly pure smoothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vmgga.field.resize import box_smooth
from vmgga.field.warp import warp


def coupling_schedule(first: float, last: float, iterations: int) -> list[float]:
    """``iterations`` coupling weights growing geometrically from ``first`` to ``last``."""
    if iterations <= 0:
        return []
    if iterations == 1:
        return [last]
    ratio = (last / first) ** (1.0 / (iterations - 1))
    return [first * ratio**step for step in range(iterations)]


def _field_from_indices(indices: torch.Tensor, steps_ijk: torch.Tensor, shape_dhw: tuple) -> torch.Tensor:
    """Chosen displacement per location ``(N,)`` -> smoothed field ``(1, 3, d, h, w)`` in steps."""
    field = steps_ijk[indices].T.reshape(1, 3, *shape_dhw)  # (1, 3, d, h, w)
    return box_smooth(field, passes=1)


def coupled_convex(cost: torch.Tensor, steps_ijk: torch.Tensor, couplings: list[float]) -> torch.Tensor:
    """Smooth displacement field from a cost volume.

    Args:
        cost: ``(L, d, h, w)`` matching cost of each of ``L`` candidate displacements per location.
        steps_ijk: ``(L, 3)`` the candidate displacements (i, j, k), in search steps.
        couplings: coupling weights, in cost units per squared step, one per iteration.

    Returns:
        ``(1, 3, d, h, w)`` displacement field in search steps.
    """
    n_candidates, *shape = cost.shape
    cost_flat = cost.reshape(n_candidates, -1)  # (L, N)
    steps = steps_ijk.to(cost.dtype)
    squared = steps.pow(2).sum(1, keepdim=True)  # (L, 1)
    field = _field_from_indices(cost_flat.argmin(0), steps, tuple(shape))
    for weight in couplings:
        # |s - u|^2 = |s|^2 - 2 s.u + |u|^2; the last term is the same for every candidate
        coupling = squared - 2.0 * steps @ field.reshape(3, -1)  # (L, N)
        field = _field_from_indices((cost_flat + weight * coupling).argmin(0), steps, tuple(shape))
    return field


def softmin_confidence(cost: torch.Tensor, temperature: float) -> torch.Tensor:
    """Confidence in [0, 1]: softmin probability mass within one step of the best candidate.

    Args:
        cost: ``(L, d, h, w)`` cost volume over a cubic window of ``L = S^3`` candidates
            (the order of :func:`~vmgga.matching.cost_volume.displacement_steps`).
        temperature: softmin temperature relative to the mean (over locations) of
            ``mean_L cost - min_L cost``.

    Returns:
        ``(1, 1, d, h, w)``: the mass near the minimum, rescaled so that a flat cost gives 0 and a
        single sharp minimum gives 1.
    """
    n_candidates, *shape = cost.shape
    side = round(n_candidates ** (1.0 / 3.0))
    excess = cost - cost.amin(0, keepdim=True)
    contrast = float(excess.mean())
    scale = temperature * contrast if contrast > 0 else 1.0
    probability = torch.softmax(-excess / scale, dim=0).reshape(side, side, side, -1)
    window = probability.permute(3, 0, 1, 2)[:, None]  # (N, 1, S, S, S)
    near = F.avg_pool3d(window, 3, stride=1, padding=1, count_include_pad=True) * 27
    best = cost.reshape(n_candidates, -1).argmin(0)  # (N,)
    mass = near.reshape(-1, n_candidates).gather(1, best[:, None])[:, 0]
    chance = min(27, n_candidates) / n_candidates
    return ((mass - chance) / (1.0 - chance)).clamp(0.0, 1.0).reshape(1, 1, *shape)


def make_inverse_consistent(
    forward_ijk: torch.Tensor, backward_ijk: torch.Tensor, iterations: int = 10
) -> torch.Tensor:
    """Symmetrise a forward field with the backward one so that each approximates the other's inverse.

    Args:
        forward_ijk: ``(1, 3, d, h, w)`` fixed -> moving displacement, voxels of that grid.
        backward_ijk: ``(1, 3, d, h, w)`` moving -> fixed displacement on the same grid.
        iterations: fixed-point iterations of ``u <- (u - v o (id + u)) / 2`` (and the same for ``v``).

    Returns:
        ``(1, 3, d, h, w)`` the inverse-consistent forward field.
    """
    for _ in range(iterations):
        forward_new = 0.5 * (forward_ijk - warp(backward_ijk, forward_ijk))
        backward_ijk = 0.5 * (backward_ijk - warp(forward_ijk, backward_ijk))
        forward_ijk = forward_new
    return forward_ijk
