"""Checks of an image file's header against its file, before any voxel is read or allocated.

* The stored voxels (in the stored pixel type, not the float32 copy) must fit the size limit, and
  the file (or the decompressed stream, counted in chunks) must hold as many bytes as the header
  declares: a short file is refused as truncated instead of read as zeros.
* A NIfTI header must define a geometry: a zero voxel size (``pixdim``) or a singular
  qform/sform matrix is refused, as a MetaImage with spacing 0 is.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vmgga.errors import GeometryError, InputError
from vmgga.io.nifti_check import read_nifti_header
from vmgga.io.stored_data import HeaderFormatError, StoredData, available_bytes, stored_data_of
from vmgga.io.validate import VolumeLimits

#: The most deflate (gzip, zlib) can expand: 258 bytes from each 2-bit code, 1032:1 (RFC 1951).
MAX_DEFLATE_RATIO = 1032
SINGULAR_TOLERANCE = 1e-6  # smallest singular value / largest below which a matrix is singular


def check_stored_data(path: str | os.PathLike, name: str, limits: VolumeLimits = VolumeLimits()) -> None:
    """Refuse a header that declares more voxel data than allowed or than its file holds.

    :func:`declared_stored_data` then :func:`check_stored_bytes`. Memory stays at one chunk
    (:data:`vmgga.io.stored_data.CHUNK_BYTES`) whatever the header says.

    Raises:
        GeometryError: the stored voxels exceed ``limits.max_bytes``.
        InputError: unparsable header, missing data file, truncated or corrupt data.
    """
    stored = declared_stored_data(path, name, limits)
    if stored is not None:
        check_stored_bytes(stored, path, name)


def declared_stored_data(
    path: str | os.PathLike, name: str, limits: VolumeLimits = VolumeLimits()
) -> StoredData | None:
    """What the header says is stored, refused if over ``limits`` or if its data file is missing
    (None for formats whose data layout is not parsed here). Reads the header only.

    Raises:
        GeometryError: the stored voxels exceed ``limits.max_bytes``.
        InputError: unparsable header or missing data file.
    """
    try:
        stored = stored_data_of(path)
    except HeaderFormatError as error:
        raise InputError(f"{name}: cannot be read as an image ({error})") from None
    if stored is None:
        return None
    _check_declared_size(stored, name, limits)
    if not stored.data_file.is_file():
        raise InputError(
            f"{name}: its data file '{stored.data_file.name}' named in the header does not exist"
        )
    return stored


def check_stored_bytes_bound(stored: StoredData, path: str | os.PathLike, name: str) -> None:
    """The cheap part of :func:`check_stored_bytes`, done before anything is allocated: a raw file's
    size, or whether a compressed stream could hold the declared bytes at all.

    Deflate expands at most :data:`MAX_DEFLATE_RATIO`-fold, so a stream of ``n`` compressed bytes
    holds at most ``n`` times that: a few hundred bytes claiming gigabytes are refused here, and
    whatever passes makes ITK allocate at most that ratio times the file's size.

    Raises:
        InputError: truncated data (certainly so: the full count is :func:`check_stored_bytes`).
    """
    if stored.compression is None:
        check_stored_bytes(stored, path, name)
        return
    compressed = max(os.path.getsize(stored.data_file) - stored.stream_start, 0)
    if stored.needed_bytes > MAX_DEFLATE_RATIO * compressed:
        raise InputError(
            f"{name}: truncated or corrupt file: its header declares {stored.nbytes} bytes of voxel data "
            f"(size {stored.shape}), more than its {compressed} compressed bytes can hold "
            f"(at most {MAX_DEFLATE_RATIO * compressed})"
        )


def check_stored_bytes(stored: StoredData, path: str | os.PathLike, name: str) -> None:
    """Refuse a file (or decompressed stream, counted in chunks) shorter than its header declares.

    Raises:
        InputError: truncated or corrupt data.
    """
    try:
        found = available_bytes(stored, need=stored.needed_bytes)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputError(f"{name}: truncated or corrupt compressed data ({error})") from None
    if found < stored.needed_bytes:
        raise InputError(_short_message(stored, found, Path(path), name))


def _check_declared_size(stored: StoredData, name: str, limits: VolumeLimits) -> None:
    """The stored pixel type counts, before the pipeline's float32 copy exists."""
    if stored.nbytes > limits.max_bytes:
        raise GeometryError(
            f"{name}: its header declares {stored.nbytes / 1024**3:.1f} GB of voxel data (size "
            f"{stored.shape}); the limit is {limits.max_bytes / 1024**3:.1f} GB: crop or downsample it first"
        )


def _short_message(stored: StoredData, found: int, path: Path, name: str) -> str:
    """Name what is short: the data file beside a header, or the file itself."""
    holds = max(found - stored.offset, 0)
    where = "file" if stored.compression is None else "decompressed data"
    if stored.data_file != path:
        where = f"data file '{stored.data_file.name}'"
        return (
            f"{name}: the {where} is short (truncated): the header declares {stored.nbytes} bytes of voxel "
            f"data (size {stored.shape}), the data file holds {holds}"
        )
    return (
        f"{name}: truncated or corrupt file: its header declares {stored.nbytes} bytes of voxel data "
        f"(size {stored.shape}), the {where} holds {holds}"
    )


# --- NIfTI geometry ------------------------------------------------------------------------------


def check_nifti_header(path: str | os.PathLike, name: str) -> None:
    """Refuse a NIfTI header without a usable geometry (zero voxel size, singular matrix).

    ITK would replace a zero ``pixdim`` by 1 mm with a printed warning, and a singular matrix
    fails deep inside ITK with a message about direction cosines.

    Raises:
        GeometryError: zero/non-finite voxel size, or a singular qform/sform matrix.
    """
    try:
        header = read_nifti_header(path)
    except Exception:  # unreadable headers are reported by the reader with the file's error
        return
    spatial = max(1, min(3, int(header["dim"][0])))
    pixdim = tuple(float(v) for v in header["pixdim"][1 : 1 + spatial])
    codes = {"qform": int(header["qform_code"]), "sform": int(header["sform_code"])}
    if not all(np.isfinite(pixdim)) or min(abs(v) for v in pixdim) == 0:
        known = " and no qform/sform" if not any(codes.values()) else ""
        raise GeometryError(
            f"{name}: has voxel spacing {pixdim} in its NIfTI header (pixdim){known}: its geometry is "
            "unknown; set pixdim to the voxel size in mm (as a .mhd with spacing 0, it is refused)"
        )
    for kind, code in codes.items():
        if code > 0:
            _check_not_singular(_matrix_of(header, kind), kind, name)


def _matrix_of(header, kind: str) -> np.ndarray:
    """The 3x3 voxel-to-world matrix of the qform or sform (sform rows read directly)."""
    if kind == "sform":
        return np.stack([header["srow_x"], header["srow_y"], header["srow_z"]])[:, :3].astype(np.float64)
    readable = header.copy()
    if readable["pixdim"][0] not in (-1.0, 1.0):
        readable["pixdim"][0] = 1.0  # as the NIfTI library reads it (qfac 0 means 1)
    return np.asarray(readable.get_qform(), dtype=np.float64)[:3, :3]


def _check_not_singular(matrix: np.ndarray, kind: str, name: str) -> None:
    """A matrix whose columns are (nearly) dependent maps the voxel grid onto a plane or line."""
    singular_values = np.linalg.svd(matrix, compute_uv=False) if np.all(np.isfinite(matrix)) else [0.0]
    if max(singular_values) == 0 or min(singular_values) / max(singular_values) < SINGULAR_TOLERANCE:
        rows = "; ".join(" ".join(f"{v:g}" for v in row) for row in matrix)
        raise GeometryError(
            f"{name}: has a singular direction matrix in its NIfTI {kind} ({rows}): the voxel axes "
            "are degenerate (a zero or repeated axis); fix the header's orientation"
        )
