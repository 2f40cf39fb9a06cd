"""2.5D slicing, axis mapping and 3-axis fusion against independently computed answers."""

from __future__ import annotations

import torch

from vmgga.frames import identity_grid_ijk
from vmgga.models.slicewise import (
    SlicewiseConfig,
    fuse_axis_flows,
    interpolate_slices,
    match_volume,
    sampled_slice_indices,
    slice_view,
    slices_along,
    volume_from_slices,
)

SHAPE_DHW = (6, 7, 9)


def _coordinates_ijk() -> torch.Tensor:
    """``(1, 3, D, H, W)``: channel c holds the voxel's own (i, j, k)[c]."""
    return identity_grid_ijk(SHAPE_DHW).permute(0, 4, 1, 2, 3)


def test_slices_hold_the_expected_voxels_and_invert():
    volume = torch.arange(float(6 * 7 * 9)).view(1, 1, *SHAPE_DHW)
    k, j, i = 4, 5, 8
    assert slices_along(volume, 0)[k, 0, j, i] == volume[0, 0, k, j, i]  # rows j, cols i
    assert slices_along(volume, 1)[j, 0, k, i] == volume[0, 0, k, j, i]  # rows k, cols i
    assert slices_along(volume, 2)[i, 0, k, j] == volume[0, 0, k, j, i]  # rows k, cols j
    for axis in range(3):
        assert torch.equal(volume_from_slices(slices_along(volume, axis), axis), volume)


def test_a_slice_view_writes_through_to_the_volume_at_the_same_voxels():
    for axis in range(3):
        volume = torch.zeros(1, 2, *SHAPE_DHW)
        view = slice_view(volume, axis)
        view[3, 1, 2, 4] = 7.0  # slice 3, channel 1, row 2, column 4
        voxel = {0: (3, 2, 4), 1: (2, 3, 4), 2: (2, 4, 3)}[axis]  # (k, j, i) as the module table says
        assert volume[0, 1][voxel] == 7.0 and float(volume.sum()) == 7.0


def _position_matcher(image0: torch.Tensor, image1: torch.Tensor):
    """A stand-in 2D matcher whose flow is each pixel's own (column, row) position."""
    n, _, rows, cols = image0.shape
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    flow = torch.stack([x, y]).float()[None].expand(n, -1, -1, -1)
    return flow, torch.ones(n, 1, rows, cols)


def test_axis_mapping_puts_each_in_plane_component_in_its_ijk_channel():
    """If every 2D flow is the pixel position, the fused 3D field must be the voxel position (i, j, k)."""
    volume = torch.zeros(1, 1, *SHAPE_DHW)
    config = SlicewiseConfig(slice_step=1)
    disp_ijk, confidence = match_volume(volume, volume, _position_matcher, config)
    torch.testing.assert_close(disp_ijk, _coordinates_ijk())
    torch.testing.assert_close(confidence, torch.ones(1, 1, *SHAPE_DHW))


def _smooth_field_ijk() -> torch.Tensor:
    """A known smooth displacement (voxels), channels (i, j, k), written from its formula."""
    i, j, k = _coordinates_ijk()[0]
    return torch.stack([0.5 + 0.2 * torch.sin(k), -1.0 + 0.1 * j * i / 9, 2.0 * torch.cos(0.3 * i)])[None]


def test_fusion_reproduces_a_known_field_from_per_axis_flows():
    field = _smooth_field_ijk()
    i_c, j_c, k_c = field[:, 0], field[:, 1], field[:, 2]
    flows = {0: torch.stack([i_c, j_c], 1), 1: torch.stack([i_c, k_c], 1), 2: torch.stack([j_c, k_c], 1)}
    gen = torch.Generator().manual_seed(0)
    confidences = {a: torch.rand(1, 1, *SHAPE_DHW, generator=gen) + 0.1 for a in range(3)}
    disp_ijk, confidence = fuse_axis_flows(flows, confidences)
    torch.testing.assert_close(disp_ijk, field)
    torch.testing.assert_close(confidence, (confidences[0] + confidences[1] + confidences[2]) / 3)


def test_fusion_weights_components_by_confidence():
    """i is seen by axes 0 and 1: values 1 and 4 with confidences 0.75 and 0.25 give 1.75."""
    ones = torch.ones(1, 1, 2, 2, 2)
    flows = {0: torch.cat([ones, 0 * ones], 1), 1: torch.cat([4 * ones, 0 * ones], 1)}
    disp_ijk, _ = fuse_axis_flows(flows, {0: 0.75 * ones, 1: 0.25 * ones})
    torch.testing.assert_close(disp_ijk[:, 0], 1.75 * ones[:, 0])
    torch.testing.assert_close(disp_ijk[:, 1], 0 * ones[:, 0])  # j: seen by no axis here


def test_slice_subsampling_interpolates_linearly():
    assert sampled_slice_indices(7, 3) == [0, 3, 6]
    assert sampled_slice_indices(8, 3) == [0, 3, 6, 7]
    indices = sampled_slice_indices(8, 3)
    values = torch.tensor([float(2 * i + 1) for i in indices]).view(-1, 1)  # linear in the index
    torch.testing.assert_close(interpolate_slices(values, indices, 8), torch.arange(8.0).view(-1, 1) * 2 + 1)


def test_subsampled_matching_reproduces_a_linear_field():
    """A 2D matcher whose flow is linear in the slice index gives the same field when subsampled."""

    def matcher(image0, image1):  # the slices carry their index as intensity
        flow = image0.expand(-1, 2, -1, -1) * torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
        return flow, torch.ones_like(image0)

    k = torch.arange(float(SHAPE_DHW[0])).view(1, 1, -1, 1, 1).expand(1, 1, *SHAPE_DHW)
    config = SlicewiseConfig(axes=(0,), slice_step=2)
    disp_ijk, _ = match_volume(k.contiguous(), k.contiguous(), matcher, config)
    torch.testing.assert_close(disp_ijk[:, 0], k[:, 0])
    torch.testing.assert_close(disp_ijk[:, 1], -2 * k[:, 0])
