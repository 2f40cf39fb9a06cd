"""Gantry-tilt correction: resample a sheared DICOM slice stack onto an orthogonal grid.

With gantry tilt, the slice planes (row direction ``r``, column direction ``c``) are not
perpendicular to the step between slices: voxel ``(i, j, k)`` of the stack lies at

    p0 + i * dx * r + j * dy * c + k * step_lps_mm,

an affine but sheared grid that an ITK image (orthonormal direction) cannot hold. ITK reads the
voxels as if ``step`` were ``(step . n) n`` with ``n = r x c``. The correction resamples that
"as read" image through the exact affine onto an orthogonal grid with directions ``(r, c, n)``
and the same spacings, enlarged in-plane to hold the whole sheared stack.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from vmgga.frames import Geometry, apply_geometry


def stack_geometry(
    size_ijk: tuple[int, int, int],
    pixel_spacing_mm: tuple[float, float],
    orientation: np.ndarray,
    origin_lps_mm: np.ndarray,
    step_lps_mm: np.ndarray,
) -> tuple[Geometry, np.ndarray]:
    """The "as read" orthogonal geometry and the true (3, 3) voxel-to-LPS matrix of the stack.

    Args:
        size_ijk: Columns, rows, slices.
        pixel_spacing_mm: (dx, dy): spacing along the row direction, then the column direction.
        orientation: (2, 3) row and column direction cosines.
        origin_lps_mm: Position of the first voxel of the first slice.
        step_lps_mm: (3,) vector from one slice to the next.
    """
    row, col = orientation
    normal = np.cross(row, col)
    dx, dy = pixel_spacing_mm
    step_along = float(step_lps_mm @ normal)
    as_read = Geometry(
        size_ijk=tuple(size_ijk),
        spacing_mm=(float(dx), float(dy), abs(step_along)),
        origin_lps_mm=tuple(float(v) for v in origin_lps_mm),
        direction=tuple(np.stack([row, col, np.sign(step_along) * normal], axis=1).ravel()),
    )
    true_linear = np.stack([dx * row, dy * col, step_lps_mm], axis=1)
    return as_read, true_linear


def corrected_grid(as_read: Geometry, true_linear: np.ndarray) -> Geometry:
    """Orthogonal grid in the ``as_read`` frame that covers every voxel of the sheared stack."""
    to_read_ijk = np.linalg.inv(as_read.direction_matrix @ np.diag(as_read.spacing_mm)) @ true_linear
    last_k = as_read.size_ijk[2] - 1
    shift_ij = to_read_ijk[:2, 2] * last_k  # in-plane shift of the last slice, in voxels
    low_ij = np.minimum(0.0, shift_ij)
    extra_ij = [int(math.ceil(abs(s) - 1e-6)) for s in shift_ij]
    origin = np.asarray(as_read.origin_lps_mm) + as_read.direction_matrix @ (
        np.asarray(as_read.spacing_mm[:2] + (0.0,)) * np.append(low_ij, 0.0)
    )
    size = (as_read.size_ijk[0] + extra_ij[0], as_read.size_ijk[1] + extra_ij[1], as_read.size_ijk[2])
    return Geometry(size, as_read.spacing_mm, tuple(float(v) for v in origin), as_read.direction)


def correct_gantry_tilt(image_as_read: sitk.Image, as_read: Geometry, true_linear: np.ndarray) -> sitk.Image:
    """Resample the sheared stack onto :func:`corrected_grid` (linear; outside: the image minimum).

    Args:
        image_as_read: The voxels in stack order (any geometry; it is replaced by ``as_read``).
        as_read: From :func:`stack_geometry`.
        true_linear: (3, 3) true voxel-to-LPS matrix from :func:`stack_geometry`.
    """
    source = apply_geometry(sitk.Image(image_as_read), as_read)
    origin = np.asarray(as_read.origin_lps_mm)
    # output point x -> true index M^-1 (x - p0) -> the "as read" point of that index
    matrix = as_read.direction_matrix @ np.diag(as_read.spacing_mm) @ np.linalg.inv(true_linear)
    transform = sitk.AffineTransform(matrix.ravel().tolist(), (0.0, 0.0, 0.0), origin.tolist())
    grid = corrected_grid(as_read, true_linear)
    reference = apply_geometry(sitk.Image(list(grid.size_ijk), sitk.sitkUInt8), grid)
    background = float(sitk.GetArrayViewFromImage(source).min())
    return sitk.Resample(source, reference, transform, sitk.sitkLinear, background, sitk.sitkFloat32)
