"""Modality detection and per-modality normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from vmgga.config import Modality, PreprocessConfig
from vmgga.errors import ConfigError, IntensityError
from vmgga.preprocess.intensity import (
    PERCENTILE_SAMPLE,
    detect_modality,
    foreground_threshold,
    normalise_intensity,
    strided_sample,
)


def _ct_like() -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = np.full((20, 20, 20), -1000.0)
    volume[4:16, 4:16, 4:16] = rng.normal(40, 20, (12, 12, 12))
    volume[8:10, 8:10, 8:10] = 900.0
    return volume


def _mr_like() -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = np.zeros((20, 20, 20))
    volume[4:16, 4:16, 4:16] = rng.uniform(100, 800, (12, 12, 12))
    return volume


def test_detects_ct_from_air_and_mr_from_nonnegative_values():
    assert detect_modality(_ct_like()) == Modality.CT
    assert detect_modality(_mr_like()) == Modality.MR


def test_request_then_dicom_hint_take_precedence():
    assert detect_modality(_ct_like(), "mr") == Modality.MR
    assert detect_modality(_mr_like(), "auto", "ct") == Modality.CT
    with pytest.raises(ConfigError, match="modality='pet'.*expected one of"):
        detect_modality(_mr_like(), "pet")


def test_ct_window_maps_linearly_and_clips():
    config = PreprocessConfig(ct_window_hu=(-1000.0, 1000.0))
    values = np.array([-2000.0, -1000.0, 0.0, 500.0, 3000.0])
    np.testing.assert_allclose(normalise_intensity(values, Modality.CT, config), [0.0, 0.0, 0.5, 0.75, 1.0])


def test_mr_robust_percentiles_keep_background_zero():
    volume = _mr_like()
    volume[5, 5, 5] = 1e6  # one outlier must not squash the range
    result = normalise_intensity(volume, Modality.MR, PreprocessConfig(mr_percentiles=(1.0, 99.0)))
    assert result.dtype == np.float32
    assert result[0, 0, 0] == 0.0
    assert result[5, 5, 5] == 1.0
    assert 0.3 < float(np.median(result[4:16, 4:16, 4:16])) < 0.7


def test_constant_image_is_refused():
    with pytest.raises(IntensityError, match="constant"):
        normalise_intensity(np.full((8, 8, 8), 5.0), Modality.MR, PreprocessConfig())


def test_foreground_threshold_is_a_tenth_of_the_99th_percentile():
    values = np.arange(1, 101, dtype=np.float64)  # 99th percentile (linear): 99.01
    assert foreground_threshold(values) == pytest.approx(9.901)


def test_large_volume_normalised_from_a_strided_sample_like_from_all_voxels():
    """A 6 M-voxel MR (above the sample limit) gets the percentiles of all its voxels within a
    tiny fraction of the range: the normalised values match a full-percentile reference."""
    rng = np.random.default_rng(0)
    volume = rng.gamma(2.0, 50.0, size=(100, 200, 300)).astype(np.float32)
    volume[:, :, :40] = 0.0  # background
    assert volume.size > PERCENTILE_SAMPLE
    low, high = np.percentile(volume[volume != 0], PreprocessConfig().mr_percentiles)
    reference = np.clip((volume - min(low, 0.0)) / (high - min(low, 0.0)), 0.0, 1.0)
    result = normalise_intensity(volume, Modality.MR, PreprocessConfig())
    np.testing.assert_allclose(result, reference, atol=5e-3)
    assert strided_sample(volume).size <= PERCENTILE_SAMPLE
