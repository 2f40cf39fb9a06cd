"""Issue 16, fault injection at the file level: headers that claim huge sizes, a full disk.

Each test checks the promise: nothing is allocated or written beyond what the file holds, one
clear error, and either nothing written or a complete set that loads.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import DiskFullError, GeometryError, InputError, OutputWriteError
from vmgga.export.itk_transform import write_transform
from vmgga.export.outputs import write_registration_outputs
from vmgga.io import read_image
from vmgga.io.atomic import atomic_write, write_image_atomic
from vmgga.io.verify import is_disk_full

REPO = Path(__file__).resolve().parents[2]
PEAK_GROWTH_LIMIT_MB = 150  # reading a tiny file may grow the peak RSS by this much, no more


# --- crafted headers -----------------------------------------------------------------------------


def nifti_bomb(path: Path, shape_ijk: tuple[int, int, int], dtype=np.float64) -> Path:
    """A gzipped NIfTI header claiming ``shape_ijk`` voxels of ``dtype``, with no voxel data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape_ijk)
    header.set_data_dtype(dtype)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4, 9))
    return path


def metaimage_bomb(path: Path, shape_ijk: tuple[int, int, int]) -> Path:
    """A ``.mhd`` claiming ``shape_ijk`` doubles, beside a 100-byte ``.raw``."""
    dims = " ".join(str(s) for s in shape_ijk)
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"ElementSpacing = 1 1 1\nDimSize = {dims}\nElementType = MET_DOUBLE\n"
        f"ElementDataFile = {path.stem}.raw\n"
    )
    path.with_suffix(".raw").write_bytes(b"\0" * 100)
    return path


def compressed_metaimage_bomb(path: Path, shape_ijk: tuple[int, int, int]) -> Path:
    """A ``.mha`` claiming ``shape_ijk`` doubles with a tiny zlib stream inline."""
    dims = " ".join(str(s) for s in shape_ijk)
    data = zlib.compress(b"\0" * 1000)
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = True\n"
        f"CompressedDataSize = {len(data)}\nElementSpacing = 1 1 1\nDimSize = {dims}\nElementType = MET_DOUBLE\n"
        "ElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + data)
    return path


def nrrd_bomb(path: Path, shape_ijk: tuple[int, int, int], encoding: str = "raw") -> Path:
    """An inline NRRD header claiming ``shape_ijk`` doubles, followed by 100 bytes."""
    dims = " ".join(str(s) for s in shape_ijk)
    header = (
        f"NRRD0004\ntype: double\ndimension: 3\nsizes: {dims}\nencoding: {encoding}\nendian: little\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace: left-posterior-superior\n\n"
    )
    data = b"\0" * 100
    path.write_bytes(header.encode() + (gzip.compress(data) if encoding == "gzip" else data))
    return path


BOMBS = {
    "nifti_over_limit": lambda d: nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 1000)),
    "nifti_under_limit": lambda d: nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 500)),
    "nifti_raw": lambda d: _uncompressed(nifti_bomb(d / "bomb.nii.gz", (1000, 1000, 500))),
    "mhd": lambda d: metaimage_bomb(d / "bomb.mhd", (1000, 1000, 500)),
    "mha_zlib": lambda d: compressed_metaimage_bomb(d / "bomb.mha", (1000, 1000, 500)),
    "mha_zlib_over_limit": lambda d: compressed_metaimage_bomb(d / "bomb.mha", (1000, 1000, 1000)),
    "nrrd_raw": lambda d: nrrd_bomb(d / "bomb.nrrd", (1000, 1000, 500)),
    "nrrd_gzip": lambda d: nrrd_bomb(d / "bomb.nrrd", (1000, 1000, 500), "gzip"),
}


def _uncompressed(gz_path: Path) -> Path:
    target = gz_path.with_name("bomb.nii")
    target.write_bytes(gzip.decompress(gz_path.read_bytes()))
    gz_path.unlink()
    return target


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_huge_header_is_refused_before_any_allocation(tmp_path, kind):
    """A few hundred bytes claiming 4 to 8 GB: refused with one error, peak memory barely grows."""
    path = BOMBS[kind](tmp_path)
    assert path.stat().st_size < 1000
    script = textwrap.dedent(
        f"""
        import json, resource
        from vmgga.errors import VmggaError
        from vmgga.io import read_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_image({str(path)!r}, role="moving")
            message = None
        except VmggaError as error:
            message = str(error)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"message": message, "growth_mb": (after - before) / 1024}}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["message"] is not None and "bomb" in outcome["message"]
    assert re.search(r"declares (\S+ GB|\d+ bytes) of voxel data", outcome["message"]), outcome
    assert outcome["growth_mb"] < PEAK_GROWTH_LIMIT_MB, outcome
    assert run.stderr == "", run.stderr


def test_over_limit_header_names_the_stored_size(tmp_path):
    """1000^3 float64 is 7.5 GB as stored, although its float32 copy (3.7 GB) is under the limit."""
    path = nifti_bomb(tmp_path / "bomb.nii.gz", (1000, 1000, 1000))
    with pytest.raises(GeometryError, match=r"declares 7\.5 GB of voxel data"):
        read_image(path)


def test_short_header_claim_is_truncation(tmp_path):
    path = nifti_bomb(tmp_path / "bomb.nii.gz", (1000, 1000, 500))
    with pytest.raises(InputError, match=r"truncated or corrupt file: its header declares 4000000000 bytes"):
        read_image(path)


# --- a full disk -----------------------------------------------------------------------------------


def mount_tmpfs(folder: Path, size: str) -> Path:
    """A tmpfs of ``size`` at ``folder`` (needs root and mount permission; else the test is skipped)."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the patched-writer tests cover the logic")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount is not permitted here: {mounted.stderr.strip()}")
    return folder


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs."""
    folder = mount_tmpfs(tmp_path / "small_disk", "1m")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def noisy_image(size_ijk: tuple[int, int, int], seed: int = 0) -> sitk.Image:
    """Random floats: they do not compress, so the file size is about 4 bytes per voxel."""
    array = np.random.default_rng(seed).uniform(0, 100, size=tuple(reversed(size_ijk))).astype(np.float32)
    return sitk.GetImageFromArray(array)


def fake_result(size_ijk: tuple[int, int, int], seed: int = 0) -> SimpleNamespace:
    """What :func:`write_registration_outputs` reads from a registration result."""
    field = sitk.GetImageFromArray(
        np.random.default_rng(seed).normal(size=(*reversed(size_ijk), 3)), isVector=True
    )
    transform = sitk.CompositeTransform([sitk.AffineTransform(3), sitk.DisplacementFieldTransform(field)])
    report = {"seed": seed, "size": list(size_ijk)}
    return SimpleNamespace(
        transform=transform,
        warped=noisy_image(size_ijk, seed),
        confidence=noisy_image(size_ijk, seed + 1),
        report=report,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmgga", *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_apply_on_a_full_disk_fails_in_one_line_and_writes_nothing(tmp_path, small_disk, suffix):
    """SimpleITK's NIfTI writer does not raise on ENOSPC: the written file is checked instead."""
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(noisy_image((80, 80, 80)), str(image))  # about 2 MB: twice the disk
    transform = tmp_path / "identity.tfm"
    sitk.WriteTransform(sitk.Transform(3, sitk.sitkIdentity), str(transform))
    output = small_disk / f"warped{suffix}"
    run = run_cli("apply", str(transform), str(image), "--reference", str(image), "-o", str(output))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "no space left on the device" in run.stderr, run.stderr
    assert str(output) in run.stderr
    assert list(small_disk.iterdir()) == []


def test_hdf5_transform_on_a_full_disk_is_one_error(small_disk, capfd):
    """HDF5 raises with a 70-line stack on stderr: one DiskFullError, no stack, no file."""
    field = sitk.GetImageFromArray(np.zeros((50, 50, 50, 3)), isVector=True)  # 3 MB of doubles
    transform = sitk.DisplacementFieldTransform(field)
    with pytest.raises(DiskFullError, match="no space left on the device to write .*transform.h5"):
        write_transform(transform, small_disk / "transform.h5")
    assert capfd.readouterr().err == ""
    assert list(small_disk.iterdir()) == []


def test_full_disk_keeps_the_previous_set(small_disk):
    """A first set fits; a larger second one does not: the first stays complete and certified."""
    write_registration_outputs(fake_result((12, 12, 12), seed=1), small_disk)
    before = folder_hashes(small_disk)
    with pytest.raises(DiskFullError):
        write_registration_outputs(fake_result((70, 70, 70), seed=2), small_disk)
    assert folder_hashes(small_disk) == before
    assert json.loads((small_disk / "report.json").read_text())["seed"] == 1


@pytest.mark.slow
def test_register_on_a_full_disk_fails_in_one_line_and_certifies_nothing(tmp_path):
    """A disk where transform.h5 fits (its size measured by a first run) and the NIfTI writes that
    follow run out of space, which the NIfTI writer itself does not report."""
    stroke = REPO / "tests" / "data" / "stroke"
    args = [str(stroke / "T2.nii.gz"), str(stroke / "T1.nii.gz"), "--preset", "fast", "--quiet"]
    reference = run_cli("register", *args, "-o", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    transform_bytes = (tmp_path / "reference" / "transform.h5").stat().st_size
    disk_kib = (transform_bytes + 16 * 1024) // 4096 * 4 + 4  # the transform and 16-20 KiB more
    disk = mount_tmpfs(tmp_path / "disk", f"{disk_kib}k")
    output = disk / "out"
    run = run_cli("register", *args, "-o", str(output))
    try:
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1 and "no space left on the device to write" in run.stderr, (
            run.stderr
        )
        assert not output.exists() or sorted(p.name for p in output.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def folder_hashes(folder: Path) -> dict[str, str]:
    """Name -> sha256 of every entry of ``folder`` (hidden staging files would show up too)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- a writer that returns without writing everything (no root needed) --------------------------


def truncating(write_image, keep_fraction: float = 0.5):
    """A ``sitk.WriteImage`` that writes, then cuts the file short and returns normally, as
    SimpleITK's NIfTI writer does when the disk fills."""

    def write(image, path, *args):
        write_image(image, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: int(len(data) * keep_fraction)])

    return write


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_short_image_write_is_not_committed(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"warped{suffix}"
    target.write_bytes(b"previous version")
    monkeypatch.setattr(sitk, "WriteImage", truncating(sitk.WriteImage))
    with pytest.raises(OutputWriteError, match=rf"'{target}' could not be written completely"):
        write_image_atomic(noisy_image((30, 30, 30)), target)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_short_output_after_space_was_freed_leaves_the_set_uncertified(tmp_path, monkeypatch):
    """The warped image is cut short, then report.json would fit: the set must not be certified."""
    write_registration_outputs(fake_result((12, 12, 12), seed=1), tmp_path)
    (tmp_path / "qc.html").write_text("<html>the previous set's page</html>")  # removed only on success
    before = folder_hashes(tmp_path)
    monkeypatch.setattr(sitk, "WriteImage", truncating(sitk.WriteImage, keep_fraction=0.9))
    with pytest.raises(OutputWriteError, match="warped.nii.gz' could not be written completely"):
        write_registration_outputs(fake_result((20, 20, 20), seed=2), tmp_path)
    assert folder_hashes(tmp_path) == before


def test_disk_full_is_recognised_from_errno_and_library_text(tmp_path, monkeypatch):
    """ENOSPC from Python, and HDF5's 'errno = 28' text, both give DiskFullError."""
    full = OSError(errno.ENOSPC, "No space left on device")

    def raise_full(path):
        raise full

    with pytest.raises(DiskFullError):
        atomic_write(tmp_path / "report.json", raise_full)
    assert is_disk_full(tmp_path, RuntimeError("H5Dwrite failed"), "errno = 28, error message = ...")
    assert not is_disk_full(tmp_path, RuntimeError("some other failure"), "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("suffix", "data_suffix"), [(".mhd", ".zraw"), (".hdr", ".img")])
def test_two_file_formats_name_their_final_data_file(tmp_path, suffix, data_suffix):
    """The header must not name a hidden temporary data file (a later cleanup would delete it)."""
    image = noisy_image((9, 8, 7))
    path = write_image_atomic(image, tmp_path / f"warped{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"warped{suffix}", f"warped{data_suffix}"])
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(path))), sitk.GetArrayFromImage(image)
    )


def test_other_os_errors_say_what_failed(tmp_path):
    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(
        OutputWriteError, match=r"cannot write '.*out.nii.gz': Permission denied; nothing was"
    ):
        atomic_write(tmp_path / "out.nii.gz", refused)
