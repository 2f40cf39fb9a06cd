"""Channels-last trilinear point sampling against ``grid_sample`` (border, align_corners=True)."""

from __future__ import annotations

import pytest
import torch

from vmgga.field.point_sampling import ChannelsLastVolume, sample_points
from vmgga.field.warp import sample_at_ijk


def _points(shape_dhw: tuple[int, int, int], count: int, margin: float, seed: int) -> torch.Tensor:
    """Random (i, j, k) positions, some up to ``margin`` voxels outside the volume."""
    generator = torch.Generator().manual_seed(seed)
    d, h, w = shape_dhw
    size = torch.tensor([w - 1, h - 1, d - 1], dtype=torch.float64)
    unit = torch.rand(count, 3, generator=generator, dtype=torch.float64)
    return unit * (size + 2 * margin) - margin


@pytest.mark.parametrize("shape_dhw", [(7, 9, 11), (5, 6, 1), (1, 4, 4)])
def test_values_equal_grid_sample_with_border_padding(shape_dhw):
    volume = torch.randn(1, 4, *shape_dhw, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    points = _points(shape_dhw, 500, margin=2.0, seed=2)
    ours = sample_points(ChannelsLastVolume.from_volume(volume), points)
    reference = sample_at_ijk(volume, points, padding="border").T
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=0)


def test_grid_points_give_the_voxel_values():
    volume = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(1, 2, 3, 4, 5)
    k, j, i = 2, 1, 3
    values = sample_points(
        ChannelsLastVolume.from_volume(volume), torch.tensor([[i, j, k]], dtype=torch.float32)
    )
    assert values.tolist() == [[volume[0, 0, k, j, i].item(), volume[0, 1, k, j, i].item()]]


def test_gradient_equals_grid_sample_gradient_inside_and_outside():
    shape_dhw = (6, 7, 8)
    volume = torch.randn(1, 3, *shape_dhw, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # keep points off the voxel planes, where trilinear interpolation has no derivative
    points = _points(shape_dhw, 300, margin=1.5, seed=4)
    points = torch.where((points - points.round()).abs() < 1e-3, points + 0.01, points)
    weights = torch.randn(300, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    ours_points = points.clone().requires_grad_(True)
    (sample_points(ChannelsLastVolume.from_volume(volume), ours_points) * weights).sum().backward()
    reference_points = points.clone().requires_grad_(True)
    (sample_at_ijk(volume, reference_points, padding="border").T * weights).sum().backward()
    torch.testing.assert_close(ours_points.grad, reference_points.grad, atol=1e-8, rtol=0)
    outside = (points < 0) | (points > torch.tensor([7.0, 6.0, 5.0], dtype=torch.float64))
    assert outside.any() and (ours_points.grad[outside] == 0).all()


def test_gradcheck_inside():
    shape_dhw = (5, 5, 5)
    volume = ChannelsLastVolume.from_volume(
        torch.randn(1, 2, *shape_dhw, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    )
    points = 0.5 + 3.0 * torch.rand(20, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    points.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: sample_points(volume, p), (points,), eps=1e-6, atol=1e-6)
