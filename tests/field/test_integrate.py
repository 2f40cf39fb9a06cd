"""Scaling and squaring: zero, constant and inverse fields."""

from __future__ import annotations

import pytest
import torch

from vmgga.errors import ConfigError
from vmgga.field.integrate import integrate_velocity
from vmgga.field.jacobian import jacobian_determinant
from vmgga.field.warp import compose


def test_zero_velocity_gives_zero_displacement():
    velocity = torch.zeros(1, 3, 6, 7, 8)
    assert torch.equal(integrate_velocity(velocity, 6), velocity)


def test_constant_velocity_is_a_translation_by_that_constant():
    velocity = torch.zeros(1, 3, 6, 7, 8, dtype=torch.float64)
    velocity[:, 0], velocity[:, 1], velocity[:, 2] = 0.7, -0.3, 0.2
    assert torch.allclose(integrate_velocity(velocity, 5), velocity, atol=1e-12)


def test_exp_of_minus_v_inverts_exp_of_v():
    shape = (16, 16, 16)
    k, j, i = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in shape), indexing="ij")
    velocity = torch.stack(
        (1.5 * torch.sin(j / 4.0), 1.0 * torch.cos(k / 5.0), 1.2 * torch.sin(i / 3.0 + j / 6.0))
    )[None]
    forward, backward = integrate_velocity(velocity, 7), integrate_velocity(-velocity, 7)
    residual = compose(forward, backward)[..., 4:-4, 4:-4, 4:-4]
    assert residual.abs().max() < 0.05 * forward.abs().max()
    assert jacobian_determinant(forward).min() > 0


def test_no_integration_returns_the_velocity_and_negative_steps_fail():
    velocity = torch.rand(1, 3, 4, 4, 4)
    assert torch.equal(integrate_velocity(velocity, 0), velocity)
    with pytest.raises(ConfigError, match="integration_steps"):
        integrate_velocity(velocity, -1)
