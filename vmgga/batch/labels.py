"""Label maps: warp a moving label map onto the fixed grid and score it with Dice per label."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from vmgga.errors import InputError
from vmgga.frames import array_from_image


def read_labels(path: str, role: str) -> sitk.Image:
    """Read a 3D integer label map; a float map with integral values is accepted and cast."""
    try:
        labels = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(
            f"{role} label map '{path}' is not readable: {str(error).strip().splitlines()[-1]}"
        ) from error
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{role} label map '{path}' must be a 3D scalar image")
    values = array_from_image(labels)
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise InputError(f"{role} label map '{path}' holds non-integer values")
    return labels if np.issubdtype(values.dtype, np.integer) else sitk.Cast(labels, sitk.sitkInt32)


def warp_labels(labels: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """Resample a label map through ``transform`` (reference -> labels points) onto ``reference``'s
    grid with nearest-neighbour interpolation; outside is 0; the pixel type is kept."""
    return sitk.Resample(labels, reference, transform, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def label_values(labels: sitk.Image) -> np.ndarray:
    """The non-zero label values of a map."""
    values = np.unique(array_from_image(labels))
    return values[values != 0]
