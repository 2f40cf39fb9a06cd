"""Moving fields between the working grid and block-pooled grids (:mod:`vmgga.field.resize`).

Expected values come from numpy block means and from the block-centre rule ``x = s c + (s - 1) / 2``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmgga.field.resize import (
    box_smooth,
    crop_to,
    downsample_disp,
    pad_to,
    padded_shape,
    pool,
    upsample_disp,
    upsample_scalar,
)
from vmgga.frames import fine_from_coarse


def ramp_i(shape_dhw: tuple[int, int, int], slope: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """``(1, 1, D, H, W)`` volume whose value is ``slope * i + offset`` (i = column index)."""
    i = torch.arange(shape_dhw[2], dtype=torch.float64)
    return (slope * i + offset).expand(*shape_dhw)[None, None].clone()


def test_padded_shape_rounds_each_side_up_to_the_multiple():
    assert padded_shape((5, 8, 9), 4) == (8, 8, 12)
    assert padded_shape((5, 8, 9), 1) == (5, 8, 9)


def test_pad_replicates_the_last_voxel_and_crop_undoes_it():
    volume = torch.arange(2 * 3 * 5, dtype=torch.float64).reshape(1, 1, 2, 3, 5)
    padded = pad_to(volume, (4, 4, 8))
    assert padded.shape == (1, 1, 4, 4, 8)
    np.testing.assert_array_equal(
        padded[0, 0, :2, :3, 5:].numpy(), np.repeat(volume[0, 0, :, :, 4:5].numpy(), 3, axis=-1)
    )
    np.testing.assert_array_equal(
        padded[0, 0, 2:, :3, :5].numpy(), np.repeat(volume[0, 0, 1:2].numpy(), 2, axis=0)
    )
    assert torch.equal(crop_to(padded, (2, 3, 5)), volume)
    assert pad_to(volume, (2, 3, 5)) is volume


def test_pool_is_the_numpy_block_mean():
    rng = np.random.default_rng(0)
    values = rng.random((1, 2, 4, 6, 8))
    pooled = pool(torch.from_numpy(values), 2).numpy()
    expected = values.reshape(1, 2, 2, 2, 3, 2, 4, 2).mean(axis=(3, 5, 7))
    np.testing.assert_allclose(pooled, expected, atol=1e-12)
    assert torch.equal(pool(torch.from_numpy(values), 1), torch.from_numpy(values))


def test_pooled_ramp_holds_the_value_at_the_block_centre():
    pooled = pool(ramp_i((4, 4, 12)), 4)[0, 0, 0, 0]
    centres = fine_from_coarse(torch.arange(3, dtype=torch.float64), 4)  # 1.5, 5.5, 9.5
    assert torch.allclose(pooled, centres)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upsampled_displacement_is_in_fine_voxels_and_unshifted(factor):
    # coarse field u(c) = 0.5 c coarse voxels along i: a coarse voxel is `factor` fine voxels, and
    # coarse voxel c sits at fine x = s c + (s - 1) / 2, so the fine field is s * 0.5 * (x - (s - 1) / 2) / s
    coarse = torch.zeros(1, 3, 4, 4, 6, dtype=torch.float64)
    coarse[:, 0] = ramp_i((4, 4, 6), slope=0.5)[:, 0]
    fine = upsample_disp(coarse, factor)
    assert fine.shape == (1, 3, 4 * factor, 4 * factor, 6 * factor)
    x = torch.arange(6 * factor, dtype=torch.float64)
    expected = 0.5 * (x - (factor - 1) / 2.0)
    inner = slice(factor, 5 * factor)  # linear interpolation is exact between the first and last centres
    assert torch.allclose(fine[0, 0, 0, 0, inner], expected[inner])
    assert torch.count_nonzero(fine[:, 1:]) == 0


def test_constant_displacement_round_trips_between_grids():
    coarse = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1, 1).expand(1, 3, 3, 3, 3)
    fine = upsample_disp(coarse, 4)
    assert torch.allclose(fine, torch.tensor([4.0, -8.0, 2.0], dtype=torch.float64).view(1, 3, 1, 1, 1))
    assert torch.allclose(downsample_disp(fine, 4), coarse)


def test_upsampled_scalar_ramp_is_exact_between_centres():
    coarse = ramp_i((2, 2, 4), slope=1.0)
    fine = upsample_scalar(coarse, 2)[0, 0, 0, 0]
    x = torch.arange(8, dtype=torch.float64)
    assert torch.allclose(fine[1:7], (x[1:7] - 0.5) / 2.0)


def test_box_smoothing_keeps_constants_and_interior_ramps():
    constant = torch.full((1, 1, 5, 5, 5), 3.0, dtype=torch.float64)
    assert torch.allclose(box_smooth(constant, passes=3), constant)
    ramp = ramp_i((5, 5, 9), slope=2.0)
    smoothed = box_smooth(ramp, passes=2)
    assert torch.allclose(smoothed[..., 2:7], ramp[..., 2:7])  # symmetric 3-box: exact away from the border
    assert smoothed[..., 0].mean() > ramp[..., 0].mean()  # replicate padding pulls the low end up
    assert torch.equal(box_smooth(ramp, passes=0), ramp)


@pytest.mark.parametrize("radius", [1, 2])
def test_box_smoothing_equals_a_replicate_padded_average_pool(radius):
    volume = torch.randn(2, 3, 5, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = volume
    for _ in range(2):
        padded = torch.nn.functional.pad(expected, (radius,) * 6, mode="replicate")
        expected = torch.nn.functional.avg_pool3d(padded, 2 * radius + 1, stride=1)
    torch.testing.assert_close(box_smooth(volume, passes=2, radius=radius), expected, atol=1e-12, rtol=0)


def test_box_smoothing_of_large_volumes_equals_the_separable_form():
    from vmgga.field.resize import _SEPARABLE_BOX_MAX_VALUES, _box_smooth_separable

    volume = torch.randn(1, 2, 64, 64, 130, generator=torch.Generator().manual_seed(1))
    assert volume.numel() > _SEPARABLE_BOX_MAX_VALUES  # the avg_pool3d branch
    torch.testing.assert_close(
        box_smooth(volume, passes=2), _box_smooth_separable(volume, 2, 1), atol=1e-5, rtol=0
    )
