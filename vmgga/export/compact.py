"""Compact NIfTI outputs: integers plus the header's ``scl_slope``/``scl_inter`` instead of float32.

Readers (SimpleITK/ITK, nibabel, Slicer) apply ``value = scl_slope * stored + scl_inter`` and see
floating-point intensities. ITK's NIfTI writer always writes an unscaled header, so the image is
written uncompressed by SimpleITK, the two header fields are set, and the bytes are gzipped.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Byte offset of ``scl_slope`` (then ``scl_inter``), float32 each, in a NIfTI-1 header.
_SCL_OFFSET = 112
#: Byte offset of ``vox_offset`` (float32: where the voxels start) in a NIfTI-1 header.
_VOX_OFFSET = 108
#: gzip level: 1 is about 3x faster than 6 and within a few % of its size on these images.
_GZIP_LEVEL = 1
#: Uncompressed bytes per gzip member (members compress in parallel).
_GZIP_PART_BYTES = 16 << 20

_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class Quantised:
    """Integers that stand for ``slope * stored + inter``."""

    stored: np.ndarray
    slope: float
    inter: float


def quantise_unit_interval(values: np.ndarray) -> Quantised:
    """Values in [0, 1] (e.g. confidence) as uint8 ``0..255`` with slope ``1/255`` (step 0.004).

    Rounded half to even, as ``np.rint``; element-wise in torch, on all its threads.
    """
    scaled = _tensor(values).clamp(0.0, 1.0).mul_(255.0).round_()
    return Quantised(scaled.to(_torch().uint8).numpy(), 1.0 / 255.0, 0.0)


def quantise_intensities(values: np.ndarray, integer_source: bool) -> Quantised:
    """Intensities as int16.

    ``integer_source`` (the input had integer voxels) and a range inside int16: rounded, slope 1
    (the input's own resolution), as uint8 when the range fits 0..255. Otherwise the range is spread over the int16 range (a step of
    ``range / 65534``, 1.5e-5 of the range).
    """
    torch = _torch()
    tensor = _tensor(values)
    low, high = (float(v) for v in torch.aminmax(tensor)) if values.size else (0.0, 0.0)
    if integer_source and low >= 0.0 and high <= 255.0:  # 8-bit MR: uint8, half the bytes
        return Quantised(tensor.round().to(torch.uint8).numpy(), 1.0, 0.0)
    if integer_source and low >= _INT16.min and high <= _INT16.max:
        return Quantised(tensor.round().to(torch.int16).numpy(), 1.0, 0.0)
    slope = (high - low) / (_INT16.max - _INT16.min - 1) or 1.0
    inter = (high + low) / 2.0
    scaled = tensor.double().sub_(inter).div_(slope).round_().clamp_(_INT16.min, _INT16.max)
    return Quantised(scaled.to(torch.int16).numpy(), slope, inter)


def _torch():
    """torch, imported when first needed (the CLI refuses bad arguments before loading it)."""
    import torch

    return torch


def _tensor(values: np.ndarray):
    """A tensor sharing ``values``' memory, never written to (read-only views are fine)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return _torch().from_numpy(np.ascontiguousarray(values))


def encode_scaled_nifti(
    quantised: Quantised, like: sitk.Image, *, scratch: str | os.PathLike | None = None
) -> bytes:
    """The gzipped NIfTI bytes of ``quantised`` (``(D, H, W)``, the grid of ``like``) with slope and intercept.

    ``scratch``: folder for SimpleITK's uncompressed file (the system's temporary folder if ``None``).
    """
    image = sitk.GetImageFromArray(quantised.stored)
    image.CopyInformation(like)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        plain = Path(folder) / "image.nii"
        sitk.WriteImage(image, str(plain), False)
        data = bytearray(plain.read_bytes())
    (size,) = struct.unpack_from("<i", data, 0)
    endian = "<" if size == 348 else ">"
    (vox_offset,) = struct.unpack_from(f"{endian}f", data, _VOX_OFFSET)
    if len(data) != int(vox_offset) + quantised.stored.nbytes:  # SimpleITK does not raise on a full disk
        raise RuntimeError(
            f"the uncompressed image was written short: {len(data)} of "
            f"{int(vox_offset) + quantised.stored.nbytes} bytes"
        )
    struct.pack_into(f"{endian}ff", data, _SCL_OFFSET, quantised.slope, quantised.inter)
    return gzip_in_parts(data)


def gzip_in_parts(data: bytes | bytearray, part_bytes: int | None = None) -> bytes:
    """``data`` gzipped as consecutive gzip members of ``part_bytes`` each (default 16 MB), compressed side by side.

    A file of several members is one valid gzip file (RFC 1952): zlib (ITK, Slicer), Python's
    gzip (nibabel) and ``gunzip`` return the concatenated data. zlib releases the GIL, so the
    members of a large image compress on all of torch's threads.
    """
    torch = _torch()
    part_bytes = part_bytes or _GZIP_PART_BYTES
    view = memoryview(data)  # parts without copies
    parts = [view[start : start + part_bytes] for start in range(0, max(len(data), 1), part_bytes)]
    threads = min(len(parts), max(1, torch.get_num_threads()))

    def compress(part: bytes) -> bytes:
        return gzip.compress(part, compresslevel=_GZIP_LEVEL, mtime=0)

    if threads < 2:
        return b"".join(map(compress, parts))
    with ThreadPoolExecutor(threads) as pool:
        return b"".join(pool.map(compress, parts))
