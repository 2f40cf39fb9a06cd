"""NIfTI data checks that ITK skips: it reads truncated NIfTI files without an error (missing
voxels become 0) and turns NaN voxels into 0. nibabel reads the raw data once to find both."""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from vmgga.errors import InputError, IntensityError
from vmgga.io.capture import library_output

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".img.gz")


def is_nifti(path: str | Path) -> bool:
    """Whether the file name has a NIfTI/Analyze extension."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti_header(path: str | Path):
    """The NIfTI-1/2 (or Analyze) header of ``path`` exactly as stored: nibabel's fixes, which
    would hide a zero ``pixdim``, are not applied. Reads only the header bytes.

    Raises:
        OSError, EOFError, zlib.error, nibabel's HeaderDataError: unreadable header.
    """
    with ImageOpener(str(path)) as stream:
        block = stream.read(540)
    if len(block) < 348:
        raise EOFError(f"a NIfTI header has 348 bytes, the file holds {len(block)}")
    size = int.from_bytes(block[:4], "little")
    swapped = int.from_bytes(block[:4], "big")
    header_class, header_bytes = (
        (nib.Nifti2Header, 540) if 540 in (size, swapped) else (nib.Nifti1Header, 348)
    )
    if len(block) < header_bytes:
        raise EOFError(f"a NIfTI-2 header has 540 bytes, the file holds {len(block)}")
    # The header bytes alone: extensions (e.g. a label table) follow them and are not needed here.
    return header_class(binaryblock=block[:header_bytes], check=False)


def check_nifti_data(path: str | Path, name: str) -> None:
    """Read the stored voxels with nibabel: refuse truncated files and NaN/Inf voxels.

    Integer voxels are not read again: they hold no NaN/Inf, and :func:`vmgga.io.header_checks.check_stored_bytes`,
    which runs first, refuses a stream shorter than the header's voxels.

    Raises:
        InputError: truncated or corrupt data.
        IntensityError: NaN or Inf voxels (which ITK would silently turn into 0).
    """
    try:
        with library_output(f"checking the NIfTI data of {name}"):  # nibabel logs its header fixes
            image = nib.load(str(path))
            if not np.issubdtype(image.get_data_dtype(), np.floating):
                # integers hold no NaN/Inf, and check_stored_bytes counts the stream's bytes
                return
            stored = np.asanyarray(image.dataobj.get_unscaled())
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as error:
        raise InputError(f"{name}: cannot be read (truncated or corrupt file: {error})") from None
    if np.issubdtype(stored.dtype, np.floating) and not np.isfinite(stored).all():
        nans, infs = int(np.isnan(stored).sum()), int(np.isinf(stored).sum())
        raise IntensityError(f"{name}: has {nans} NaN and {infs} Inf voxels; all voxel values must be finite")
