"""Issue 16 item 10: the suspect-result detector on constructed inputs (answers worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.qc.plausibility import (
    STATUS_OK,
    STATUS_SUSPECT,
    PlausibilityThresholds,
    affine_principal_scales,
    assess_report,
    foreground_dice,
    foreground_overlap,
    normalised_mutual_information,
)

# --- normalised mutual information --------------------------------------------------------------


def test_nmi_of_an_image_with_itself_is_two_and_of_independent_halves_is_one():
    a = np.array([0.0, 0.0, 1.0, 1.0] * 50)
    b = np.array([0.0, 1.0, 0.0, 1.0] * 50)  # every (a, b) combination equally often: independent
    # H(A) = H(B) = ln 2; identical: H(A, B) = ln 2 -> 2; independent: H(A, B) = ln 4 -> 1
    assert normalised_mutual_information(a, a) == pytest.approx(2.0)
    assert normalised_mutual_information(a, b) == pytest.approx(1.0)


def test_nmi_of_a_three_level_image_against_a_merged_copy():
    a = np.repeat([0.0, 1.0, 2.0], 100)
    b = np.repeat([0.0, 0.0, 1.0], 100)  # levels 0 and 1 of a merged
    h_a, h_b = math.log(3), -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    # b is a function of a: H(A, B) = H(A)
    assert normalised_mutual_information(a, b) == pytest.approx((h_a + h_b) / h_a)


def test_nmi_ranks_aligned_above_shuffled_and_ignores_a_linear_intensity_change():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20000)
    aligned = 3.0 * a + 7.0 + 0.1 * rng.normal(size=a.size)
    shuffled = rng.permutation(aligned)
    assert normalised_mutual_information(a, aligned) > normalised_mutual_information(a, shuffled) + 0.1
    assert normalised_mutual_information(a, shuffled) == pytest.approx(1.0, abs=0.03)
    assert normalised_mutual_information(a, 2.0 * a - 5.0) == pytest.approx(
        normalised_mutual_information(a, a)
    )


def test_nmi_of_constant_or_empty_samples_is_one():
    assert normalised_mutual_information(np.ones(50), np.arange(50.0)) == pytest.approx(1.0)
    assert normalised_mutual_information(np.array([]), np.array([])) == 1.0


# --- affine scales, foreground Dice -------------------------------------------------------------


def test_principal_scales_of_a_rotated_anisotropic_scaling():
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.4, -0.3, 1.1)
    matrix = np.asarray(rotation.GetMatrix()).reshape(3, 3) @ np.diag([0.5, 2.0, 1.0])
    np.testing.assert_allclose(affine_principal_scales(matrix), [2.0, 1.0, 0.5], atol=1e-12)


def test_principal_scales_of_a_shear():
    shear = 0.8
    matrix = np.array([[1.0, shear, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # the 2x2 shear [[1, s], [0, 1]] has singular values (sqrt(s^2 + 4) +- s) / 2
    root = math.sqrt(shear**2 + 4)
    np.testing.assert_allclose(affine_principal_scales(matrix), [(root + shear) / 2, 1.0, (root - shear) / 2])


def test_foreground_dice_of_two_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert foreground_dice(a, b) == pytest.approx(2 * 4 / 16)
    assert foreground_dice(a, a) == 1.0
    assert foreground_dice(np.zeros(3, bool), np.zeros(3, bool)) == 0.0


def test_foreground_overlap_counts_the_smaller_mask():
    long_ct = np.zeros(100, bool)
    long_ct[:] = True
    short_mr = np.zeros(100, bool)
    short_mr[40:60] = True  # a 20-voxel slab inside the long image: fully shared
    assert foreground_overlap(long_ct, short_mr) == 1.0
    assert foreground_dice(long_ct, short_mr) == pytest.approx(2 * 20 / 120)
    shifted = np.zeros(100, bool)
    shifted[90:] = True
    half = np.zeros(100, bool)
    half[:95] = True
    assert foreground_overlap(half, shifted) == pytest.approx(5 / 10)
    assert foreground_overlap(long_ct, np.zeros(100, bool)) == 0.0


# --- the verdict --------------------------------------------------------------------------------


def good_report() -> dict:
    """Numbers like those of the stroke T2 <- T1 pair (benchmarks/results/suspect_results.md)."""
    return {
        "confidence": {"mean": 0.58},
        "affine": {"foreground_overlap": 0.98, "principal_scales": [0.97, 0.97, 0.95], "determinant": 0.89},
        "similarity": {"nmi_gain": 0.034},
    }


def with_value(section: str, key: str, value) -> dict:
    report = good_report()
    report[section] = {**report[section], key: value}
    return report


def test_a_good_report_is_ok():
    verdict = assess_report(good_report())
    assert (verdict.status, verdict.reasons) == (STATUS_OK, ())
    assert verdict.as_report_entries() == {"status": "ok", "suspect_reasons": []}


def test_a_report_without_the_numbers_is_not_flagged():
    assert assess_report({}).status == STATUS_OK


T = PlausibilityThresholds()


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("confidence", "mean", T.min_confidence_mean / 2, "low matching confidence"),
        ("affine", "foreground_overlap", T.min_foreground_overlap - 0.1, "little overlap after the affine"),
        ("affine", "principal_scales", [T.max_affine_scale * 1.2, 1.0, 1.0], "extreme affine scale"),
        ("affine", "principal_scales", [1.0, 1.0, T.min_affine_scale * 0.8], "extreme affine scale"),
        ("affine", "principal_scales", [1.2, 1.0, 1.2 / (T.max_affine_anisotropy * 1.1)], "shear"),
        ("affine", "determinant", -0.9, "mirrored"),
        ("similarity", "nmi_gain", T.min_nmi_gain - 0.01, "no similarity gain"),
    ],
)
def test_each_failure_sign_makes_the_result_suspect(section, key, value, words):
    verdict = assess_report(with_value(section, key, value))
    assert verdict.status == STATUS_SUSPECT
    assert len(verdict.reasons) == 1 and words in verdict.reasons[0]


def test_values_at_the_thresholds_are_ok_and_several_signs_are_all_listed():
    at_limits = good_report()
    at_limits["confidence"]["mean"] = T.min_confidence_mean
    at_limits["affine"]["foreground_overlap"] = T.min_foreground_overlap
    at_limits["similarity"]["nmi_gain"] = T.min_nmi_gain
    assert assess_report(at_limits).status == STATUS_OK
    bad = with_value("confidence", "mean", 0.0)
    bad["similarity"]["nmi_gain"] = -1.0
    assert len(assess_report(bad).reasons) == 2


def test_no_gain_is_expected_when_the_images_already_agree_after_the_affine():
    # an image registered to itself: NMI is at its maximum (2) after the affine, nothing to gain
    report = with_value("similarity", "nmi_gain", T.min_nmi_gain - 0.01)
    report["similarity"]["nmi_affine"] = T.aligned_nmi + 0.1
    assert assess_report(report).status == STATUS_OK
    report["similarity"]["nmi_affine"] = T.aligned_nmi - 0.1
    assert assess_report(report).status == STATUS_SUSPECT


def test_custom_thresholds_are_used():
    strict = PlausibilityThresholds(min_confidence_mean=0.9)
    assert assess_report(good_report(), strict).status == STATUS_SUSPECT
