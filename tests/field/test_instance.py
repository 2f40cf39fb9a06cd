"""Adam instance optimisation (:mod:`vmgga.field.instance`) on volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmgga.config import DenseConfig, InstanceConfig
from vmgga.errors import ConfigError
from vmgga.field.instance import (
    foreground_indices,
    make_similarity_grid,
    optimise_instance,
    similarity_loss,
    tissue_indices,
)


def blob(shape_dhw: tuple[int, int, int], centre_ijk: tuple[float, float, float], sigma: float = 3.0):
    """``(1, 1, D, H, W)`` Gaussian blob centred at ``centre_ijk`` (voxels, i j k)."""
    k, j, i = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape_dhw), indexing="ij")
    ci, cj, ck = centre_ijk
    r2 = (i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2
    return torch.exp(-r2 / (2 * sigma**2))[None, None]


def test_similarity_grid_gathers_positions_and_features_of_the_given_voxels():
    features = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(1, 2, 3, 4, 5)
    flat = torch.tensor([0, 7, 33, 59])
    grid = make_similarity_grid(features, features, flat, ratio=2)
    k, j, i = np.unravel_index(flat.numpy(), (3, 4, 5))
    assert grid.points_ijk.tolist() == np.stack([i, j, k], axis=1).astype(float).tolist()
    expected = features[0][:, torch.from_numpy(k), torch.from_numpy(j), torch.from_numpy(i)]  # (C, N)
    assert torch.equal(grid.fixed_values, expected.T)


def test_foreground_is_the_dilated_bright_region_or_everything():
    volume = torch.zeros(1, 1, 12, 12, 12)
    volume[0, 0, 5:7, 5:7, 5:7] = 1.0  # 8 bright voxels
    flat = foreground_indices(volume, dilation=1)
    assert flat.numel() == 4**3  # the 2^3 cube grown by one voxel on each side
    k, j, i = np.unravel_index(flat.numpy(), (12, 12, 12))
    assert (k.min(), k.max(), i.min(), i.max()) == (4, 7, 4, 7)
    tiny = torch.zeros(1, 1, 12, 12, 12)
    tiny[0, 0, 0, 0, 0] = 1.0  # under 1 % of the volume: every voxel is used
    assert foreground_indices(tiny, dilation=0).numel() == 12**3


@pytest.mark.parametrize("ratio", [1, 2])
def test_similarity_is_zero_for_the_true_shift_and_positive_otherwise(ratio):
    shape = (16, 16, 16)
    fixed = blob(shape, (7.0, 8.0, 8.0))
    moving = blob(shape, (9.0, 8.0, 8.0))  # fixed voxel x matches moving x + (2, 0, 0)
    i = torch.arange(16**3) % 16
    inside = torch.nonzero(i <= 12).reshape(-1)  # x + 2 stays inside the volume: no border clamping
    grid = make_similarity_grid(fixed, moving, inside, ratio)
    control_shape = (1, 3, *(n // ratio for n in shape))
    true_disp = torch.zeros(control_shape)
    true_disp[:, 0] = 2.0 / ratio  # control-grid voxels
    everything = slice(0, None)
    assert similarity_loss(true_disp, grid, everything) < 1e-10
    assert similarity_loss(torch.zeros(control_shape), grid, everything) > 1e-3


def test_adam_recovers_a_known_translation():
    shape = (16, 16, 16)
    fixed = blob(shape, (7.0, 8.0, 8.0))
    moving = blob(shape, (8.5, 8.0, 7.0))  # true displacement (1.5, 0, -1) voxels
    config = DenseConfig(
        instance=InstanceConfig(
            iterations=80, sample_fraction=1.0, learning_rate=0.2, regularisation_weight=0.01
        )
    )
    grid = make_similarity_grid(fixed, moving, foreground_indices(fixed), ratio=1)
    disp = optimise_instance(grid, torch.zeros(1, 3, *shape), config)
    centre = disp[0, :, 8, 8, 7]  # at the blob centre (k, j, i)
    assert centre.tolist() == pytest.approx([1.5, 0.0, -1.0], abs=0.15)


def test_step_sizes_must_be_positive():
    grid = make_similarity_grid(torch.ones(1, 1, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), torch.arange(64), 1)
    with pytest.raises(ConfigError, match="Adam step sizes must be > 0"):
        optimise_instance(
            grid, torch.zeros(1, 3, 4, 4, 4), DenseConfig(instance=InstanceConfig(final_learning_rate=0.0))
        )


def test_samples_per_step_follow_the_share_up_to_the_cap():
    """5 % of 100 k voxels is 5 k; of 2 M voxels it would be 100 k, capped to 40 k by a wider
    stride; every offset stays inside one stride."""
    from vmgga.field.instance import _subset

    generator = torch.Generator().manual_seed(0)
    small = _subset(100_000, 0.05, generator, 40_000)
    assert small.step == 20 and len(range(*small.indices(100_000))) == 5_000
    for _ in range(5):
        large = _subset(2_000_000, 0.05, generator, 40_000)
        assert large.step == 50 and 0 <= large.start < 50
        assert len(range(*large.indices(2_000_000))) == 40_000
    assert _subset(2_000_000, 0.05, generator, None).step == 20


def test_foreground_is_the_mask_grown_by_a_cube() -> None:
    """Every voxel within ``dilation`` voxels (Chebyshev distance) of a bright voxel, found by brute force."""
    generator = torch.Generator().manual_seed(3)
    volume = (torch.rand(1, 1, 9, 11, 13, generator=generator) > 0.97).float()
    bright = volume[0, 0].nonzero().float()  # (n, 3) k, j, i
    every = torch.stack(torch.meshgrid(*(torch.arange(n) for n in volume.shape[2:]), indexing="ij"), -1)
    distance = (every[..., None, :].float() - bright).abs().amax(-1).amin(-1)  # (9, 11, 13)
    expected = (distance <= 2).reshape(-1).nonzero().reshape(-1)
    assert torch.equal(foreground_indices(volume, dilation=2), expected)


def test_tissue_leaves_out_the_haze_around_a_head_and_keeps_its_dark_inside() -> None:
    """A bright shell (skull) around a dark core (CSF) and a faint haze outside: the tissue foreground is
    the shell, its core and every voxel within ``margin`` of them (Chebyshev distance, by brute force);
    the haze beyond is left out, while the near-zero rule keeps it all."""
    shape = (20, 22, 24)
    k, j, i = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    radius = ((k - 10) ** 2 + (j - 11) ** 2 + (i - 12) ** 2).sqrt()
    volume = torch.where(radius < 6, 0.02, 0.0)  # dark core, below a tenth of the bright level
    volume = torch.where((radius >= 6) & (radius < 8), 1.0, volume)  # the shell
    volume = torch.where(
        radius >= 8, 0.03 * torch.exp(-(radius - 8) / 6), volume
    )  # haze, > 1e-3 near the head
    volume = volume[None, None]
    inside = (radius < 8).reshape(-1).nonzero()[:, 0]  # shell + core
    every = torch.stack([k, j, i], -1).reshape(-1, 3)
    chebyshev = (every[:, None, :] - every[inside][None]).abs().amax(-1).amin(-1)
    for margin in (1, 3):
        expected = (chebyshev <= margin).nonzero()[:, 0]
        assert torch.equal(tissue_indices(volume, margin), expected)
    assert foreground_indices(volume).numel() > tissue_indices(volume, 3).numel() + 1000
