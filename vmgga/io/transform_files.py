"""Say precisely why a transform file cannot be read: not a transform at all (an image, another
format), an HDF5 file without an ITK transform, or a truncated/corrupt transform file.

ITK's own reasons ("set the suffix to an unsupported type", "Tags must be delimited by :") do not
tell the user which of these it is.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import SimpleITK as sitk

from vmgga.io.capture import library_output

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GZIP_SIGNATURE = b"\x1f\x8b"
TEXT_TRANSFORM_START = b"#Insight Transform File"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
TEXT_SUFFIXES = (".tfm", ".txt")
MATLAB_SUFFIXES = (".mat",)
TRANSFORM_SUFFIXES = HDF5_SUFFIXES + TEXT_SUFFIXES + MATLAB_SUFFIXES


def unreadable_transform_reason(path: Path, itk_reason: str) -> str:
    """Why ``path`` did not read as an ITK transform (completes "not a readable ITK transform file: ")."""
    start = _first_bytes(path, 64)
    suffix = path.suffix.lower()
    if not start:
        return "the file is empty"
    if _is_image(path) or _is_nifti(start, path):
        return "it is an image, not a transform: pass the transform written by vmgga register (transform.h5)"
    if start.startswith(HDF5_SIGNATURE):
        return "an HDF5 file without a readable ITK transform (truncated, corrupt, or other HDF5 data)"
    if start.startswith(TEXT_TRANSFORM_START):
        return f"an ITK text transform file, truncated or corrupt ({_plain(itk_reason)})"
    if suffix in HDF5_SUFFIXES:
        return f"it is not a transform: named {suffix} but not an HDF5 file (no HDF5 signature)"
    if suffix not in TRANSFORM_SUFFIXES:
        return (
            f"it is not a transform: '{suffix or path.name}' is not a transform format "
            f"(expected one of {', '.join(TRANSFORM_SUFFIXES)})"
        )
    return f"it is not a transform (it does not start with '{TEXT_TRANSFORM_START.decode()}')"


def _plain(itk_reason: str) -> str:
    """ITK's reason without its ``ITK ERROR: Class(0x55...):`` prefix."""
    return itk_reason.split("): ", 1)[-1].strip() if "ITK ERROR" in itk_reason else itk_reason.strip()


def _first_bytes(path: Path, count: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(count)
    except OSError:
        return b""


def _is_nifti(start: bytes, path: Path) -> bool:
    """A NIfTI-1/2 magic in the (possibly gzipped) header, whatever the file is named."""
    try:
        if start.startswith(GZIP_SIGNATURE):
            with gzip.open(path, "rb") as stream:
                header = stream.read(348)
        else:
            header = _first_bytes(path, 348)
    except (OSError, EOFError, zlib.error):
        return False
    return header[344:348] in (b"n+1\0", b"ni1\0") or header[4:8] in (b"n+2\0", b"ni2\0")


def _is_image(path: Path) -> bool:
    """Whether an image reader accepts the header of ``path`` (names can mislead: x.h5 may be NIfTI)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with library_output(f"checking whether '{path.name}' is an image"):
            reader.ReadImageInformation()
    except RuntimeError:
        return False
    return True
