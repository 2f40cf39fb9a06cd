"""The written B-spline transform is the dense stage's control field, and every reader maps points alike.

The control field is a smooth random field on an oblique block-centred control grid. Independent
references: the control values themselves (the spline interpolates them), ITK's own B-spline
evaluation (SimpleITK), and the readers users have: SimpleITK, ANTs (``antspyx``) and Slicer
(``slicer-core``), each compared with the in-memory transform to 0.01 mm.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from vmgga.dense.stage import working_from_control
from vmgga.export.itk_transform import bspline_transform, composite_transform, read_transform, write_transform
from vmgga.field.bspline import (
    PAD_NODES,
    control_geometry,
    displacement_on,
    evaluate_separable,
    spline_fitted_to_field,
    spline_from_control,
)
from vmgga.frames import (
    Geometry,
    disp_ijk_from_lps,
    disp_lps_from_ijk,
    lps_from_ijk,
    lps_from_ras,
    ras_from_lps,
)

TOLERANCE_MM = 0.01
FACTOR = 4  # working voxels per control voxel


def _working() -> Geometry:
    rotation = sitk.VersorTransform((0.2, -0.4, 0.9), 0.3)
    return Geometry((37, 30, 26), (1.5, 1.5, 1.5), (-20.0, 12.0, -8.0), tuple(rotation.GetMatrix()))


def _control_field(shape_dhw: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth random displacement ``(3, d, h, w)`` in control voxels (up to about a voxel)."""
    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.normal(0, 2.0, shape_dhw), 1.0) for _ in range(3)])


def _affine() -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.04, 0.03, -0.01, -0.02, 0.96, 0.02, 0.01, -0.03, 1.02))
    affine.SetTranslation((3.0, -2.0, 1.0))
    affine.SetCenter((4.0, 10.0, -2.0))
    return affine


@pytest.fixture(scope="module")
def spline():
    working = _working()
    control_shape = tuple(-(-n // FACTOR) for n in working.shape_dhw)
    control = _control_field(control_shape)
    coefficients, grid = spline_from_control(control, working, FACTOR)
    return working, control, coefficients, grid


@pytest.fixture(scope="module")
def written(spline, tmp_path_factory):
    _, _, coefficients, grid = spline
    transform = composite_transform(_affine(), bspline_transform(coefficients, grid))
    path = write_transform(transform, tmp_path_factory.mktemp("t") / "transform.h5")
    return transform, path


def _points_in_working_grid(working: Geometry, count: int = 200, seed: int = 1) -> np.ndarray:
    """Random LPS points anywhere in the working grid's voxels (out to its half-voxel border)."""
    rng = np.random.default_rng(seed)
    ijk = rng.uniform(-0.5, np.asarray(working.size_ijk) - 0.5, (count, 3))
    return lps_from_ijk(ijk, working)


def _map(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.asarray([transform.TransformPoint(p.tolist()) for p in points])


def test_spline_passes_through_the_control_values(spline):
    working, control, coefficients, grid = spline
    nodes = control_geometry(working, FACTOR, control.shape[1:])
    expected = disp_lps_from_ijk(control, nodes)  # (d, h, w, 3) mm
    transform = bspline_transform(coefficients, grid)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in nodes.size_ijk], indexing="ij"), -1).reshape(-1, 3)
    points = lps_from_ijk(ijk.astype(float), nodes)
    got = _map(transform, points) - points
    want = expected[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_separable_evaluation_matches_itk_between_nodes(spline):
    working, _, coefficients, grid = spline
    transform = bspline_transform(coefficients, grid)
    field = displacement_on(coefficients, grid, working)  # (D, H, W, 3)
    rng = np.random.default_rng(2)
    ijk = np.stack([rng.integers(0, n, 100) for n in working.size_ijk], axis=1)
    points = lps_from_ijk(ijk.astype(float), working)
    np.testing.assert_allclose(
        field[ijk[:, 2], ijk[:, 1], ijk[:, 0]], _map(transform, points) - points, atol=1e-5
    )
    one = evaluate_separable(coefficients, (np.array([4.25]), np.array([5.5]), np.array([6.75])))
    assert one.shape == (1, 1, 1, 3)


def test_whole_working_grid_lies_inside_the_spline_domain(spline):
    """ITK gives zero displacement outside the spline's support: no working point may fall there."""
    working, _, coefficients, grid = spline
    transform = bspline_transform(coefficients, grid)
    corners = np.array([[x, y, z] for x in (-0.5, 36.5) for y in (-0.5, 29.5) for z in (-0.5, 25.5)])
    points = lps_from_ijk(corners, working)
    moved = np.linalg.norm(_map(transform, points) - points, axis=1)
    assert np.all(moved > 1e-3)  # the random field is nowhere exactly zero


def test_simpleitk_reads_the_same_transform(spline, written):
    working = spline[0]
    transform, path = written
    loaded = read_transform(path)
    points = _points_in_working_grid(working)
    assert np.abs(_map(loaded, points) - _map(transform, points)).max() < 1e-6


def test_ants_reads_the_same_transform(spline, written):
    ants = pytest.importorskip("ants", reason="needs antspyx")
    pd = pytest.importorskip("pandas")
    working = spline[0]
    transform, path = written
    points = _points_in_working_grid(working, 50)
    want = _map(transform, points)
    frame = pd.DataFrame(points, columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, frame, [str(path)]).values
    assert np.abs(mapped - want).max() < TOLERANCE_MM
    read = ants.read_transform(str(path))
    mapped = np.asarray([read.apply_to_point(p.tolist()) for p in points])
    assert np.abs(mapped - want).max() < TOLERANCE_MM


def test_slicer_reads_the_same_transform(spline, written):
    slicer = pytest.importorskip("slicer", reason="needs slicer-core")
    working = spline[0]
    transform, path = written
    node = slicer.vtkSlicerTransformLogic().AddTransform(str(path), slicer.vtkMRMLScene())
    assert node is not None
    from_parent = node.GetTransformFromParent()  # fixed RAS -> moving RAS
    points = _points_in_working_grid(working, 100)
    mapped = lps_from_ras(np.asarray([from_parent.TransformPoint(p.tolist()) for p in ras_from_lps(points)]))
    assert np.abs(mapped - _map(transform, points)).max() < TOLERANCE_MM


def test_least_squares_fit_recovers_a_spline_field_exactly():
    """A field that is itself a cubic spline on the coefficient grid is reproduced at every working voxel."""
    working = _working()
    rng = np.random.default_rng(7)
    _, grid = spline_fitted_to_field(np.zeros((3, *working.shape_dhw)), working, FACTOR)
    truth = np.zeros((*grid.shape_dhw, 3))
    inner = tuple(slice(PAD_NODES, n - PAD_NODES) for n in grid.shape_dhw)
    truth[inner] = rng.normal(0, 1.5, truth[inner].shape)
    field_lps = displacement_on(truth, grid, working).astype(np.float64)  # (D, H, W, 3)
    field_ijk = disp_ijk_from_lps(field_lps, working)
    coefficients, _ = spline_fitted_to_field(field_ijk, working, FACTOR)
    np.testing.assert_allclose(displacement_on(coefficients, grid, working), field_lps, atol=1e-4)


def test_least_squares_fit_is_closer_to_the_trilinear_field_than_interpolation(spline):
    """The dense field is trilinear between control nodes; the written spline stays near it."""
    working, control, interpolating, grid = spline
    trilinear_ijk = working_from_control(torch.from_numpy(control)[None], FACTOR, working.shape_dhw)[
        0
    ].numpy()
    trilinear = disp_lps_from_ijk(trilinear_ijk, working)
    fitted, fitted_grid = spline_fitted_to_field(trilinear_ijk, working, FACTOR)
    assert fitted_grid == grid
    errors = [
        np.linalg.norm(displacement_on(c, grid, working) - trilinear, axis=-1)
        for c in (fitted, interpolating)
    ]
    assert errors[0].mean() < 0.7 * errors[1].mean()
    assert errors[0].max() < np.linalg.norm(trilinear, axis=-1).max() * 0.25
