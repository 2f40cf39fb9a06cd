"""``read_image`` on files and in-memory images: geometry and voxels as SimpleITK reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import InputError
from vmgga.frames import geometry_of
from vmgga.io import LoadedImage, read_image

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    "name", ["stroke/T1.nii.gz", "stroke/T2.nii.gz", "abdomen/ct.nii.gz", "abdomen/mr.nii.gz"]
)
def test_files_load_as_float32_with_simpleitk_geometry(name):
    path = DATA_DIR / name
    reference = sitk.ReadImage(str(path))
    loaded = read_image(path, role="moving")
    assert isinstance(loaded, LoadedImage) and loaded.path == str(path)
    assert loaded.image.GetPixelID() == sitk.sitkFloat32
    assert geometry_of(loaded.image) == geometry_of(reference)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(reference).astype(np.float32)
    )
    assert loaded.modality_hint is None and loaded.series_uid is None  # no DICOM header to tell
    assert loaded.description["pixel_type"] == reference.GetPixelIDTypeAsString()


def test_oblique_stroke_direction_is_kept():
    loaded = read_image(DATA_DIR / "stroke" / "T1.nii.gz")
    direction = np.asarray(loaded.image.GetDirection()).reshape(3, 3)
    assert np.abs(direction - np.diag(np.diag(direction))).max() > 0.1  # really oblique
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)


def test_description_is_json_and_names_the_geometry():
    loaded = read_image(DATA_DIR / "stroke" / "T2.nii.gz", role="moving")
    description = json.loads(json.dumps(loaded.description))
    assert description["role"] == "moving" and description["source"] == "file"
    assert description["geometry"]["size_ijk"] == list(loaded.image.GetSize())
    assert description["geometry"]["spacing_mm"] == [2.0, 2.0, 2.0]


def test_single_volume_4d_file_needs_no_index(tmp_path, small_image):
    path = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([small_image]), str(path))
    loaded = read_image(path)
    assert loaded.image.GetDimension() == 3
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(small_image), rtol=1e-6
    )


def test_in_memory_4d_image_with_volume_index(small_image):
    volumes = [sitk.Cast(small_image + float(v), sitk.sitkFloat32) for v in range(2)]
    loaded = read_image(sitk.JoinSeries(volumes), volume_index=1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), sitk.GetArrayFromImage(volumes[1]))


def test_options_that_do_not_apply_are_refused(small_image):
    with pytest.raises(InputError, match="--volume-index 0 given but the image is 3D"):
        read_image(DATA_DIR / "stroke" / "T1.nii.gz", volume_index=0)
    with pytest.raises(InputError, match="--dicom-series applies to a DICOM folder"):
        read_image(DATA_DIR / "stroke" / "T1.nii.gz", dicom_series="1.2.3")
    with pytest.raises(InputError, match="--volume-index applies to 4D files, not to a DICOM folder"):
        read_image(DATA_DIR / "abdomen" / "ct_dicom", volume_index=0)
    with pytest.raises(InputError, match="given but the image is 3D"):
        read_image(small_image, volume_index=1)
