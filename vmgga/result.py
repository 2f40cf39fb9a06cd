"""The result type of :func:`vmgga.register`, in its own module so that ``export``, ``qc`` and
``batch`` can name it without importing the API that produces it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import SimpleITK as sitk


class ComputedOnFirstUse:
    """A dataclass field that accepts a value or a zero-argument function computing it on first read.

    For results that cost time but that most callers never read (the CLI writes no "before" image):
    ``register()`` passes a function, and the first read calls it once and keeps the value.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            raise AttributeError("no default")  # dataclasses: the field is required
        value = getattr(instance, self._slot)
        if callable(value):
            value = value()
            setattr(instance, self._slot, value)
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(instance, self._slot, value)


@dataclass
class RegistrationResult:
    """What :func:`vmgga.register` produces. Images are SimpleITK images in LPS geometry.

    Attributes:
        transform: fixed -> moving, LPS mm: the affine, then a cubic B-spline displacement (applied first).
        fixed: the fixed image as read (float32).
        moving: the moving image as read (float32).
        warped: ``moving`` resampled through ``transform`` onto the fixed grid.
        moving_affine: ``moving`` through the affine only, on the fixed grid ("before"); may be given
            as a zero-argument function, called on first read (:class:`ComputedOnFirstUse`).
        confidence: float32 in [0, 1] on the fixed grid.
        jacobian_determinant: float32 determinant of the deformable part, working grid.
        displacement_lps_mm: the displacement field (3 components, LPS mm), working grid.
        report: JSON-serialisable summary (geometry, timings, Jacobian, confidence, versions, config).
    """

    transform: sitk.CompositeTransform
    fixed: sitk.Image
    moving: sitk.Image
    warped: sitk.Image
    moving_affine: sitk.Image | Callable[[], sitk.Image] = ComputedOnFirstUse()  # type: ignore[assignment]
    confidence: sitk.Image
    jacobian_determinant: sitk.Image
    displacement_lps_mm: sitk.Image
    report: dict = field(default_factory=dict)
