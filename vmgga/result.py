"""The result type of :func:`vmgga.register`, in its own module so that ``export``, ``qc`` and
``batch`` can name it without importing the API that produces it."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk


@dataclass
class RegistrationResult:
    """What :func:`vmgga.register` produces. Images are SimpleITK images in LPS geometry.

    Attributes:
        transform: fixed -> moving, LPS mm: the affine, then a cubic B-spline displacement (applied first).
        fixed: the fixed image as read (float32).
        moving: the moving image as read (float32).
        warped: ``moving`` resampled through ``transform`` onto the fixed grid.
        moving_affine: ``moving`` through the affine only, on the fixed grid ("before").
        confidence: float32 in [0, 1] on the fixed grid.
        jacobian_determinant: float32 determinant of the deformable part, working grid.
        displacement_lps_mm: the displacement field (3 components, LPS mm), working grid.
        report: JSON-serialisable summary (geometry, timings, Jacobian, confidence, versions, config).
    """

    transform: sitk.CompositeTransform
    fixed: sitk.Image
    moving: sitk.Image
    warped: sitk.Image
    moving_affine: sitk.Image
    confidence: sitk.Image
    jacobian_determinant: sitk.Image
    displacement_lps_mm: sitk.Image
    report: dict = field(default_factory=dict)
