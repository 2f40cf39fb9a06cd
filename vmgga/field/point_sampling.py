"""Trilinear sampling of a constant multi-channel volume at many points, differentiable in the points.

The instance optimisation samples the moving features (``C`` channels) at tens of thousands of
points per step and needs the gradient with respect to the points only. ``grid_sample`` on a
``(1, C, D, H, W)`` volume reads each channel from its own plane (``8 C`` scattered reads per point)
and its backward pass walks the volume again; here the volume is stored channels-last, so one
point reads 8 rows of ``C`` contiguous values, and the backward pass reuses the three partial
derivatives computed in the forward pass. On 12-channel MIND features of a 160x160x104 grid and 42k
points, forward plus backward took 40 ms against 145 ms for ``grid_sample`` (2 threads); gathering the
corner rows with ``index_select`` halved it again (session 10: 31 -> 14 ms for 60k points).

Values and gradients equal ``grid_sample(..., mode="bilinear", padding_mode="border",
align_corners=True)`` (tested): a point outside the volume takes the value at the nearest border
position, and its derivative along each clamped axis is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vmgga.frames import flat_from_ijk


@dataclass(frozen=True)
class ChannelsLastVolume:
    """A ``(1, C, D, H, W)`` volume stored as ``(D * H * W, C)`` rows, for :func:`sample_points`.

    Attributes:
        rows: ``(D * H * W, C)`` values, row ``flat_from_ijk(i, j, k)``.
        shape_dhw: ``(D, H, W)``.
    """

    rows: torch.Tensor
    shape_dhw: tuple[int, int, int]

    @classmethod
    def from_volume(cls, volume: torch.Tensor) -> ChannelsLastVolume:
        """From a ``(1, C, D, H, W)`` tensor (copied once; detached)."""
        _, channels, d, h, w = volume.shape
        rows = volume.detach()[0].permute(1, 2, 3, 0).reshape(d * h * w, channels).contiguous()
        return cls(rows, (d, h, w))


def _corner_offsets(shape_dhw: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """``(8,)`` flat offsets of the corners ``[k][j][i]`` of a cell (0 along an axis of size 1)."""
    d, h, w = shape_dhw
    steps = [1 if w > 1 else 0, w if h > 1 else 0, h * w if d > 1 else 0]
    return torch.tensor(
        [dk * steps[2] + dj * steps[1] + di * steps[0] for dk in (0, 1) for dj in (0, 1) for di in (0, 1)],
        device=device,
    )


def _cells(points_ijk: torch.Tensor, shape_dhw: tuple[int, int, int]):
    """Border-clamped cells of ``(M, 3)`` points: (flat lower corner ``(M,)``, fraction ``(M, 3)``,
    inside ``(M, 3)``: False along an axis where the point was clamped)."""
    d, h, w = shape_dhw
    upper = torch.tensor([w - 1, h - 1, d - 1], dtype=points_ijk.dtype, device=points_ijk.device)
    clamped = torch.minimum(points_ijk.clamp(min=0.0), upper)
    inside = (points_ijk >= 0) & (points_ijk <= upper)
    # the lower corner stays one voxel inside each axis so that the upper corner exists
    lower = torch.minimum(clamped.floor(), (upper - 1).clamp(min=0))
    return flat_from_ijk(lower.long(), shape_dhw), clamped - lower, inside


class _Trilinear(torch.autograd.Function):
    """Values ``(M, C)`` at points ``(M, 3)`` (i, j, k); gradient with respect to the points only."""

    @staticmethod
    def forward(ctx, points_ijk: torch.Tensor, volume: ChannelsLastVolume) -> torch.Tensor:
        base, frac, inside = _cells(points_ijk, volume.shape_dhw)
        offsets = _corner_offsets(volume.shape_dhw, points_ijk.device)
        # (M * 8, C) rows, corner [k][j][i] of each point; index_select gathers about twice as fast
        # as advanced indexing with the (M, 8) index (CPU, 12-36 channels)
        corners = volume.rows.index_select(0, (base[:, None] + offsets).reshape(-1))
        corners = corners.view(-1, 2, 2, 2, corners.shape[-1])
        fi, fj, fk = (frac[:, a].to(corners.dtype) for a in range(3))
        along_i = corners[:, :, :, 1] - corners[:, :, :, 0]  # (M, 2, 2, C): d/di at each (k, j)
        on_i = corners[:, :, :, 0] + along_i * fi[:, None, None, None]
        along_j = on_i[:, :, 1] - on_i[:, :, 0]  # (M, 2, C): d/dj at each k
        on_j = on_i[:, :, 0] + along_j * fj[:, None, None]
        d_dk = on_j[:, 1] - on_j[:, 0]
        values = on_j[:, 0] + d_dk * fk[:, None]
        di_on_j = along_i[:, :, 0] + (along_i[:, :, 1] - along_i[:, :, 0]) * fj[:, None, None]
        d_di = di_on_j[:, 0] + (di_on_j[:, 1] - di_on_j[:, 0]) * fk[:, None]
        d_dj = along_j[:, 0] + (along_j[:, 1] - along_j[:, 0]) * fk[:, None]
        derivatives = torch.stack([d_di, d_dj, d_dk], dim=1) * inside[:, :, None]  # (M, 3, C)
        ctx.save_for_backward(derivatives)
        return values

    @staticmethod
    def backward(ctx, grad_values: torch.Tensor):
        (derivatives,) = ctx.saved_tensors
        return (derivatives * grad_values[:, None, :]).sum(-1).to(grad_values.dtype), None


def sample_points(volume: ChannelsLastVolume, points_ijk: torch.Tensor) -> torch.Tensor:
    """Trilinear values ``(M, C)`` of ``volume`` at ``(M, 3)`` voxel positions (i, j, k), border-clamped.

    Differentiable with respect to ``points_ijk`` (not the volume).
    """
    return _Trilinear.apply(points_ijk, volume)
