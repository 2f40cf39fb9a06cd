"""Issue 16 item 9: a corrupt DICOM slice is named, not reported as "missing slices" only; GDCM's
own output stays off stderr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmgga.errors import DicomError
from vmgga.io import read_image
from vmgga.io.dicom import dicom_file_problem


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "cut_header":
        path.write_bytes(data[:300])
    elif how == "garbled_header":
        garbled = bytearray(data)
        garbled[132:400] = bytes((7 * n + 3) % 256 for n in range(268))
        path.write_bytes(bytes(garbled))
    elif how == "cut_pixels":
        path.write_bytes(data[:-5000])


@pytest.mark.parametrize("how", ["cut_header", "garbled_header", "cut_pixels"])
def test_corrupt_middle_slice_is_named(ct_dicom_copy, capfd, how):
    bad = ct_dicom_copy / "slice_10.dcm"
    damage(bad, how)
    with pytest.raises(DicomError) as info:
        read_image(ct_dicom_copy)
    message = str(info.value)
    assert message.startswith(f"DICOM file '{bad}' cannot be read (")
    assert "missing slices" in message  # what it causes is still said
    assert capfd.readouterr().err == ""


def test_truncated_pixel_data_says_how_much_is_missing(ct_dicom_copy):
    bad = ct_dicom_copy / "slice_10.dcm"
    damage(bad, "cut_pixels")
    assert dicom_file_problem(bad) == "truncated pixel data (5000 bytes missing)"


def test_corrupt_end_slice_is_read_without_it_and_said(ct_dicom_copy):
    """A damaged last slice leaves a regular stack: read, with a message naming the file."""
    files = sorted(ct_dicom_copy.iterdir())
    damage(files[-1], "cut_pixels")
    loaded = read_image(ct_dicom_copy)
    assert loaded.image.GetSize()[2] == len(files) - 1
    assert any(f"DICOM file '{files[-1]}' cannot be read" in m for m in loaded.messages)


def test_non_dicom_files_are_not_reported_as_corrupt(ct_dicom_copy):
    (ct_dicom_copy / "notes.txt").write_text("scan notes")
    os.mkdir(ct_dicom_copy / "sub")
    loaded = read_image(ct_dicom_copy)
    assert not any("cannot be read" in m for m in loaded.messages)


def test_folder_without_dicom_prints_nothing_from_gdcm(tmp_path, capfd):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DicomError, match="holds no DICOM image files"):
        read_image(tmp_path)
    assert capfd.readouterr().err == ""
