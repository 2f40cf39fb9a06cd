"""Bad inputs stop the bundle with an error naming the file and the problem, and write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_helpers import BUNDLE, INFERENCE, MR_NIFTI, run_bundle_cli

from vmgga.bundle.runner import BundleRunError
from vmgga.errors import DicomError, GeometryError, InputError


def _error_chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes (MONAI wraps errors raised inside config expressions)."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return chain


def _run_in_process(output_dir, **override) -> BaseException:
    """Run the inference config in this process; return the vmgga error it raised."""
    from monai.bundle import run

    with pytest.raises(Exception) as caught:
        run(
            config_file=str(INFERENCE),
            bundle_root=str(BUNDLE),
            device="cpu",
            output_dir=str(output_dir),
            **override,
        )
    errors = [e for e in _error_chain(caught.value) if isinstance(e, InputError | BundleRunError)]
    assert errors, f"no vmgga error in {_error_chain(caught.value)}"
    return errors[0]


@pytest.fixture
def no_dicom_folder(tmp_path):
    """A folder holding files, none of them DICOM."""
    folder = tmp_path / "not_dicom"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "scan.dcm").write_bytes(b"\x00" * 300)
    return folder


@pytest.fixture
def image_2d(tmp_path):
    """A 2D NIfTI image."""
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.random.default_rng(0).random((40, 50), dtype=np.float32)), str(path)
    )
    return path


def test_cli_missing_folder_names_it_and_writes_nothing(tmp_path):
    missing = tmp_path / "no_such_series"
    out = tmp_path / "out"
    process = run_bundle_cli(
        "run", "--config_file", str(INFERENCE), "--bundle_root", str(BUNDLE),
        "--fixed", str(missing), "--moving", str(MR_NIFTI), "--output_dir", str(out), "--device", "cpu",
    )  # fmt: skip
    assert process.returncode != 0
    assert f"fixed image {missing} does not exist" in process.stderr
    assert not out.exists()


def test_folder_without_dicom_names_it_and_writes_nothing(tmp_path, no_dicom_folder):
    out = tmp_path / "out"
    error = _run_in_process(out, fixed=str(no_dicom_folder), moving=str(MR_NIFTI))
    assert isinstance(error, DicomError)
    assert str(no_dicom_folder) in str(error) and "no DICOM" in str(error)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_dicom"]  # no staging folder left either


def test_2d_image_names_it_and_writes_nothing(tmp_path, image_2d):
    out = tmp_path / "out"
    error = _run_in_process(out, fixed=str(MR_NIFTI), moving=str(image_2d))
    assert isinstance(error, GeometryError)
    assert str(image_2d) in str(error) and "2D" in str(error)
    assert not out.exists()


def test_datalist_lists_every_failed_case_and_writes_nothing(tmp_path, no_dicom_folder, image_2d):
    datalist = tmp_path / "pairs.json"
    datalist.write_text(
        json.dumps(
            [
                {"fixed": str(no_dicom_folder), "moving": str(MR_NIFTI), "case_id": "no_dicom"},
                {"fixed": str(MR_NIFTI), "moving": str(image_2d), "case_id": "flat"},
            ]
        )
    )
    out = tmp_path / "out"
    error = _run_in_process(out, datalist=str(datalist))
    assert isinstance(error, BundleRunError)
    message = str(error)
    assert "2 of 2 pairs failed" in message
    assert f"no_dicom: folder '{no_dicom_folder}'" in message and str(image_2d) in message
    assert not out.exists()


def test_datalist_missing_file_is_refused_before_any_pair_runs(tmp_path):
    datalist = tmp_path / "pairs.json"
    pairs = [
        {"fixed": str(MR_NIFTI), "moving": str(MR_NIFTI), "case_id": "fine"},
        {"fixed": str(MR_NIFTI), "moving": "missing/mr.nii.gz", "case_id": "gone"},
    ]
    datalist.write_text(json.dumps(pairs))
    out = tmp_path / "out"
    error = _run_in_process(out, datalist=str(datalist))
    assert f"moving image {tmp_path / 'missing' / 'mr.nii.gz'} does not exist (case 'gone')" in str(error)
    assert not out.exists()
