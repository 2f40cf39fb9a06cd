"""Issue 16 items 8 and 9: a bad input gives exactly one line on stderr, exit 2, and a message that
says precisely what is wrong; what GDCM, HDF5, ITK and torch print is kept out of the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nifti_bytes import header_for, raw_nifti

REPO = Path(__file__).resolve().parents[2]
STROKE = REPO / "tests" / "data" / "stroke"
FIXED, MOVING = STROKE / "T2.nii.gz", STROKE / "T1.nii.gz"


def vmgga(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmgga", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def identity_transform(folder: Path) -> Path:
    path = folder / "identity.tfm"
    sitk.WriteTransform(sitk.Transform(3, sitk.sitkIdentity), str(path))
    return path


def noise(shape=(20, 20, 20)) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)


# --- crafted bad inputs: each returns (the image argument of apply, the transform argument) ------


def folder_without_dicom(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "not_dicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here\n")
    return folder, identity_transform(tmp_path)


def truncated_h5(tmp_path: Path) -> tuple[Path, Path]:
    field = sitk.GetImageFromArray(np.zeros((20, 20, 20, 3)), isVector=True)
    good = tmp_path / "good.h5"
    sitk.WriteTransform(sitk.DisplacementFieldTransform(field), str(good))
    bad = tmp_path / "cut.h5"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return MOVING, bad


def short_mhd(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "short.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(noise()), str(path))
    raw = tmp_path / "short.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    return path, identity_transform(tmp_path)


def pixdim_zero_nifti(tmp_path: Path) -> tuple[Path, Path]:
    array = noise()
    header = header_for(array)
    header["pixdim"][1:4] = 0
    header["qform_code"] = header["sform_code"] = 0
    return raw_nifti(tmp_path / "pixdim0.nii", header, array), identity_transform(tmp_path)


def singular_nifti(tmp_path: Path) -> tuple[Path, Path]:
    array = noise()
    header = header_for(array)
    header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
    header["qform_code"] = 0
    return raw_nifti(tmp_path / "singular.nii", header, array), identity_transform(tmp_path)


def image_as_transform(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "transform.h5"
    path.write_bytes(FIXED.read_bytes())
    return MOVING, path


BAD_INPUTS = {
    "folder_without_dicom": (folder_without_dicom, "holds no DICOM image files"),
    "truncated_h5": (truncated_h5, "cut.h5: not a readable ITK transform file: an HDF5 file without"),
    "short_mhd": (short_mhd, "the data file 'short.raw' is short (truncated)"),
    "pixdim_zero_nifti": (
        pixdim_zero_nifti,
        r"has voxel spacing (0.0, 0.0, 0.0) in its NIfTI header (pixdim)",
    ),
    "singular_nifti": (singular_nifti, "has a singular direction matrix in its NIfTI sform"),
    "image_as_transform": (image_as_transform, "it is an image, not a transform"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gives_one_precise_line(tmp_path, kind):
    make, expected = BAD_INPUTS[kind]
    image, transform = make(tmp_path)
    output = tmp_path / "out" / "warped.nii.gz"
    run = vmgga("apply", transform, image, "--reference", FIXED, "-o", output)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("vmgga apply: error: ") and expected in run.stderr, run.stderr
    assert not output.exists()


def test_bad_weights_file_gives_one_line(tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"not a checkpoint" * 8)
    output = tmp_path / "out"
    run = vmgga(
        "register", FIXED, MOVING, "-o", output, "--matcher", "vmgga", "--weights", weights, "--quiet"
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert f"matcher weights {weights} cannot be read: not a PyTorch checkpoint" in run.stderr
    assert not (output / "report.json").exists()


ODD_HEADERS = {
    "qfac_zero": {"pixdim0": 0.0},  # the NIfTI library reads qfac 0 as 1
    "invalid_codes": {"qform_code": 7, "sform_code": 9},  # nibabel and ITK "set to 0" with a message
    "sizeof_hdr": {"sizeof_hdr": 100},
}


@pytest.mark.parametrize("kind", sorted(ODD_HEADERS))
def test_odd_but_readable_nifti_prints_nothing(tmp_path, capfd, kind):
    from vmgga.cli.main import main

    array = noise()
    header = header_for(array)
    header.set_sform(np.eye(4), code=1)
    header.set_qform(np.eye(4), code=1)
    for field, value in ODD_HEADERS[kind].items():
        if field == "pixdim0":
            header["pixdim"][0] = value
        else:
            header[field] = value
    image = raw_nifti(tmp_path / f"{kind}.nii", header, array)
    output = tmp_path / "warped.nii.gz"
    status = main(
        ["apply", str(identity_transform(tmp_path)), str(image), "--reference", str(image), "-o", str(output)]
    )
    assert status == 0
    assert capfd.readouterr().err == ""
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(output))), array, atol=1e-4)


def test_verbose_shows_the_library_text_that_is_otherwise_hidden(tmp_path):
    image, transform = truncated_h5(tmp_path)
    args = ["apply", transform, image, "--reference", FIXED, "-o", tmp_path / "w.nii.gz"]
    quiet, verbose = vmgga(*args), vmgga("--verbose", *args)
    assert quiet.returncode == verbose.returncode == 2
    assert len(quiet.stderr.strip().splitlines()) == 1
    library_lines = [line for line in verbose.stderr.splitlines() if "printed:" in line]
    assert library_lines, verbose.stderr  # the HDF5 text, logged where --verbose shows it
    assert verbose.stderr.strip().splitlines()[-1] == quiet.stderr.strip()  # the same one-line error last
    assert not (tmp_path / "w.nii.gz").exists()
