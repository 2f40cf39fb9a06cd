"""Compact NIfTI outputs read back (SimpleITK, nibabel) as the float values they stand for."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from vmgga.export.compact import encode_scaled_nifti, quantise_intensities, quantise_unit_interval


def _like(shape_dhw=(12, 15, 18)) -> sitk.Image:
    image = sitk.Image(list(shape_dhw[::-1]), sitk.sitkFloat32)
    image.SetSpacing((0.9, 1.1, 2.0))
    image.SetOrigin((3.0, -4.0, 5.0))
    image.SetDirection(sitk.VersorTransform((0.0, 0.3, 1.0), 0.4).GetMatrix())
    return image


def write_scaled_nifti(quantised, like: sitk.Image, path):
    """The encoded NIfTI written to ``path`` (what the outputs transaction writes)."""
    path.write_bytes(encode_scaled_nifti(quantised, like, scratch=path.parent))
    return path


def _read_sitk(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_float_intensities_come_back_within_half_a_step(tmp_path):
    values = np.random.default_rng(0).normal(-0.5, 2.0, (12, 15, 18)).astype(np.float32)
    quantised = quantise_intensities(values, integer_source=False)
    path = write_scaled_nifti(quantised, _like(), tmp_path / "warped.nii.gz")
    step = float(values.max() - values.min()) / 65534
    assert np.abs(_read_sitk(path) - values).max() <= 0.51 * step + 1e-6 * np.abs(values).max()
    nibabel_xyz = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
    assert np.abs(nibabel_xyz.transpose(2, 1, 0) - values).max() <= 0.51 * step + 1e-5
    loaded = sitk.ReadImage(str(path))
    np.testing.assert_allclose(loaded.GetSpacing(), _like().GetSpacing(), rtol=1e-6)  # NIfTI: float32
    np.testing.assert_allclose(loaded.GetDirection(), _like().GetDirection(), atol=1e-5)


def test_integer_source_keeps_its_units(tmp_path):
    values = np.random.default_rng(1).uniform(-1024, 3000, (12, 15, 18)).astype(np.float32)
    quantised = quantise_intensities(values, integer_source=True)
    assert quantised.slope == 1.0 and quantised.inter == 0.0
    path = write_scaled_nifti(quantised, _like(), tmp_path / "warped.nii.gz")
    np.testing.assert_array_equal(_read_sitk(path), np.rint(values))


def test_confidence_is_uint8_on_disk_and_unit_interval_when_read(tmp_path):
    values = np.random.default_rng(2).uniform(0, 1, (12, 15, 18)).astype(np.float32)
    path = write_scaled_nifti(quantise_unit_interval(values), _like(), tmp_path / "confidence.nii.gz")
    assert nib.load(str(path)).get_data_dtype() == np.uint8
    assert np.abs(_read_sitk(path) - values).max() <= 0.5 / 255 + 1e-6
    assert gzip.decompress(path.read_bytes())[:4] == (348).to_bytes(4, "little")


def test_eight_bit_source_stays_eight_bit(tmp_path):
    values = np.random.default_rng(3).uniform(0, 255, (12, 15, 18)).astype(np.float32)
    quantised = quantise_intensities(values, integer_source=True)
    assert quantised.stored.dtype == np.uint8
    path = write_scaled_nifti(quantised, _like(), tmp_path / "warped.nii.gz")
    assert nib.load(str(path)).get_data_dtype() == np.uint8
    np.testing.assert_array_equal(_read_sitk(path), np.rint(values))


def test_image_gzipped_in_several_members_reads_back_everywhere(tmp_path, monkeypatch):
    """Members of 1 kB compressed side by side: SimpleITK (zlib), nibabel and gzip read it whole."""
    import torch

    import vmgga.export.compact as compact

    monkeypatch.setattr(compact, "_GZIP_PART_BYTES", 1000)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values = np.random.default_rng(1).normal(100.0, 30.0, (12, 15, 18)).astype(np.float32)
        path = write_scaled_nifti(
            quantise_intensities(values, integer_source=False), _like(), tmp_path / "w.nii.gz"
        )
    finally:
        torch.set_num_threads(before)
    raw = path.read_bytes()
    assert raw.count(b"\x1f\x8b\x08") == 7  # 6832 bytes in 1 kB members
    assert len(gzip.decompress(raw)) == 352 + values.size * 2  # header + int16 voxels
    step = float(values.max() - values.min()) / 65534
    np.testing.assert_allclose(_read_sitk(path), values, atol=step)
    np.testing.assert_allclose(np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0), values, atol=step)


def test_quantisation_matches_numpy_rounding_half_to_even():
    """The torch quantisers give what ``np.rint`` gives, ties included (2.5 -> 2, 3.5 -> 4)."""
    rng = np.random.default_rng(3)
    unit = np.concatenate([rng.uniform(-0.2, 1.2, 10_000), np.array([2.5, 3.5, 100.5]) / 255.0])
    unit = unit.astype(np.float32)
    expected = np.rint(np.clip(unit, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    np.testing.assert_array_equal(quantise_unit_interval(unit).stored, expected)
    integers = np.array([-3.5, -2.5, 0.5, 1.5, 2.5, 1000.4, -1000.6], np.float32)
    np.testing.assert_array_equal(
        quantise_intensities(integers, integer_source=True).stored, [-4, -2, 0, 2, 2, 1000, -1001]
    )
    np.testing.assert_array_equal(quantise_intensities(np.array([0.5, 1.5, 254.5]), True).stored, [0, 2, 254])
