"""Label maps: warp a moving label map onto the fixed grid and score it with Dice per label."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from vmgga.export.apply import apply_transform
from vmgga.frames import array_from_image
from vmgga.io.labels import read_label_map


def read_labels(path: str, role: str) -> sitk.Image:
    """A 3D label map in its integer type (:func:`vmgga.io.labels.read_label_map`: header checks,
    a float map with integral values cast, non-integer values refused)."""
    return read_label_map(path, role=f"{role} label map")


def warp_labels(labels: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """``labels`` on ``reference``'s grid through ``transform`` (reference -> labels points):
    nearest neighbour in the map's integer type, outside 0 (:func:`vmgga.export.apply.apply_transform`)."""
    return apply_transform(transform, labels, reference, labels=True)


def label_values(labels: sitk.Image) -> np.ndarray:
    """The non-zero label values of a map."""
    values = np.unique(array_from_image(labels))
    return values[values != 0]
