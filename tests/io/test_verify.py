"""``io.verify``: the one list of full-disk texts, used by the atomic writer and the CLI alike."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from vmgga.cli.checks import library_write_failure
from vmgga.io.verify import is_disk_full, mentions_full_disk

#: What the writers print on a full disk or an exhausted quota (errno 28 = ENOSPC, 122 = EDQUOT).
FULL_DISK_OUTPUTS = [
    "[Errno 28] No space left on device: '/out/warped.nii.gz'",
    "H5FD_sec2_write(): file write failed: errno = 28, error message = 'No space left on device'",
    "OSError: [Errno 122] Disk quota exceeded",
    "itk::ExceptionObject: DISK FULL while writing",
    "write failed: ENOSPC",
    "File too large",
]
OTHER_FAILURES = ["Permission denied", "H5Dwrite failed", "some other failure", "errno = 2, No such file"]


@pytest.mark.parametrize("text", FULL_DISK_OUTPUTS)
def test_full_disk_texts_are_recognised_in_any_case(text):
    assert mentions_full_disk(text)
    assert mentions_full_disk(text.upper()) and mentions_full_disk(text.lower())


@pytest.mark.parametrize("text", OTHER_FAILURES)
def test_other_failures_are_not_a_full_disk(text):
    assert not mentions_full_disk(text)


@pytest.mark.parametrize("text", FULL_DISK_OUTPUTS)
def test_the_writer_and_the_cli_agree_on_a_full_disk(text, tmp_path: Path):
    """io.atomic (through is_disk_full) and the CLI's one-line error read the same texts."""
    assert is_disk_full(tmp_path, RuntimeError("writer failed"), text)
    error = library_write_failure(RuntimeError("writer failed"), text, tmp_path / "out")
    assert "the disk is full" in str(error)


@pytest.mark.parametrize("text", OTHER_FAILURES)
def test_the_writer_and_the_cli_agree_on_other_failures(text, tmp_path: Path):
    assert not is_disk_full(tmp_path, RuntimeError(text), "")
    error = library_write_failure(RuntimeError(text), "", tmp_path / "out")
    assert "the disk is full" not in str(error) and text in str(error)


def test_a_disk_full_errno_needs_no_text(tmp_path: Path):
    assert is_disk_full(tmp_path, OSError(errno.ENOSPC, ""), "")
    assert is_disk_full(tmp_path, OSError(errno.EDQUOT, ""), "")
    assert not is_disk_full(tmp_path, OSError(errno.EACCES, ""), "")
