"""Resample an image or a label map through a transform file onto a reference grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from vmgga.io.labels import as_label_map


def apply_transform(
    transform: sitk.Transform, image: sitk.Image, reference: sitk.Image, *, labels: bool = False
) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid through ``transform`` (fixed -> moving).

    Args:
        transform: maps reference (fixed) points to ``image`` (moving) points, LPS mm.
        image: the moving image or label map.
        reference: defines the output grid (the fixed image).
        labels: nearest-neighbour interpolation in the label map's integer type (label maps).

    Returns:
        float32 image (linear interpolation, background = the image minimum), or for labels an
        image of the label map's integer type (background 0; a float map with integral values
        gets the smallest integer type that holds them).

    Raises:
        IntensityError: ``labels`` with a map holding non-integer values.
    """
    if labels:
        label_map = as_label_map(image)
        return sitk.Resample(
            label_map, reference, transform, sitk.sitkNearestNeighbor, 0, label_map.GetPixelID()
        )
    background = float(np.min(sitk.GetArrayViewFromImage(image)))
    return sitk.Resample(image, reference, transform, sitk.sitkLinear, background, sitk.sitkFloat32)
