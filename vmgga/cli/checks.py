"""Checks that the command line makes before any work, and the translation of system errors.

Every check raises a :class:`~vmgga.errors.VmggaError` subclass with one line naming the option,
the path and the problem; ``vmgga.cli.main`` prints it and exits 2. Nothing is written by a check.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from vmgga.errors import OutputError

#: ``errno`` values of ``OSError`` that a user can act on (space, permissions, wrong kind of path).
USER_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ENOENT,
    }
)
#: Image suffixes that ``vmgga apply -o`` can write (SimpleITK picks the format from the suffix).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # single-file formats: renamed atomically


#: Looser words for a full disk that the CLI also accepts in a C++ writer's output (lower case).
_LOOSE_DISK_FULL_SIGNS = ("no space left", "nwad", "disk full", "enospc", "file too large", "quota")


def disk_full_signs() -> tuple[str, ...]:
    """What the CLI reads as a full disk in a failed writer's text, lower case.

    The exact markers of :data:`vmgga.io.verify.DISK_FULL_TEXTS` (which the atomic writer uses on
    its own, case-sensitively, so that a bare "disk full" from a writer stays an ordinary failure
    there) plus the looser words above: the CLI reports a failed ``transform.h5``/image write as a
    full disk on either, and also when the disk is nearly full.
    """
    from vmgga.io.verify import DISK_FULL_TEXTS

    return tuple(text.lower() for text in DISK_FULL_TEXTS) + _LOOSE_DISK_FULL_SIGNS


def os_error_message(error: OSError) -> str:
    """One line for a system error: what failed, on which path (``strerror`` and file names)."""
    reason = error.strerror or str(error) or type(error).__name__
    names = [str(n) for n in (error.filename, error.filename2) if n is not None]
    return f"{reason}: {' -> '.join(repr(n) for n in names)}" if names else reason


def check_device(device: str, option: str = "--device") -> None:
    """Refuse a device that is malformed or not available on this machine, before any work.

    The rule lives in :func:`vmgga.device.check_device_available`; this names the option.
    """
    from vmgga.device import check_device_available

    check_device_available(device, option=option)


def check_output_folder(folder: str | os.PathLike, option: str = "-o") -> Path:
    """``folder`` can be used as an output folder: an existing writable folder, or creatable.

    Raises:
        OutputError: it is an existing file, lies under a file, or it (or its nearest existing
            parent, for a new folder) cannot be written (read-only file system, permissions).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} '{folder}' is an existing file; give a folder for the outputs")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{option} '{folder}': '{existing}' is a file, so the folder cannot be created")
    _check_writable(existing, folder, option)
    return folder


def check_output_file(path: str | os.PathLike, option: str = "-o", suffixes=IMAGE_SUFFIXES) -> Path:
    """``path`` can be written as an image file: not a folder, a known suffix, a writable folder.

    Raises:
        OutputError: naming the option, the path and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} '{path}' is a folder; give an image file name such as warped.nii.gz")
    if not path.name.lower().endswith(tuple(suffixes)):
        raise OutputError(f"{option} '{path}' has an unknown suffix; use one of {', '.join(suffixes)}")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise OutputError(f"{option} '{path}': '{existing}' is a file, so the folder cannot be created")
    _check_writable(existing, path.parent, option)
    return path


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the folder that a new output would be created in)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(existing: Path, wanted: Path, option: str) -> None:
    """Raise if no file can be created in the folder ``existing`` (root is stopped only by read-only
    mounts and immutable folders, which ``os.access`` reports too)."""
    if os.access(existing, os.W_OK | os.X_OK):
        return
    where = f"'{wanted}'" if existing == wanted.absolute() else f"'{wanted}' (in '{existing}')"
    raise OutputError(f"{option} {where} cannot be written: {_why_not_writable(existing)}")


def _why_not_writable(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def library_write_failure(error: Exception, library_text: str, output: Path) -> OutputError:
    """One line for a writer that failed inside a C++ library (ITK, HDF5), e.g. on a full disk."""
    text = f"{error}\n{library_text}".lower()
    if any(sign in text for sign in disk_full_signs()) or _almost_full(output):
        reason = "the disk is full (no space left on the device)"
    else:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
    return OutputError(f"cannot write the outputs in '{output}': {reason}; nothing was written")


def _almost_full(output: Path) -> bool:
    """Less than 1 MiB free where the outputs go (a failed write of ours has been removed again)."""
    from vmgga.io.verify import LOW_SPACE_BYTES, free_bytes

    return free_bytes(_nearest_existing(output)) < LOW_SPACE_BYTES
