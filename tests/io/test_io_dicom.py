"""DICOM series reading: geometry and voxels as SimpleITK reports them, series choice, PHI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from vmgga.errors import DicomError
from vmgga.frames import geometry_of
from vmgga.io import list_series, read_image

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CT_DICOM_DIR = DATA_DIR / "abdomen" / "ct_dicom"


def direct_series_read(folder: Path) -> sitk.Image:
    """The reference: SimpleITK's own series reader on the same files."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def write_second_series(source: Path, target: Path, count: int, description: str) -> str:
    """Copy ``count`` consecutive slices of ``source`` into ``target`` as a new series; return its UID."""
    uid = generate_uid()
    for path in sorted(source.iterdir())[:count]:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = description
        ds.save_as(target / f"second_{path.name}")
    return uid


@pytest.fixture
def two_series_folder(tmp_path: Path) -> tuple[Path, str, str]:
    """A folder with the 20-slice CT series and an 8-slice second series; returns (folder, uid20, uid8)."""
    folder = tmp_path / "mixed"
    shutil.copytree(CT_DICOM_DIR, folder)
    big_uid = str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    small_uid = write_second_series(CT_DICOM_DIR, folder, 8, "second series")
    return folder, big_uid, small_uid


def test_dicom_series_geometry_and_voxels_match_simpleitk():
    loaded = read_image(CT_DICOM_DIR)
    reference = direct_series_read(CT_DICOM_DIR)
    assert geometry_of(loaded.image) == geometry_of(reference)
    assert loaded.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(reference))


def test_dicom_geometry_matches_the_headers():
    """Origin = first slice's ImagePositionPatient, k spacing = slice step, from pydicom alone."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in CT_DICOM_DIR.iterdir()]
    z_positions = sorted(float(h.ImagePositionPatient[2]) for h in headers)
    first = min(headers, key=lambda h: float(h.ImagePositionPatient[2]))
    loaded = read_image(CT_DICOM_DIR)
    np.testing.assert_allclose(
        loaded.image.GetOrigin(), [float(v) for v in first.ImagePositionPatient], atol=1e-4
    )
    pixel_spacing = [float(v) for v in first.PixelSpacing]
    expected_spacing = [pixel_spacing[1], pixel_spacing[0], z_positions[1] - z_positions[0]]
    np.testing.assert_allclose(loaded.image.GetSpacing(), expected_spacing, atol=1e-5)
    assert loaded.image.GetSize() == (int(first.Columns), int(first.Rows), len(headers))


def test_dicom_values_are_rescaled_hounsfield_units():
    first = pydicom.dcmread(CT_DICOM_DIR / "slice_00.dcm")
    hu = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)  # (rows, cols)
    loaded = read_image(CT_DICOM_DIR)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image)[0], hu.astype(np.float32))


def test_dicom_modality_hint_and_series_uid():
    loaded = read_image(CT_DICOM_DIR)
    header = pydicom.dcmread(CT_DICOM_DIR / "slice_00.dcm", stop_before_pixels=True)
    assert loaded.modality_hint == "ct"
    assert loaded.series_uid == str(header.SeriesInstanceUID)
    assert loaded.description["dicom"]["num_slices"] == 20
    assert loaded.messages == []  # one series: nothing to say


def test_labels_are_aligned_with_the_small_series():
    labels = sitk.ReadImage(str(DATA_DIR / "abdomen" / "ct_dicom_labels.nii.gz"))
    image = read_image(CT_DICOM_DIR).image
    assert geometry_of(labels) == geometry_of(image)
    liver_hu = sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(labels) == 5]
    assert 0 < np.median(liver_hu) < 200  # soft tissue, so the labels sit on the organ


def test_mixed_folder_picks_the_largest_and_says_so(two_series_folder):
    folder, big_uid, small_uid = two_series_folder
    loaded = read_image(folder)
    assert loaded.series_uid == big_uid
    assert loaded.image.GetSize()[2] == 20
    message = " ".join(loaded.messages)
    assert big_uid in message and "largest of 2 series" in message and small_uid in message


def test_mixed_folder_picks_by_uid(two_series_folder):
    folder, _, small_uid = two_series_folder
    loaded = read_image(folder, dicom_series=small_uid)
    assert loaded.series_uid == small_uid
    assert loaded.image.GetSize()[2] == 8
    reference = direct_series_read(CT_DICOM_DIR)
    np.testing.assert_allclose(loaded.image.GetOrigin(), reference.GetOrigin(), atol=1e-4)


def test_unknown_uid_lists_the_available_series(two_series_folder):
    folder, big_uid, small_uid = two_series_folder
    with pytest.raises(DicomError, match="has no series '1.2.3'; available: .*20 files.*8 files") as info:
        read_image(folder, dicom_series="1.2.3")
    assert big_uid in str(info.value) and small_uid in str(info.value)


def test_list_series_largest_first(two_series_folder):
    folder, big_uid, small_uid = two_series_folder
    series = list_series(folder)
    assert [s.uid for s in series] == [big_uid, small_uid]
    assert [s.num_files for s in series] == [20, 8]


def test_no_patient_identifiers_without_include_phi():
    header = pydicom.dcmread(CT_DICOM_DIR / "slice_00.dcm", stop_before_pixels=True)
    name, patient_id = str(header.PatientName), str(header.PatientID)
    assert name and patient_id  # the test data carry synthetic identifiers
    text = json.dumps(read_image(CT_DICOM_DIR).description)
    assert name not in text and patient_id not in text and "patient" not in text
    with_phi = read_image(CT_DICOM_DIR, include_phi=True).description
    assert with_phi["patient"]["PatientName"] == name
    assert with_phi["patient"]["PatientID"] == patient_id
