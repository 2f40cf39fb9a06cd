"""Volumes cross the Slicer <-> core boundary with their geometry intact (slicer-core, no Qt).

The module exports the fixed and moving volumes with a ``vtkMRMLVolumeArchetypeStorageNode`` (NRRD,
uncompressed) and loads ``warped.nii.gz`` / ``confidence.nii.gz`` back as scalar volumes. Slicer
keeps a RAS ``IJKToRAS`` matrix, ITK an LPS origin/spacing/direction: every voxel must land on the
same physical point on both sides, on an oblique, anisotropic grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.frames import ras_from_lps

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package")
vtk = pytest.importorskip("vtk", reason="needs VTK (a dependency of slicer-core)")
numpy_support = pytest.importorskip("vtk.util.numpy_support")

SIZE_IJK = (7, 5, 4)
CORNERS_IJK = [(0, 0, 0), (6, 0, 0), (0, 4, 0), (0, 0, 3), (6, 4, 3), (3, 2, 1)]


def _ijk_to_ras() -> np.ndarray:
    """(4, 4) oblique, anisotropic IJK -> RAS matrix."""
    rotation = np.asarray(sitk.VersorTransform((0.2, 0.4, -0.9), 0.5).GetMatrix()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([1.5, 2.0, 3.0])
    matrix[:3, 3] = (10.0, -20.0, 30.0)
    return matrix


def _volume_node(scene, values_kji: np.ndarray):
    """A scalar volume node holding ``values_kji`` (shape (K, J, I)) on :func:`_ijk_to_ras`."""
    image = vtk.vtkImageData()
    image.SetDimensions(*SIZE_IJK)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values_kji.ravel()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    node.SetAndObserveImageData(image)
    matrix = vtk.vtkMatrix4x4()
    for row, column in np.ndindex(4, 4):
        matrix.SetElement(row, column, _ijk_to_ras()[row, column])
    node.SetIJKToRASMatrix(matrix)
    return node


def _node_ras(node, index_ijk) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.asarray(matrix.MultiplyPoint((*map(float, index_ijk), 1.0))[:3])


def _node_values_kji(node) -> np.ndarray:
    scalars = numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
    return scalars.reshape(tuple(reversed(node.GetImageData().GetDimensions())))


def test_exported_volume_keeps_its_geometry_in_itk(tmp_path):
    """What ``_writeVolume`` does, read back the way the core reads it (SimpleITK, LPS)."""
    scene = slicer.vtkMRMLScene()
    values_kji = np.arange(np.prod(SIZE_IJK), dtype=np.float32).reshape(tuple(reversed(SIZE_IJK)))
    node = _volume_node(scene, values_kji)
    storage = scene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "fixed.nrrd"))
    storage.UseCompressionOff()
    assert storage.WriteData(node)
    storage.UnRegister(None)

    image = sitk.ReadImage(str(tmp_path / "fixed.nrrd"))
    assert image.GetSize() == SIZE_IJK
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), values_kji)
    for index in CORNERS_IJK:
        itk_ras = ras_from_lps(np.asarray([image.TransformIndexToPhysicalPoint(index)]))[0]
        np.testing.assert_allclose(itk_ras, _node_ras(node, index), atol=1e-4)


def test_core_output_loads_into_slicer_on_the_same_points(tmp_path):
    """A NIfTI written by SimpleITK (as the core writes warped.nii.gz) read as ``loadVolume`` reads it."""
    rng = np.random.default_rng(0)
    values_kji = rng.uniform(0, 1, size=tuple(reversed(SIZE_IJK))).astype(np.float32)
    image = sitk.GetImageFromArray(values_kji)
    image.SetSpacing((1.5, 2.0, 3.0))
    image.SetOrigin((-4.0, 7.0, 12.0))
    image.SetDirection(sitk.VersorTransform((0.7, -0.1, 0.3), 0.4).GetMatrix())
    sitk.WriteImage(image, str(tmp_path / "warped.nii.gz"))

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "warped.nii.gz"))
    assert storage.ReadData(node)
    np.testing.assert_allclose(_node_values_kji(node), values_kji, rtol=1e-6)
    for index in CORNERS_IJK:
        itk_ras = ras_from_lps(np.asarray([image.TransformIndexToPhysicalPoint(index)]))[0]
        np.testing.assert_allclose(_node_ras(node, index), itk_ras, atol=1e-4)
