"""Display orientation in anatomical terms: where the patient's left, anterior and superior appear."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import ConfigError
from vmgga.frames import geometry_of, ijk_from_lps
from vmgga.qc.slices import (
    EDGE_LABELS,
    SliceIndex,
    centre_of_mass_slices,
    display_reference,
    in_plane_axes,
    orthogonal_slices,
    to_display,
)

# Direction matrices (columns = LPS directions of i, j, k): LPS-aligned, RAS-aligned (as NIfTI
# files from RAS tools often are), axes permuted (i runs S->I), and an oblique one.
_ROTATION = sitk.VersorTransform((0.2, 0.1, 0.05), 0.35).GetMatrix()
DIRECTIONS = {
    "lps": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "ras": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "permuted": (0, 1, 0, 0, 0, -1, -1, 0, 0),
    "oblique": _ROTATION,
}


def marker_image(direction) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    """A 40^3 image with three bright blobs: at the patient's left, anterior and superior."""
    image = sitk.Image([40, 40, 40], sitk.sitkFloat32)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetDirection(direction)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint((19.5, 19.5, 19.5)))
    image.SetOrigin(tuple(2 * np.asarray(image.GetOrigin()) - centre))  # centre at 0 mm
    markers = {"left": (25.0, 0, 0), "anterior": (0, -25.0, 0), "superior": (0, 0, 25.0)}  # LPS mm
    array = np.zeros((40, 40, 40), np.float32)
    for where in markers.values():
        i, j, k = ijk_from_lps(np.asarray([where]), geometry_of(image))[0]
        array[_ball(array.shape, (k, j, i), 3.0)] = 1.0
    marked = sitk.GetImageFromArray(array)
    marked.CopyInformation(image)
    return marked, markers


def _ball(shape, centre_kji, radius):
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (k - centre_kji[0]) ** 2 + (j - centre_kji[1]) ** 2 + (i - centre_kji[2]) ** 2 <= radius**2


def blob_side(slice_2d: np.ndarray) -> tuple[float, float]:
    """(row, column) of the bright pixels' centre relative to the slice centre (>0: down / right)."""
    rows, cols = np.nonzero(slice_2d > 0.5)
    if rows.size == 0:
        return float("nan"), float("nan")
    height, width = slice_2d.shape
    return rows.mean() - (height - 1) / 2, cols.mean() - (width - 1) / 2


def views_of_marker(image: sitk.Image, convention: str, point_lps) -> dict[str, tuple[float, float]]:
    """Screen position (row, column offset from the centre) of the blob at ``point_lps`` in each
    view, the views cutting through the blob."""
    reference = display_reference(image, convention, max_size=64)
    volume = to_display(image, reference)
    i, j, k = reference.TransformPhysicalPointToIndex(point_lps)
    near = _ball(volume.shape, (k, j, i), 8.0 / reference.GetSpacing()[0])
    slices = orthogonal_slices(np.where(near, volume, 0.0), SliceIndex(k=k, j=j, i=i))
    return {view: blob_side(s) for view, s in slices.items()}


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_radiological_display_puts_patient_left_on_screen_right(name):
    image, markers = marker_image(DIRECTIONS[name])
    left = views_of_marker(image, "radiological", markers["left"])
    assert left["axial"][1] > 5 and left["coronal"][1] > 5  # patient's left: screen right
    anterior = views_of_marker(image, "radiological", markers["anterior"])
    assert anterior["axial"][0] < -5  # anterior at the top of axial slices
    assert anterior["sagittal"][1] < -5  # and on the left of sagittal slices
    superior = views_of_marker(image, "radiological", markers["superior"])
    assert superior["coronal"][0] < -5 and superior["sagittal"][0] < -5  # superior at the top


def test_neurological_display_puts_patient_left_on_screen_left():
    image, markers = marker_image(DIRECTIONS["ras"])
    left = views_of_marker(image, "neurological", markers["left"])
    assert left["axial"][1] < -5 and left["coronal"][1] < -5
    assert EDGE_LABELS["neurological"]["axial"][:2] == ("L", "R")
    assert EDGE_LABELS["radiological"]["axial"][:2] == ("R", "L")


def test_display_reference_covers_the_same_box_and_respects_max_size():
    image = sitk.Image([50, 30, 20], sitk.sitkFloat32)
    image.SetSpacing((0.5, 1.0, 3.0))
    image.SetDirection(DIRECTIONS["ras"])
    reference = display_reference(image, max_size=40)
    assert max(reference.GetSize()) <= 40
    spacing = reference.GetSpacing()
    assert spacing[0] == spacing[1] == spacing[2]

    def box(img):
        corners = [img.TransformContinuousIndexToPhysicalPoint([c - 0.5 for c in (a, b, d)])
                   for a in (0, img.GetSize()[0]) for b in (0, img.GetSize()[1]) for d in (0, img.GetSize()[2])]  # fmt: skip
        return np.min(corners, 0), np.max(corners, 0)

    low, high = box(image)
    low_r, high_r = box(reference)
    np.testing.assert_allclose(low_r, low, atol=spacing[0])
    np.testing.assert_allclose(high_r, high, atol=spacing[0])


def test_centre_of_mass_slices_follow_the_foreground():
    volume = np.zeros((20, 30, 40), np.float32)
    volume[3:8, 20:25, 30:35] = 1.0
    assert centre_of_mass_slices(volume) == SliceIndex(k=5, j=22, i=32)
    assert centre_of_mass_slices(np.zeros((5, 7, 9))) == SliceIndex(2, 3, 4)


def test_in_plane_axes_and_bad_options():
    assert in_plane_axes("axial") == (1, 0)
    assert in_plane_axes("coronal") == (2, 0)
    assert in_plane_axes("sagittal") == (2, 1)
    with pytest.raises(ConfigError, match="convention"):
        display_reference(sitk.Image([4, 4, 4], sitk.sitkFloat32), "upside-down")
