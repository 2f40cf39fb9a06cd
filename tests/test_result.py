"""RegistrationResult: a field given as a function is computed once, on first read."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from vmgga.result import RegistrationResult


def _fields(**extra) -> dict:
    image = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    names = ("fixed", "moving", "warped", "confidence", "jacobian_determinant", "displacement_lps_mm")
    return {"transform": sitk.CompositeTransform(3), **dict.fromkeys(names, image), **extra}


def _result(moving_affine) -> RegistrationResult:
    return RegistrationResult(**_fields(moving_affine=moving_affine))


def test_an_image_given_is_returned_as_is():
    before = sitk.Image([2, 3, 4], sitk.sitkFloat32) + 5.0
    assert _result(before).moving_affine is before


def test_a_function_given_is_called_on_first_read_only():
    calls = []

    def compute() -> sitk.Image:
        calls.append(1)
        return sitk.Image([2, 2, 2], sitk.sitkFloat32) + float(len(calls))

    result = _result(compute)
    assert calls == []
    first = result.moving_affine
    second = result.moving_affine
    assert calls == [1]
    assert first is second
    assert sitk.GetArrayViewFromImage(first).max() == 1.0


def test_moving_affine_is_required():
    with pytest.raises(TypeError, match="moving_affine"):
        RegistrationResult(**_fields())
