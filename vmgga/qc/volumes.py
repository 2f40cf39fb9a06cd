"""Bring every volume of a registration result onto one display grid, ready to slice.

The fixed, moving-after-affine and warped images, the confidence map (all on the fixed grid), and
the Jacobian determinant and displacement field (on the working grid, fixed frame) are resampled
onto the display grid of :func:`vmgga.qc.slices.display_reference`, so that the same slice index
cuts all of them at the same physical position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from vmgga.frames import disp_ijk_from_lps, geometry_of
from vmgga.qc.panels import intensity_window, normalise
from vmgga.qc.slices import (
    SliceIndex,
    centre_of_mass_slices,
    display_reference,
    to_display,
    vector_to_display,
)


@dataclass(frozen=True)
class DisplayVolumes:
    """Display-grid arrays of one registration, each ``(D, H, W)`` unless stated."""

    convention: str  # radiological | neurological
    spacing_mm: float  # isotropic display spacing
    fixed_norm: np.ndarray  # fixed image, [0, 1]
    before_norm: np.ndarray  # moving through the affine only, [0, 1] (same window as after)
    after_norm: np.ndarray  # moving warped through the full transform, [0, 1]
    confidence: np.ndarray | None  # [0, 1]
    jacobian_determinant: np.ndarray | None  # 1 outside the working grid
    folding: np.ndarray | None  # bool, det <= 0 (nearest-neighbour, so single voxels survive)
    disp_ijk: np.ndarray | None  # (3, D, H, W) dense displacement in display voxels, (i, j, k)
    where: SliceIndex  # the three orthogonal slices shown


def display_volumes(result, convention: str = "radiological", max_size: int = 192) -> DisplayVolumes:
    """Resample the parts of a :class:`vmgga.result.RegistrationResult` that QC pages show.

    Optional parts (``confidence``, ``jacobian_determinant``, ``displacement_lps_mm``) may be None.
    """
    reference = display_reference(result.fixed, convention, max_size)
    fixed = to_display(result.fixed, reference)
    before = to_display(result.moving_affine, reference)
    after = to_display(result.warped, reference)
    moving_window = intensity_window(np.concatenate([before.ravel(), after.ravel()]))
    jacobian, folding = _jacobian_on_display(getattr(result, "jacobian_determinant", None), reference)
    return DisplayVolumes(
        convention=convention,
        spacing_mm=float(reference.GetSpacing()[0]),
        fixed_norm=normalise(fixed, intensity_window(fixed)),
        before_norm=normalise(before, moving_window),
        after_norm=normalise(after, moving_window),
        confidence=_optional(getattr(result, "confidence", None), reference),
        jacobian_determinant=jacobian,
        folding=folding,
        disp_ijk=_displacement_on_display(getattr(result, "displacement_lps_mm", None), reference),
        where=centre_of_mass_slices(fixed),
    )


def _optional(image: sitk.Image | None, reference: sitk.Image) -> np.ndarray | None:
    """Linear resampling of an optional scalar image."""
    return None if image is None else to_display(image, reference)


def _jacobian_on_display(
    jacobian: sitk.Image | None, reference: sitk.Image
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Jacobian determinant (linear, 1 outside) and its folding mask (nearest neighbour)."""
    if jacobian is None:
        return None, None
    values = to_display(jacobian, reference, sitk.sitkLinear, default=1.0)
    nearest = to_display(jacobian, reference, sitk.sitkNearestNeighbor, default=1.0)
    return values, ~(nearest > 0)


def _displacement_on_display(
    displacement_lps_mm: sitk.Image | None, reference: sitk.Image
) -> np.ndarray | None:
    """Displacement vectors (LPS mm) resampled and expressed in display voxels ``(3, D, H, W)``."""
    if displacement_lps_mm is None:
        return None
    vectors_lps_mm = vector_to_display(displacement_lps_mm, reference)  # (D, H, W, 3)
    return disp_ijk_from_lps(vectors_lps_mm, geometry_of(reference)).astype(np.float32)
