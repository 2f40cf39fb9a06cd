"""The harness's own math: displacement fields, TRE, Jacobian/folding, Dice, composition, deformations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks import common


def _oblique_image(size=(9, 8, 7), spacing=(1.5, 0.8, 2.0)) -> sitk.Image:
    """A small float image on an oblique, anisotropic grid."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin((12.0, -7.0, 3.5))
    image.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.3, -0.2, 0.5).GetMatrix())
    return image


def _displacements_by_points(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """``T(x) - x`` at every voxel, point by point with TransformPoint, ``(D, H, W, 3)``."""
    size = reference.GetSize()
    out = np.zeros((size[2], size[1], size[0], 3))
    for k in range(size[2]):
        for j in range(size[1]):
            for i in range(size[0]):
                x = reference.TransformIndexToPhysicalPoint((i, j, k))
                out[k, j, i] = np.subtract(transform.TransformPoint(x), x)
    return out


def _random_affine(seed: int) -> sitk.AffineTransform:
    rng = np.random.default_rng(seed)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((np.eye(3) + rng.normal(0, 0.05, (3, 3))).ravel().tolist())
    affine.SetTranslation(rng.normal(0, 2.0, 3).tolist())
    affine.SetCenter((10.0, -5.0, 4.0))
    return affine


def test_displacement_field_matches_transform_point_on_oblique_grid():
    reference = _oblique_image()
    affine = _random_affine(0)
    np.testing.assert_allclose(
        common.displacement_lps_mm(affine, reference), _displacements_by_points(affine, reference), atol=1e-9
    )


def test_tre_of_truth_is_zero_and_of_identity_is_mean_displacement():
    reference = _oblique_image()
    phi = common.bspline_deformation(reference, common.BSplineDeformationSpec(seed=3, control_spacing_mm=6.0))
    true_disp = common.displacement_lps_mm(phi, reference)
    mask = np.zeros(true_disp.shape[:3], bool)
    mask[1:-1, 2:, :5] = True
    assert common.tre_stats(true_disp, true_disp, mask).mean_mm == 0.0
    by_points = _displacements_by_points(phi, reference)
    magnitudes = np.linalg.norm(by_points, axis=-1)[mask]
    identity = common.tre_stats(np.zeros_like(true_disp), true_disp, mask)
    assert identity.mean_mm == pytest.approx(magnitudes.mean(), rel=1e-9)
    assert identity.p95_mm == pytest.approx(np.percentile(magnitudes, 95), rel=1e-9)
    assert identity.n_points == mask.sum()
    assert identity.mean_mm > 0.5  # the deformation is not trivial


def test_displacement_transform_round_trip():
    reference = _oblique_image()
    disp = np.random.default_rng(1).normal(0, 1.0, (7, 8, 9, 3))
    back = common.displacement_lps_mm(common.displacement_transform(disp, reference), reference)
    np.testing.assert_allclose(back, disp, atol=1e-9)


def test_jacobian_of_affine_displacement_is_det_of_matrix_on_oblique_grid():
    reference = _oblique_image(size=(12, 11, 10))
    affine = _random_affine(2)
    jacobian = common.jacobian_determinant(common.displacement_lps_mm(affine, reference), reference)
    expected = np.linalg.det(np.asarray(affine.GetMatrix()).reshape(3, 3))
    np.testing.assert_allclose(jacobian[1:-1, 1:-1, 1:-1], expected, rtol=1e-6)


def test_folding_fraction_counts_nonpositive_determinants():
    reference = _oblique_image(size=(12, 11, 10))
    mirror = sitk.AffineTransform(3)
    mirror.SetMatrix(np.diag([-1.0, 1.0, 1.0]).ravel().tolist())  # det -1 everywhere: all folded
    jacobian = common.jacobian_determinant(common.displacement_lps_mm(mirror, reference), reference)
    assert common.folding_fraction(jacobian[1:-1, 1:-1, 1:-1]) == 1.0
    values = np.array([[[1.0, -0.5, 0.0, 2.0]]])
    assert common.folding_fraction(values) == 0.5
    assert common.folding_fraction(values, values > 0.5) == 0.0


def test_dice_of_known_box_overlaps():
    a = np.zeros((10, 10, 10), np.uint8)
    b = np.zeros_like(a)
    a[0:4, 0:5, 0:5] = 1  # 100 voxels
    b[2:6, 0:5, 0:5] = 1  # 100 voxels, 50 shared
    a[7:9, 7:9, 7:9] = 2
    b[7:9, 7:9, 7:9] = 2  # identical
    b[0, 9, 9] = 3  # only in b
    dice = common.dice_per_label(a, b, [1, 2, 3, 4])
    assert dice[1] == pytest.approx(2 * 50 / 200)
    assert dice[2] == 1.0
    assert dice[3] == 0.0
    assert math.isnan(dice[4])


def test_then_apply_applies_first_then_second():
    first = sitk.TranslationTransform(3, (1.0, 2.0, 3.0))
    second = sitk.AffineTransform(3)
    second.SetMatrix(np.diag([2.0, 1.0, 0.5]).ravel().tolist())
    point = (4.0, -1.0, 2.0)
    expected = second.TransformPoint(first.TransformPoint(point))
    np.testing.assert_allclose(common.then_apply(first, second).TransformPoint(point), expected)
    nested = common.then_apply(sitk.CompositeTransform([first]), second)  # ANTs gives composites
    np.testing.assert_allclose(nested.TransformPoint(point), expected)


def test_deformation_is_deterministic_per_seed_and_has_the_requested_scale():
    reference = sitk.Image([124, 160, 140], sitk.sitkUInt8)
    assert common.mesh_size_for(reference, 40.0) == [3, 4, 4]
    small = _oblique_image()
    spec = common.BSplineDeformationSpec(seed=7, control_spacing_mm=6.0)
    same = [common.bspline_deformation(small, spec).GetParameters() for _ in range(2)]
    other = common.bspline_deformation(small, common.BSplineDeformationSpec(seed=8, control_spacing_mm=6.0))
    assert same[0] == same[1]
    assert same[0] != other.GetParameters()
    coefficients = common.sample_coefficients_lps_mm(common.BSplineDeformationSpec(seed=0), 20000)
    assert np.std(coefficients) == pytest.approx(common.DEFAULT_COEFFICIENT_STD_MM, rel=0.03)


def test_bspline_phi_maps_fixed_to_original():
    """``fixed(x) = original(phi(x))``: the resampled image at x equals the original at phi(x)."""
    ramp = np.fromfunction(lambda k, j, i: 3.0 * i + 2.0 * j - k, (16, 18, 20)).astype(np.float32)
    reference = _oblique_image(size=(20, 18, 16), spacing=(1.0, 1.0, 1.0))
    image = sitk.GetImageFromArray(ramp)
    image.CopyInformation(reference)
    phi = common.bspline_deformation(
        image, common.BSplineDeformationSpec(seed=1, control_spacing_mm=8.0, coefficient_std_mm=0.5)
    )
    fixed = sitk.GetArrayFromImage(common.resample(image, image, phi))
    x = image.TransformIndexToPhysicalPoint((10, 9, 8))
    index_phi = image.TransformPhysicalPointToContinuousIndex(phi.TransformPoint(x))
    expected = 3.0 * index_phi[0] + 2.0 * index_phi[1] - index_phi[2]  # linear ramp: exact interpolation
    assert fixed[8, 9, 10] == pytest.approx(expected, abs=1e-3)


def test_markdown_table_and_ratios():
    rows = [{"method": "a", "t": 2.0}, {"method": "b", "t": float("nan")}]
    table = common.markdown_table(rows, ["method", "t", "missing"])
    assert table.splitlines()[2] == "| a | 2.000 | - |"
    assert table.splitlines()[3] == "| b | - | - |"
    summary = {"ours": {"s": 5.0}, "identity": {"s": 0.0}, "peer": {"s": 20.0}}
    assert common.ratio_lines(summary, ["ours"], ["s"]) == ["ours / peer: s x0.250"]
