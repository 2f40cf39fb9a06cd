"""The core's ``transform.h5``, read as Slicer's ``loadTransform`` reads it, maps points as SimpleITK does.

Uses ``slicer-core`` (Slicer's MRML without Qt). ``slicer.util.loadTransform`` goes through the
transforms reader, which calls ``vtkSlicerTransformLogic.AddTransform``: a ``vtkMRMLTransformStorageNode``
reads the ITK file into a new ``vtkMRMLTransformNode``. ITK files hold the *resampling* transform
(fixed -> moving, LPS); Slicer converts it to RAS and stores it as the transform **from parent**. So
``node.GetTransformFromParent()`` maps a fixed RAS point to the corresponding moving RAS point, and
that is what we compare with ``sitk.Transform.TransformPoint`` after ``ras_from_lps``/``lps_from_ras``.

Slicer interpolates a displacement grid with cubic splines, ITK linearly: both are exact on the grid
nodes, and agree within 0.1 mm between nodes for a smooth field. Outside the grid they differ (ITK:
zero displacement), so points are taken inside it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from stroke_pair import STROKE_DIR, stroke_pair_present

from vmgga.frames import (
    Geometry,
    array_zyx_from_xyz,
    geometry_of,
    image_from_array,
    lps_from_ijk,
    lps_from_ras,
    ras_from_lps,
)

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package")
vtk = pytest.importorskip("vtk", reason="needs VTK (a dependency of slicer-core)")

REPO_DIR = Path(__file__).resolve().parents[2]

#: Grid of the synthetic displacement field: oblique and anisotropic, like a working grid may be.
FIELD_GEOMETRY = Geometry(
    size_ijk=(14, 12, 10),
    spacing_mm=(2.0, 3.0, 4.5),
    origin_lps_mm=(-20.0, 10.0, -15.0),
    direction=tuple(sitk.VersorTransform((0.3, -0.5, 0.8), 0.35).GetMatrix()),
)


def _smooth_field_lps_mm(points_lps_mm: np.ndarray) -> np.ndarray:
    """An analytic, smooth displacement (mm) at LPS points ``(N, 3)``; up to about 3 mm."""
    x, y, z = points_lps_mm.T
    return np.stack([3.0 * np.sin(y / 25.0), 2.0 * np.cos(x / 30.0), 1.5 * np.sin((x + z) / 35.0)], axis=1)


def _grid_points_ijk(geometry: Geometry) -> np.ndarray:
    """Integer index of every grid node, ``(N, 3)`` in (i, j, k) order."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in geometry.size_ijk], indexing="ij")
    return np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float64)


def _displacement_transform(geometry: Geometry) -> sitk.DisplacementFieldTransform:
    """The analytic field sampled on ``geometry`` as an ITK displacement field transform."""
    vectors = _smooth_field_lps_mm(lps_from_ijk(_grid_points_ijk(geometry), geometry))  # (N, 3)
    vectors_ijk = vectors.reshape(*geometry.size_ijk, 3)  # (I, J, K, 3): meshgrid "ij" order
    field = image_from_array(array_zyx_from_xyz(vectors_ijk), geometry, is_vector=True)
    return sitk.DisplacementFieldTransform(field)


def _affine() -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.03, 0.04, -0.02, -0.05, 0.97, 0.03, 0.02, -0.01, 1.01))
    affine.SetTranslation((4.0, -3.0, 2.5))
    affine.SetCenter((5.0, 20.0, -4.0))
    return affine


def _composite(affine: sitk.Transform, geometry: Geometry) -> sitk.CompositeTransform:
    """Like the core's: the file lists the affine first; the displacement field is applied first."""
    return sitk.CompositeTransform([affine, _displacement_transform(geometry)])


@pytest.fixture(scope="module")
def composite_file(tmp_path_factory) -> tuple[Path, sitk.Transform]:
    path = tmp_path_factory.mktemp("transform") / "transform.h5"
    transform = _composite(_affine(), FIELD_GEOMETRY)
    sitk.WriteTransform(transform, str(path))
    return path, sitk.ReadTransform(str(path))


def _load_like_slicer(path: Path, scene):
    """What ``slicer.util.loadTransform(path)`` does once the IO manager picked the transforms reader."""
    node = slicer.vtkSlicerTransformLogic().AddTransform(str(path), scene)
    assert node is not None, f"Slicer could not read {path}"
    return node


def _map_with_node(node, points_lps_mm: np.ndarray) -> np.ndarray:
    """Fixed points (LPS) -> moving points (LPS) through the node's transform FROM parent (fixed -> moving)."""
    from_parent = node.GetTransformFromParent()
    mapped_ras = [from_parent.TransformPoint(p.tolist()) for p in ras_from_lps(points_lps_mm)]
    return lps_from_ras(np.asarray(mapped_ras))


def _map_with_sitk(transform: sitk.Transform, points_lps_mm: np.ndarray) -> np.ndarray:
    return np.asarray([transform.TransformPoint(p.tolist()) for p in points_lps_mm])


def _interior_points_lps(geometry: Geometry, count: int, margin_voxels: float, seed: int = 0) -> np.ndarray:
    """Random continuous positions inside the grid, ``margin_voxels`` away from its faces."""
    rng = np.random.default_rng(seed)
    high = np.asarray(geometry.size_ijk, dtype=np.float64) - 1.0 - margin_voxels
    return lps_from_ijk(rng.uniform(margin_voxels, high, size=(count, 3)), geometry)


def test_composite_reads_into_a_nonlinear_transform_node(composite_file):
    path, _ = composite_file
    node = _load_like_slicer(path, slicer.vtkMRMLScene())
    assert node.IsA("vtkMRMLTransformNode")
    assert not node.IsLinear()
    assert node.GetName() == "transform"


def test_grid_nodes_map_exactly(composite_file):
    path, transform = composite_file
    node = _load_like_slicer(path, slicer.vtkMRMLScene())
    points = lps_from_ijk(_grid_points_ijk(FIELD_GEOMETRY), FIELD_GEOMETRY)
    error_mm = np.linalg.norm(_map_with_node(node, points) - _map_with_sitk(transform, points), axis=1)
    assert error_mm.max() < 1e-3


def test_points_between_nodes_agree_within_a_tenth_of_a_millimetre(composite_file):
    path, transform = composite_file
    node = _load_like_slicer(path, slicer.vtkMRMLScene())
    points = _interior_points_lps(FIELD_GEOMETRY, count=300, margin_voxels=1.0)
    expected = _map_with_sitk(transform, points)
    assert np.linalg.norm(expected - points, axis=1).mean() > 3.0  # the transform moves points a lot
    affine_only = _map_with_sitk(_affine(), points)
    assert np.linalg.norm(expected - affine_only, axis=1).mean() > 1.0  # and the field matters
    error_mm = np.linalg.norm(_map_with_node(node, points) - expected, axis=1)
    assert error_mm.max() < 0.1


def test_explicit_storage_node_reads_the_same_transform(composite_file):
    path, _ = composite_file
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    points = _interior_points_lps(FIELD_GEOMETRY, count=50, margin_voxels=1.0, seed=3)
    reference = _map_with_node(_load_like_slicer(path, scene), points)
    assert np.abs(_map_with_node(node, points) - reference).max() < 1e-9


def test_transform_to_parent_inverts_from_parent(composite_file):
    """Slicer uses the inverse (to parent) for display; it must undo the from-parent mapping."""
    path, _ = composite_file
    node = _load_like_slicer(path, slicer.vtkMRMLScene())
    points_ras = ras_from_lps(_interior_points_lps(FIELD_GEOMETRY, count=50, margin_voxels=2.0, seed=4))
    from_parent, to_parent = node.GetTransformFromParent(), node.GetTransformToParent()
    round_trip = np.asarray(
        [to_parent.TransformPoint(from_parent.TransformPoint(p.tolist())) for p in points_ras]
    )
    assert np.linalg.norm(round_trip - points_ras, axis=1).max() < 0.05


def test_left_stays_left(tmp_path):
    """A fixed point whose match lies 10 mm to the patient's left and 5 mm superior in the moving image."""
    shift = sitk.TranslationTransform(3, (10.0, 0.0, 5.0))  # LPS: +x = left, +z = superior
    path = tmp_path / "shift.h5"
    sitk.WriteTransform(sitk.CompositeTransform([shift, _zero_displacement_transform()]), str(path))
    node = _load_like_slicer(path, slicer.vtkMRMLScene())
    point_ras = np.array([12.0, -7.0, 3.0])
    mapped_ras = np.asarray(node.GetTransformFromParent().TransformPoint(point_ras.tolist()))
    # RAS: left is -R, so the R coordinate drops by 10 mm; superior is +S.
    assert mapped_ras == pytest.approx(point_ras + [-10.0, 0.0, 5.0], abs=1e-6)


def _zero_displacement_transform() -> sitk.DisplacementFieldTransform:
    """A zero field on a grid around the point of :func:`test_left_stays_left` (the file keeps its shape)."""
    geometry = Geometry((6, 6, 6), (5.0, 5.0, 5.0), (-30.0, -10.0, -10.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    zeros = np.zeros((*geometry.shape_dhw, 3))
    return sitk.DisplacementFieldTransform(image_from_array(zeros, geometry, is_vector=True))


def test_initial_transform_written_by_slicer_is_fixed_to_moving(tmp_path):
    """The module writes the initial transform with a transform storage node: the file holds the
    transform from parent, i.e. fixed -> moving, which is what ``--initial-transform`` expects."""
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    to_parent = np.eye(4)  # moving -> fixed, as the user applies it to the moving volume
    to_parent[:3, 3] = (10.0, -4.0, 2.0)  # RAS mm
    matrix = vtk.vtkMatrix4x4()
    for row, column in np.ndindex(4, 4):
        matrix.SetElement(row, column, to_parent[row, column])
    node.SetMatrixTransformToParent(matrix)
    storage = slicer.vtkMRMLTransformStorageNode()
    storage.SetFileName(str(tmp_path / "initial.h5"))
    assert storage.WriteData(node)
    written = sitk.ReadTransform(str(tmp_path / "initial.h5"))
    fixed_lps = np.array([[3.0, 8.0, -5.0], [-20.0, 1.0, 30.0]])
    moving_lps = _map_with_sitk(written, fixed_lps)
    expected_ras = ras_from_lps(fixed_lps) - to_parent[:3, 3]  # the inverse of the user's motion
    assert moving_lps == pytest.approx(lps_from_ras(expected_ras), abs=1e-6)


# --- the real core ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not stroke_pair_present(), reason="the stroke test data is missing")
def test_real_core_transform_reads_into_slicer_with_the_same_mapping(tmp_path):
    """``vmgga register`` run exactly as the module runs it, then its transform.h5 loaded as Slicer does."""
    sys.path.insert(0, str(REPO_DIR / "VMGGARegistration"))
    from VMGGARegistrationLib.command import RegisterRequest, build_register_command
    from VMGGARegistrationLib.outputs import RunStatus, summarise_run
    from VMGGARegistrationLib.process import CoreProcess, child_environment, wait_until_finished

    request = RegisterRequest(STROKE_DIR / "T2.nii.gz", STROKE_DIR / "T1.nii.gz", tmp_path / "out", threads=2)
    process = CoreProcess(
        build_register_command(sys.executable, request), child_environment(os.environ), tmp_path
    )
    process.start()
    events = []
    wait_until_finished(process, events.extend, interval_s=0.2)
    outcome = summarise_run(events, process.return_code, tmp_path)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    fractions = [e.fraction for e in events if type(e).__name__ == "ProgressEvent"]
    assert fractions and fractions == sorted(fractions) and math.isclose(fractions[-1], 1.0)

    transform = sitk.ReadTransform(str(outcome.outputs.transform))
    node = _load_like_slicer(outcome.outputs.transform, slicer.vtkMRMLScene())
    assert not node.IsLinear()
    fixed_geometry = geometry_of(sitk.ReadImage(str(STROKE_DIR / "T2.nii.gz")))
    points = _interior_points_lps(fixed_geometry, count=300, margin_voxels=3.0)
    error_mm = np.linalg.norm(_map_with_node(node, points) - _map_with_sitk(transform, points), axis=1)
    print(
        f"slicer vs sitk on the core's transform: max {error_mm.max():.4f} mm, mean {error_mm.mean():.4f} mm"
    )
    assert error_mm.max() < 0.1
