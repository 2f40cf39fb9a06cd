"""Check that a file just written is complete, before it is committed (renamed into place).

Writers do not always raise when the disk fills: SimpleITK's NIfTI writer prints
``** ERROR: NWAD: wrote only 0 of N bytes`` and returns, leaving a short file that ITK reads back
as mostly zeros. So every output is read back here, by format:

* NIfTI, MetaImage, NRRD: the data stream must hold what the header declares (a gzip stream is
  decompressed in chunks to its end, which also checks its CRC and length);
* HDF5 transforms (``.h5``): read back with SimpleITK;
* JSON: parsed; PNG: signature and final ``IEND`` chunk;
* any file: its size equals ``expected_bytes`` when the writer knows it;
* a file whose exact bytes the writer made in memory (``expected_content``; the atomic writer
  passes what a writer returns): read back raw and
  compared byte for byte, which is stricter than decoding it and much cheaper than decompressing.

:func:`problem_with` returns what is wrong (or ``None``); :func:`is_disk_full` tells a full disk
from other failures.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import zlib
from pathlib import Path

import SimpleITK as sitk

from vmgga.io.capture import library_output
from vmgga.io.stored_data import CHUNK_BYTES, HeaderFormatError, available_bytes, stored_data_of

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC end every complete PNG
LOW_SPACE_BYTES = 1 << 20  # a write that fails with less free space than this failed for space
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
DISK_FULL_TEXTS = ("No space left on device", "errno = 28", "Disk quota exceeded")


def problem_with(
    path: str | os.PathLike, expected_bytes: int | None = None, expected_content: bytes | None = None
) -> str | None:
    """What is wrong with the written file ``path`` (``None`` if it reads back complete).

    ``expected_content``: the bytes the file must hold; given, nothing else is checked.
    """
    path = Path(path)
    if not path.is_file():
        return "the file was not written"
    size = path.stat().st_size
    if expected_content is not None:
        return _content_problem(path, size, expected_content)
    if expected_bytes is not None and size != expected_bytes:
        return f"{size} of {expected_bytes} bytes were written"
    lower = path.name.lower()
    if lower.endswith(".json"):
        return _json_problem(path)
    if lower.endswith(".png"):
        return _png_problem(path)
    if lower.endswith((".h5", ".hdf5")):
        return _transform_problem(path)
    return _image_problem(path)


def _content_problem(path: Path, size: int, expected: bytes) -> str | None:
    """The file, read back in chunks, against the bytes it should hold."""
    if size != len(expected):
        return f"{size} of {len(expected)} bytes were written"
    view, start = memoryview(expected), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            if chunk != view[start : start + len(chunk)]:
                return f"the bytes read back differ from those written (from byte {start} on)"
            start += len(chunk)
    return None if start == len(expected) else f"{start} of {len(expected)} bytes read back"


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        return f"the JSON does not parse back ({error})"
    return None


def _png_problem(path: Path) -> str | None:
    with open(path, "rb") as handle:
        start = handle.read(len(PNG_SIGNATURE))
        handle.seek(max(path.stat().st_size - len(PNG_END), 0))
        end = handle.read()
    if start != PNG_SIGNATURE or end != PNG_END:
        return "the PNG is incomplete (no signature or no final IEND chunk)"
    return None


def _transform_problem(path: Path) -> str | None:
    try:
        with library_output(f"reading back '{path.name}'"):
            sitk.ReadTransform(str(path))
    except RuntimeError:
        return "the HDF5 transform does not read back (truncated or corrupt)"
    return None


def _image_problem(path: Path) -> str | None:
    """Image formats whose header declares the data size; other files pass."""
    try:
        stored = stored_data_of(path)
    except HeaderFormatError as error:
        return f"its header does not read back ({error})"
    if stored is None:
        return None
    try:
        found = available_bytes(stored)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        return f"the compressed data does not read back ({type(error).__name__}: {error})"
    if found < stored.needed_bytes:
        return f"{max(found - stored.offset, 0)} of {stored.nbytes} bytes of voxel data were written"
    return None


def is_disk_full(
    folder: str | os.PathLike, error: BaseException | None = None, library_text: str = ""
) -> bool:
    """Whether a failed write in ``folder`` failed for lack of space.

    Args:
        folder: Where the file was being written.
        error: The exception the writer raised, if any (``OSError`` with ENOSPC/EDQUOT).
        library_text: What the writing library printed (HDF5 and ITK name ``errno = 28``).
    """
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    text = f"{error or ''}\n{library_text}"
    if any(marker in text for marker in DISK_FULL_TEXTS):
        return True
    return free_bytes(folder) < LOW_SPACE_BYTES


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes available to this user on ``folder``'s file system (a large number if unknown)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return 1 << 62
    return stats.f_bavail * stats.f_frsize
