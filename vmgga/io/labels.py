"""Label maps: read with their integer pixel type (never through float32, which is exact only up
to 2^24), refuse non-integer values, and accept an all-zero map (a follow-up without a lesion)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from vmgga.errors import InputError, IntensityError
from vmgga.io.validate import VolumeLimits, check_direction

#: Integer pixel types, smallest first, with the value range each holds.
_INTEGER_TYPES = (
    (sitk.sitkUInt8, np.uint8),
    (sitk.sitkUInt16, np.uint16),
    (sitk.sitkInt16, np.int16),
    (sitk.sitkUInt32, np.uint32),
    (sitk.sitkInt32, np.int32),
    (sitk.sitkInt64, np.int64),
)
_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64}


def read_label_map(
    source: str | os.PathLike, *, role: str = "label map", limits: VolumeLimits = VolumeLimits()
) -> sitk.Image:
    """Read a 3D label map file, keeping its integer pixel type.

    The header is checked against the file first (as for images); an all-zero map is valid.

    Raises:
        InputError: missing or unreadable file, or a folder.
        GeometryError: not a usable 3D grid.
        IntensityError: vector voxels, or non-integer (or NaN/Inf) values.
    """
    from vmgga.io.images import check_path, read_volume_file

    path = Path(source)
    name = f"{role} '{path}'"
    check_path(path, name)
    if path.is_dir():
        raise InputError(f"{name}: is a folder; a label map must be one file (NIfTI, NRRD, MHA)")
    image = read_volume_file(path, name, None, limits)  # header, size and file checks
    check_direction(image.GetDirection(), image.GetSpacing(), name, limits)
    return as_label_map(image, name)


def as_label_map(image: sitk.Image, name: str = "label map") -> sitk.Image:
    """``image`` with an integer pixel type: integer images unchanged, float images with integral
    values cast to the smallest integer type that holds them.

    Raises:
        IntensityError: a float image with non-integer, NaN or Inf values, or a vector image.
    """
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise IntensityError(
            f"{name}: has {image.GetNumberOfComponentsPerPixel()} components; labels are scalar"
        )
    if image.GetPixelID() not in _FLOAT_TYPES:
        return image
    values = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(values)
    fractional = finite & (values != np.round(values))
    if not finite.all() or fractional.any():
        example = values[~finite | fractional].flat[0]
        count = int((~finite | fractional).sum())
        raise IntensityError(
            f"{name}: holds {count} non-integer values (e.g. {float(example):g}); a label map holds integer "
            "labels: warp an intensity image without --labels"
        )
    return sitk.Cast(image, smallest_integer_type(float(values.min()), float(values.max())))


def smallest_integer_type(low: float, high: float) -> int:
    """The smallest SimpleITK integer pixel type holding every integer in ``[low, high]``."""
    for pixel_type, dtype in _INTEGER_TYPES:
        limits = np.iinfo(dtype)
        if limits.min <= low and high <= limits.max:
            return pixel_type
    raise IntensityError(f"label values {low:g} to {high:g} do not fit a 64-bit integer")
