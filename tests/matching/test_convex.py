"""Coupled convex optimisation, confidence and inverse consistency on hand-made cost volumes."""

from __future__ import annotations

import math

import torch

from vmgga.matching.convex import (
    coupled_convex,
    coupling_schedule,
    make_inverse_consistent,
    softmin_confidence,
)
from vmgga.matching.cost_volume import displacement_steps

SHAPE = (8, 9, 10)


def _quadratic_cost(target_ijk: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``cost[l](x) = |step_l - target(x)|^2`` for a ``(3, d, h, w)`` target."""
    diff = steps.double()[:, :, None, None, None] - target_ijk[None]
    return diff.pow(2).sum(1)  # (L, d, h, w)


def test_schedule_is_geometric_between_its_ends():
    weights = coupling_schedule(0.01, 1.0, 3)
    assert [round(w, 12) for w in weights] == [0.01, 0.1, 1.0]
    assert coupling_schedule(0.01, 1.0, 0) == [] and coupling_schedule(0.01, 2.0, 1) == [2.0]


def test_constant_minimum_is_returned_exactly():
    steps = displacement_steps(2)
    target = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)[:, None, None, None].expand(3, *SHAPE)
    field = coupled_convex(_quadratic_cost(target, steps), steps, coupling_schedule(0.003, 1.0, 6))
    assert torch.equal(field[0], target)


def test_coupling_removes_isolated_outliers():
    steps = displacement_steps(2)
    target = torch.zeros(3, *SHAPE, dtype=torch.float64)
    cost = _quadratic_cost(target, steps)
    outlier_index = int(((steps - torch.tensor([2, 2, -2])).abs().sum(1) == 0).nonzero())
    cost[outlier_index, 4, 4, 5] = -1.0  # one location prefers (2, 2, -2)
    uncoupled = coupled_convex(cost, steps, [])
    coupled = coupled_convex(cost, steps, coupling_schedule(0.1, 10.0, 6))
    # without coupling, the outlier survives the argmin and is averaged over its 3^3 box
    expected = torch.tensor([2.0, 2.0, -2.0], dtype=torch.float64) / 27
    assert torch.allclose(uncoupled[0, :, 4, 4, 5], expected)
    assert coupled.abs().max() < 1e-12  # coupling overrules it


def test_confidence_of_peaked_and_flat_costs():
    steps = displacement_steps(1)
    peaked = _quadratic_cost(torch.zeros(3, 2, 2, 2, dtype=torch.float64), steps) * 100
    flat = torch.ones(27, 2, 2, 2, dtype=torch.float64)
    cost = torch.cat((peaked, flat), dim=1)  # (27, 4, 2, 2)
    confidence = softmin_confidence(cost, temperature=0.25)
    assert confidence.shape == (1, 1, 4, 2, 2)
    assert confidence[..., :2, :, :].min() > 0.9 and confidence[..., 2:, :, :].max() < 1e-6
    assert math.isclose(float(softmin_confidence(flat, 0.25).max()), 0.0, abs_tol=1e-9)


def test_inverse_consistency_averages_opposite_translations():
    forward = torch.zeros(1, 3, *SHAPE, dtype=torch.float64)
    backward = torch.zeros_like(forward)
    forward[:, 0], backward[:, 0] = 1.0, -0.5  # forward says +1, backward says +0.5 (inverse)
    result = make_inverse_consistent(forward, backward, iterations=5)
    assert torch.allclose(result[:, 0], torch.full_like(result[:, 0], 0.75))
    assert torch.allclose(result[:, 1:], torch.zeros_like(result[:, 1:]))
