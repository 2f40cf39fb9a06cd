"""Issue 8, inputs: each broken input gets its own error class and a message naming the file and
the problem; reading never writes anything (the folders are unchanged afterwards)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vmgga.errors import DicomError, GeometryError, InputError, IntensityError
from vmgga.frames import geometry_of, lps_from_ijk
from vmgga.io import VolumeLimits, read_image, validate_volume
from vmgga.io.validate import check_ct_values, check_size

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def raises_and_writes_nothing(folder: Path, snapshot, error, match: str, *args, **kwargs):
    """``read_image(*args, **kwargs)`` raises ``error`` matching ``match``; ``folder`` is unchanged."""
    before = snapshot(folder)
    with pytest.raises(error, match=match) as info:
        read_image(*args, **kwargs)
    assert snapshot(folder) == before
    return info.value


def edit_slices(folder: Path, edit, names: list[str] | None = None) -> None:
    """Apply ``edit(index, dataset)`` to the DICOM files of ``folder`` (sorted), saving in place."""
    for index, path in enumerate(sorted(folder.iterdir())):
        if names is None or path.name in names:
            ds = pydicom.dcmread(path)
            edit(index, ds)
            ds.save_as(path)


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


# --- paths -------------------------------------------------------------------------------------


def test_missing_path(tmp_path, snapshot):
    missing = tmp_path / "nope.nii.gz"
    error = raises_and_writes_nothing(
        tmp_path, snapshot, InputError, "does not exist", missing, role="moving"
    )
    assert str(missing) in str(error) and "moving image" in str(error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_path(tmp_path, snapshot):
    path = shutil.copy(DATA_DIR / "stroke" / "T1.nii.gz", tmp_path / "T1.nii.gz")
    os.chmod(path, 0)
    raises_and_writes_nothing(tmp_path, snapshot, InputError, "permission denied", path)


def test_file_that_is_not_an_image(tmp_path, snapshot):
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(b"this is not an image\n" * 10)
    error = raises_and_writes_nothing(tmp_path, snapshot, InputError, "cannot be read as an image", path)
    assert str(path) in str(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_truncated_file(tmp_path, snapshot, suffix):
    """ITK reads truncated NIfTI files silently (zeros); every format must be refused."""
    full = tmp_path / f"full{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(DATA_DIR / "stroke" / "T2.nii.gz")), str(full))
    path = tmp_path / f"T2_truncated{suffix}"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    error = raises_and_writes_nothing(tmp_path, snapshot, InputError, "truncated or corrupt", path)
    assert f"T2_truncated{suffix}" in str(error)


# --- DICOM folders -----------------------------------------------------------------------------


def test_empty_folder(tmp_path, snapshot):
    folder = tmp_path / "empty"
    folder.mkdir()
    error = raises_and_writes_nothing(tmp_path, snapshot, DicomError, "is empty", folder)
    assert str(folder) in str(error)


def test_folder_of_non_dicom_files(tmp_path, snapshot):
    folder = tmp_path / "pngs"
    shutil.copytree(DATA_DIR / "brainweb", folder)
    (folder / "readme.txt").write_text("hello")
    raises_and_writes_nothing(tmp_path, snapshot, DicomError, "holds no DICOM image files", folder)


def test_dicom_missing_slice(ct_dicom_copy, snapshot):
    (ct_dicom_copy / "slice_10.dcm").unlink()
    error = raises_and_writes_nothing(
        ct_dicom_copy, snapshot, DicomError, "missing slices: a gap of 4 mm", ct_dicom_copy
    )
    assert "about 1 slice(s) missing" in str(error) and str(ct_dicom_copy) in str(error)


def test_dicom_inconsistent_spacing(ct_dicom_copy, snapshot):
    def shift_upper_half(index, ds):
        if index >= 10:
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 0.5]

    edit_slices(ct_dicom_copy, shift_upper_half)
    raises_and_writes_nothing(
        ct_dicom_copy, snapshot, DicomError, "inconsistent slice spacing", ct_dicom_copy
    )


def test_dicom_inconsistent_orientation(ct_dicom_copy, snapshot):
    def rotate(index, ds):
        c, s = np.cos(0.1), np.sin(0.1)
        ds.ImageOrientationPatient = [c, s, 0.0, -s, c, 0.0]

    edit_slices(ct_dicom_copy, rotate, names=["slice_05.dcm"])
    raises_and_writes_nothing(
        ct_dicom_copy, snapshot, DicomError, "inconsistent slice orientation", ct_dicom_copy
    )


def linear_hu(points_lps_mm: np.ndarray) -> np.ndarray:
    """A known intensity (HU) that varies along all three LPS axes."""
    return (
        1000.0
        + 1.0 * points_lps_mm[..., 0]
        + 1.5 * points_lps_mm[..., 1]
        + 10.0 * (points_lps_mm[..., 2] + 785.0)
    )


def write_tilted_series(folder: Path, tilt_deg: float, tilted_planes: bool) -> np.ndarray:
    """Rewrite the CT copy as a gantry-tilted stack holding :func:`linear_hu` at every true voxel.

    ``tilted_planes``: tilted ImageOrientationPatient with positions stepping along the table (z);
    otherwise axial planes with positions shifted in-plane. Returns the true (4, 4) voxel -> LPS matrix.
    """
    theta = np.radians(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(theta), np.sin(theta)]) if tilted_planes else np.array([0.0, 1.0, 0.0])
    step = np.array([0.0, 0.0, 2.0]) if tilted_planes else np.array([0.0, 2.0 * np.tan(theta), 2.0])
    origin = np.array([-248.046875, -436.046875, -804.5])
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([3.90625 * row, 3.90625 * col, step], axis=1)
    matrix[:3, 3] = origin

    def rewrite(index, ds):
        j, i = np.mgrid[0:128, 0:128]
        points = np.stack([i, j, np.full_like(i, index), np.ones_like(i)], axis=-1) @ matrix.T
        ds.ImageOrientationPatient = [*row.tolist(), *col.tolist()]
        ds.ImagePositionPatient = (origin + index * step).tolist()
        ds.PixelData = np.round(linear_hu(points[..., :3]) + 1024).astype(np.uint16).tobytes()
        ds.GantryDetectorTilt = tilt_deg

    edit_slices(folder, rewrite)
    return matrix


@pytest.mark.parametrize("tilted_planes", [True, False])
def test_dicom_gantry_tilt_is_resampled_correctly(ct_dicom_copy, snapshot, tilted_planes):
    """Every corrected voxel holds the known intensity of its physical point."""
    true_matrix = write_tilted_series(ct_dicom_copy, 15.0, tilted_planes)
    before = snapshot(ct_dicom_copy)
    loaded = read_image(ct_dicom_copy)
    assert snapshot(ct_dicom_copy) == before
    assert "gantry tilt of 15.00 degrees: resampled" in loaded.messages[0]
    assert loaded.description["dicom"]["gantry_tilt_deg"] == pytest.approx(15.0, abs=1e-3)
    geometry = geometry_of(loaded.image)
    np.testing.assert_allclose(geometry.direction_matrix.T @ geometry.direction_matrix, np.eye(3), atol=1e-9)
    assert geometry.size_ijk[2] == 20 and geometry.size_ijk[1] > 128  # grown to hold the shear
    points_ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.size_ijk], indexing="ij"), -1).reshape(
        -1, 3
    )
    points_lps = lps_from_ijk(points_ijk, geometry)
    true_ijk = (np.c_[points_lps, np.ones(len(points_lps))] @ np.linalg.inv(true_matrix).T)[:, :3]
    inside = np.all((true_ijk >= 0) & (true_ijk <= [127, 127, 19]), axis=1)
    values = sitk.GetArrayFromImage(loaded.image).transpose(2, 1, 0).reshape(-1)  # (i, j, k) order
    assert inside.mean() > 0.8
    np.testing.assert_allclose(values[inside], linear_hu(points_lps[inside]), atol=0.6)


def test_dicom_gantry_tilt_over_30_degrees_is_refused(ct_dicom_copy, snapshot):
    write_tilted_series(ct_dicom_copy, 40.0, tilted_planes=True)
    error = raises_and_writes_nothing(ct_dicom_copy, snapshot, DicomError, "gantry tilt", ct_dicom_copy)
    assert "40.00 degrees" in str(error) and "more than the 30 degrees" in str(error)


def test_dicom_irregular_stack_is_refused(ct_dicom_copy, snapshot):
    def wobble(index, ds):
        if index == 9:
            ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 1.5, *ds.ImagePositionPatient[1:]]

    edit_slices(ct_dicom_copy, wobble)
    raises_and_writes_nothing(ct_dicom_copy, snapshot, DicomError, "irregular slice stack", ct_dicom_copy)


def test_dicom_mixed_series_picks_one_and_refuses_unknown_uid(ct_dicom_copy, snapshot):
    def other_series(index, ds):
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{index}"

    edit_slices(ct_dicom_copy, other_series, names=[f"slice_{i:02d}.dcm" for i in range(12, 20)])
    before = snapshot(ct_dicom_copy)
    loaded = read_image(ct_dicom_copy)  # the 12-slice series: gap-free slices 0..11
    assert loaded.image.GetSize()[2] == 12 and "largest of 2 series" in loaded.messages[0]
    assert snapshot(ct_dicom_copy) == before
    raises_and_writes_nothing(
        ct_dicom_copy, snapshot, DicomError, "no series '9.9'; available", ct_dicom_copy, dicom_series="9.9"
    )


def test_dicom_duplicate_positions(ct_dicom_copy, snapshot):
    ds = pydicom.dcmread(ct_dicom_copy / "slice_03.dcm")
    ds.SOPInstanceUID = ds.SOPInstanceUID[:60] + ".9"
    ds.save_as(ct_dicom_copy / "slice_03_echo2.dcm")
    raises_and_writes_nothing(ct_dicom_copy, snapshot, DicomError, "duplicate slice positions", ct_dicom_copy)


def make_multiframe(source: Path, target: Path, frames: int = 12) -> Path:
    """One multi-frame file stacking the first ``frames`` slices of ``source``."""
    slices = [pydicom.dcmread(p) for p in sorted(source.iterdir())[:frames]]
    ds = slices[0]
    ds.NumberOfFrames = frames
    ds.PixelData = b"".join(s.PixelData for s in slices)
    ds.save_as(target)
    return target


def test_dicom_multiframe_folder_and_file(tmp_path, snapshot):
    folder = tmp_path / "multiframe"
    folder.mkdir()
    path = make_multiframe(DATA_DIR / "abdomen" / "ct_dicom", folder / "enhanced.dcm")
    raises_and_writes_nothing(
        tmp_path, snapshot, DicomError, "multi-frame .*12 frames.*not supported", folder
    )
    raises_and_writes_nothing(tmp_path, snapshot, DicomError, "multi-frame", path)


# --- dimensions and pixel types ---------------------------------------------------------------


def test_2d_image(tmp_path, snapshot):
    error = raises_and_writes_nothing(
        tmp_path,
        snapshot,
        GeometryError,
        "is a 2D image",
        DATA_DIR / "brainweb" / "BrainProtonDensitySlice.png",
    )
    assert "BrainProtonDensitySlice.png" in str(error)


def test_single_dicom_slice_is_2d(tmp_path, snapshot):
    path = DATA_DIR / "abdomen" / "ct_dicom" / "slice_00.dcm"
    raises_and_writes_nothing(tmp_path, snapshot, GeometryError, "2D image.*pass its folder", path)


def test_4d_image_asks_for_a_volume_index(tmp_path, snapshot, small_image):
    volumes = [sitk.Cast(small_image * float(v + 1), sitk.sitkFloat32) for v in range(3)]
    path = write(sitk.JoinSeries(volumes), tmp_path / "dwi.nii.gz")
    raises_and_writes_nothing(
        tmp_path, snapshot, GeometryError, r"4D image with 3 volumes.*--volume-index N \(0 to 2\)", path
    )
    loaded = read_image(path, volume_index=2)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(volumes[2]), rtol=1e-6
    )
    np.testing.assert_allclose(loaded.image.GetOrigin(), small_image.GetOrigin(), atol=1e-4)
    raises_and_writes_nothing(tmp_path, snapshot, InputError, "out of range 0 to 2", path, volume_index=3)


def test_rgb_image(tmp_path, snapshot):
    rgb = sitk.Compose([sitk.Image([10, 10, 10], sitk.sitkUInt8) + c for c in range(3)])
    path = write(rgb, tmp_path / "colour.mha")
    raises_and_writes_nothing(tmp_path, snapshot, IntensityError, "3 components per voxel", path)


# --- voxel values ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_nan_and_inf_voxels(tmp_path, snapshot, small_image, suffix):
    """ITK turns NaN in NIfTI files into 0; the NIfTI check and the voxel check both refuse them."""
    array = sitk.GetArrayFromImage(small_image)
    array[1, 2, 3], array[4, 5, 6], array[0, 0, 0] = np.nan, np.inf, -np.inf
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(small_image)
    path = write(image, tmp_path / f"nan{suffix}")
    raises_and_writes_nothing(tmp_path, snapshot, IntensityError, "1 NaN and 2 Inf voxels", path)


def test_constant_image(tmp_path, snapshot, small_image):
    path = write(small_image * 0 + 7.0, tmp_path / "constant.nii.gz")
    raises_and_writes_nothing(tmp_path, snapshot, IntensityError, "constant image .*every voxel is 7", path)


def test_ct_integer_overflow(ct_dicom_copy, snapshot):
    """Stored values wrapped around int16 give HU far below air: refused for CT."""

    def wrap(index, ds):
        pixels = ds.pixel_array.astype(np.int16)  # the series stored as signed 16-bit
        if index == 7:
            pixels[40:60, 40:60] = -32768 + np.arange(20)[None, :]  # bone that overflowed
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.PixelData = pixels.tobytes()

    edit_slices(ct_dicom_copy, wrap)
    error = raises_and_writes_nothing(
        ct_dicom_copy, snapshot, IntensityError, "outside the plausible CT range", ct_dicom_copy
    )
    assert "integer overflow" in str(error) and "400 voxels" in str(error)


def test_ct_single_padding_value_is_a_warning():
    array_hu = np.full((10, 10, 10), 40.0)
    array_hu[:, :2] = -8192.0
    warnings = check_ct_values(array_hu, "fixed image 'x'")
    assert warnings == ["fixed image 'x': 200 voxels have the padding value -8192 HU"]


# --- sizes -------------------------------------------------------------------------------------


def test_tiny_image(tmp_path, snapshot, image_factory):
    path = write(image_factory(size_ijk=(20, 5, 20)), tmp_path / "tiny.nii.gz")
    raises_and_writes_nothing(
        tmp_path, snapshot, GeometryError, r"too small \(size \(20, 5, 20\)\).*at least 8", path
    )


def test_huge_image_by_size_only():
    with pytest.raises(GeometryError, match=r"too large \(size \(2048, 2048, 300\).*crop or downsample"):
        check_size((2048, 2048, 300), "fixed image 'big.nii.gz'")
    check_size((1024, 1024, 1000), "fixed image 'ok.nii.gz'")  # below both limits: no error


def test_huge_limit_is_checked_from_the_header(tmp_path, snapshot):
    """A configurable limit, checked before the voxels are read."""
    limits = VolumeLimits(max_voxels=100_000)
    path = DATA_DIR / "stroke" / "T1.nii.gz"  # 62 x 80 x 70 = 347200 voxels
    raises_and_writes_nothing(tmp_path, snapshot, GeometryError, "347200 voxels", path, limits=limits)


# --- direction frames --------------------------------------------------------------------------


def test_non_orthogonal_direction(small_image):
    sheared = sitk.Image(small_image)
    sheared.SetDirection((1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(GeometryError, match="non-orthogonal direction matrix"):
        read_image(sheared, role="moving")


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_left_handed_frame_is_read_with_its_geometry(tmp_path, image_factory, suffix):
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.2, 0.1, -0.3)
    left_handed = np.asarray(rotation.GetMatrix()).reshape(3, 3) @ np.diag([1.0, 1.0, -1.0])
    assert np.linalg.det(left_handed) < 0
    image = image_factory(direction=left_handed)
    loaded = read_image(write(image, tmp_path / f"left{suffix}"))
    np.testing.assert_allclose(loaded.image.GetDirection(), left_handed.ravel(), atol=1e-5)
    points_ijk = np.array([[0.0, 0.0, 0.0], [11.0, 9.0, 8.0], [3.5, 2.25, 7.0]])
    expected = [loaded.image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in points_ijk]
    np.testing.assert_allclose(lps_from_ijk(points_ijk, geometry_of(loaded.image)), expected, atol=1e-6)
    np.testing.assert_allclose(lps_from_ijk(points_ijk, geometry_of(image)), expected, atol=1e-3)
    assert validate_volume(loaded.image, "left") == []


def test_in_memory_input_is_not_modified(small_image):
    int_image = sitk.Cast(small_image, sitk.sitkInt16)
    loaded = read_image(int_image)
    assert int_image.GetPixelID() == sitk.sitkInt16 and loaded.image.GetPixelID() == sitk.sitkFloat32
    assert loaded.path is None and loaded.description["pixel_type"] == "16-bit signed integer"


def test_huge_dicom_series_is_refused_from_its_headers(tmp_path, snapshot):
    limits = VolumeLimits(max_voxels=100_000)  # the series has 128 x 128 x 20 = 327680 voxels
    folder = DATA_DIR / "abdomen" / "ct_dicom"
    raises_and_writes_nothing(
        tmp_path, snapshot, GeometryError, r"DICOM series .* too large .*327680 voxels", folder, limits=limits
    )
