"""Torch resampling through ``affine(p + u(p))`` gives what ``sitk.Resample`` gives through the ITK transform."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from vmgga.export.itk_transform import bspline_transform, composite_transform
from vmgga.field.bspline import spline_from_control
from vmgga.field.resample import affine_matrix_lps, resample_moving
from vmgga.frames import Geometry, geometry_of


def _moving() -> sitk.Image:
    """A smooth random volume, anisotropic and oblique (another frame than the fixed grid)."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(
        ndimage.gaussian_filter(rng.normal(0, 50, (24, 30, 28)), 1.5).astype(np.float32)
    )
    image.SetSpacing((1.2, 0.9, 2.5))
    image.SetOrigin((-14.0, -12.0, -25.0))
    image.SetDirection(sitk.VersorTransform((1.0, 0.2, -0.3), 0.25).GetMatrix())
    return image


def _fixed() -> Geometry:
    direction = sitk.VersorTransform((0.1, 0.9, 0.2), -0.2).GetMatrix()
    return Geometry((26, 22, 20), (1.1, 1.3, 1.6), (-12.0, -10.0, -14.0), tuple(direction))


def _affine() -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((0.98, 0.05, 0.0, -0.04, 1.03, 0.02, 0.01, 0.0, 0.97))
    affine.SetTranslation((1.5, -2.0, 3.0))
    affine.SetCenter((2.0, 1.0, -1.0))
    return affine


def _reference(fixed: Geometry) -> sitk.Image:
    image = sitk.Image([int(n) for n in fixed.size_ijk], sitk.sitkFloat32)
    image.SetSpacing(fixed.spacing_mm)
    image.SetOrigin(fixed.origin_lps_mm)
    image.SetDirection(fixed.direction)
    return image


def test_affine_matrix_reproduces_every_linear_transform():
    rigid = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, -0.2, 0.3, (4.0, 5.0, 6.0))
    for transform in (_affine(), rigid, sitk.Transform(3, sitk.sitkIdentity)):
        matrix = affine_matrix_lps(transform)
        for point in ([0.0, 0.0, 0.0], [10.0, -20.0, 30.0]):
            np.testing.assert_allclose(
                transform.TransformPoint(point), matrix[:3, :3] @ point + matrix[:3, 3], atol=1e-9
            )
    with pytest.raises(ValueError, match="not a linear"):
        field = sitk.Image([4, 4, 4], sitk.sitkVectorFloat64, 3)
        field += 1.0  # constant is linear; make one component vary
        array = sitk.GetArrayFromImage(field)
        array[..., 0] = np.arange(4)[:, None, None] ** 2
        image = sitk.GetImageFromArray(array, isVector=True)
        image.SetSpacing((50.0, 50.0, 50.0))
        affine_matrix_lps(sitk.DisplacementFieldTransform(image))


@pytest.mark.parametrize(
    ("deformable", "slab_voxels", "threads"),
    [(False, 2**21, 1), (True, 2**21, 1), (True, 26 * 22 * 3, 2)],  # last: 7 slabs on 2 threads
)
def test_matches_sitk_resample(deformable, slab_voxels, threads):
    moving, fixed = _moving(), _fixed()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    background = -123.0
    if deformable:
        working = Geometry((26, 22, 20), (1.5, 1.5, 1.5), fixed.origin_lps_mm, fixed.direction)
        rng = np.random.default_rng(3)
        control = np.stack([ndimage.gaussian_filter(rng.normal(0, 2.0, (5, 6, 7)), 1.0) for _ in range(3)])
        coefficients, grid = spline_from_control(control, working, 4)
        transform = composite_transform(_affine(), bspline_transform(coefficients, grid))
        ours = resample_moving(
            moving, fixed, _affine(), coefficients, grid, background=background, slab_voxels=slab_voxels
        )
    else:
        transform = _affine()
        ours = resample_moving(moving, fixed, _affine(), background=background, slab_voxels=slab_voxels)
    assert torch.get_num_threads() == threads  # restored after the threaded slabs
    torch.set_num_threads(before)
    expected = sitk.Resample(
        moving, _reference(fixed), transform, sitk.sitkLinear, background, sitk.sitkFloat32
    )
    assert geometry_of(ours) == geometry_of(expected)
    got, want = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(expected)
    assert (want == background).mean() > 0.02  # some points do map outside the moving image
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_an_integer_moving_image_is_sampled_as_float32_like_its_float_copy():
    """The float32 view (no copy) and the cast of an int16 image give the same resampling, and the
    caller's image is left as it was."""
    moving = _moving()
    as_int16 = sitk.Cast(sitk.Round(moving), sitk.sitkInt16)
    as_float = sitk.Cast(as_int16, sitk.sitkFloat32)
    before = sitk.GetArrayFromImage(as_float).copy()
    got_int = sitk.GetArrayFromImage(resample_moving(as_int16, _fixed(), _affine(), background=-7.0))
    got_float = sitk.GetArrayFromImage(resample_moving(as_float, _fixed(), _affine(), background=-7.0))
    np.testing.assert_array_equal(got_int, got_float)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(as_float), before)
