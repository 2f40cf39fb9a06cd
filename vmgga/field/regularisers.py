"""Smoothness penalties of displacement (or velocity) fields, in voxel units."""

from __future__ import annotations

from enum import Enum

import torch

from vmgga.errors import look_up_option


class Regulariser(str, Enum):
    """Smoothness penalty of the instance optimisation."""

    DIFFUSION = "diffusion"  # squared first derivatives
    BENDING = "bending"  # squared second derivatives


_SPATIAL_DIMS = (2, 3, 4)  # D, H, W of a (B, C, D, H, W) tensor


def _forward_difference(field: torch.Tensor, dim: int) -> torch.Tensor:
    """``f[x + 1] - f[x]`` along ``dim`` (one voxel shorter there)."""
    n = field.shape[dim]
    return field.narrow(dim, 1, n - 1) - field.narrow(dim, 0, n - 1)


def _central_difference(field: torch.Tensor, dim: int) -> torch.Tensor:
    """``(f[x + 1] - f[x - 1]) / 2`` along ``dim`` (two voxels shorter there)."""
    n = field.shape[dim]
    return 0.5 * (field.narrow(dim, 2, n - 2) - field.narrow(dim, 0, n - 2))


def _second_difference(field: torch.Tensor, dim: int) -> torch.Tensor:
    """``f[x + 1] - 2 f[x] + f[x - 1]`` along ``dim`` (two voxels shorter there)."""
    n = field.shape[dim]
    return field.narrow(dim, 2, n - 2) - 2.0 * field.narrow(dim, 1, n - 2) + field.narrow(dim, 0, n - 2)


def diffusion_energy(disp_ijk: torch.Tensor) -> torch.Tensor:
    """Mean squared first derivative, summed over components and axes.

    Args:
        disp_ijk: ``(B, 3, D, H, W)`` field in voxels.

    Returns:
        Scalar ``sum_axes mean_voxels sum_c (d u_c / d axis)^2``; for ``u = A x`` it is ``|A|_F^2``.
    """
    total = disp_ijk.new_zeros(())
    for dim in _SPATIAL_DIMS:
        total = total + _forward_difference(disp_ijk, dim).pow(2).sum(1).mean()
    return total


def bending_energy(disp_ijk: torch.Tensor) -> torch.Tensor:
    """Mean squared second derivative (thin-plate bending), summed over components.

    Args:
        disp_ijk: ``(B, 3, D, H, W)`` field in voxels, at least 3 voxels along each axis.

    Returns:
        Scalar ``mean sum_c (u_xx^2 + u_yy^2 + u_zz^2 + 2 u_xy^2 + 2 u_xz^2 + 2 u_yz^2)``.
    """
    total = disp_ijk.new_zeros(())
    for index, dim in enumerate(_SPATIAL_DIMS):
        total = total + _second_difference(disp_ijk, dim).pow(2).sum(1).mean()
        for other in _SPATIAL_DIMS[index + 1 :]:
            mixed = _central_difference(_central_difference(disp_ijk, dim), other)
            total = total + 2.0 * mixed.pow(2).sum(1).mean()
    return total


def regularisation_energy(disp_ijk: torch.Tensor, regulariser: str) -> torch.Tensor:
    """The penalty named by ``regulariser`` (``diffusion`` or ``bending``) of a ``(B, 3, D, H, W)`` field."""
    name = look_up_option(regulariser, Regulariser, "regularisation")
    return diffusion_energy(disp_ijk) if name == Regulariser.DIFFUSION.value else bending_energy(disp_ijk)
