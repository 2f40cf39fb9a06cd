"""The frame conventions of ``vmgga.frames`` against independent answers (SimpleITK, nibabel,
anatomy), plus property tests on random geometries and affines."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vmgga.frames import (
    ALIGN_CORNERS,
    Geometry,
    apply_geometry,
    array_from_image,
    array_view_from_image,
    array_zyx_from_xyz,
    coarse_from_fine,
    disp_ijk_from_lps,
    disp_lps_from_ijk,
    fine_from_coarse,
    flat_from_ijk,
    geometry_of,
    identity_grid_ijk,
    ijk_from_flat,
    ijk_from_lps,
    ijk_from_norm,
    image_from_array,
    lps_from_ijk,
    lps_from_ras,
    norm_from_ijk,
    norm_from_ijk_matrix,
    ras_from_lps,
    ras_matrix_from_lps,
    sampling_grid_norm,
    slice_axes_xy,
    upsample_cells,
    xyz_from_array_zyx,
)

RNG = np.random.default_rng(1234)


def sitk_points(image: sitk.Image, points_ijk: np.ndarray) -> np.ndarray:
    """SimpleITK's own index -> physical mapping, point by point."""
    return np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in points_ijk])


def random_points_ijk(size_ijk, count: int = 20) -> np.ndarray:
    return RNG.uniform(-1.0, 1.0, (count, 3)) + RNG.uniform(0, 1, (count, 3)) * (np.asarray(size_ijk) - 1)


# --- voxel <-> LPS ----------------------------------------------------------------------------


def test_lps_from_ijk_matches_simpleitk(small_image):
    points_ijk = random_points_ijk(small_image.GetSize())
    expected = sitk_points(small_image, points_ijk)
    np.testing.assert_allclose(lps_from_ijk(points_ijk, geometry_of(small_image)), expected, atol=1e-9)


def test_ijk_from_lps_matches_simpleitk_and_round_trips(small_image):
    points_lps = sitk_points(small_image, random_points_ijk(small_image.GetSize()))
    expected = np.array([small_image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in points_lps])
    geometry = geometry_of(small_image)
    np.testing.assert_allclose(ijk_from_lps(points_lps, geometry), expected, atol=1e-9)
    np.testing.assert_allclose(
        lps_from_ijk(ijk_from_lps(points_lps, geometry), geometry), points_lps, atol=1e-9
    )


def test_shape_dhw_and_apply_geometry(small_image):
    geometry = geometry_of(small_image)
    assert geometry.shape_dhw == sitk.GetArrayViewFromImage(small_image).shape
    copy = apply_geometry(sitk.Image(small_image.GetSize(), sitk.sitkUInt8), geometry)
    assert geometry_of(copy) == geometry


# --- RAS / LPS in anatomical terms ------------------------------------------------------------


def test_ras_lps_in_anatomical_terms():
    """LPS +x is the patient's Left, +y Posterior; RAS +x Right, +y Anterior; +z Superior in both."""
    left_lps = np.array([[50.0, 0.0, 0.0]])  # 50 mm to the patient's left
    anterior_lps = np.array([[0.0, -20.0, 0.0]])  # 20 mm towards the face
    superior_lps = np.array([[0.0, 0.0, 30.0]])
    np.testing.assert_array_equal(ras_from_lps(left_lps), [[-50.0, 0.0, 0.0]])  # negative R = left
    np.testing.assert_array_equal(ras_from_lps(anterior_lps), [[0.0, 20.0, 0.0]])  # positive A
    np.testing.assert_array_equal(ras_from_lps(superior_lps), [[0.0, 0.0, 30.0]])
    point = np.array([[12.5, -3.0, 7.0]])
    np.testing.assert_array_equal(lps_from_ras(ras_from_lps(point)), point)


def test_ras_from_lps_agrees_with_nibabel_affine(tmp_path, small_image):
    """nibabel's affine maps voxels to RAS; SimpleITK's geometry to LPS: the flip links them."""
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(small_image, str(path))
    affine_ras = nib.load(str(path)).affine
    geometry = geometry_of(sitk.ReadImage(str(path)))
    points_ijk = random_points_ijk(small_image.GetSize())
    expected_ras = points_ijk @ affine_ras[:3, :3].T + affine_ras[:3, 3]
    np.testing.assert_allclose(ras_from_lps(lps_from_ijk(points_ijk, geometry)), expected_ras, atol=1e-3)


def test_ras_matrix_describes_the_same_motion():
    """A motion of 10 mm to the patient's left plus a rotation, in LPS and in RAS."""
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.1, -0.2, 0.3, (10.0, 0.0, 0.0))
    matrix_lps = np.eye(4)
    matrix_lps[:3, :3] = np.reshape(rotation.GetMatrix(), (3, 3))
    matrix_lps[:3, 3] = rotation.GetTranslation()
    matrix_ras = ras_matrix_from_lps(matrix_lps)
    assert matrix_ras[0, 3] == pytest.approx(-10.0)  # to the left is -x in RAS
    points_lps = RNG.normal(0, 50, (10, 3))
    moved_lps = np.array([rotation.TransformPoint(p.tolist()) for p in points_lps])
    moved_ras = ras_from_lps(points_lps) @ matrix_ras[:3, :3].T + matrix_ras[:3, 3]
    np.testing.assert_allclose(moved_ras, ras_from_lps(moved_lps), atol=1e-9)


# --- axis order -------------------------------------------------------------------------------


def test_array_zyx_from_xyz_matches_simpleitk():
    size_ijk = (5, 4, 3)
    array_xyz = np.arange(np.prod(size_ijk), dtype=np.float32).reshape(size_ijk)  # [i, j, k]
    image = sitk.Image(size_ijk, sitk.sitkFloat32)
    for i, j, k in np.ndindex(*size_ijk):
        image.SetPixel(i, j, k, float(array_xyz[i, j, k]))
    np.testing.assert_array_equal(array_zyx_from_xyz(array_xyz), sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(xyz_from_array_zyx(sitk.GetArrayFromImage(image)), array_xyz)


def test_vector_image_from_array_keeps_components(small_image):
    vectors_dhw3 = RNG.normal(size=(*geometry_of(small_image).shape_dhw, 3))
    image = image_from_array(vectors_dhw3, geometry_of(small_image), is_vector=True)
    assert image.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(image.GetPixel(3, 2, 1), vectors_dhw3[1, 2, 3])
    assert geometry_of(image) == geometry_of(small_image)


# --- grid_sample normalisation ----------------------------------------------------------------


def test_norm_coordinates_are_voxel_centres():
    size_ijk = (5, 7, 3)
    corners_ijk = torch.tensor([[0.0, 0.0, 0.0], [4.0, 6.0, 2.0], [2.0, 3.0, 1.0]])
    expected = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(norm_from_ijk(corners_ijk, size_ijk), expected)
    torch.testing.assert_close(ijk_from_norm(expected, size_ijk), corners_ijk)
    assert ALIGN_CORNERS is True


def test_identity_grid_holds_ijk_in_the_last_axis():
    grid = identity_grid_ijk((3, 4, 5))  # (1, D, H, W, 3)
    assert grid.shape == (1, 3, 4, 5, 3)
    torch.testing.assert_close(grid[0, 2, 1, 4], torch.tensor([4.0, 1.0, 2.0]))


def test_zero_displacement_grid_sample_is_identity(small_image):
    volume = torch.from_numpy(sitk.GetArrayFromImage(small_image)).double()[None, None]  # (1, 1, D, H, W)
    grid = sampling_grid_norm(torch.zeros(1, 3, *volume.shape[2:], dtype=torch.float64))
    warped = F.grid_sample(volume, grid, align_corners=ALIGN_CORNERS)
    torch.testing.assert_close(warped, volume, atol=1e-9, rtol=0)


def test_constant_shift_grid_sample_matches_simpleitk_resample(small_image):
    """On an oblique, anisotropic grid, shifting by ``shift_ijk`` voxels is a translation of
    ``direction @ diag(spacing) @ shift_ijk`` mm in SimpleITK."""
    shift_ijk = np.array([0.3, -1.2, 0.7])
    geometry = geometry_of(small_image)
    offset_lps_mm = geometry.direction_matrix @ np.diag(geometry.spacing_mm) @ shift_ijk
    expected = sitk.GetArrayFromImage(
        sitk.Resample(
            small_image, small_image, sitk.TranslationTransform(3, offset_lps_mm.tolist()), sitk.sitkLinear
        )
    )
    volume = torch.from_numpy(sitk.GetArrayFromImage(small_image)).double()[None, None]
    disp_ijk = torch.tensor(shift_ijk).view(1, 3, 1, 1, 1).expand(1, 3, *volume.shape[2:])
    warped = F.grid_sample(volume, sampling_grid_norm(disp_ijk), align_corners=ALIGN_CORNERS)[0, 0].numpy()
    target_ijk = identity_grid_ijk(geometry.shape_dhw, dtype=torch.float64)[0].numpy() + shift_ijk
    inside = np.all((target_ijk >= 0) & (target_ijk <= np.array(geometry.size_ijk) - 1), axis=-1)  # (D, H, W)
    assert inside.sum() > 300
    np.testing.assert_allclose(warped[inside], expected[inside], atol=1e-4)
    assert np.abs(warped[inside] - sitk.GetArrayFromImage(small_image)[inside]).max() > 1.0  # it moved


# --- displacement vectors ---------------------------------------------------------------------


def test_disp_lps_from_ijk_matches_simpleitk_and_round_trips(small_image):
    geometry = geometry_of(small_image)
    disp_ijk = RNG.normal(0, 1.5, (3, *geometry.shape_dhw))  # (3, D, H, W)
    disp_lps_mm = disp_lps_from_ijk(disp_ijk, geometry)  # (D, H, W, 3)
    k, j, i = 4, 3, 7
    start_ijk = np.array([i, j, k], dtype=float)
    expected = np.subtract(
        small_image.TransformContinuousIndexToPhysicalPoint((start_ijk + disp_ijk[:, k, j, i]).tolist()),
        small_image.TransformContinuousIndexToPhysicalPoint(start_ijk.tolist()),
    )
    np.testing.assert_allclose(disp_lps_mm[k, j, i], expected, atol=1e-9)
    np.testing.assert_allclose(disp_ijk_from_lps(disp_lps_mm, geometry), disp_ijk, atol=1e-9)


def test_displacement_field_transform_maps_voxel_x_to_x_plus_disp(small_image):
    """A SimpleITK DisplacementFieldTransform built from ``disp_lps_from_ijk`` moves the centre of
    voxel x to the physical point of x + disp_ijk(x)."""
    geometry = geometry_of(small_image)
    disp_ijk = RNG.normal(0, 0.8, (3, *geometry.shape_dhw))
    field = image_from_array(disp_lps_from_ijk(disp_ijk, geometry), geometry, is_vector=True)
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    for i, j, k in [(1, 1, 1), (5, 4, 3), (10, 8, 7)]:
        point = small_image.TransformIndexToPhysicalPoint((i, j, k))
        target_ijk = np.array([i, j, k]) + disp_ijk[:, k, j, i]
        expected = small_image.TransformContinuousIndexToPhysicalPoint(target_ijk.tolist())
        np.testing.assert_allclose(transform.TransformPoint(point), expected, atol=1e-6)


# --- properties on random geometries and affines ----------------------------------------------


def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a (non-zero) quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


quaternions = st.lists(st.floats(-1, 1, allow_subnormal=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1
)
spacings = st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3)
origins = st.lists(st.floats(-500, 500, allow_subnormal=False), min_size=3, max_size=3)
sizes = st.lists(st.integers(2, 300), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(quaternion=quaternions, left_handed=st.booleans(), spacing=spacings, origin=origins, size=sizes)
def test_random_geometry_round_trips(quaternion, left_handed, spacing, origin, size):
    direction = rotation_from_quaternion(np.asarray(quaternion)) @ np.diag(
        [1.0, 1.0, -1.0 if left_handed else 1.0]
    )
    image = sitk.Image([2, 2, 2], sitk.sitkUInt8)
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    geometry = Geometry(tuple(size), tuple(spacing), tuple(origin), tuple(direction.ravel()))
    assert geometry_of(apply_geometry(image, geometry)).direction == geometry.direction
    points_ijk = np.array([[0.0, 0.0, 0.0], [size[0] - 1.0, 0.5, size[2] / 2.0], [-0.5, size[1] - 0.5, 3.0]])
    points_lps = lps_from_ijk(points_ijk, geometry)
    np.testing.assert_allclose(points_lps, sitk_points(image, points_ijk), atol=1e-6)
    np.testing.assert_allclose(ijk_from_lps(points_lps, geometry), points_ijk, atol=1e-6)
    np.testing.assert_allclose(ras_from_lps(lps_from_ras(points_lps)), points_lps)
    assert np.linalg.det(geometry.direction_matrix) == pytest.approx(-1.0 if left_handed else 1.0)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    quaternion=quaternions,
    scales=st.lists(st.floats(0.5, 2.0), min_size=3, max_size=3),
    shear=st.floats(-0.3, 0.3),
    translation=origins,
    center=origins,
)
def test_random_affine_composed_with_its_inverse_is_identity(quaternion, scales, shear, translation, center):
    shear_matrix = np.eye(3)
    shear_matrix[0, 1] = shear
    matrix = rotation_from_quaternion(np.asarray(quaternion)) @ shear_matrix @ np.diag(scales)
    affine = sitk.AffineTransform(matrix.ravel().tolist(), translation, center)
    inverse = affine.GetInverse()
    composite = sitk.CompositeTransform([affine, inverse])
    points = np.random.default_rng(0).uniform(-300, 300, (8, 3))
    for point in points:
        np.testing.assert_allclose(composite.TransformPoint(point.tolist()), point, atol=1e-6)
    homogeneous = np.eye(4)  # x -> A (x - c) + t + c, as ITK defines it
    homogeneous[:3, :3] = matrix
    homogeneous[:3, 3] = np.asarray(translation) + np.asarray(center) - matrix @ np.asarray(center)
    mapped = points @ homogeneous[:3, :3].T + homogeneous[:3, 3]
    np.testing.assert_allclose(mapped, [affine.TransformPoint(p.tolist()) for p in points], atol=1e-6)
    np.testing.assert_allclose(np.linalg.inv(homogeneous) @ homogeneous, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(
        ras_matrix_from_lps(np.linalg.inv(homogeneous)) @ ras_matrix_from_lps(homogeneous),
        np.eye(4),
        atol=1e-9,
    )


# --- coarse grids, flat indices, slice axes ------------------------------------------------------


def test_coarse_cells_sit_at_block_centres_as_avg_pool_and_interpolate_assume():
    # a ramp averaged over blocks of 4 holds, in cell c, the mean of 4c..4c+3 = 4c + 1.5
    ramp = torch.arange(16, dtype=torch.float64)[None, None]
    pooled = F.avg_pool1d(ramp, 4)[0, 0]
    cells = torch.arange(4, dtype=torch.float64)
    assert torch.equal(fine_from_coarse(cells, 4), pooled)
    # upsampling (align_corners=False) puts cell c back at the same fine position
    upsampled = F.interpolate(pooled[None, None], scale_factor=4.0, mode="linear", align_corners=False)[0, 0]
    assert torch.allclose(upsampled[2:-2], ramp[0, 0, 2:-2])
    assert torch.allclose(coarse_from_fine(fine_from_coarse(cells, 3), 3), cells)
    assert fine_from_coarse(np.array([0.0, 2.0]), 1).tolist() == [0.0, 2.0]  # stride 1: identity


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_upsampled_cells_reproduce_a_linear_map_between_cell_centres(stride, ndim):
    """A map linear in the coarse position comes back linear in the fine position at every fine
    sample between the outer cell centres (fine_from_coarse), constant beyond them, cropped."""
    coarse_shape = (5, 4, 3)[:ndim]
    size = tuple(stride * n - 1 for n in coarse_shape)  # the crop drops the last fine sample per axis
    slopes = (0.5, -2.0, 1.25)[:ndim]
    axes = [torch.arange(n, dtype=torch.float64) for n in coarse_shape]
    cells = sum(a * g for a, g in zip(slopes, torch.meshgrid(*axes, indexing="ij"), strict=True)) + 7.0
    fine = upsample_cells(cells[None, None], stride, size)[0, 0]
    assert tuple(fine.shape) == size
    # expected: the same linear map at the clamped coarse position of every fine sample
    positions = [
        coarse_from_fine(torch.arange(n, dtype=torch.float64), stride).clamp(0, m - 1)
        for n, m in zip(size, coarse_shape, strict=True)
    ]
    expected = (
        sum(a * g for a, g in zip(slopes, torch.meshgrid(*positions, indexing="ij"), strict=True)) + 7.0
    )
    torch.testing.assert_close(fine, expected, atol=1e-12, rtol=0)


def test_upsampled_cells_of_a_volume_are_those_of_its_slices():
    """The 3D case (control and cost-volume grids) and the 2D case (network maps) are one rule."""
    volume = torch.rand(1, 2, 1, 5, 6, dtype=torch.float64).expand(1, 2, 3, 5, 6)
    fine3d = upsample_cells(volume, 1, (3, 5, 6))
    torch.testing.assert_close(fine3d, volume)
    stack = torch.rand(1, 2, 4, 5, 6, dtype=torch.float64)
    fine3d = upsample_cells(stack[:, :, :1].expand(1, 2, 4, 5, 6), 2, (8, 9, 11))
    fine2d = upsample_cells(stack[:, :, 0], 2, (9, 11))
    for k in range(8):
        torch.testing.assert_close(fine3d[:, :, k], fine2d)
    with pytest.raises(ValueError, match="does not fit"):
        upsample_cells(stack, 2, (9, 11))


def test_flat_indices_agree_with_numpy_unravel_index():
    shape = (3, 4, 5)  # (D, H, W)
    flat = torch.tensor([0, 7, 23, 59])
    k, j, i = np.unravel_index(flat.numpy(), shape)
    points = ijk_from_flat(flat, shape)
    assert points.tolist() == np.stack([i, j, k], axis=1).tolist()
    assert torch.equal(flat_from_ijk(points, shape), flat)
    assert ijk_from_flat(torch.tensor([6]), (2, 4)).tolist() == [[2, 1]]  # 2D: (x, y) of row 1, col 2


def test_slice_axes_follow_the_array_axes_a_slice_keeps():
    volume = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # (D, H, W) = (k, j, i) sizes 2, 3, 4
    size_ijk = (4, 3, 2)
    for axis, piece in enumerate((volume[0], volume[:, 0], volume[:, :, 0])):
        column_axis, row_axis = slice_axes_xy(axis)
        assert piece.shape == (size_ijk[row_axis], size_ijk[column_axis])
    with pytest.raises(ValueError, match="slicing_axis must be 0, 1 or 2"):
        slice_axes_xy(3)


def test_array_view_reads_the_same_voxels_as_the_copy(small_image):
    assert np.array_equal(array_view_from_image(small_image), array_from_image(small_image))


def test_norm_matrix_is_norm_from_ijk():
    """The homogeneous matrix maps points as ``norm_from_ijk`` does, singleton axes included."""
    points = torch.tensor([[0.0, 0.0, 0.0], [4.0, 2.5, 0.0], [-0.5, 7.5, 0.3]], dtype=torch.float64)
    for size_ijk in ((5, 8, 1), (17, 3, 9)):
        matrix = norm_from_ijk_matrix(size_ijk)
        mapped = points.numpy() @ matrix[:3, :3].T + matrix[:3, 3]
        np.testing.assert_allclose(mapped, norm_from_ijk(points, size_ijk).numpy(), atol=1e-12)
