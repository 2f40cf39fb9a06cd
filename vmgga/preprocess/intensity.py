"""Intensity normalisation per modality and modality detection."""

from __future__ import annotations

import numpy as np

from vmgga.config import Modality, PreprocessConfig
from vmgga.errors import IntensityError, look_up_option

#: Percentiles of larger volumes are taken on an evenly strided sample of this many values at most.
PERCENTILE_SAMPLE = 1 << 22

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
    sample = strided_sample(array)
    low = float(np.percentile(sample, 1.0))
    air_fraction = float(np.mean(sample < _CT_AIR_HU))
    return Modality.CT if low < _CT_AIR_HU or air_fraction > 0.01 else Modality.MR


def normalise_intensity(array: np.ndarray, modality: Modality, config: PreprocessConfig) -> np.ndarray:
    """Map voxel values to about [0, 1] (float32, same shape).

    CT: the HU window ``config.ct_window_hu`` is clipped and scaled linearly. MR: the robust range
    between the percentiles ``config.mr_percentiles`` of the non-zero voxels.

    Raises:
        IntensityError: if the values span no range (a constant image).
    """
    values = np.array(array, dtype=np.float32)  # a copy: scaled in place below
    if values.size == 0 or values.min() == values.max():
        raise IntensityError("intensities span no range: the image is constant")
    if modality == Modality.CT:
        low, high = config.ct_window_hu
    else:
        every = strided_sample(values)
        foreground = every[every != 0]
        sample = foreground if foreground.size > 100 else every
        low, high = (float(v) for v in np.percentile(sample, config.mr_percentiles))
        low = min(low, 0.0) if values.min() >= 0 else low
    if not high > low:
        raise IntensityError(f"intensities span no range ({low} to {high}); is the image constant?")
    values -= np.float32(low)
    values *= np.float32(1.0 / (high - low))
    return np.clip(values, 0.0, 1.0, out=values)


def strided_sample(values: np.ndarray, limit: int = PERCENTILE_SAMPLE) -> np.ndarray:
    """``values`` flattened, or every ``n``-th of them when there are more than ``limit``.

    An even stride through a volume keeps its histogram (percentiles move by well under a
    percentile rank) at a fraction of the cost of sorting 80 M voxels; small inputs are used whole.
    """
    flat = np.ravel(values)
    step = -(-flat.size // limit)
    return flat[::step] if step > 1 else flat


def foreground_threshold(values: np.ndarray) -> float:
    """A tenth of the robust maximum (99th percentile): voxels above it are foreground.

    The one rule behind the affine stage's MI mask and the plausibility checks' foreground overlap.
    """
    return 0.1 * float(np.percentile(strided_sample(values), 99))
