"""warp(): identity, integer shifts and agreement with SimpleITK on an oblique anisotropic grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from vmgga import frames
from vmgga.errors import ConfigError
from vmgga.field.warp import compose, sample_at_ijk, warp


def _volume(shape=(5, 6, 7), channels=2, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((1, channels, *shape), generator=generator, dtype=torch.float64)


def test_identity_field_returns_the_image():
    volume = _volume()
    assert torch.allclose(warp(volume, torch.zeros(1, 3, 5, 6, 7, dtype=torch.float64)), volume)


def test_constant_integer_shift_equals_slicing():
    volume = _volume()
    disp = torch.zeros(1, 3, 5, 6, 7, dtype=torch.float64)
    disp[:, 0], disp[:, 1], disp[:, 2] = 2.0, -1.0, 1.0  # (i, j, k) voxels
    out = warp(volume, disp)
    # out[k, j, i] = volume[k + 1, j - 1, i + 2]
    assert torch.allclose(out[:, :, :-1, 1:, :-2], volume[:, :, 1:, :-1, 2:])


def test_border_and_zero_padding_outside():
    volume = _volume()
    disp = torch.zeros(1, 3, 5, 6, 7, dtype=torch.float64)
    disp[:, 0] = 10.0
    assert torch.allclose(warp(volume, disp, padding="zeros"), torch.zeros_like(volume))
    border = warp(volume, disp, padding="border")
    assert torch.allclose(border, volume[..., -1:].expand_as(volume))


def test_nearest_keeps_label_values():
    labels = torch.randint(0, 4, (1, 1, 5, 6, 7)).double()
    disp = torch.full((1, 3, 5, 6, 7), 0.3, dtype=torch.float64)
    out = warp(labels, disp, mode="nearest")
    assert torch.equal(out, labels)


def _oblique_geometry() -> frames.Geometry:
    angle = np.deg2rad(25.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    ) @ np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.3), -np.sin(0.3)], [0.0, np.sin(0.3), np.cos(0.3)]])
    return frames.Geometry(
        size_ijk=(9, 8, 6),
        spacing_mm=(0.8, 1.3, 2.1),
        origin_lps_mm=(10.0, -4.0, 7.5),
        direction=tuple(rotation.reshape(-1)),
    )


def test_warp_agrees_with_sitk_displacement_field_transform():
    geometry = _oblique_geometry()
    rng = np.random.default_rng(3)
    image_dhw = rng.random(geometry.shape_dhw)
    disp_ijk = rng.uniform(-1.5, 1.5, (3, *geometry.shape_dhw))
    image = frames.image_from_array(image_dhw, geometry)
    disp_lps = frames.disp_lps_from_ijk(disp_ijk, geometry)
    field = frames.image_from_array(disp_lps.astype(np.float64), geometry, is_vector=True)
    transform = sitk.DisplacementFieldTransform(field)
    expected = sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear, -1.0))
    ours = warp(torch.from_numpy(image_dhw)[None, None], torch.from_numpy(disp_ijk)[None])[0, 0].numpy()
    # compare where the target lies inside the grid on every axis (no extrapolation conventions)
    target = frames.identity_grid_ijk(geometry.shape_dhw, dtype=torch.float64)[0].numpy()
    target = target + np.moveaxis(disp_ijk, 0, -1)
    inside = np.all((target >= 0) & (target <= np.array(geometry.size_ijk) - 1), axis=-1)
    assert inside.sum() > 50
    np.testing.assert_allclose(ours[inside], expected[inside], atol=1e-6)


def test_sample_at_ijk_matches_warp_at_grid_points():
    volume = _volume()
    disp = torch.rand(1, 3, 5, 6, 7, dtype=torch.float64)
    points = frames.identity_grid_ijk((5, 6, 7), dtype=torch.float64)[0] + disp[0].permute(1, 2, 3, 0)
    values = sample_at_ijk(volume, points.reshape(-1, 3))
    assert torch.allclose(values, warp(volume, disp).reshape(2, -1))


def test_compose_of_translations_adds_them():
    first = torch.zeros(1, 3, 5, 6, 7, dtype=torch.float64)
    second = torch.zeros_like(first)
    first[:, 0], second[:, 1] = 0.5, -0.25
    assert torch.allclose(compose(first, second), first + second)


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="disp_ijk must be"):
        warp(_volume(), torch.zeros(1, 2, 5, 6, 7))
    with pytest.raises(ConfigError, match="mode='cubic' is not allowed"):
        warp(_volume(), torch.zeros(1, 3, 5, 6, 7, dtype=torch.float64), mode="cubic")


def test_threaded_grid_sample_equals_grid_sample_in_values_and_gradients():
    import torch.nn.functional as F

    from vmgga.field.warp import grid_sample_threaded

    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 3, 6, 7, 8, generator=generator, dtype=torch.float64)
    grid = torch.rand(1, 5, 4, 3, 3, generator=generator, dtype=torch.float64) * 2.4 - 1.2
    weights = torch.randn(1, 3, 5, 4, 3, generator=generator, dtype=torch.float64)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads, function in ((1, F.grid_sample), (2, grid_sample_threaded)):
            torch.set_num_threads(threads)
            v, g = volume.clone().requires_grad_(True), grid.clone().requires_grad_(True)
            if function is F.grid_sample:
                out = F.grid_sample(v, g, mode="bilinear", padding_mode="border", align_corners=True)
            else:
                out = function(v, g, "bilinear", "border")
            (out * weights).sum().backward()
            results.append((out.detach(), v.grad, g.grad))
    finally:
        torch.set_num_threads(previous)
    for reference, ours in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
