"""Issue 16 items 3, 7, 9: headers checked against their files, NIfTI geometry without a voxel
size or with a singular matrix refused, a short MetaImage data file named."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nifti_bytes import header_for, raw_nifti

from vmgga.errors import GeometryError, InputError
from vmgga.io import read_image
from vmgga.io.header_checks import check_nifti_header, check_stored_data
from vmgga.io.stored_data import available_bytes, stored_data_of


def noise(shape_kji=(12, 11, 10)) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 100, shape_kji).astype(np.float32)


@pytest.mark.parametrize("name", ["pixdim0.nii", "pixdim0.nii.gz"])
def test_zero_pixdim_without_qform_or_sform_is_refused(tmp_path, name):
    array = noise()
    header = header_for(array)
    header["pixdim"][1:4] = (0.0, 0.0, 0.0)
    header["qform_code"] = header["sform_code"] = 0
    path = raw_nifti(tmp_path / name, header, array)
    with pytest.raises(GeometryError, match=r"voxel spacing \(0.0, 0.0, 0.0\) .* and no qform/sform"):
        read_image(path)


def test_one_zero_pixdim_with_a_qform_is_refused_too(tmp_path):
    array = noise()
    header = header_for(array)
    header.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    header["pixdim"][2] = 0.0
    path = raw_nifti(tmp_path / "one_zero.nii", header, array)
    with pytest.raises(GeometryError, match=r"voxel spacing \(2.0, 0.0, 2.0\)"):
        check_nifti_header(path, "image")


def test_metaimage_spacing_zero_is_refused_as_well(tmp_path):
    """The rule the NIfTI check follows: a .mha with spacing 0 is refused."""
    image = sitk.GetImageFromArray(noise())
    path = tmp_path / "zero.mha"
    sitk.WriteImage(image, str(path))
    path.write_bytes(path.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 0 1"))
    with pytest.raises(GeometryError, match=r"zero.mha': has an invalid voxel spacing \(1.0, 0.0, 1.0\) mm"):
        read_image(path)


def test_valid_nifti_with_spacing_passes(tmp_path):
    array = noise()
    path = tmp_path / "ok.nii.gz"
    nib.save(nib.Nifti1Image(array.T, np.diag([1.5, 0.8, 2.5, 1.0])), str(path))
    check_nifti_header(path, "image")
    check_stored_data(path, "image")
    np.testing.assert_allclose(read_image(path).image.GetSpacing(), (1.5, 0.8, 2.5), rtol=1e-6)


@pytest.mark.parametrize(
    "matrix",
    [
        np.diag([1.0, 1.0, 0.0, 1.0]),
        np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float),
    ],
)
def test_singular_sform_says_singular(tmp_path, matrix):
    array = noise()
    header = header_for(array)
    header.set_sform(matrix, code=1)
    header["qform_code"] = 0
    path = raw_nifti(tmp_path / "singular.nii", header, array)
    with pytest.raises(GeometryError, match="singular direction matrix in its NIfTI sform"):
        read_image(path)


def test_short_metaimage_data_file_is_named(tmp_path):
    path = tmp_path / "short.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(noise()), str(path))
    raw = tmp_path / "short.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    expected = 12 * 11 * 10 * 4
    with pytest.raises(
        InputError,
        match=rf"the data file 'short.raw' is short \(truncated\): the header declares {expected} bytes .* holds 1000",
    ):
        read_image(path)


def test_missing_metaimage_data_file_is_named(tmp_path):
    path = tmp_path / "lonely.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(noise()), str(path))
    (tmp_path / "lonely.raw").unlink()
    with pytest.raises(InputError, match="its data file 'lonely.raw' named in the header does not exist"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd"])
def test_stored_size_matches_what_itk_writes(tmp_path, suffix):
    """Independent answer: voxels x bytes per voxel; the file holds at least the declared bytes."""
    array = noise().astype(np.int16)
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), False)
    stored = stored_data_of(path)
    assert stored.nbytes == array.size * 2
    assert stored.shape == (10, 11, 12) or stored.shape[:3] == (10, 11, 12)
    assert available_bytes(stored) >= stored.needed_bytes


def test_analyze_pair_checks_the_img_file(tmp_path):
    array = noise()
    nib.save(nib.Nifti1Pair(array, np.eye(4)), str(tmp_path / "pair.hdr"))
    img = tmp_path / "pair.img"
    img.write_bytes(img.read_bytes()[:100])
    with pytest.raises(InputError, match="data file 'pair.img' is short"):
        check_stored_data(tmp_path / "pair.hdr", "image")


def test_singular_metaimage_direction_says_singular(tmp_path):
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.GetImageFromArray(noise()), str(path), False)
    path.write_bytes(
        path.read_bytes().replace(
            b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 1 0 0 0 0 1"
        )
    )
    with pytest.raises(
        GeometryError,
        match=r"flat.mha': has a singular direction matrix \(1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0\)",
    ):
        read_image(path)


def test_a_nifti_with_header_extensions_reads_like_without(tmp_path):
    """Extensions (a label table, a comment) follow the 348 header bytes; the checks must not
    stumble on them (a real label map of the abdomen set carries a Caret label table)."""
    from vmgga.frames import array_from_image
    from vmgga.io.labels import read_label_map

    labels = np.zeros((12, 10, 9), np.uint8)
    labels[2:6, 3:7, 1:5] = 7
    image = nib.Nifti1Image(labels, np.diag([1.5, 1.0, 2.0, 1.0]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 3000))
    path = tmp_path / "with_extension.nii.gz"
    nib.save(image, path)
    assert nib.load(path).header.extensions  # the file really carries one
    read = read_label_map(path)
    assert read.GetSize() == (12, 10, 9)
    np.testing.assert_array_equal(array_from_image(read), labels.transpose(2, 1, 0))


def test_deflate_bound_passes_the_most_compressible_valid_file(tmp_path):
    """An all-zero volume gzipped at level 9 (close to deflate's 1032:1) is a valid file: not refused."""
    import gzip

    from vmgga.io.header_checks import check_stored_bytes_bound

    array = np.zeros((64, 64, 64), np.float32)
    plain = raw_nifti(tmp_path / "zeros.nii", header_for(array), array)
    packed = tmp_path / "zeros.nii.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=9))
    stored = stored_data_of(packed)
    assert stored.needed_bytes > 500 * packed.stat().st_size  # highly compressed indeed
    check_stored_bytes_bound(stored, packed, "image")


def test_deflate_bound_refuses_a_stream_too_small_for_its_header(tmp_path):
    """The same header over the first 512 compressed bytes: 1032 x 512 < 1 MB of voxels."""
    import gzip

    from vmgga.io.header_checks import check_stored_bytes_bound

    array = noise((64, 64, 64))
    plain = raw_nifti(tmp_path / "noise.nii", header_for(array), array)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes())[:512])
    with pytest.raises(
        InputError, match=r"declares 1048576 bytes of voxel data .* more than its 512 compressed"
    ):
        check_stored_bytes_bound(stored_data_of(cut), cut, "image")
