"""The module's Logic, run headless on a real MRML scene (slicer-core), without the Slicer application.

Only what needs the Slicer application or Qt is replaced, by small stand-ins defined here: the
``ScriptedLoadableModule`` base classes, ``parameterNodeWrapper`` (an identity decorator), ``tr``,
``qt.QTimer`` (ticks are driven by the test), ``slicer.app.processEvents``, ``tempDirectory`` and
``startupEnvironment``. ``loadTransform``/``loadVolume`` are replaced by the MRML calls that Slicer's
readers make (``vtkSlicerTransformLogic.AddTransform``, a volume archetype storage node). Everything
else (exporting volumes and transforms, running the child process, parsing its output, loading and
linking the results) is the module's own code.

A fake core (a script writing real ITK/NIfTI outputs) keeps most tests fast; the slow test runs the
real ``vmgga register`` through the Logic and checks that it recovers a known motion.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
import types
import unittest
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from stroke_pair import STROKE_DIR, stroke_pair_present

from vmgga.frames import lps_from_ras, ras_from_lps

slicer = pytest.importorskip("slicer", reason="needs the slicer-core package")
vtk = pytest.importorskip("vtk", reason="needs VTK (a dependency of slicer-core)")
numpy_support = pytest.importorskip("vtk.util.numpy_support")

REPO_DIR = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_DIR / "VMGGARegistration"

#: Stand-in for ``vmgga register``: real output files, behaviour chosen by $FAKE_CORE_MODE.
FAKE_CORE = r"""
import json, os, sys, time
import numpy as np
import SimpleITK as sitk
fixed_path, moving_path, out, initial = sys.argv[1:5]
mode = os.environ.get("FAKE_CORE_MODE", "ok")
def emit(**event):
    print(json.dumps(event))
if mode == "error":
    emit(event="error", message="moving.nrrd: the image is empty")
    sys.exit(2)
if mode == "hang":
    emit(event="progress", stage="read", fraction=0.01, message="reading")
    time.sleep(120)
emit(event="progress", stage="affine", fraction=0.2, message="affine")
fixed = sitk.ReadImage(fixed_path)
affine = sitk.AffineTransform(3)
affine.SetMatrix((1.02, 0.03, 0.0, -0.02, 0.99, 0.01, 0.0, 0.02, 1.01))
affine.SetTranslation((2.0, -1.0, 3.0))
field = sitk.Image(fixed.GetSize(), sitk.sitkVectorFloat64, 3)
field.CopyInformation(fixed)
array = sitk.GetArrayFromImage(field)
k, j, i = np.meshgrid(*[np.arange(n) for n in array.shape[:3]], indexing="ij")
array[..., 0] = 1.5 * np.sin(j / 3.0)
array[..., 1] = 1.0 * np.cos(i / 4.0)
array[..., 2] = 0.5 * np.sin((i + k) / 5.0)
smooth = sitk.GetImageFromArray(array, isVector=True)
smooth.CopyInformation(fixed)
os.makedirs(out, exist_ok=True)
sitk.WriteTransform(sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(smooth)]),
                    os.path.join(out, "transform.h5"))
sitk.WriteImage(fixed, os.path.join(out, "warped.nii.gz"))
confidence = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) + 0.75
confidence.CopyInformation(fixed)
sitk.WriteImage(confidence, os.path.join(out, "confidence.nii.gz"))
initial_map = None
if initial:
    initial_map = list(sitk.ReadTransform(initial).TransformPoint((0.0, 0.0, 0.0)))
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump({"fake": True, "initial_maps_origin_to_lps": initial_map}, f)
emit(event="progress", stage="export", fraction=1.0, message="done")
names = {"transform": "transform.h5", "warped": "warped.nii.gz", "confidence": "confidence.nii.gz", "report": "report.json"}
emit(event="done", outputs={k: os.path.join(out, v) for k, v in names.items()})
"""


# --- stand-ins for the application -------------------------------------------------------------


class _Timer:
    """``qt.QTimer`` without an event loop: the test calls the slot itself."""

    def __init__(self):
        self.active, self.slot = False, None

    def setInterval(self, milliseconds):  # noqa: N802 - Qt API
        self.interval = milliseconds

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self.slot = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


def _stand_in_modules() -> dict[str, types.ModuleType]:
    qt = types.ModuleType("qt")
    qt.QTimer = _Timer
    base = types.ModuleType("slicer.ScriptedLoadableModule")
    base.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {"__init__": lambda self, parent: None})
    base.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    base.ScriptedLoadableModuleLogic = type(
        "ScriptedLoadableModuleLogic", (), {"__init__": lambda self: None}
    )
    base.ScriptedLoadableModuleTest = type(
        "ScriptedLoadableModuleTest", (unittest.TestCase,), {"delayDisplay": lambda self, message: None}
    )
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    return {"qt": qt, "slicer.ScriptedLoadableModule": base, "slicer.parameterNodeWrapper": wrapper,
            "slicer.i18n": i18n}  # fmt: skip


def _load_volume(scene, path, properties=None):
    """What Slicer's volume reader does: a scalar volume node filled by an archetype storage node."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", Path(path).name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        raise RuntimeError(f"Failed to load node from file: {path}")
    return node


@pytest.fixture
def module(monkeypatch, tmp_path):
    """``VMGGARegistration`` imported against a fresh slicer-core scene and the stand-ins above."""
    scene = slicer.vtkMRMLScene()
    for name, stand_in in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, stand_in)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    home = tmp_path / "Slicer"  # the application's home: PythonSlicer in its bin folder
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "PythonSlicer").symlink_to(sys.executable)
    app = types.SimpleNamespace(processEvents=lambda: None, slicerHome=str(home))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    temporary = tmp_path / "slicer-temp"
    temporary.mkdir()
    monkeypatch.setattr(
        slicer.util, "tempDirectory", lambda key="t", **_: tempfile.mkdtemp(prefix=key, dir=temporary)
    )
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(os.environ))
    monkeypatch.setattr(
        slicer.util,
        "loadTransform",
        lambda path: slicer.vtkSlicerTransformLogic().AddTransform(str(path), scene),
    )
    monkeypatch.setattr(
        slicer.util, "loadVolume", lambda path, properties=None: _load_volume(scene, path, properties)
    )
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    monkeypatch.delitem(sys.modules, "VMGGARegistration", raising=False)
    loaded = importlib.import_module("VMGGARegistration")
    yield types.SimpleNamespace(module=loaded, scene=scene, temporary=temporary, home=home, launchers=[])
    sys.modules.pop("VMGGARegistration", None)


@pytest.fixture
def fake_core(module, monkeypatch, tmp_path):
    """Route the Logic's command to the fake core; keep the request the Logic built."""
    script = tmp_path / "fake_core.py"
    script.write_text(FAKE_CORE)
    requests = []

    real_build = module.module.build_register_command

    def build(python, request):
        real_build(python, request)  # the real builder validates the options
        requests.append(request)
        module.launchers.append(python)
        initial = str(request.initial_transform_path or "")
        return [sys.executable, str(script), str(request.fixed_path), str(request.moving_path),
                str(request.output_dir), initial]  # fmt: skip

    monkeypatch.setattr(module.module, "build_register_command", build)
    return requests


# --- scene helpers ---------------------------------------------------------------------------------


def _volume(scene, name, seed, size_ijk=(9, 8, 7)):
    """A float volume on an oblique, anisotropic grid."""
    image = vtk.vtkImageData()
    image.SetDimensions(*size_ijk)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    values = np.random.default_rng(seed).uniform(0, 100, size=int(np.prod(size_ijk)))
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = values
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image)
    rotation = np.asarray(sitk.VersorTransform((0.3, 0.1, -0.6), 0.4).GetMatrix()).reshape(3, 3)
    node.SetIJKToRASMatrix(_vtk_matrix(np.block([[rotation @ np.diag([1.2, 1.6, 2.5]), np.array([[4.0], [-9.0], [2.0]])],
                                                  [np.zeros((1, 3)), np.ones((1, 1))]])))  # fmt: skip
    return node


def _vtk_matrix(matrix: np.ndarray):
    result = vtk.vtkMatrix4x4()
    for row, column in np.ndindex(4, 4):
        result.SetElement(row, column, float(matrix[row, column]))
    return result


def _numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _numpy_matrix(matrix)


def _count(scene, class_name) -> int:
    return scene.GetNumberOfNodesByClass(class_name)


def _map_fixed_to_moving_lps(node, points_lps_mm: np.ndarray) -> np.ndarray:
    from_parent = node.GetTransformFromParent()
    return lps_from_ras(
        np.asarray([from_parent.TransformPoint(p.tolist()) for p in ras_from_lps(points_lps_mm)])
    )


# --- tests -------------------------------------------------------------------------------------------


def test_logic_registers_and_loads_linked_outputs(module, fake_core):
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "CT", 0), _volume(scene, "MR", 1)
    initial = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rough")
    shift = np.eye(4)
    shift[:3, 3] = (5.0, 0.0, -2.0)  # applied to the moving volume: moving -> fixed, RAS
    initial.SetMatrixTransformToParent(_vtk_matrix(shift))
    progress, log = [], []

    logic = vmgga_module.VMGGARegistrationLogic()
    result = logic.run(fixed=fixed, moving=moving, preset="accurate", fixed_modality="ct", moving_modality="mr",
                       device="cpu", initial_transform=initial, keep_temporary_files=True, wait=True,
                       on_progress=progress.append, on_log=log.append)  # fmt: skip

    assert result.outcome.status.value == "succeeded", result.outcome.message
    request = fake_core[0]
    assert (request.preset, request.fixed_modality, request.moving_modality, request.device) == (
        "accurate", "ct", "mr", "cpu",
    )  # fmt: skip
    assert [round(e.fraction, 2) for e in progress] == [0.2, 1.0]
    assert log[0].startswith(sys.executable)  # the command line is logged first
    assert module.launchers == [str(module.home / "bin" / "PythonSlicer")]  # found in Slicer's home
    assert not logic.isRunning

    # The transform: linked to its volumes, maps points as the file says (fixed -> moving).
    transform = result.transformNode
    # the standard registration roles of MRML, which other modules read
    assert (
        transform.GetNodeReferenceID(slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole()) == fixed.GetID()
    )
    assert (
        transform.GetNodeReferenceID(slicer.vtkMRMLTransformNode.GetMovingNodeReferenceRole())
        == moving.GetID()
    )
    assert transform.GetName() == "MR to CT (VMGGA)"
    written = sitk.ReadTransform(str(result.outputDirectory / "transform.h5"))
    grid = _ijk_to_ras(fixed)
    inside_ras = (grid @ np.array([[2.5, 3.0, 2.0, 1.0], [6.0, 4.5, 4.0, 1.0], [4.0, 2.0, 3.5, 1.0]]).T).T[
        :, :3
    ]
    inside_lps = lps_from_ras(inside_ras)
    expected = np.asarray([written.TransformPoint(p.tolist()) for p in inside_lps])
    assert np.abs(_map_fixed_to_moving_lps(transform, inside_lps) - expected).max() < 0.1

    # The initial transform reached the core as fixed -> moving: the inverse of the user's shift.
    assert result.report["fake"] is True
    origin_moving_lps = lps_from_ras(np.array([[-5.0, 0.0, 2.0]]))[0]
    assert result.report["initial_maps_origin_to_lps"] == pytest.approx(origin_moving_lps.tolist(), abs=1e-6)
    assert json.loads(transform.GetAttribute("VMGGA.reportJson")) == result.report

    # Warped (here: a copy of the exported fixed volume) and confidence land on the fixed grid.
    warped, confidence = result.warpedVolumeNode, result.confidenceVolumeNode
    np.testing.assert_allclose(_ijk_to_ras(warped), _ijk_to_ras(fixed), atol=1e-4)
    np.testing.assert_allclose(
        slicer.util.arrayFromVolume(warped), slicer.util.arrayFromVolume(fixed), rtol=1e-6
    )
    assert np.allclose(slicer.util.arrayFromVolume(confidence), 0.75)
    assert warped.GetNodeReferenceID("VMGGA.transform") == transform.GetID()
    assert confidence.GetNodeReferenceID("VMGGA.transform") == transform.GetID()
    assert confidence.GetNodeReferenceID("spatialRegistrationMoving") == moving.GetID()


def test_logic_fills_given_output_nodes_and_removes_its_files(module, fake_core):
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 2), _volume(scene, "moving", 3)
    output_transform = scene.AddNewNodeByClass("vtkMRMLTransformNode", "my transform")
    output_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped")
    result = vmgga_module.VMGGARegistrationLogic().run(
        fixed=fixed,
        moving=moving,
        device="cpu",
        output_transform=output_transform,
        output_volume=output_volume,
    )
    assert result.outcome.status.value == "succeeded", result.outcome.message
    assert result.transformNode is output_transform and not output_transform.IsLinear()
    assert result.warpedVolumeNode is output_volume
    np.testing.assert_allclose(_ijk_to_ras(output_volume), _ijk_to_ras(fixed), atol=1e-4)
    assert _count(scene, "vtkMRMLTransformNode") == 1  # the loaded copy was removed
    assert _count(scene, "vtkMRMLScalarVolumeNode") == 4  # fixed, moving, output, confidence
    assert result.outputDirectory is None
    assert not fake_core[0].output_dir.parent.exists()  # the work folder is gone


def test_review_volumes_and_displays(module, fake_core, monkeypatch):
    """Checkerboard/difference volumes on the fixed grid, confidence colours, deformation display."""
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 10), _volume(scene, "moving", 11)
    logic = vmgga_module.VMGGARegistrationLogic()
    result = logic.run(fixed=fixed, moving=moving, device="cpu")
    warped = result.warpedVolumeNode
    from VMGGARegistrationLib.review import checkerboard_dhw, difference_dhw

    fixed_array = slicer.util.arrayFromVolume(fixed).copy()
    other = fixed_array[::-1].copy()  # something different from the fixed volume
    slicer.util.updateVolumeFromArray(warped, other)
    board = logic.createCheckerboardVolume(fixed, warped, tiles=4)
    np.testing.assert_allclose(
        slicer.util.arrayFromVolume(board), checkerboard_dhw(fixed_array, other, tiles=4)
    )
    np.testing.assert_allclose(_ijk_to_ras(board), _ijk_to_ras(fixed))
    difference = logic.createDifferenceVolume(fixed, warped)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(difference), difference_dhw(fixed_array, other))
    display = difference.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((2.0, 0.0))

    layers = []
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: layers.append(kwargs))
    logic.showConfidence(fixed, result.confidenceVolumeNode, 0.4)
    confidence_display = result.confidenceVolumeNode.GetDisplayNode()
    assert confidence_display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert (confidence_display.GetWindow(), confidence_display.GetLevel()) == pytest.approx((1.0, 0.5))
    assert layers[-1]["background"] is fixed and layers[-1]["foreground"] is result.confidenceVolumeNode
    assert layers[-1]["foregroundOpacity"] == 0.4

    transform = result.transformNode
    logic.showDeformation(transform, "Grid", region=fixed)
    transform_display = transform.GetDisplayNode()
    assert transform_display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID
    assert transform_display.GetRegionNode() is fixed
    assert transform_display.GetVisibility() and transform_display.GetVisibility2D()
    logic.showDeformation(transform, "Glyph", region=fixed)
    assert transform_display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GLYPH
    logic.showDeformation(transform, "None")
    assert not transform_display.GetVisibility()
    with pytest.raises(ValueError, match="not on the grid"):
        logic.createCheckerboardVolume(fixed, _volume(scene, "other grid", 12, size_ijk=(5, 5, 5)))


def test_core_error_is_reported_and_nothing_is_loaded(module, fake_core, monkeypatch):
    monkeypatch.setenv("FAKE_CORE_MODE", "error")
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 4), _volume(scene, "moving", 5)
    nodes_before = scene.GetNumberOfNodes()
    result = vmgga_module.VMGGARegistrationLogic().run(fixed=fixed, moving=moving, device="cpu")
    assert result.outcome.status.value == "failed"
    assert result.outcome.message == "moving.nrrd: the image is empty (exit status 2 (user error))"
    assert result.transformNode is None
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(module.temporary.iterdir()) == []


def test_async_run_can_be_cancelled(module, fake_core, monkeypatch):
    monkeypatch.setenv("FAKE_CORE_MODE", "hang")
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 6), _volume(scene, "moving", 7)
    logic = vmgga_module.VMGGARegistrationLogic()
    finished, progress = [], []
    returned = logic.run(fixed=fixed, moving=moving, device="cpu", wait=False,
                         on_progress=progress.append, on_finished=finished.append)  # fmt: skip
    assert returned is None and logic.isRunning and logic._timer.active
    with pytest.raises(RuntimeError, match="already running"):
        logic.run(fixed=fixed, moving=moving, device="cpu", wait=False)
    _tick_until(logic, lambda: progress)  # the GUI's timer ticks until the first progress line arrives
    assert progress[0].stage == "read"
    logic.cancel()
    _tick_until(logic, lambda: finished)
    assert finished[0].outcome.status.value == "cancelled"
    assert not logic.isRunning and not logic._timer.active
    assert list(module.temporary.iterdir()) == []


def _tick_until(logic, condition, timeout_s: float = 60.0) -> None:
    """Fire the Logic's timer (as Qt would every 200 ms) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run"
        logic._timer.slot()
        time.sleep(0.02)


def test_logic_rejects_invalid_inputs(module, tmp_path):
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 8), _volume(scene, "moving", 9)
    logic = vmgga_module.VMGGARegistrationLogic()
    with pytest.raises(ValueError, match="must be different"):
        logic.run(fixed=fixed, moving=fixed)
    with pytest.raises(ValueError, match="both a fixed and a moving volume"):
        logic.run(fixed=None, moving=moving)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="'empty' has no image data"):
        logic.run(fixed=fixed, moving=empty)
    grid = slicer.vtkSlicerTransformLogic().AddTransform(str(_grid_transform_file(tmp_path)), scene)
    with pytest.raises(ValueError, match="initial transform must be linear"):
        logic.run(fixed=fixed, moving=moving, initial_transform=grid)
    linear = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    with pytest.raises(ValueError, match="choose a general"):
        logic.run(fixed=fixed, moving=moving, output_transform=linear)
    assert list(module.temporary.iterdir()) == []  # nothing was exported


def _grid_transform_file(folder: Path) -> Path:
    """A displacement-field-only transform file (a non-linear transform)."""
    path = folder / "grid.h5"
    vectors = np.zeros((4, 4, 4, 3))
    vectors[..., 0] = 1.0
    field = sitk.GetImageFromArray(vectors, isVector=True)
    sitk.WriteTransform(sitk.DisplacementFieldTransform(field), str(path))
    return path


# --- the real core, through the Logic -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not stroke_pair_present(), reason="the stroke test data is missing")
def test_logic_with_the_real_core_recovers_a_known_motion(module):
    """As the module's Slicer self-test, on the stroke T2 (fixed) and a moved copy of T1 (moving)."""
    scene, vmgga_module = module.scene, module.module
    fixed = _load_volume(scene, STROKE_DIR / "T2.nii.gz")
    moving = _load_volume(scene, STROKE_DIR / "T1.nii.gz")
    motion = np.eye(4)  # rotation of 5 degrees about S, then a shift (RAS mm)
    angle = np.deg2rad(5.0)
    motion[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    motion[:3, 3] = (5.0, -4.0, 3.0)
    moving.SetIJKToRASMatrix(
        _vtk_matrix(motion @ _ijk_to_ras(moving))
    )  # what hardening a linear transform does

    result = vmgga_module.VMGGARegistrationLogic().run(
        fixed=fixed, moving=moving, preset="fast", device="cpu"
    )
    assert result.outcome.status.value == "succeeded", result.outcome.message

    # Fixed point x is where the motion put it in the moving volume: from parent(x) ~ motion(x).
    size = np.asarray(fixed.GetImageData().GetDimensions(), dtype=float)
    centre_ijk = np.append(size / 2.0, 1.0)
    centre_ras = (_ijk_to_ras(fixed) @ centre_ijk)[:3]
    from_parent = result.transformNode.GetTransformFromParent()
    errors = []
    for offset in ((0, 0, 0), (15, 0, 0), (0, 20, 0), (0, 0, 12), (-15, -15, 8)):
        point = centre_ras + offset
        errors.append(
            np.linalg.norm(
                np.asarray(from_parent.TransformPoint(point.tolist())) - (motion @ np.append(point, 1))[:3]
            )
        )
    print(f"recovered motion error at 5 points: max {max(errors):.2f} mm")
    assert max(errors) < 3.0

    from VMGGARegistrationLib.similarity import mutual_information

    fixed_image = sitk.ReadImage(str(STROKE_DIR / "T2.nii.gz"), sitk.sitkFloat32)
    moving_image = sitk.ReadImage(str(STROKE_DIR / "T1.nii.gz"), sitk.sitkFloat32)
    moving_image.SetDirection((_numpy_direction_lps(moving)).ravel().tolist())
    moving_image.SetOrigin(lps_from_ras(_ijk_to_ras(moving)[None, :3, 3])[0].tolist())
    identity = sitk.GetArrayFromImage(
        sitk.Resample(moving_image, fixed_image, sitk.Transform(), sitk.sitkLinear, 0.0)
    )
    fixed_array = sitk.GetArrayFromImage(fixed_image)
    mask = fixed_array > 0
    before = mutual_information(fixed_array, identity, mask=mask)
    after = mutual_information(fixed_array, slicer.util.arrayFromVolume(result.warpedVolumeNode), mask=mask)
    print(f"mutual information: identity {before:.3f}, registered {after:.3f}")
    assert after > before + 0.05


def _numpy_direction_lps(node) -> np.ndarray:
    """LPS direction cosines (columns) of a volume node."""
    ijk_to_ras = _ijk_to_ras(node)[:3, :3]
    spacing = np.linalg.norm(ijk_to_ras, axis=0)
    return np.diag([-1.0, -1.0, 1.0]) @ (ijk_to_ras / spacing)


# --- the scene: saving, repeated runs, closing -------------------------------------------------------


def _save_like_the_save_dialog(scene, folder: Path) -> list[str]:
    """What Slicer's Save dialog does by default: it ticks the storable nodes *modified since read*,
    writes each into ``folder`` (a default storage node where there is none, a file named after the
    node), then writes the ``.mrml``. Nodes it leaves unticked keep their old file names."""
    saved = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLStorableNode")
        if not node.GetModifiedSinceRead():
            continue
        if node.GetStorageNode() is None:
            node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        storage.SetFileName(str(folder / f"{node.GetName()}.{storage.GetDefaultWriteFileExtension()}"))
        assert storage.WriteData(node), node.GetName()
        saved.append(node.GetName())
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    return saved


def test_results_survive_saving_the_scene_to_a_new_folder(module, fake_core, tmp_path):
    """The run's work folder is deleted; the saved scene must still hold all three outputs."""
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 20), _volume(scene, "moving", 21)
    reused_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped")
    result = vmgga_module.VMGGARegistrationLogic().run(
        fixed=fixed, moving=moving, device="cpu", output_volume=reused_volume
    )
    assert result.outcome.status.value == "succeeded", result.outcome.message
    assert list(module.temporary.iterdir()) == []  # the files the outputs were read from are gone
    outputs = {
        "transform": result.transformNode,
        "warped": result.warpedVolumeNode,
        "confidence": result.confidenceVolumeNode,
    }
    points_ras = (_ijk_to_ras(fixed) @ np.array([[1.0, 2.0, 3.0, 1.0], [6.0, 5.0, 2.0, 1.0]]).T).T[:, :3]
    from_parent = result.transformNode.GetTransformFromParent()
    mapped_before = np.asarray([from_parent.TransformPoint(p.tolist()) for p in points_ras])
    arrays_before = {k: slicer.util.arrayFromVolume(outputs[k]).copy() for k in ("warped", "confidence")}

    folder = tmp_path / "saved scene"
    folder.mkdir()
    saved = _save_like_the_save_dialog(scene, folder)
    assert {node.GetName() for node in outputs.values()} <= set(saved)

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(folder / "scene.mrml"))
    assert reloaded.Connect()
    loaded = {key: reloaded.GetNodeByID(node.GetID()) for key, node in outputs.items()}
    assert all(node is not None for node in loaded.values()), loaded
    from_parent = loaded["transform"].GetTransformFromParent()
    mapped_after = np.asarray([from_parent.TransformPoint(p.tolist()) for p in points_ras])
    np.testing.assert_allclose(mapped_after, mapped_before, atol=1e-3)
    assert np.abs(mapped_after - points_ras).max() > 1.0  # a real (non-identity) transform came back
    for key in ("warped", "confidence"):
        np.testing.assert_allclose(slicer.util.arrayFromVolume(loaded[key]), arrays_before[key], rtol=1e-6)
        np.testing.assert_allclose(_ijk_to_ras(loaded[key]), _ijk_to_ras(fixed), atol=1e-4)
    fixed_role = slicer.vtkMRMLTransformNode.GetFixedNodeReferenceRole()
    assert loaded["transform"].GetNodeReference(fixed_role).GetName() == "fixed"


def test_repeated_runs_into_the_same_nodes_keep_the_scene_size(module, fake_core):
    """No orphan storage or display nodes: the node count is the same after every run."""
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 22), _volume(scene, "moving", 23)
    logic = vmgga_module.VMGGARegistrationLogic()
    first = logic.run(fixed=fixed, moving=moving, device="cpu")
    assert first.outcome.status.value == "succeeded", first.outcome.message
    count = scene.GetNumberOfNodes()
    assert _count(scene, "vtkMRMLStorageNode") == 0  # nothing points into the deleted work folder
    for _ in range(2):
        again = logic.run(
            fixed=fixed,
            moving=moving,
            device="cpu",
            output_transform=first.transformNode,
            output_volume=first.warpedVolumeNode,
            confidence_volume=first.confidenceVolumeNode,
        )
        assert again.outcome.status.value == "succeeded", again.outcome.message
        assert (again.transformNode, again.confidenceVolumeNode) == (
            first.transformNode,
            first.confidenceVolumeNode,
        )
        assert scene.GetNumberOfNodes() == count
    assert _count(scene, "vtkMRMLStorageNode") == 0


def test_outputs_may_not_overwrite_the_inputs(module):
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 24), _volume(scene, "moving", 25)
    logic = vmgga_module.VMGGARegistrationLogic()
    with pytest.raises(ValueError, match="output volume must not be the fixed or the moving"):
        logic.run(fixed=fixed, moving=moving, output_volume=moving)
    with pytest.raises(ValueError, match="confidence volume must not be the fixed or the moving"):
        logic.run(fixed=fixed, moving=moving, confidence_volume=fixed)
    other = _volume(scene, "other", 26)
    with pytest.raises(ValueError, match="must be different nodes"):
        logic.run(fixed=fixed, moving=moving, output_volume=other, confidence_volume=other)


@pytest.mark.parametrize("core_mode", ["hang", "ok"])
def test_closing_the_scene_during_a_run_cancels_it(module, fake_core, monkeypatch, core_mode):
    """hang: the core is still running; ok: it has finished but the GUI timer has not fired yet.

    Either way the run ends as cancelled, loads nothing into the closing scene, and its callback
    is called once, without an error."""
    monkeypatch.setenv("FAKE_CORE_MODE", core_mode)
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 27), _volume(scene, "moving", 28)
    logic = vmgga_module.VMGGARegistrationLogic()
    finished = []
    logic.run(fixed=fixed, moving=moving, device="cpu", wait=False, on_finished=finished.append)
    process = logic._state.process
    deadline = time.monotonic() + 60
    while not (process.finished if core_mode == "ok" else process.poll()):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    scene.Clear(0)  # what File > Close Scene does; fires StartCloseEvent

    assert len(finished) == 1
    assert finished[0].outcome.status.value == "cancelled"
    assert "scene was closed" in finished[0].outcome.message
    assert finished[0].transformNode is None
    assert not logic.isRunning and not logic._timer.active
    assert process.finished  # the core was killed (or had ended)
    assert _count(scene, "vtkMRMLVolumeNode") == 0 and _count(scene, "vtkMRMLTransformNode") == 0
    assert list(module.temporary.iterdir()) == []
    scene.Clear(0)  # the Logic no longer observes the scene
    assert len(finished) == 1


# --- the module's self-test, as ctest runs it ---------------------------------------------------------


def test_self_test_skips_cleanly_without_torch_or_the_core(module, monkeypatch):
    """Slicer's runUnitTest loads the module's TestCase with unittest: the registration test is
    skipped with its reason (nothing downloaded or installed); the input checks still run."""
    vmgga_module = module.module
    monkeypatch.delenv("VMGGA_FULL_SELF_TEST", raising=False)
    monkeypatch.setattr(
        vmgga_module.VMGGARegistrationLogic, "missingDependencies", staticmethod(lambda: ["torch"])
    )
    monkeypatch.setitem(sys.modules, "SampleData", None)  # importing it would fail the test
    suite = unittest.TestLoader().loadTestsFromTestCase(vmgga_module.VMGGARegistrationTest)
    result = unittest.TextTestRunner(stream=open(os.devnull, "w"), verbosity=0).run(suite)
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 2
    assert [(test._testMethodName, "torch" in reason) for test, reason in result.skipped] == [
        ("test_RegisterMovedMRHead", True)
    ]
    vmgga_module.VMGGARegistrationTest().runTest()  # Reload and Test: the same, without an error


def test_auto_selection_skips_volumes_the_selectors_hide(module):
    """Vector, diffusion, tensor and label map volumes are scalar volume subclasses in MRML."""
    from VMGGARegistrationLib.panel import auto_select_volumes

    scene, vmgga_module = module.scene, module.module
    for class_name in ("vtkMRMLVectorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode",
                       "vtkMRMLDiffusionTensorVolumeNode", "vtkMRMLLabelMapVolumeNode"):  # fmt: skip
        node = scene.AddNewNodeByClass(class_name)
        assert node.IsA("vtkMRMLScalarVolumeNode"), class_name
    ct, mr = _volume(scene, "CT", 30), _volume(scene, "MR", 31)
    candidates = vmgga_module.VMGGARegistrationLogic.volumeCandidates()
    assert len(candidates) == 6
    assert auto_select_volumes(candidates, None, None) == (ct.GetID(), mr.GetID())


def test_closing_the_scene_while_a_script_waits_returns_the_cancelled_run(module, fake_core, monkeypatch):
    """wait=True processes GUI events while waiting; one of them may close the scene."""
    monkeypatch.setenv("FAKE_CORE_MODE", "hang")
    scene, vmgga_module = module.scene, module.module
    fixed, moving = _volume(scene, "fixed", 32), _volume(scene, "moving", 33)
    closes = []

    def process_events():
        if not closes:
            closes.append(True)
            scene.Clear(0)

    monkeypatch.setattr(slicer.app, "processEvents", process_events)
    result = vmgga_module.VMGGARegistrationLogic().run(fixed=fixed, moving=moving, device="cpu", wait=True)
    assert result.outcome.status.value == "cancelled" and "scene was closed" in result.outcome.message
    assert list(module.temporary.iterdir()) == []


# --- installing: an old torch is offered an upgrade through the PyTorch extension ---------------------


class _PyTorchUtilsLogic:
    calls: list = []

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,  # noqa: N802
                     torchvisionVersionRequirement=None):  # fmt: skip
        """Signature of SlicerPyTorch's PyTorchUtilsLogic.installTorch."""
        self.calls.append(torchVersionRequirement)
        return types.SimpleNamespace(__version__="2.6.0")


@pytest.fixture
def installer(module, monkeypatch):
    """Stand-ins for PyTorchUtils, pip and the confirmation box; torch 2.1.0 is installed."""
    lib = sys.modules["VMGGARegistrationLib.dependencies"]
    real_version = lib.installed_version
    monkeypatch.setattr(
        lib, "installed_version", lambda name: "2.1.0" if name == "torch" else real_version(name)
    )
    _PyTorchUtilsLogic.calls = []
    monkeypatch.setitem(
        sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=_PyTorchUtilsLogic)
    )
    pip_calls, questions, answers = [], [], []
    monkeypatch.setattr(slicer.util, "pip_install", pip_calls.append)
    monkeypatch.setattr(
        slicer.util,
        "confirmOkCancelDisplay",
        lambda text, title=None: questions.append(title) or answers.pop(0),
    )
    monkeypatch.setattr(module.module.VMGGARegistrationLogic, "missingDependencies", staticmethod(lambda: []))
    return types.SimpleNamespace(pip=pip_calls, questions=questions, answers=answers, lib=lib)


def test_an_old_torch_is_upgraded_through_the_pytorch_extension(module, installer):
    logic = module.module.VMGGARegistrationLogic()
    assert logic.installedTorchStatus() == "unsupported"
    installer.answers[:] = [True, True]
    assert logic.installDependencies(askConfirmation=True, log=lambda text: None)
    plan = installer.lib.install_plan(MODULE_DIR, os.environ)
    assert installer.questions == ["Confirm Python package installation", "Upgrade PyTorch"]
    assert _PyTorchUtilsLogic.calls == [plan.torch_specifier]  # the core's own torch requirement
    assert plan.core_source == str(REPO_DIR)  # developer mode: this checkout
    assert len(installer.pip) == 2
    requirements_step, core_step = installer.pip
    assert requirements_step[:-2] == list(plan.requirements) and requirements_step[-2] == "-c"
    constraints = Path(requirements_step[-1]).read_text().split()
    assert f"numpy=={importlib.metadata.version('numpy')}" in constraints  # what Slicer ships stays
    assert core_step == ["--no-deps", plan.core_source]


def test_declining_the_torch_upgrade_installs_nothing(module, installer):
    installer.answers[:] = [True, False]
    assert not module.module.VMGGARegistrationLogic().installDependencies(askConfirmation=True)
    assert _PyTorchUtilsLogic.calls == [] and installer.pip == []
