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
