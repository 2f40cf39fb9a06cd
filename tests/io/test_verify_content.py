"""Outputs whose bytes were made in memory are checked by reading them back raw (``io.verify``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import OutputWriteError
from vmgga.export.compact import encode_scaled_nifti, quantise_unit_interval
from vmgga.io.atomic import atomic_write, write_bytes_atomic
from vmgga.io.verify import problem_with

DATA = bytes(range(256)) * 300  # 76.8 kB: several read-back chunks of a small chunk size


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr("vmgga.io.verify.CHUNK_BYTES", 4096)


def test_identical_bytes_pass(tmp_path: Path, small_chunks):
    path = tmp_path / "out.nii.gz"
    path.write_bytes(DATA)
    assert problem_with(path, expected_content=DATA) is None


@pytest.mark.parametrize("position", [0, 4095, 4096, len(DATA) - 1])
def test_one_changed_byte_is_found(tmp_path: Path, small_chunks, position: int):
    changed = bytearray(DATA)
    changed[position] ^= 0xFF
    path = tmp_path / "out.nii.gz"
    path.write_bytes(bytes(changed))
    problem = problem_with(path, expected_content=DATA)
    assert problem is not None and f"from byte {position // 4096 * 4096} on" in problem


def test_short_and_zero_filled_files_are_found(tmp_path: Path, small_chunks):
    path = tmp_path / "out.nii.gz"
    path.write_bytes(DATA[:-10])
    assert problem_with(path, expected_content=DATA) == f"{len(DATA) - 10} of {len(DATA)} bytes were written"
    path.write_bytes(DATA[:5000] + bytes(len(DATA) - 5000))  # the right size, a hole of zeros
    assert "differ" in problem_with(path, expected_content=DATA)


def test_a_writer_that_returns_its_bytes_is_held_to_them(tmp_path: Path):
    """The file is compared with the returned bytes: writing fewer is an error, nothing committed."""
    target = tmp_path / "warped.nii.gz"

    def short_writer(path: Path) -> bytes:
        path.write_bytes(DATA[:1000])
        return DATA

    with pytest.raises(OutputWriteError, match="could not be written completely"):
        atomic_write(target, short_writer)
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(DATA, target)
    assert target.read_bytes() == DATA


def test_encoded_nifti_reads_back_with_its_scaling(tmp_path: Path):
    """The encoded bytes are a gzipped NIfTI that SimpleITK reads as the quantised values."""
    values = np.random.default_rng(0).uniform(0, 1, size=(5, 6, 7)).astype(np.float32)
    like = sitk.GetImageFromArray(values)
    like.SetSpacing((0.5, 0.7, 1.1))
    like.SetOrigin((10.0, -4.0, 3.0))
    data = encode_scaled_nifti(quantise_unit_interval(values), like, scratch=tmp_path)
    assert gzip.decompress(data)[:4] == (348).to_bytes(4, "little")
    path = tmp_path / "confidence.nii.gz"
    path.write_bytes(data)
    back = sitk.ReadImage(str(path))
    assert back.GetSpacing() == pytest.approx(like.GetSpacing())
    assert back.GetOrigin() == pytest.approx(like.GetOrigin())
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), values, atol=0.5 / 255 + 1e-6)


def test_a_short_uncompressed_image_is_refused(tmp_path: Path, monkeypatch):
    """SimpleITK returns normally after writing part of a file on a full disk: encoding refuses it."""
    write_image = sitk.WriteImage

    def truncating(image, path, *args):
        write_image(image, path, *args)
        Path(path).write_bytes(Path(path).read_bytes()[:-100])

    monkeypatch.setattr(sitk, "WriteImage", truncating)
    values = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(RuntimeError, match="written short"):
        encode_scaled_nifti(quantise_unit_interval(values), sitk.GetImageFromArray(values), scratch=tmp_path)
