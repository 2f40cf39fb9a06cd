"""Label warping and Dice; composing chained transforms, checked point by point."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.batch.chain import chained_result, compose_transforms, displacement_of, working_grid_like
from vmgga.batch.labels import read_labels, warp_labels
from vmgga.errors import InputError
from vmgga.frames import array_from_image
from vmgga.metrics import dice_per_label


def label_image(array: np.ndarray, spacing=(2.0, 2.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    return image


def test_warp_labels_by_a_translation_shifts_them_by_whole_voxels():
    array = np.zeros((10, 12, 14), np.uint8)
    array[4:6, 5:7, 3:5] = 3
    labels = label_image(array)
    # fixed point x maps to moving point x + (4, 0, 0) mm = 2 voxels along i
    warped = array_from_image(warp_labels(labels, labels, sitk.TranslationTransform(3, (4.0, 0.0, 0.0))))
    np.testing.assert_array_equal(warped[:, :, :-2], array[:, :, 2:])
    assert warped.dtype == np.uint8


def test_dice_per_label_against_hand_counts():
    a = np.zeros((1, 1, 10), np.uint8)
    b = np.zeros((1, 1, 10), np.uint8)
    a[0, 0, 0:4] = 1  # 4 voxels
    b[0, 0, 2:4] = 1  # 2 voxels, 2 shared -> 2*2/6
    a[0, 0, 6] = 2  # label 2 only in a -> 0
    b[0, 0, 8] = 5  # label 5 only in b
    scores = dice_per_label(a, b)  # the one vmgga.metrics.dice_per_label that batch/case.py calls
    assert scores == pytest.approx({1: 4 / 6, 2: 0.0, 5: 0.0})
    assert dice_per_label(a, b, np.array([1])) == pytest.approx({1: 4 / 6})


def test_read_labels_refuses_fractional_maps(tmp_path):
    path = tmp_path / "soft.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((10, 10, 10), 0.5, np.float32)), str(path))
    with pytest.raises(InputError, match="non-integer"):
        read_labels(str(path), "moving")


def test_composition_applies_the_previous_transform_first():
    previous = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, 0.0, 0.2, (5.0, 0.0, -2.0))
    pair = sitk.ScaleTransform(3, (1.1, 0.9, 1.0))
    composed = compose_transforms(pair, previous)
    for point in [(0.0, 0.0, 0.0), (10.0, -5.0, 3.0), (-7.0, 8.0, 1.0)]:
        expected = pair.TransformPoint(previous.TransformPoint(point))
        np.testing.assert_allclose(composed.TransformPoint(point), expected, atol=1e-9)


@dataclasses.dataclass
class PairResult:
    """The fields of a RegistrationResult that chained_result reads and replaces."""

    transform: sitk.Transform
    fixed: sitk.Image
    moving: sitk.Image
    warped: sitk.Image
    moving_affine: sitk.Image
    confidence: sitk.Image
    jacobian_determinant: sitk.Image | None
    displacement_lps_mm: sitk.Image
    report: dict


def constant_like(image: sitk.Image, value: float) -> sitk.Image:
    constant = sitk.Image(image.GetSize(), sitk.sitkFloat32) + value
    constant.CopyInformation(image)
    return constant


def test_chained_result_of_two_translations():
    """Baseline -> fu1 shifts by a, fu1 -> fu2 by b: the chain shifts by a + b, det J = 1."""
    baseline = sitk.Image([20, 24, 16], sitk.sitkFloat32) + 1.0
    baseline.SetSpacing((2.0, 2.0, 2.0))
    baseline.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    grid = working_grid_like(baseline, 4.0)
    pair = PairResult(
        sitk.TranslationTransform(3, (1.0, -2.0, 0.5)), baseline, baseline, baseline, baseline,
        constant_like(baseline, 0.5), None, displacement_of(sitk.Transform(3, sitk.sitkIdentity), grid),
        {"jacobian": {}, "confidence": {"mean": 0.5}},
    )  # fmt: skip
    previous = sitk.TranslationTransform(3, (3.0, 0.0, -1.0))
    out = chained_result(pair, previous, constant_like(baseline, 0.8), baseline)
    vectors = array_from_image(out.displacement_lps_mm)
    np.testing.assert_allclose(vectors[3, 3, 3], (4.0, -2.0, -0.5), atol=1e-5)  # shifts add up
    np.testing.assert_allclose(array_from_image(out.jacobian_determinant), 1.0, atol=1e-5)
    assert out.report["jacobian"]["negative_fraction"] == 0.0
    np.testing.assert_allclose(array_from_image(out.confidence)[3:-3, 3:-3, 3:-3], 0.5)  # min of links
    assert out.report["chain"]["jacobian_voxels"] > 0
    assert out.fixed is baseline


def test_a_case_without_labels_removes_the_warped_labels_of_an_earlier_run(tmp_path):
    from vmgga.batch.case import WARPED_LABELS_NAME, _write_labels
    from vmgga.batch.manifest import Case

    stale = tmp_path / WARPED_LABELS_NAME
    stale.write_bytes(b"labels of the previous pair")
    keep = tmp_path / "notes.txt"
    keep.write_text("a user's file")
    case = Case(case_id="c1", fixed="fixed.nii.gz", moving="moving.nii.gz")
    outputs: dict = {}
    assert _write_labels(case, None, tmp_path, outputs) is None
    assert not stale.exists() and keep.exists() and outputs == {}
