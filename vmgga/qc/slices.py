"""Display grid and orthogonal slices for QC pages, in a stated anatomical display convention.

Every QC image is resampled onto one *display grid*: the fixed image's grid re-ordered with
``sitk.DICOMOrient`` so that, once read as a ``(D, H, W) = (k, j, i)`` array
(:func:`vmgga.frames.array_from_image`), its slices can be shown as they are, without flips:

* **radiological** convention (the clinical default): orientation ``LPI``, i.e. i runs towards the
  patient's left, j towards posterior, k towards inferior. An axial slice ``array[k]`` then shows
  anterior at the top and the patient's **right on the screen's left** (as if seen from the feet).
* **neurological** convention: orientation ``RPI``: the patient's left on the screen's left.

Coronal (``array[:, j, :]``) and sagittal (``array[:, :, i]``) slices show superior at the top;
sagittal slices show anterior on the left. Oblique acquisitions are shown in their nearest
anatomical orientation (``DICOMOrient`` permutes and flips axes, it never rotates by other angles).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from vmgga.errors import look_up_option
from vmgga.frames import array_from_image, slice_axes_xy


class DisplayConvention(str, Enum):
    """Which side of the screen the patient's left is shown on."""

    RADIOLOGICAL = "radiological"  # patient's left on the screen's right
    NEUROLOGICAL = "neurological"  # patient's left on the screen's left


class View(str, Enum):
    """The three orthogonal views."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


#: ``DICOMOrient`` code of the display grid per convention (letters: where i, j, k point to).
ORIENTATION_CODE = {
    DisplayConvention.RADIOLOGICAL.value: "LPI",
    DisplayConvention.NEUROLOGICAL.value: "RPI",
}

#: Anatomical labels of the (left, right, top, bottom) screen edges per convention and view.
EDGE_LABELS = {
    DisplayConvention.RADIOLOGICAL.value: {
        View.AXIAL.value: ("R", "L", "A", "P"),
        View.CORONAL.value: ("R", "L", "S", "I"),
        View.SAGITTAL.value: ("A", "P", "S", "I"),
    },
    DisplayConvention.NEUROLOGICAL.value: {
        View.AXIAL.value: ("L", "R", "A", "P"),
        View.CORONAL.value: ("L", "R", "S", "I"),
        View.SAGITTAL.value: ("A", "P", "S", "I"),
    },
}


@dataclass(frozen=True)
class SliceIndex:
    """Where the three orthogonal views cut the display grid, as array indices ``(k, j, i)``."""

    k: int  # axial slice
    j: int  # coronal slice
    i: int  # sagittal slice


def display_reference(fixed: sitk.Image, convention: str = "radiological", max_size: int = 192) -> sitk.Image:
    """An empty image defining the display grid: ``fixed`` re-oriented, isotropic, at most ``max_size``.

    Args:
        fixed: 3D image whose physical box the display grid covers.
        convention: ``radiological`` or ``neurological``.
        max_size: largest number of voxels along any axis (keeps QC pages small).

    Returns:
        A float32 image of zeros; spacing isotropic in mm, direction from ``DICOMOrient``.
    """
    convention = look_up_option(convention, DisplayConvention, "convention")
    oriented = sitk.DICOMOrient(_empty_like(fixed), ORIENTATION_CODE[convention])
    size_ijk = np.asarray(oriented.GetSize(), dtype=np.float64)
    extent_mm = size_ijk * np.asarray(oriented.GetSpacing())
    spacing_mm = max(min(oriented.GetSpacing()), float(extent_mm.max()) / max_size)
    new_size = np.maximum(1, np.round(extent_mm / spacing_mm)).astype(int)
    reference = sitk.Image([int(s) for s in new_size], sitk.sitkFloat32)
    reference.SetDirection(oriented.GetDirection())
    reference.SetSpacing([spacing_mm] * 3)
    reference.SetOrigin(_corner_aligned_origin(oriented, spacing_mm))
    return reference


def _empty_like(image: sitk.Image) -> sitk.Image:
    """A one-byte-per-voxel image on ``image``'s grid (orienting it copies no real data)."""
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    return empty


def _corner_aligned_origin(oriented: sitk.Image, spacing_mm: float) -> tuple[float, ...]:
    """Origin (LPS mm) of a grid of ``spacing_mm`` whose outer voxel corners match ``oriented``'s."""
    half_old = np.asarray(oriented.GetSpacing()) / 2.0
    shift_ijk = spacing_mm / 2.0 - half_old  # move from old to new first voxel centre
    direction = np.asarray(oriented.GetDirection()).reshape(3, 3)
    return tuple(float(v) for v in np.asarray(oriented.GetOrigin()) + direction @ shift_ijk)


def to_display(
    image: sitk.Image, reference: sitk.Image, interpolator: int = sitk.sitkLinear, default: float = 0.0
) -> np.ndarray:
    """Resample a scalar image onto the display grid; float32 array ``(D, H, W)``."""
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), interpolator, default
    )
    return array_from_image(resampled).astype(np.float32)


def vector_to_display(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Resample a vector image (e.g. a displacement in LPS mm) onto the display grid: ``(D, H, W, C)``."""
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkVectorFloat32), reference, sitk.Transform(), sitk.sitkLinear, 0.0
    )
    return array_from_image(resampled).astype(np.float32)


def centre_of_mass_slices(intensity_dhw: np.ndarray) -> SliceIndex:
    """Slices through the centre of mass of the image's foreground (above its 10th percentile).

    Falls back to the middle of the volume when there is no foreground.
    """
    values = np.nan_to_num(np.asarray(intensity_dhw, dtype=np.float64))
    weights = np.clip(values - np.percentile(values, 10), 0.0, None)
    if weights.sum() <= 0:
        centre = (np.asarray(values.shape) - 1) / 2.0
    else:
        centre = np.asarray(ndimage.center_of_mass(weights))
    k, j, i = (int(np.clip(round(c), 0, n - 1)) for c, n in zip(centre, values.shape, strict=True))
    return SliceIndex(k=k, j=j, i=i)


def orthogonal_slices(volume_dhw: np.ndarray, where: SliceIndex) -> dict[str, np.ndarray]:
    """The axial, coronal and sagittal 2D slices of a display-grid array, ready to show as they are.

    Works for scalar ``(D, H, W)`` and vector ``(D, H, W, C)`` arrays.
    """
    return {
        View.AXIAL.value: volume_dhw[where.k],
        View.CORONAL.value: volume_dhw[:, where.j],
        View.SAGITTAL.value: volume_dhw[:, :, where.i],
    }


#: View -> the array axis its slice is taken along (as in :func:`orthogonal_slices`).
_SLICING_AXIS = {View.AXIAL.value: 0, View.CORONAL.value: 1, View.SAGITTAL.value: 2}


def in_plane_axes(view: str) -> tuple[int, int]:
    """Display-grid index axes ``(row_axis, column_axis)`` of a view, in (i, j, k) numbering."""
    view = look_up_option(view, View, "view")
    column_axis, row_axis = slice_axes_xy(_SLICING_AXIS[view])
    return row_axis, column_axis
