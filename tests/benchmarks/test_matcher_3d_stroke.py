"""benchmarks/matcher_3d_stroke.py runs the dense stage with the preset's physical control grid."""

from __future__ import annotations

import pytest

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
