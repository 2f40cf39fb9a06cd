"""Where an image file's voxels are stored and how many bytes its header says they take.

A header is a promise: ``1000^3`` float64 voxels is 8 GB, whatever the file size. Readers
(nibabel, ITK) allocate what the header says before they find the data short, so a 99-byte file
can claim 8 GB. :func:`stored_data_of` reads only the header (NIfTI, MetaImage ``.mha``/``.mhd``,
NRRD) and :func:`available_bytes` measures the stored data without holding it (a compressed
stream is decompressed in chunks and counted), so a header can be checked against its file
before anything is allocated. Both reading (:mod:`vmgga.io.images`) and verifying written
outputs (:mod:`vmgga.io.verify`) use them.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from vmgga.io.nifti_check import is_nifti, read_nifti_header

CHUNK_BYTES = 1 << 20  # decompressed bytes held at a time while counting a compressed stream
_HEADER_LIMIT = 1 << 16  # text headers (MetaImage, NRRD) longer than this are not headers

#: MetaImage element type -> bytes (MetaIO's MET_ValueTypeSize).
_MET_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}

#: NRRD type name (any of its spellings) -> bytes.
_NRRD_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(
        (
            "short",
            "short int",
            "signed short",
            "signed short int",
            "int16",
            "int16_t",
            "ushort",
            "unsigned short",
            "unsigned short int",
            "uint16",
            "uint16_t",
        ),
        2,
    ),
    **dict.fromkeys(
        ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t"), 4
    ),
    **dict.fromkeys(
        (
            "longlong",
            "long long",
            "long long int",
            "signed long long",
            "signed long long int",
            "int64",
            "int64_t",
            "ulonglong",
            "unsigned long long",
            "unsigned long long int",
            "uint64",
            "uint64_t",
        ),
        8,
    ),
    "float": 4,
    "double": 8,
}


class HeaderFormatError(ValueError):
    """A header that cannot be parsed (the reader then reports the file as unreadable)."""


@dataclass(frozen=True)
class StoredData:
    """Where the voxels of an image file lie, as its header says.

    Attributes:
        data_file: The file holding the voxels (the image itself, or ``.raw``/``.img`` beside it).
        offset: Bytes before the voxels (in the decompressed stream when ``compression`` is gzip).
        nbytes: Bytes the header says the voxels take, in the stored pixel type.
        compression: ``None`` (raw), ``"gzip"`` (offset and nbytes in the decompressed stream) or
            ``"zlib"`` (a MetaImage zlib stream starting at ``stream_start``).
        shape: The voxel counts the header declares, in file order.
        stream_start: Where a gzip stream begins in ``data_file`` (after an inline NRRD header).
    """

    data_file: Path
    offset: int
    nbytes: int
    compression: str | None
    shape: tuple[int, ...]
    stream_start: int = 0

    @property
    def needed_bytes(self) -> int:
        """Bytes the (decompressed) data stream must hold: the offset plus the voxels."""
        return self.offset + self.nbytes


def stored_data_of(path: str | os.PathLike) -> StoredData | None:
    """Read the header of ``path`` (no voxels) and say where its voxels are stored.

    Returns:
        ``None`` for a format this module does not parse (DICOM, PNG...).

    Raises:
        HeaderFormatError: if the header of a known format cannot be parsed.
    """
    path = Path(path)
    lower = path.name.lower()
    if is_nifti(lower):
        return _nifti_stored(path)
    if lower.endswith((".mha", ".mhd")):
        return _metaimage_stored(path)
    if lower.endswith((".nrrd", ".nhdr")):
        return _nrrd_stored(path)
    return None


def available_bytes(stored: StoredData, need: int | None = None) -> int:
    """How many bytes the data stream holds, counted without keeping them.

    Args:
        stored: From :func:`stored_data_of`.
        need: Stop counting a compressed stream once this many bytes were found (``None``: read
            to the end, which also checks the gzip CRC and length trailer).

    Raises:
        OSError, EOFError, zlib.error: a missing data file or a corrupt compressed stream.
    """
    if stored.compression == "zlib":
        return _zlib_stream_bytes(stored, need)
    if stored.compression != "gzip":
        return os.path.getsize(stored.data_file)
    count = 0
    with open(stored.data_file, "rb") as handle:
        handle.seek(stored.stream_start)
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
            while need is None or count < need:
                chunk = stream.read(CHUNK_BYTES)
                if not chunk:
                    break
                count += len(chunk)
    return count


def _zlib_stream_bytes(stored: StoredData, need: int | None) -> int:
    """Decompressed length of a zlib stream, at most one chunk held at a time."""
    decompressor, count = zlib.decompressobj(), 0
    with open(stored.data_file, "rb") as handle:
        handle.seek(stored.stream_start)
        pending = b""
        while not decompressor.eof and (need is None or count < need):
            pending = pending or handle.read(CHUNK_BYTES)
            if not pending:
                break
            count += len(decompressor.decompress(pending, CHUNK_BYTES))
            pending = decompressor.unconsumed_tail
    return count


def _voxel_bytes(shape: tuple[int, ...], bytes_per_voxel: int) -> int:
    """Bytes of ``shape`` voxels, in Python integers (no overflow for absurd headers)."""
    total = bytes_per_voxel
    for count in shape:
        total *= int(count)
    return total


# --- NIfTI -------------------------------------------------------------------------------------


def _nifti_stored(path: Path) -> StoredData:
    """Header as stored (reads 348 or 540 bytes, decompressing only those)."""
    try:
        header = read_nifti_header(path)
        shape = tuple(int(s) for s in header.get_data_shape())
        itemsize = int(np.dtype(header.get_data_dtype()).itemsize)
    except (OSError, EOFError, ValueError, zlib.error, nib.spatialimages.HeaderDataError) as error:
        raise HeaderFormatError(f"not a readable NIfTI header ({error})") from None
    data_file = _nifti_data_file(path)
    compression = "gzip" if data_file.name.lower().endswith(".gz") else None
    offset = int(header.get_data_offset())
    return StoredData(data_file, offset, _voxel_bytes(shape, itemsize), compression, shape)


def _nifti_data_file(path: Path) -> Path:
    """The file with the voxels: the ``.nii`` itself, or the ``.img`` beside a ``.hdr``."""
    lower = path.name.lower()
    if not lower.endswith((".hdr", ".hdr.gz")):
        return path
    stem = path.name[: -len(".hdr.gz")] if lower.endswith(".gz") else path.name[: -len(".hdr")]
    candidates = [path.with_name(stem + suffix) for suffix in (".img", ".img.gz", ".IMG")]
    return next((c for c in candidates if c.exists()), candidates[0])


# --- MetaImage -----------------------------------------------------------------------------------


def _metaimage_stored(path: Path) -> StoredData | None:
    """``Key = Value`` lines up to ``ElementDataFile``; ``None`` for lists of slice files."""
    fields, header_end = _metaimage_fields(path)
    try:
        shape = tuple(int(v) for v in fields["DimSize"].split())
        bytes_per_voxel = _MET_BYTES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError) as error:
        raise HeaderFormatError(f"MetaImage header without a valid {error}") from None
    data_name = fields["ElementDataFile"]
    if data_name.upper() == "LIST" or "%" in data_name:
        return None
    compressed = fields.get("CompressedData", "False").lower() == "true"
    nbytes = _voxel_bytes(shape, bytes_per_voxel)
    if data_name.upper() == "LOCAL":
        data_file, offset = path, header_end
    else:
        data_file, offset = path.parent / data_name, 0
    offset = _metaimage_header_size(fields, offset)
    if compressed:
        return StoredData(data_file, 0, nbytes, "zlib", shape, stream_start=max(offset, 0))
    if offset < 0:  # HeaderSize = -1: the voxels are the last nbytes of the file
        offset = max(os.path.getsize(data_file) - nbytes, 0) if data_file.exists() else 0
    return StoredData(data_file, offset, nbytes, None, shape)


def _metaimage_header_size(fields: dict[str, str], offset: int) -> int:
    """``HeaderSize`` skips bytes of a separate data file (-1: data at the end)."""
    if "HeaderSize" not in fields:
        return offset
    try:
        size = int(fields["HeaderSize"])
    except ValueError:
        raise HeaderFormatError("MetaImage header with an invalid HeaderSize") from None
    return -1 if size == -1 else offset + size


def _metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """The header's fields and the byte offset just after the ``ElementDataFile`` line."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    fields, position = {}, 0
    for raw_line in head.splitlines(keepends=True):
        position += len(raw_line)
        key, sep, value = raw_line.decode("latin-1").partition("=")
        if not sep:
            raise HeaderFormatError("not a MetaImage header (a line without '=')")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, position
    raise HeaderFormatError("MetaImage header without ElementDataFile")


# --- NRRD ----------------------------------------------------------------------------------------


def _nrrd_stored(path: Path) -> StoredData | None:
    """Raw and gzip encodings; ``None`` for others (ascii, hex, bzip2) and multi-file data."""
    fields, header_end = _nrrd_fields(path)
    try:
        shape = tuple(int(v) for v in fields["sizes"].split())
        bytes_per_voxel = _NRRD_BYTES[fields["type"]]
    except (KeyError, ValueError) as error:
        raise HeaderFormatError(f"NRRD header without a valid {error}") from None
    encoding = fields.get("encoding", "raw")
    if encoding not in ("raw", "gzip", "gz"):
        return None
    data_name = fields.get("data file", fields.get("datafile"))
    if data_name is not None and (data_name.startswith("LIST") or len(data_name.split()) > 1):
        return None
    data_file = path if data_name is None else path.parent / data_name
    offset = header_end if data_name is None else 0
    compression = None if encoding == "raw" else "gzip"
    nbytes = _voxel_bytes(shape, bytes_per_voxel)
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    if skip == -1 and compression is None:
        return StoredData(data_file, max(os.path.getsize(data_file) - nbytes, 0), nbytes, None, shape)
    if compression == "gzip":  # byte skip counts decompressed bytes
        return StoredData(data_file, max(skip, 0), nbytes, compression, shape, stream_start=offset)
    return StoredData(data_file, offset + max(skip, 0), nbytes, compression, shape)


def _nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    """``field: value`` lines (comments and ``key:=value`` pairs skipped) up to the blank line."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    if not head.startswith(b"NRRD"):
        raise HeaderFormatError("not a NRRD header (no 'NRRD' magic)")
    fields, position = {}, 0
    for raw_line in head.splitlines(keepends=True):
        position += len(raw_line)
        line = raw_line.decode("latin-1").rstrip("\r\n")
        if not line:
            return fields, position
        match = re.match(r"([^:#]+):\s(.*)", line)
        if match and not match.group(2).startswith("="):
            fields[match.group(1).strip().lower()] = match.group(2).strip()
    if "data file" in fields or "datafile" in fields:
        return fields, position
    raise HeaderFormatError("NRRD header without the blank line that ends it")
