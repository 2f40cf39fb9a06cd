"""The composite transform maps fixed -> moving as T(p) = A(p + u(p)); files round-trip; bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.errors import TransformFileError
from vmgga.export.apply import apply_transform
from vmgga.export.itk_transform import composite_transform, flatten_composite, read_transform, write_transform
from vmgga.frames import Geometry, geometry_of, lps_from_ijk


def _grid() -> Geometry:
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.2, -0.1, 0.3)
    return Geometry((10, 12, 9), (2.0, 2.0, 2.0), (-5.0, 3.0, 7.0), tuple(rotation.GetMatrix()))


def _affine() -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.05, 0.02, 0.0, -0.03, 0.97, 0.01, 0.0, 0.02, 1.1))
    affine.SetTranslation((4.0, -2.0, 1.5))
    affine.SetCenter((1.0, 2.0, 3.0))
    return affine


def _affine_numpy(point: np.ndarray) -> np.ndarray:
    """The same affine written out by hand: M (p - c) + c + t."""
    matrix = np.array([[1.05, 0.02, 0.0], [-0.03, 0.97, 0.01], [0.0, 0.02, 1.1]])
    centre, translation = np.array([1.0, 2.0, 3.0]), np.array([4.0, -2.0, 1.5])
    return matrix @ (point - centre) + centre + translation


def test_composite_applies_displacement_then_affine():
    grid = _grid()
    shift = np.array([1.5, -0.5, 2.0])
    disp = np.broadcast_to(shift, (*grid.shape_dhw, 3)).copy()
    transform = composite_transform(_affine(), disp, grid)
    for ijk in ([2.0, 3.0, 4.0], [5.5, 6.0, 1.0], [8.0, 1.0, 7.0]):
        point = lps_from_ijk(np.array([ijk]), grid)[0]
        expected = _affine_numpy(point + shift)
        np.testing.assert_allclose(transform.TransformPoint(tuple(point)), expected, atol=1e-6)


def test_file_round_trip_keeps_mapping_and_order(tmp_path):
    grid = _grid()
    rng = np.random.default_rng(0)
    disp = rng.normal(0, 1.0, (*grid.shape_dhw, 3))
    transform = composite_transform(_affine(), disp, grid)
    path = write_transform(transform, tmp_path / "transform.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["transform.h5"]  # no temporary left
    loaded = read_transform(path)
    assert [t.GetName() for t in flatten_composite(loaded)] == [
        "AffineTransform",
        "DisplacementFieldTransform",
    ]
    points = lps_from_ijk(rng.uniform(0, 8, (20, 3)), grid)
    for point in points:
        np.testing.assert_allclose(
            loaded.TransformPoint(tuple(point)), transform.TransformPoint(tuple(point)), atol=1e-9
        )


def test_read_transform_refuses_missing_truncated_foreign_and_2d(tmp_path):
    with pytest.raises(TransformFileError, match="not found"):
        read_transform(tmp_path / "absent.h5")
    good = write_transform(
        composite_transform(_affine(), np.zeros((*_grid().shape_dhw, 3)), _grid()), tmp_path / "t.h5"
    )
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(TransformFileError, match="truncated.h5.*not a readable ITK transform"):
        read_transform(truncated)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("this is not a transform\n")
    with pytest.raises(TransformFileError, match="notes.txt"):
        read_transform(foreign)
    flat = tmp_path / "flat.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(2, (1.0, 2.0)), str(flat))
    with pytest.raises(TransformFileError, match="2D transform"):
        read_transform(flat)


def test_apply_labels_nearest_neighbour_integer_shift():
    labels = np.zeros((8, 9, 10), np.uint8)
    labels[2:5, 3:6, 4:8] = 3
    labels[5:7, 1:3, 1:3] = 7
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((2.0, 1.0, 1.5))
    # fixed point p maps to moving p + (2 mm, 0, 0) = one voxel along i
    warped = apply_transform(sitk.TranslationTransform(3, (2.0, 0.0, 0.0)), image, image, labels=True)
    result = sitk.GetArrayFromImage(warped)
    assert result.dtype == np.uint8
    expected = np.zeros_like(labels)
    expected[:, :, :-1] = labels[:, :, 1:]
    np.testing.assert_array_equal(result, expected)
    assert set(np.unique(result)) <= {0, 3, 7}


def test_apply_identity_returns_image_on_same_grid(small_image):
    warped = apply_transform(sitk.Transform(3, sitk.sitkIdentity), small_image, small_image)
    assert geometry_of(warped) == geometry_of(small_image)
    np.testing.assert_allclose(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(small_image), atol=1e-4)
