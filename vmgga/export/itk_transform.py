"""The ITK composite transform we write: an affine followed by a displacement field.

Direction: every transform here maps **fixed points to moving points** in LPS mm (ITK's
resampling direction). The composite applies the displacement first, then the affine:
``T(p) = A(p + u(p))``, where ``u`` lives on the working grid in the fixed frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from vmgga.errors import TransformFileError
from vmgga.frames import Geometry, image_from_array
from vmgga.io.atomic import atomic_write
from vmgga.io.capture import library_output
from vmgga.io.transform_files import unreadable_transform_reason


def displacement_field_transform(
    disp_lps_mm: np.ndarray, geometry: Geometry
) -> sitk.DisplacementFieldTransform:
    """ITK displacement field transform from LPS mm vectors ``(D, H, W, 3)`` on ``geometry``.

    Points outside the grid get zero displacement (ITK's behaviour).
    """
    field = image_from_array(np.asarray(disp_lps_mm, dtype=np.float64), geometry, is_vector=True)
    return sitk.DisplacementFieldTransform(field)


def composite_transform(
    affine: sitk.Transform, disp_lps_mm: np.ndarray, geometry: Geometry
) -> sitk.CompositeTransform:
    """``T(p) = affine(p + u(p))``: fixed -> moving, LPS mm.

    SimpleITK's ``CompositeTransform([a, b])`` applies ``b`` first; the file lists the affine first.
    """
    return sitk.CompositeTransform([affine, displacement_field_transform(disp_lps_mm, geometry)])


def write_transform(transform: sitk.Transform, path: str | os.PathLike) -> Path:
    """Write ``transform`` atomically; the suffix (``.h5``, ``.tfm``, ``.txt``) selects ITK's format."""
    return atomic_write(path, lambda temporary: sitk.WriteTransform(transform, str(temporary)))


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read a 3D ITK transform file (fixed -> moving).

    Raises:
        TransformFileError: if the file is missing, truncated, not an ITK transform or not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise TransformFileError(f"{path}: transform file not found")
    try:
        with library_output(f"reading transform '{path.name}'"):
            transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise TransformFileError(
            f"{path}: not a readable ITK transform file: {unreadable_transform_reason(path, reason)}"
        ) from None
    if transform.GetDimension() != 3:
        raise TransformFileError(f"{path}: a {transform.GetDimension()}D transform; a 3D transform is needed")
    return transform


def flatten_composite(transform: sitk.Transform) -> list[sitk.Transform]:
    """The transforms inside a composite, in file order (the last is applied first)."""
    if transform.GetName() != "CompositeTransform":
        return [transform]
    composite = sitk.CompositeTransform(transform)
    return [composite.GetNthTransform(n) for n in range(composite.GetNumberOfTransforms())]
