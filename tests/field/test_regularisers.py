"""Diffusion and bending energies of analytic fields; gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmgga import frames
from vmgga.errors import ConfigError
from vmgga.field.regularisers import bending_energy, diffusion_energy, regularisation_energy

SHAPE = (6, 7, 8)


def _coordinates() -> torch.Tensor:
    """``(3, D, H, W)`` voxel coordinates (i, j, k)."""
    return frames.identity_grid_ijk(SHAPE, dtype=torch.float64)[0].permute(3, 0, 1, 2)


def test_diffusion_of_a_linear_field_is_its_squared_frobenius_norm():
    matrix = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, 0.1], [0.2, 0.0, -0.4]], dtype=torch.float64)
    disp = torch.einsum("ab,bdhw->adhw", matrix, _coordinates())[None]
    assert torch.isclose(diffusion_energy(disp), (matrix**2).sum())
    assert torch.isclose(bending_energy(disp), torch.tensor(0.0, dtype=torch.float64), atol=1e-20)


def test_bending_of_quadratics():
    i, j, _ = _coordinates()
    disp = torch.zeros(1, 3, *SHAPE, dtype=torch.float64)
    disp[0, 0] = i**2  # u_ii = 2 -> 4
    assert torch.isclose(bending_energy(disp), torch.tensor(4.0, dtype=torch.float64))
    disp[0, 0] = 0.0
    disp[0, 1] = i * j  # u_ij = 1 -> 2 * 1
    assert torch.isclose(bending_energy(disp), torch.tensor(2.0, dtype=torch.float64))


def test_diffusion_of_a_quadratic_by_hand():
    k = _coordinates()[2]
    disp = torch.zeros(1, 3, *SHAPE, dtype=torch.float64)
    disp[0, 2] = 0.5 * k**2  # forward difference along k: k + 0.5, k = 0..D-2
    expected = np.mean([(k + 0.5) ** 2 for k in range(SHAPE[0] - 1)])
    assert np.isclose(float(diffusion_energy(disp)), expected)


@pytest.mark.parametrize("name", ["diffusion", "bending"])
def test_gradcheck(name):
    disp = torch.rand(1, 3, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: regularisation_energy(d, name), (disp,))


def test_unknown_regulariser_is_named():
    with pytest.raises(ConfigError, match="regularisation='tv' is not allowed"):
        regularisation_energy(torch.zeros(1, 3, 4, 4, 4), "tv")
