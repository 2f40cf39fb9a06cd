"""benchmarks/matcher_3d_stroke.py runs the dense stage with the preset's physical control grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import matcher_3d_stroke


@pytest.mark.parametrize(
    ("overrides", "expected_vox"), [({}, 12.0 / 1.5), ({"dense.instance.grid_spacing_mm": 9.0}, 9.0 / 1.5)]
)
def test_dense_config_converts_the_control_grid_from_mm_at_the_working_spacing(
    overrides, expected_vox, monkeypatch
):
    """``fast`` asks for a 12 mm control grid: 8 voxels of the benchmark's 1.5 mm grid (as register()
    sets it), not the 4-voxel default of ``grid_spacing_vox``."""
    monkeypatch.setitem(matcher_3d_stroke.VARIANTS, "probe", ("cost_volume", overrides))
    config = matcher_3d_stroke.dense_config("probe", 40, None, 1)
    assert matcher_3d_stroke.SPACING_MM == 1.5
    assert config.instance.grid_spacing_vox == expected_vox


def test_ssd_along_truth_samples_the_moving_features_along_t_times_the_truth():
    """Features equal to the i index, truth a shift of 2 voxels along i: at scale t the moving value
    is i + 2 t, so the SSD is (2 t)^2 wherever x + 2.5 stays inside the volume."""
    shape = (6, 7, 12)  # (D, H, W)
    ramp = torch.arange(12, dtype=torch.float32).expand(1, 1, *shape).clone()  # value = i
    truth = np.zeros((3, *shape))
    truth[0] = 2.0  # channel 0 = i
    mask = np.zeros(shape, dtype=bool)
    mask[:, :, :9] = True  # i + 2.5 <= 11
    ssd = matcher_3d_stroke.ssd_along_truth(ramp, ramp, truth, mask)
    expected = [(2 * t) ** 2 for t in matcher_3d_stroke.CURVE_SCALES]
    assert ssd == pytest.approx(expected, rel=1e-5, abs=1e-6)
