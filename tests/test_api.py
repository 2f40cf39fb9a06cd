"""End to end on small real data: a known synthetic deformation is recovered by register()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import vmgga
from vmgga import make_config

STROKE = Path(__file__).resolve().parent / "data" / "stroke"


def _known_bspline(reference: sitk.Image, seed: int, std_mm: float) -> sitk.BSplineTransform:
    """A seeded random smooth deformation (fixed -> moving) over ``reference``'s domain."""
    transform = sitk.BSplineTransformInitializer(reference, [4, 4, 4])
    rng = np.random.default_rng(seed)
    transform.SetParameters(tuple(rng.normal(0.0, std_mm, len(transform.GetParameters()))))
    return transform


def _displacements_mm(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """``(D, H, W, 3)`` displacement T(p) - p on ``reference``'s grid (SimpleITK computes it)."""
    to_field = sitk.TransformToDisplacementFieldFilter()
    to_field.SetReferenceImage(reference)
    to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
    return sitk.GetArrayFromImage(to_field.Execute(transform))


@pytest.fixture(scope="module")
def known_pair(tmp_path_factory):
    """fixed = T1 deformed by a known B-spline, moving = T2 (co-registered with T1)."""
    t1 = sitk.ReadImage(str(STROKE / "T1.nii.gz"), sitk.sitkFloat32)
    truth = _known_bspline(t1, seed=1, std_mm=4.0)
    folder = tmp_path_factory.mktemp("pair")
    fixed_path = folder / "fixed_t1_deformed.nii.gz"
    sitk.WriteImage(sitk.Resample(t1, t1, truth, sitk.sitkLinear, 0.0), str(fixed_path))
    return fixed_path, STROKE / "T2.nii.gz", truth


@pytest.fixture(scope="module")
def result(known_pair):
    fixed_path, moving_path, _ = known_pair
    return vmgga.register(fixed_path, moving_path, make_config("fast", num_threads=2), progress=False)


def test_known_deformation_is_recovered(known_pair, result):
    fixed_path, _, truth = known_pair
    fixed = sitk.ReadImage(str(fixed_path), sitk.sitkFloat32)
    brain = sitk.GetArrayFromImage(fixed) > 10
    true_disp = _displacements_mm(truth, fixed)
    est_disp = _displacements_mm(result.transform, fixed)
    tre = np.linalg.norm(est_disp - true_disp, axis=-1)[brain]
    identity = np.linalg.norm(true_disp, axis=-1)[brain]
    assert identity.mean() > 1.5
    print(f"identity {identity.mean():.3f} mm, registered {tre.mean():.3f} mm")
    assert tre.mean() < 0.6 * identity.mean()
    assert result.report["jacobian"]["negative_fraction"] < 0.0005


def _float32_tolerance(values: np.ndarray) -> float:
    """What resampling in float32 (``vmgga.field.resample``) may differ from ITK's float64: grid
    positions off by ~1e-5 voxels, up to ~2e-5 of the intensity range at the sharpest edges."""
    return 3e-5 * float(values.max() - values.min())


def test_warped_matches_resampling_through_the_transform(result):
    expected = sitk.Resample(
        result.moving,
        result.fixed,
        result.transform,
        sitk.sitkLinear,
        float(np.min(sitk.GetArrayViewFromImage(result.moving))),
        sitk.sitkFloat32,
    )
    want = sitk.GetArrayFromImage(expected)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.warped), want, atol=_float32_tolerance(want))
    assert result.confidence.GetSize() == result.fixed.GetSize()
    confidence = sitk.GetArrayFromImage(result.confidence)
    assert confidence.min() >= 0.0 and confidence.max() <= 1.0


def test_moving_affine_matches_resampling_through_the_affine_alone(result):
    affine = result.transform.GetNthTransform(0)
    expected = sitk.Resample(
        result.moving,
        result.fixed,
        affine,
        sitk.sitkLinear,
        float(np.min(sitk.GetArrayViewFromImage(result.moving))),
        sitk.sitkFloat32,
    )
    want = sitk.GetArrayFromImage(expected)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(result.moving_affine), want, atol=_float32_tolerance(want)
    )


def test_write_outputs_gives_loadable_complete_set(result, tmp_path):
    paths = vmgga.write_outputs(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "confidence.nii.gz",
        "report.json",
        "transform.h5",
        "warped.nii.gz",
    ]
    loaded = sitk.ReadTransform(str(paths["transform"]))
    point = result.fixed.TransformContinuousIndexToPhysicalPoint((20.0, 30.0, 25.0))
    np.testing.assert_allclose(
        loaded.TransformPoint(point), result.transform.TransformPoint(point), atol=1e-6
    )
    report = json.loads(paths["report"].read_text())
    for key in (
        "inputs",
        "working_grid",
        "affine",
        "jacobian",
        "confidence",
        "timings_s",
        "config",
        "environment",
    ):
        assert key in report
    assert report["inputs"]["moving"]["modality"] == "mr"


def test_same_seed_gives_bit_identical_transform(known_pair, result):
    fixed_path, moving_path, _ = known_pair
    again = vmgga.register(fixed_path, moving_path, make_config("fast", num_threads=2), progress=False)
    first = sitk.GetArrayFromImage(result.displacement_lps_mm)
    np.testing.assert_array_equal(first, sitk.GetArrayFromImage(again.displacement_lps_mm))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.warped), sitk.GetArrayFromImage(again.warped))
