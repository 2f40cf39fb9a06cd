"""NIfTI files written byte for byte, for headers that nibabel's save would repair (tests only).

Imported as ``nifti_bytes`` by tests in any folder: pytest puts ``tests/`` (the folder of the root
``conftest.py``) on ``sys.path``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np


def header_for(array: np.ndarray) -> nib.Nifti1Header:
    """A NIfTI-1 header of ``array``'s shape and type, voxels right after the header."""
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(array.dtype)
    header["vox_offset"] = 352  # the voxels follow the 348-byte header and 4 extension bytes
    return header


def raw_nifti(path: Path, header: nib.Nifti1Header, array: np.ndarray) -> Path:
    """The header bytes as given, 4 empty extension bytes, then the voxels; gzipped for ``.gz``."""
    data = header.binaryblock + b"\0" * 4 + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path
