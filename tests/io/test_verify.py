"""Full-disk texts: the atomic writer's exact markers (``io.verify``) and the CLI's looser superset."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from vmgga.cli.checks import disk_full_signs, library_write_failure
from vmgga.io.verify import DISK_FULL_TEXTS, is_disk_full

#: What writers print on a full disk or an exhausted quota, with io.verify's exact markers.
EXACT_OUTPUTS = [
    "[Errno 28] No space left on device: '/out/warped.nii.gz'",
    "H5FD_sec2_write(): file write failed: errno = 28, error message = 'No space left on device'",
    "OSError: [Errno 122] Disk quota exceeded",
]
#: Looser wording that only the CLI reads as a full disk (the atomic writer calls it a failed write).
LOOSE_OUTPUTS = ["itk::ExceptionObject: disk full while writing", "write failed: ENOSPC", "File too large"]
OTHER_FAILURES = ["Permission denied", "H5Dwrite failed", "some other failure", "errno = 2, No such file"]


def test_the_cli_reads_every_marker_of_the_atomic_writer():
    """One list of exact markers: the CLI's signs contain all of them (lower case)."""
    signs = disk_full_signs()
    assert all(marker.lower() in signs for marker in DISK_FULL_TEXTS)
    assert all(sign == sign.lower() for sign in signs)


@pytest.mark.parametrize("text", EXACT_OUTPUTS)
def test_exact_markers_are_a_full_disk_for_the_writer_and_the_cli(text, tmp_path: Path):
    assert is_disk_full(tmp_path, RuntimeError("writer failed"), text)
    error = library_write_failure(RuntimeError("writer failed"), text, tmp_path / "out")
    assert "the disk is full" in str(error)


@pytest.mark.parametrize("text", LOOSE_OUTPUTS)
def test_loose_words_are_a_full_disk_for_the_cli_only(text, tmp_path: Path):
    assert not is_disk_full(tmp_path, RuntimeError(text), "")
    assert "the disk is full" in str(library_write_failure(RuntimeError(text), "", tmp_path / "out"))


@pytest.mark.parametrize("text", OTHER_FAILURES)
def test_other_failures_are_not_a_full_disk(text, tmp_path: Path):
    assert not is_disk_full(tmp_path, RuntimeError(text), "")
    error = library_write_failure(RuntimeError(text), "", tmp_path / "out")
    assert "the disk is full" not in str(error) and text in str(error)


def test_a_disk_full_errno_needs_no_text(tmp_path: Path):
    assert is_disk_full(tmp_path, OSError(errno.ENOSPC, ""), "")
    assert is_disk_full(tmp_path, OSError(errno.EDQUOT, ""), "")
    assert not is_disk_full(tmp_path, OSError(errno.EACCES, ""), "")
