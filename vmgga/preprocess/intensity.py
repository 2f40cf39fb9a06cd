"""Intensity normalisation per modality and modality detection."""

from __future__ import annotations

import numpy as np

from vmgga.config import Modality, PreprocessConfig
from vmgga.errors import IntensityError, look_up_option

#: A volume whose robust minimum is below this (HU) and that holds air-like values is CT.
_CT_AIR_HU = -500.0


def detect_modality(array: np.ndarray, requested: str = "auto", dicom_hint: str | None = None) -> Modality:
    """The modality to normalise with.

    Order of evidence: an explicit request (``ct``/``mr``), the DICOM ``Modality`` tag, then the
    intensity range (CT holds air near -1000 HU; MR is non-negative).

    Args:
        array: Voxel values, any shape.
        requested: ``auto``, ``ct`` or ``mr``.
        dicom_hint: ``ct``/``mr`` from a DICOM header, or None.
    """
    requested = look_up_option(requested, Modality, "modality")
    if requested != Modality.AUTO.value:
        return Modality(requested)
    if dicom_hint in (Modality.CT.value, Modality.MR.value):
        return Modality(dicom_hint)
    low = float(np.percentile(array, 1.0))
    air_fraction = float(np.mean(array < _CT_AIR_HU))
    return Modality.CT if low < _CT_AIR_HU or air_fraction > 0.01 else Modality.MR


def normalise_intensity(array: np.ndarray, modality: Modality, config: PreprocessConfig) -> np.ndarray:
    """Map voxel values to about [0, 1] (float32, same shape).

    CT: the HU window ``config.ct_window_hu`` is clipped and scaled linearly. MR: the robust range
    between the percentiles ``config.mr_percentiles`` of the non-zero voxels.

    Raises:
        IntensityError: if the values span no range (a constant image).
    """
    values = np.asarray(array, dtype=np.float32)
    if values.size == 0 or values.min() == values.max():
        raise IntensityError("intensities span no range: the image is constant")
    if modality == Modality.CT:
        low, high = config.ct_window_hu
    else:
        foreground = values[values != 0]
        sample = foreground if foreground.size > 100 else values.ravel()
        low, high = (float(v) for v in np.percentile(sample, config.mr_percentiles))
        low = min(low, 0.0) if values.min() >= 0 else low
    if not high > low:
        raise IntensityError(f"intensities span no range ({low} to {high}); is the image constant?")
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def foreground_threshold(values: np.ndarray) -> float:
    """A tenth of the robust maximum (99th percentile): voxels above it are foreground.

    The one rule behind the affine stage's MI mask and the plausibility checks' foreground overlap.
    """
    return 0.1 * float(np.percentile(values, 99))
