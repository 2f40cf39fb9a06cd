"""The ITK composite transform we write: an affine followed by a deformable displacement.

Direction: every transform here maps **fixed points to moving points** in LPS mm (ITK's
resampling direction). The composite applies the displacement first, then the affine:
``T(p) = A(p + u(p))``. ``register()`` writes ``u`` as a cubic B-spline on the dense stage's control
grid (:func:`bspline_transform`, :mod:`vmgga.field.bspline`): SimpleITK, ANTs and Slicer all evaluate
the same spline, and the file holds one vector per control point (about 1 MB for a brain).
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


def bspline_transform(coefficients_lps_mm: np.ndarray, geometry: Geometry) -> sitk.BSplineTransform:
    """ITK cubic ``BSplineTransform`` from LPS mm coefficients ``(D, H, W, 3)`` on the grid ``geometry``.

    ITK's fixed parameters are the coefficient grid (size, origin, spacing, direction); its
    parameters all x coefficients (i fastest), then all y, then all z. Points where the spline's
    support leaves the grid get zero displacement (ITK's behaviour).
    """
    transform = sitk.BSplineTransform(3, 3)
    fixed = [*geometry.size_ijk, *geometry.origin_lps_mm, *geometry.spacing_mm, *geometry.direction]
    transform.SetFixedParameters([float(v) for v in fixed])
    coefficients = np.asarray(coefficients_lps_mm, dtype=np.float64)
    transform.SetParameters(np.concatenate([coefficients[..., c].ravel() for c in range(3)]).tolist())
    return transform


def composite_transform(
    affine: sitk.Transform, disp_lps_mm: np.ndarray | sitk.Transform, geometry: Geometry | None = None
) -> sitk.CompositeTransform:
    """``T(p) = affine(p + u(p))``: fixed -> moving, LPS mm.

    ``disp_lps_mm`` is either a displacement field ``(D, H, W, 3)`` on ``geometry`` or a ready
    deformable transform (:func:`bspline_transform`). SimpleITK's ``CompositeTransform([a, b])``
    applies ``b`` first; the file lists the affine first.
    """
    if not isinstance(disp_lps_mm, sitk.Transform):
        disp_lps_mm = displacement_field_transform(disp_lps_mm, geometry)
    return sitk.CompositeTransform([affine, disp_lps_mm])


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
