"""Resample an image or a label map through a transform file onto a reference grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def apply_transform(
    transform: sitk.Transform, image: sitk.Image, reference: sitk.Image, *, labels: bool = False
) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid through ``transform`` (fixed -> moving).

    Args:
        transform: maps reference (fixed) points to ``image`` (moving) points, LPS mm.
        image: the moving image or label map.
        reference: defines the output grid (the fixed image).
        labels: nearest-neighbour interpolation and an integer output (label maps).

    Returns:
        float32 image (linear interpolation, background = the image minimum), or for labels an
        integer image (background 0).
    """
    if labels:
        warped = sitk.Resample(image, reference, transform, sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
        return sitk.Cast(warped, _label_pixel_type(image))
    background = float(np.min(sitk.GetArrayViewFromImage(image)))
    return sitk.Resample(image, reference, transform, sitk.sitkLinear, background, sitk.sitkFloat32)


def _label_pixel_type(image: sitk.Image) -> int:
    """The smallest of uint8/uint16/int32 that holds the label values."""
    values = sitk.GetArrayViewFromImage(image)
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 255:
        return sitk.sitkUInt8
    if low >= 0 and high <= 65535:
        return sitk.sitkUInt16
    return sitk.sitkInt32
