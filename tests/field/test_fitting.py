"""Confidence-weighted field fitting: block means weighted by confidence, then smoothing."""

from __future__ import annotations

import pytest
import torch

from vmgga.errors import ConfigError
from vmgga.field.fitting import fit_control_field


def test_constant_field_is_kept_and_converted_to_control_voxels():
    disp = torch.full((1, 3, 8, 8, 8), 6.0)
    confidence = torch.rand(1, 1, 8, 8, 8)
    field = fit_control_field(disp, confidence, spacing=2, passes=2)
    assert field.shape == (1, 3, 4, 4, 4)
    torch.testing.assert_close(field, torch.full_like(field, 3.0))


def test_block_mean_is_weighted_by_confidence():
    """One 2^3 block: half the voxels move 4 with confidence 0.9, half 0 with 0.1 -> 3.6 voxels."""
    disp = torch.zeros(1, 3, 2, 2, 2)
    disp[:, :, 0] = 4.0
    confidence = torch.full((1, 1, 2, 2, 2), 0.1)
    confidence[:, :, 0] = 0.9
    field = fit_control_field(disp, confidence, spacing=2, passes=0)
    torch.testing.assert_close(field, torch.full((1, 3, 1, 1, 1), 3.6 / 2))


def test_unsure_blocks_are_filled_from_confident_neighbours():
    disp = torch.zeros(1, 3, 3, 3, 3)
    confidence = torch.zeros(1, 1, 3, 3, 3)
    disp[..., 0, 0, 0], confidence[..., 0, 0, 0] = 2.0, 1.0  # the only confident voxel
    field = fit_control_field(disp, confidence, spacing=1, passes=1)
    assert torch.allclose(field[0, :, 1, 1, 1], torch.full((3,), 2.0))  # reached by the box filter
    assert torch.allclose(field[0, :, 2, 2, 2], torch.zeros(3))  # out of reach: no information, 0
    with pytest.raises(ConfigError):
        fit_control_field(disp, confidence[..., :2], spacing=1, passes=1)
