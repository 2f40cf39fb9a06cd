"""The working grid covers and is centred on the fixed image, is isotropic and bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import ConfigError
from vmgga.frames import geometry_of, lps_from_ijk
from vmgga.preprocess.grid import resample_to_grid, working_geometry


def _centre(geometry) -> np.ndarray:
    return lps_from_ijk((np.asarray(geometry.size_ijk) - 1.0)[None] / 2.0, geometry)[0]


def test_working_grid_isotropic_centred_covering(small_image):
    fixed = geometry_of(small_image)
    grid = working_geometry(fixed, 1.0, 10**6)
    assert grid.spacing_mm == (1.0, 1.0, 1.0)
    assert grid.direction == fixed.direction
    np.testing.assert_allclose(_centre(grid), _centre(fixed), atol=1e-9)
    extent = np.asarray(fixed.size_ijk) * np.asarray(fixed.spacing_mm)
    assert np.all(np.asarray(grid.size_ijk) * 1.0 >= extent - 1e-6)
    assert np.all(np.asarray(grid.size_ijk) * 1.0 < extent + 1.0 + 1e-6)


def test_working_grid_respects_voxel_bound(small_image):
    grid = working_geometry(geometry_of(small_image), 0.1, 20_000)
    assert math.prod(grid.size_ijk) <= 20_000
    assert grid.spacing_mm[0] > 0.1


def test_working_grid_rejects_bad_spacing(small_image):
    with pytest.raises(ConfigError, match="spacing_mm > 0"):
        working_geometry(geometry_of(small_image), 0.0, 10**6)


def test_resample_identity_on_own_grid_keeps_values(small_image):
    same = resample_to_grid(small_image, geometry_of(small_image))
    np.testing.assert_allclose(sitk.GetArrayFromImage(same), sitk.GetArrayFromImage(small_image), atol=1e-4)


def test_antialiasing_smooths_before_downsampling():
    rng = np.random.default_rng(1)
    noise = sitk.GetImageFromArray(rng.normal(0, 1, (32, 32, 32)).astype(np.float32))
    coarse = working_geometry(geometry_of(noise), 4.0, 10**6)
    smooth = sitk.GetArrayFromImage(resample_to_grid(noise, coarse))
    raw = sitk.GetArrayFromImage(resample_to_grid(noise, coarse, antialias=False))
    assert smooth.std() < 0.5 * raw.std()


def _image(array_dhw: np.ndarray, spacing_mm, origin_lps_mm=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_dhw.astype(np.float32))
    image.SetSpacing([float(s) for s in spacing_mm])
    image.SetOrigin([float(v) for v in origin_lps_mm])
    return image


def test_block_averaged_antialiasing_keeps_physical_positions():
    """A fine image (0.5 x 0.5 x 0.8 mm, block-averaged 4x4x2 on the way to a 2 mm grid) keeps a
    blob's centre and a ramp's values at the grid points (both are computed from the positions)."""
    spacing, shape_dhw = np.array([0.5, 0.5, 0.8]), (60, 97, 101)  # sizes not multiples of the blocks
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_dhw], indexing="ij")
    x, y, z = i * spacing[0] - 3.0, j * spacing[1] + 2.0, k * spacing[2] + 1.0  # LPS, origin (-3, 2, 1)
    centre = np.array([20.0, 25.0, 24.0])
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / (2 * 6.0**2))
    ramp = 0.3 * x - 0.2 * y + 0.5 * z
    coarse = working_geometry(geometry_of(_image(blob, spacing, (-3.0, 2.0, 1.0))), 2.0, 10**6)
    points = lps_from_ijk(
        np.stack(np.meshgrid(*[np.arange(n) for n in coarse.size_ijk], indexing="ij"), -1).reshape(-1, 3),
        coarse,
    )
    blob_coarse = sitk.GetArrayFromImage(resample_to_grid(_image(blob, spacing, (-3.0, 2.0, 1.0)), coarse))
    weights = blob_coarse.transpose(2, 1, 0).reshape(-1)
    np.testing.assert_allclose(weights @ points / weights.sum(), centre, atol=0.05)
    ramp_coarse = sitk.GetArrayFromImage(resample_to_grid(_image(ramp, spacing, (-3.0, 2.0, 1.0)), coarse))
    expected = (points @ np.array([0.3, -0.2, 0.5])).reshape(coarse.size_ijk).transpose(2, 1, 0)
    inner = (slice(2, -2),) * 3  # away from the edges, where smoothing meets the border
    np.testing.assert_allclose(ramp_coarse[inner], expected[inner], atol=1e-3)


def test_block_averaged_antialiasing_passes_low_and_stops_aliasing_frequencies():
    """0.5 mm -> 2 mm grid (blocks of 4): a 24 mm wave keeps the Gaussian's amplitude
    ``exp(-2 pi^2 var / period^2)`` with ``var = (2^2 - 0.5^2) / 4`` mm^2; a 3 mm wave, which the
    2 mm grid would alias, is damped about as much as by that Gaussian (to 0.13 of its amplitude)."""
    x = np.arange(160) * 0.5
    variance = (2.0**2 - 0.5**2) / 4.0
    for period, expected in ((24.0, math.exp(-2 * math.pi**2 * variance / 24.0**2)), (3.0, 0.13)):
        wave = np.broadcast_to(np.sin(2 * math.pi * x / period), (16, 16, 160))
        image = _image(np.ascontiguousarray(wave), (0.5, 0.5, 0.5))
        coarse = working_geometry(geometry_of(image), 2.0, 10**6)
        values = sitk.GetArrayFromImage(resample_to_grid(image, coarse))[4, 4, 3:-3]
        raw = sitk.GetArrayFromImage(resample_to_grid(image, coarse, antialias=False))[4, 4, 3:-3]
        amplitude = np.abs(values).max()
        if period > 10:
            assert amplitude == pytest.approx(expected * np.abs(raw).max(), rel=0.03)
        else:
            assert np.abs(raw).max() > 0.5 and amplitude < 1.2 * 0.13 * np.abs(raw).max()
