"""Issue 16 item 6: ``vmgga apply --labels`` keeps label values exactly, accepts an all-zero map
and refuses a float map with non-integer values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.cli.main import main
from vmgga.errors import IntensityError
from vmgga.export.apply import apply_transform
from vmgga.io.labels import read_label_map, smallest_integer_type

SHAPE_KJI = (10, 11, 12)


def label_image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.0, 2.0))
    image.SetOrigin((-10.0, 4.0, 7.0))
    return image


def blocks(dtype, values) -> np.ndarray:
    """Three labelled blocks on a zero background."""
    array = np.zeros(SHAPE_KJI, dtype)
    for n, value in enumerate(values):
        array[2 + 2 * n : 4 + 2 * n, 2:8, 3:9] = value
    return array


def write(tmp_path: Path, name: str, image: sitk.Image) -> Path:
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


def run_apply(tmp_path: Path, image: Path, reference: Path, output: Path) -> int:
    transform = tmp_path / "identity.tfm"
    sitk.WriteTransform(sitk.Transform(3, sitk.sitkIdentity), str(transform))
    return main(
        ["apply", str(transform), str(image), "--reference", str(reference), "-o", str(output), "--labels"]
    )


def reference_image(tmp_path: Path) -> Path:
    """A non-constant float image on the label maps' grid."""
    array = np.random.default_rng(0).uniform(0, 100, SHAPE_KJI).astype(np.float32)
    return write(tmp_path, "reference.nii.gz", label_image(array))


@pytest.mark.parametrize("dtype", [np.uint32, np.int32])
def test_labels_above_2_to_the_24_survive_an_identity_exactly(tmp_path, dtype):
    """float32 holds integers exactly only up to 2^24: 2^24 + 1 would become 2^24."""
    values = [2**24 + 1, 2**24 + 3, 2**31 - 5]
    labels = blocks(dtype, values)
    output = tmp_path / "warped_labels.nii.gz"
    code = run_apply(
        tmp_path, write(tmp_path, "labels.nii.gz", label_image(labels)), reference_image(tmp_path), output
    )
    assert code == 0
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    assert warped.dtype == labels.dtype
    np.testing.assert_array_equal(warped, labels)


def test_int64_labels_keep_their_type_and_values():
    labels = blocks(np.int64, [2**40 + 1, -(2**33) - 7])
    image = label_image(labels)
    warped = apply_transform(sitk.Transform(3, sitk.sitkIdentity), image, image, labels=True)
    assert warped.GetPixelID() == sitk.sitkInt64
    np.testing.assert_array_equal(sitk.GetArrayFromImage(warped), labels)


def test_all_zero_label_map_warps_to_all_zeros(tmp_path, capsys):
    """A follow-up without a lesion is normal: not 'a constant image'."""
    zeros = write(tmp_path, "no_lesion.nii.gz", label_image(np.zeros(SHAPE_KJI, np.uint8)))
    output = tmp_path / "warped.nii.gz"
    assert run_apply(tmp_path, zeros, reference_image(tmp_path), output) == 0
    warped = sitk.ReadImage(str(output))
    assert warped.GetPixelID() == sitk.sitkUInt8
    assert warped.GetSize() == (12, 11, 10)
    assert not sitk.GetArrayViewFromImage(warped).any()
    assert capsys.readouterr().err == ""


def test_float_label_map_with_fractions_is_refused(tmp_path, capsys):
    fractional = blocks(np.float32, [1.0, 2.5, 3.0])
    path = write(tmp_path, "probabilities.nii.gz", label_image(fractional))
    output = tmp_path / "warped.nii.gz"
    assert run_apply(tmp_path, path, reference_image(tmp_path), output) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "probabilities.nii.gz': holds" in err and "non-integer values (e.g. 2.5)" in err
    assert not output.exists()


def test_float_label_map_with_integral_values_gets_the_smallest_integer_type(tmp_path):
    labels = blocks(np.float32, [1.0, 300.0, 7.0])
    loaded = read_label_map(write(tmp_path, "labels.nii.gz", label_image(labels)))
    assert loaded.GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), labels.astype(np.uint16))


def test_nan_label_is_refused():
    labels = blocks(np.float64, [1.0, np.nan])
    with pytest.raises(IntensityError, match="non-integer values"):
        apply_transform(
            sitk.Transform(3, sitk.sitkIdentity), label_image(labels), label_image(labels), labels=True
        )


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0, 255, sitk.sitkUInt8),
        (0, 256, sitk.sitkUInt16),
        (-1, 5, sitk.sitkInt16),
        (0, 2**31, sitk.sitkUInt32),
    ],
)
def test_smallest_integer_type(low, high, expected):
    assert smallest_integer_type(low, high) == expected
