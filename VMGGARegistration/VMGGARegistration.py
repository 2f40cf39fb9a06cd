"""VMGGA Registration: 3D Slicer scripted module for CT-MRI deformable registration.

The module does no registration itself. Its Logic exports the two volumes to a temporary folder,
runs the core (``PythonSlicer -m vmgga register ... --progress-json``) as a child process, streams
its JSON progress lines into the GUI and loads the outputs back: ``transform.h5`` (fixed -> moving,
the ITK resampling direction, which Slicer reads as the transform *from parent*: put the moving
volume under it to see it aligned with the fixed one), the warped volume and the confidence map.

Everything that can be written without Slicer lives in ``VMGGARegistrationLib`` and is tested with
pytest; this file is glue to Qt and MRML. Needs Slicer >= 5.8 (Python 3.12) and the PyTorch extension.

No ``from __future__ import annotations`` here: ``parameterNodeWrapper`` reads the parameter
class's annotations at run time, and older Slicer releases do not resolve string annotations.
"""

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTransformNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from VMGGARegistrationLib import dependencies, panel, review, similarity
from VMGGARegistrationLib.command import (
    Device,
    Matcher,
    Modality,
    Preset,
    RegisterRequest,
    build_register_command,
    python_executable,
    resolve_device,
)
from VMGGARegistrationLib.events import DoneEvent, ErrorEvent, LogLine, ProgressEvent
from VMGGARegistrationLib.outputs import RunOutcome, RunStatus, read_report, summarise_run
from VMGGARegistrationLib.process import CoreProcess, child_environment, wait_until_finished

#: Node reference roles set on the outputs of a run: the standard registration roles of
#: vtkMRMLTransformNode ("spatialRegistrationFixed" / "spatialRegistrationMoving"), which other
#: modules read, and the transform that produced a warped or confidence volume.
FIXED_VOLUME_REFERENCE = vtkMRMLTransformNode.GetFixedNodeReferenceRole()
MOVING_VOLUME_REFERENCE = vtkMRMLTransformNode.GetMovingNodeReferenceRole()
TRANSFORM_REFERENCE = "VMGGA.transform"
DIRECTION_ATTRIBUTE = "VMGGA.direction"
REPORT_ATTRIBUTE = "VMGGA.reportJson"

#: How often the GUI polls the running core for output (ms).
POLL_INTERVAL_MS = 200

#: Deformation display choices of the review section -> vtkMRMLTransformDisplayNode mode names.
DEFORMATION_MODES = {"Grid": "VIS_MODE_GRID", "Glyph": "VIS_MODE_GLYPH", "Contour": "VIS_MODE_CONTOUR"}


#
# VMGGARegistration
#


class VMGGARegistration(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("VMGGA Registration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["VMGGA Registration developers"]
        self.parent.helpText = _(
            "Deformable CT-MRI registration with the VMGGA core: pick a fixed and a moving volume, "
            "press Apply, then review the warped volume, the confidence map and the deformation. "
            "The output transform maps fixed to moving points (ITK resampling convention): place the "
            "moving volume under it to see it aligned with the fixed volume."
        )
        self.parent.acknowledgementText = _(
            "The module layout follows the Slicer scripted module template and extensions such as "
            "SlicerElastix, SlicerTotalSegmentator and SlicerMONAIAuto3DSeg."
        )


#
# VMGGARegistrationParameterNode
#


@parameterNodeWrapper
class VMGGARegistrationParameterNode:
    """The module's settings, stored in the scene (so they are saved with it).

    fixedVolume, movingVolume - the images to register (the result lives on the fixed grid).
    initialTransform - optional rough alignment, as one would apply it to the moving volume.
    outputTransform, outputVolume - where the transform and the warped volume go (None: new nodes).
    confidenceVolume - the confidence map of the last run (set by the Logic).
    preset, matcher, fixedModality, movingModality, device - options of ``vmgga register``.
    halfTurnSearch - ``--half-turn-search``: the affine stage also tries half turns (a turned object).
    keepTemporaryFiles - keep the exported inputs and the core's outputs on disk.
    foregroundOpacity - opacity of the warped volume over the fixed one in the slice views.
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    initialTransform: vtkMRMLTransformNode
    outputTransform: vtkMRMLTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    confidenceVolume: vtkMRMLScalarVolumeNode
    preset: Annotated[str, Choice([p.value for p in Preset])] = Preset.FAST.value
    matcher: Annotated[str, Choice([m.value for m in Matcher])] = Matcher.PRESET.value
    fixedModality: Annotated[str, Choice([m.value for m in Modality])] = Modality.AUTO.value
    movingModality: Annotated[str, Choice([m.value for m in Modality])] = Modality.AUTO.value
    device: Annotated[str, Choice([d.value for d in Device])] = Device.AUTO.value
    halfTurnSearch: bool = False
    keepTemporaryFiles: bool = False
    foregroundOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


#
# VMGGARegistrationWidget
#


class VMGGARegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: selectors bound to the parameter node, Apply/Cancel, progress, log and review tools."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VMGGARegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VMGGARegistrationLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependenciesButton)
        self.ui.beforeAfterButton.connect("toggled(bool)", self.onBeforeAfterToggled)
        self.ui.checkerboardButton.connect("clicked(bool)", self.onCheckerboardButton)
        self.ui.differenceButton.connect("clicked(bool)", self.onDifferenceButton)
        self.ui.confidenceCheckBox.connect("toggled(bool)", self.onConfidenceToggled)
        self.ui.deformationComboBox.connect("currentIndexChanged(int)", self.onDeformationModeChanged)
        self.ui.progressBar.hide()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.logic is not None:
            self.logic.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )

    def onSceneStartClose(self, caller, event) -> None:
        """End a running registration first (as cancelled), then let go of the parameter node."""
        self.logic.cancelForSceneClose()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Use the scene's parameter node; pre-select two volumes the selectors offer, to save clicks."""
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        fixedId, movingId = panel.auto_select_volumes(
            VMGGARegistrationLogic.volumeCandidates(),
            p.fixedVolume.GetID() if p.fixedVolume else None,
            p.movingVolume.GetID() if p.movingVolume else None,
        )
        if not p.fixedVolume and fixedId:
            p.fixedVolume = slicer.mrmlScene.GetNodeByID(fixedId)
        if not p.movingVolume and movingId:
            p.movingVolume = slicer.mrmlScene.GetNodeByID(movingId)

    def setParameterNode(self, inputParameterNode: VMGGARegistrationParameterNode | None) -> None:
        """Bind the GUI to ``inputParameterNode`` (widgets carry a SlicerParameterName property)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._updateButtonStates()
        if self._parameterNode and self._hasResults():
            self.logic.setForegroundOpacity(self._parameterNode.foregroundOpacity)

    def _hasResults(self) -> bool:
        """True once a run filled the outputs (the confidence volume is only ever set by a run)."""
        p = self._parameterNode
        return bool(p and p.fixedVolume and p.outputVolume and p.outputTransform and p.confidenceVolume)

    def _updateButtonStates(self) -> None:
        p = self._parameterNode
        states = panel.widget_states(
            panel.PanelInputs(
                has_fixed=bool(p and p.fixedVolume),
                has_moving=bool(p and p.movingVolume),
                same_volumes=bool(p and p.fixedVolume and p.fixedVolume == p.movingVolume),
                running=self.logic.isRunning,
                has_results=self._hasResults(),
                has_confidence=bool(p and p.confidenceVolume),
                has_transform=bool(p and p.outputTransform),
            )
        )
        for name, enabled in states.enabled.items():
            getattr(self.ui, name).enabled = enabled
        self.ui.applyButton.toolTip = _(states.apply_tooltip)

    # --- running -------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        """Install what is missing (after confirmation), then start the run without blocking."""
        with slicer.util.tryWithErrorDisplay(_("Failed to start the registration."), waitCursor=True):
            if not self.logic.installDependencies(askConfirmation=True, log=self._addLogNow):
                self.addLog(_("Registration not started: the Python packages are not installed."))
                return
            p = self._parameterNode
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.logic.run(
                fixed=p.fixedVolume,
                moving=p.movingVolume,
                preset=p.preset,
                matcher=p.matcher,
                fixed_modality=p.fixedModality,
                moving_modality=p.movingModality,
                device=p.device,
                half_turn_search=p.halfTurnSearch,
                initial_transform=p.initialTransform,
                output_transform=p.outputTransform,
                output_volume=p.outputVolume,
                confidence_volume=p.confidenceVolume,
                keep_temporary_files=p.keepTemporaryFiles,
                wait=False,
                on_progress=self.onProgress,
                on_log=self.addLog,
                on_finished=self.onFinished,
            )
            self.ui.progressBar.show()
            self._updateButtonStates()

    def onCancelButton(self) -> None:
        self.logic.cancel()

    def onInstallDependenciesButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python packages."), waitCursor=True):
            if self.logic.installDependencies(askConfirmation=True, upgrade=True, log=self._addLogNow):
                self.addLog(_("Python packages are installed."))

    def onProgress(self, event: ProgressEvent) -> None:
        self.ui.progressBar.value = round(100 * event.fraction)
        self.ui.statusLabel.text = panel.progress_text(event.stage, event.message)

    def addLog(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    def _addLogNow(self, text: str) -> None:
        """Log and repaint at once (for blocking steps such as pip installs)."""
        self.addLog(text)
        slicer.app.processEvents()

    def onFinished(self, result: "RegistrationResult") -> None:
        """Show the outcome (a suspect result with a warning); on success store and show the outputs."""
        view = panel.finished_view(
            result.outcome.status, result.outcome.message, result.report, self._parameterNode is not None
        )
        self.ui.statusLabel.text = view.status_text
        self.ui.progressBar.hide()
        if view.store_outputs:
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.outputTransform = result.transformNode
                self._parameterNode.outputVolume = result.warpedVolumeNode
                self._parameterNode.confidenceVolume = result.confidenceVolumeNode
            self.ui.beforeAfterButton.checked = False
            self.onBeforeAfterToggled(False)
        if view.warning:
            self.addLog(view.warning)
            slicer.util.warningDisplay(view.warning, windowTitle=_("Suspect registration result"))
        if view.error:
            slicer.util.errorDisplay(view.error)
        self._updateButtonStates()

    # --- review --------------------------------------------------------------------------

    def onBeforeAfterToggled(self, before: bool) -> None:
        """Checked: the original moving volume (before); unchecked: the warped volume (after)."""
        p = self._parameterNode
        if not self._hasResults():
            return
        self.ui.beforeAfterButton.text = _(panel.before_after_text(before))
        foreground = p.movingVolume if before else p.outputVolume
        self.logic.showOverlay(p.fixedVolume, foreground, p.foregroundOpacity)

    def onCheckerboardButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to create the checkerboard."), waitCursor=True):
            p = self._parameterNode
            node = self.logic.createCheckerboardVolume(p.fixedVolume, p.outputVolume)
            slicer.util.setSliceViewerLayers(background=node, foreground=None)

    def onDifferenceButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to create the difference image."), waitCursor=True):
            p = self._parameterNode
            node = self.logic.createDifferenceVolume(p.fixedVolume, p.outputVolume)
            slicer.util.setSliceViewerLayers(background=node, foreground=None)

    def onConfidenceToggled(self, show: bool) -> None:
        p = self._parameterNode
        if show and p.confidenceVolume:
            self.logic.showConfidence(p.fixedVolume, p.confidenceVolume, p.foregroundOpacity)
        elif self._hasResults():
            self.onBeforeAfterToggled(self.ui.beforeAfterButton.checked)

    def onDeformationModeChanged(self, index: int) -> None:
        p = self._parameterNode
        if p and p.outputTransform:
            mode = self.ui.deformationComboBox.currentText
            self.logic.showDeformation(p.outputTransform, mode, region=p.fixedVolume)


#
# VMGGARegistrationLogic
#


@dataclass
class RegistrationResult:
    """What :meth:`VMGGARegistrationLogic.run` produced; nodes are None unless it succeeded."""

    outcome: RunOutcome
    transformNode: vtkMRMLTransformNode | None = None
    warpedVolumeNode: vtkMRMLScalarVolumeNode | None = None
    confidenceVolumeNode: vtkMRMLScalarVolumeNode | None = None
    report: dict = field(default_factory=dict)
    outputDirectory: Path | None = None


@dataclass
class _RunState:
    """Book-keeping of the run in progress."""

    process: CoreProcess
    workDir: Path
    outputDir: Path
    fixed: vtkMRMLScalarVolumeNode
    moving: vtkMRMLScalarVolumeNode
    outputTransform: vtkMRMLTransformNode | None
    outputVolume: vtkMRMLScalarVolumeNode | None
    confidenceVolume: vtkMRMLScalarVolumeNode | None
    keepTemporaryFiles: bool
    onProgress: Callable | None
    onLog: Callable | None
    onFinished: Callable | None
    events: list = field(default_factory=list)


class VMGGARegistrationLogic(ScriptedLoadableModuleLogic):
    """Registration without the GUI: usable from scripts, the Python console and tests.

    Example::

        logic = VMGGARegistrationLogic()
        logic.installDependencies(askConfirmation=False)
        result = logic.run(fixed=ctNode, moving=mrNode, preset="fast", wait=True)
        mrNode.SetAndObserveTransformNodeID(result.transformNode.GetID())  # aligned with ctNode
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._state: _RunState | None = None
        self._lastResult: RegistrationResult | None = None
        self._sceneCloseObservation: int | None = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onTimer)

    def getParameterNode(self) -> VMGGARegistrationParameterNode:
        return VMGGARegistrationParameterNode(super().getParameterNode())

    @property
    def isRunning(self) -> bool:
        return self._state is not None

    @staticmethod
    def volumeCandidates() -> list:
        """``(node ID, class name)`` of the scene's volumes, in scene order (for auto-selection)."""
        scene = slicer.mrmlScene
        nodes = [
            scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))
        ]
        return [(node.GetID(), node.GetClassName()) for node in nodes]

    # --- dependencies --------------------------------------------------------------------

    @staticmethod
    def missingDependencies() -> list:
        """Python modules the core needs that cannot be imported yet (checked without importing)."""
        return dependencies.missing_modules(["torch", "vmgga"], importlib.util.find_spec)

    @staticmethod
    def installedTorchStatus() -> str:
        """``missing``, ``ok`` or ``unsupported``: the installed torch against the installed core's needs."""
        try:
            requires = importlib.metadata.requires(dependencies.CORE_DISTRIBUTION) or []
        except importlib.metadata.PackageNotFoundError:
            requires = []
        specifier = dependencies.torch_specifier(requires)
        return dependencies.torch_status(dependencies.installed_version("torch"), specifier).value

    def installDependencies(
        self, askConfirmation: bool = True, upgrade: bool = False, log=logging.info
    ) -> bool:
        """Install torch (PyTorch extension), the core and its requirements; False if the user declined.

        What is installed is read from the core's own package (``dependencies.install_plan``): the
        wheel shipped in ``Resources/wheels`` or, in developer mode, the repository's pyproject.
        Packages Slicer ships (``dependencies.SLICER_PROVIDED``) and torch are pinned to their
        installed versions with a pip constraints file, so they are never replaced.
        """
        if not upgrade and not self.missingDependencies() and self.installedTorchStatus() == "ok":
            return True
        plan = dependencies.install_plan(Path(__file__).resolve().parent, os.environ)
        torchStatus = dependencies.torch_status(dependencies.installed_version("torch"), plan.torch_specifier)
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _(
                "VMGGA Registration needs PyTorch (torch{torch}) and the VMGGA core Python package. "
                "Installing them needs a network connection and may take several minutes. "
                "Click OK to proceed."
            ).format(torch=plan.torch_specifier),
            _("Confirm Python package installation"),
        ):
            return False
        if not self._installTorch(plan.torch_specifier, torchStatus, askConfirmation, log):
            return False
        self._installCore(plan, log, upgrade)
        importlib.invalidate_caches()
        return True

    @staticmethod
    def _installTorch(specifier: str, status, askConfirmation: bool, log) -> bool:
        """Install torch, or upgrade one outside ``specifier``, through the PyTorch extension.

        Returns False when the user declined the upgrade of an unsupported torch.
        """
        if status == dependencies.TorchStatus.OK:
            return True
        try:
            import PyTorchUtils
        except ModuleNotFoundError as error:
            raise RuntimeError(
                "VMGGA Registration requires the PyTorch extension: install it from the Extensions Manager."
            ) from error
        if status == dependencies.TorchStatus.UNSUPPORTED:
            installed = dependencies.installed_version("torch")
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _(
                    "PyTorch {installed} is installed, but VMGGA Registration needs torch{specifier}. "
                    "Click OK to install a suitable PyTorch (Slicer must then be restarted)."
                ).format(installed=installed, specifier=specifier),
                _("Upgrade PyTorch"),
            ):
                return False
        log(_("Installing PyTorch{specifier} through the PyTorch extension...").format(specifier=specifier))
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=specifier
        )
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; use the PyTorch Util module to install it.")
        if status == dependencies.TorchStatus.UNSUPPORTED:
            log(_("PyTorch was upgraded: restart Slicer before registering."))
        return True

    @staticmethod
    def _installCore(plan, log, upgrade: bool) -> None:
        constraints = Path(slicer.util.tempDirectory("VMGGARegistration-pip")) / "constraints.txt"
        pinned = dependencies.SLICER_PROVIDED + dependencies.TORCH_PACKAGES
        constraints.write_text("\n".join(dependencies.constraint_lines(pinned)) + "\n", encoding="utf-8")
        log(_("Installing requirements: {requirements}").format(requirements=", ".join(plan.requirements)))
        log(_("Installing the VMGGA core from {source}...").format(source=plan.core_source))
        for arguments in dependencies.pip_steps(plan, constraints, upgrade):
            slicer.util.pip_install(arguments)

    # --- running -------------------------------------------------------------------------

    def run(
        self,
        fixed: vtkMRMLScalarVolumeNode,
        moving: vtkMRMLScalarVolumeNode,
        preset: str = Preset.FAST.value,
        fixed_modality: str = Modality.AUTO.value,
        moving_modality: str = Modality.AUTO.value,
        device: str = Device.AUTO.value,
        initial_transform: vtkMRMLTransformNode | None = None,
        matcher: str = Matcher.PRESET.value,
        half_turn_search: bool = False,
        output_transform: vtkMRMLTransformNode | None = None,
        output_volume: vtkMRMLScalarVolumeNode | None = None,
        confidence_volume: vtkMRMLScalarVolumeNode | None = None,
        keep_temporary_files: bool = False,
        wait: bool = True,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_finished: Callable[[RegistrationResult], None] | None = None,
    ) -> RegistrationResult | None:
        """Register ``moving`` to ``fixed`` with the core running as a child process.

        With ``wait=True`` this returns the :class:`RegistrationResult` (events are processed while
        waiting, so the GUI still repaints). With ``wait=False`` it returns None at once and calls
        ``on_finished(result)`` later; ``cancel()`` stops the run, and so does closing the scene
        (the run then ends as cancelled and loads nothing).

        ``output_transform``, ``output_volume`` and ``confidence_volume`` receive the results (None:
        new nodes); reusing them keeps the scene from growing with every run.

        Raises:
            ValueError: for missing/identical volumes or options outside the core's contract.
            RuntimeError: when a run is already going or the Python packages are missing.
        """
        self._checkInputs(fixed, moving, initial_transform, output_transform)
        self._checkOutputVolumes(fixed, moving, output_volume, confidence_volume)
        if self.isRunning:
            raise RuntimeError("a registration is already running; cancel it first")
        missing = self.missingDependencies()
        if missing:
            raise RuntimeError(f"missing Python packages {missing}: call installDependencies() first")
        workDir = Path(slicer.util.tempDirectory("VMGGARegistration"))
        try:
            request = RegisterRequest(
                fixed_path=self._writeVolume(fixed, workDir / "fixed.nrrd", on_log),
                moving_path=self._writeVolume(moving, workDir / "moving.nrrd", on_log),
                output_dir=workDir / "output",
                preset=preset,
                matcher=matcher,
                fixed_modality=fixed_modality,
                moving_modality=moving_modality,
                # an explicit "cuda" is passed on as it is (the core reports a missing GPU itself)
                device=resolve_device(device, self._cudaAvailable() if device == Device.AUTO.value else True),
                initial_transform_path=self._writeTransform(initial_transform, workDir / "initial.h5"),
                half_turn_search=half_turn_search,
            )
            command = build_register_command(python_executable(slicer.app.slicerHome), request)
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        process = CoreProcess(command, env=self._childEnvironment(), cwd=workDir)
        self._state = _RunState(
            process, workDir, request.output_dir, fixed, moving, output_transform, output_volume,
            confidence_volume, keep_temporary_files, on_progress, on_log, on_finished,
        )  # fmt: skip
        self._log(" ".join(command))
        try:
            process.start()
        except OSError:
            self._state = None
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        self._sceneCloseObservation = slicer.mrmlScene.AddObserver(
            slicer.mrmlScene.StartCloseEvent, self.cancelForSceneClose
        )
        if not wait:
            self._timer.start()
            return None
        wait_until_finished(process, self._dispatch, idle=slicer.app.processEvents)
        # the scene may have been closed while waiting: that run has already ended, as cancelled
        return self._finish() if self._state is not None else self._lastResult

    def cancel(self) -> None:
        """Kill the running core (and its children); the run ends as cancelled."""
        if self._state is not None:
            self._log(_("Cancelling..."))
            self._state.process.cancel()

    def cancelForSceneClose(self, caller=None, event=None) -> None:
        """The scene is closing: end the run now as cancelled, loading nothing into the scene."""
        if self._state is None:
            return
        self._log(_("The scene is closing: cancelling the registration."))
        self._state.process.cancel()
        self._timer.stop()
        onFinished = self._state.onFinished
        result = self._finish(sceneClosing=True)
        if onFinished:
            onFinished(result)

    @staticmethod
    def _checkInputs(fixed, moving, initialTransform, outputTransform) -> None:
        if fixed is None or moving is None:
            raise ValueError("both a fixed and a moving volume are required")
        if fixed == moving:
            raise ValueError("the fixed and the moving volume must be different nodes")
        for node in (fixed, moving):
            if node.GetImageData() is None:
                raise ValueError(f"volume '{node.GetName()}' has no image data")
        if initialTransform is not None and not initialTransform.IsLinear():
            raise ValueError("the initial transform must be linear (the core starts from an affine)")
        if outputTransform is not None and outputTransform.IsA("vtkMRMLLinearTransformNode"):
            raise ValueError(
                "the output transform is deformable: choose a general (not linear) transform node"
            )

    @staticmethod
    def _checkOutputVolumes(fixed, moving, outputVolume, confidenceVolume) -> None:
        """The outputs are overwritten: none may be an input, nor the two the same node."""
        for name, node in (("output volume", outputVolume), ("confidence volume", confidenceVolume)):
            if node is not None and node in (fixed, moving):
                raise ValueError(f"the {name} must not be the fixed or the moving volume")
        if outputVolume is not None and outputVolume == confidenceVolume:
            raise ValueError("the output volume and the confidence volume must be different nodes")

    @staticmethod
    def _cudaAvailable() -> bool:
        import torch

        return bool(torch.cuda.is_available())

    @staticmethod
    def _childEnvironment() -> dict:
        """Slicer's startup environment (what PythonSlicer expects), with unbuffered output."""
        return child_environment(slicer.util.startupEnvironment())

    def _writeVolume(self, node, path: Path, onLog) -> Path:
        """Write ``node`` (as stored, without its parent transforms) to ``path``."""
        if node.GetParentTransformNode() is not None:
            message = f"volume '{node.GetName()}' is under a transform that is ignored; harden it to use it"
            (onLog or logging.warning)(message)
        storageNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        try:
            storageNode.SetFileName(str(path))
            storageNode.UseCompressionOff()
            if not storageNode.WriteData(node):
                raise RuntimeError(f"could not write volume '{node.GetName()}' to {path}")
        finally:
            storageNode.UnRegister(None)
        return path

    @staticmethod
    def _writeTransform(node, path: Path) -> Path | None:
        """Write a transform as an ITK file: Slicer writes the transform from parent (fixed -> moving)."""
        if node is None:
            return None
        storageNode = slicer.vtkMRMLTransformStorageNode()
        storageNode.SetFileName(str(path))
        if not storageNode.WriteData(node):
            raise RuntimeError(f"could not write transform '{node.GetName()}' to {path}")
        return path

    def _log(self, text: str) -> None:
        logging.info(text)
        if self._state is not None and self._state.onLog:
            self._state.onLog(text)

    def _dispatch(self, events: list) -> None:
        """Hand each new event to the callbacks and keep it for the summary."""
        state = self._state
        if state is None:  # the run already ended (the scene was closed while waiting)
            return
        state.events.extend(events)
        for event in events:
            if isinstance(event, ProgressEvent) and state.onProgress:
                state.onProgress(event)
            if isinstance(event, ProgressEvent):
                self._log(f"[{event.stage} {100 * event.fraction:.0f}%] {event.message}")
            elif isinstance(event, ErrorEvent):
                self._log(f"error: {event.message}")
            elif isinstance(event, LogLine):
                self._log(event.text)
            elif isinstance(event, DoneEvent):
                self._log(_("The core finished; loading its outputs..."))

    def _onTimer(self) -> None:
        if self._state is None:
            self._timer.stop()
            return
        self._dispatch(self._state.process.poll())
        if self._state.process.finished:
            self._timer.stop()
            onFinished = self._state.onFinished
            result = self._finish()
            if onFinished:
                onFinished(result)

    def _finish(self, sceneClosing: bool = False) -> RegistrationResult:
        """Summarise the ended run, load its outputs on success and clean up the work folder.

        ``sceneClosing``: the run counts as cancelled even if the core had already finished, and
        nothing is loaded (its input nodes are about to be removed).
        """
        state = self._state
        self._stopObservingScene()
        self._dispatch(state.process.poll())
        outcome = summarise_run(
            state.events,
            state.process.return_code,
            state.workDir,
            cancelled=state.process.cancelled or sceneClosing,
        )
        if sceneClosing:
            outcome = RunOutcome(
                RunStatus.CANCELLED,
                _("registration cancelled: the scene was closed"),
                return_code=outcome.return_code,
            )
        result = RegistrationResult(outcome, outputDirectory=state.outputDir)
        try:
            if outcome.status == RunStatus.SUCCEEDED:
                self._loadOutputs(state, result)
        except Exception as error:  # a failed load must still end the run and re-enable the GUI
            logging.exception("loading the registration outputs failed")
            result = RegistrationResult(
                RunOutcome(
                    RunStatus.FAILED, f"could not load the outputs: {error}", return_code=outcome.return_code
                ),
                outputDirectory=state.outputDir,
            )
        finally:
            self._log(result.outcome.message)
            self._state = None
        if not state.keepTemporaryFiles:
            shutil.rmtree(state.workDir, ignore_errors=True)
            result.outputDirectory = None
        self._lastResult = result
        return result

    def _stopObservingScene(self) -> None:
        if self._sceneCloseObservation is not None:
            slicer.mrmlScene.RemoveObserver(self._sceneCloseObservation)
            self._sceneCloseObservation = None

    def _loadOutputs(self, state: _RunState, result: RegistrationResult) -> None:
        """Load transform, warped and confidence volumes into the output nodes and link them together.

        The files lie in the run's work folder, which is deleted afterwards: their content is copied
        into output nodes that have no storage node pointing there (see :meth:`_copyLoaded`).
        """
        outputs = result.outcome.outputs
        baseName = f"{state.moving.GetName()} to {state.fixed.GetName()}"
        transformNode = self._copyLoaded(
            slicer.util.loadTransform(str(outputs.transform)),
            state.outputTransform,
            "vtkMRMLTransformNode",
            f"{baseName} (VMGGA)",
        )
        # {"show": False}: the caller decides what the slice views show (a fresh dict: loading edits it)
        warpedNode = self._copyLoaded(
            slicer.util.loadVolume(str(outputs.warped), {"show": False}),
            state.outputVolume,
            "vtkMRMLScalarVolumeNode",
            f"{state.moving.GetName()} warped",
        )
        confidenceNode = self._copyLoaded(
            slicer.util.loadVolume(str(outputs.confidence), {"show": False}),
            state.confidenceVolume,
            "vtkMRMLScalarVolumeNode",
            f"{baseName} confidence",
        )
        result.report = read_report(outputs.report)
        self._linkOutputs(state, transformNode, warpedNode, confidenceNode, result.report)
        result.transformNode, result.warpedVolumeNode = transformNode, warpedNode
        result.confidenceVolumeNode = confidenceNode

    @classmethod
    def _copyLoaded(cls, loaded, target, className: str, name: str):
        """Copy a freshly loaded node's content into ``target`` (or a new node), then remove ``loaded``.

        The loaded node's storage node points into the run's work folder, which is deleted, and it
        counts as unmodified since read, so Slicer's Save dialog would skip it and the saved scene
        would refer to missing files. The output node never gets that storage node and is marked as
        modified (``StorableModified``), so saving the scene writes its content. ``loaded`` goes
        together with its display and storage nodes (``RemoveNode`` leaves those behind).
        """
        if target is None:
            target = slicer.mrmlScene.AddNewNodeByClass(className, slicer.mrmlScene.GenerateUniqueName(name))
        if loaded.IsA("vtkMRMLTransformNode"):
            target.SetAndObserveTransformFromParent(loaded.GetTransformFromParent())
        else:
            ijkToRas = vtk.vtkMatrix4x4()
            loaded.GetIJKToRASMatrix(ijkToRas)
            target.SetAndObserveImageData(loaded.GetImageData())
            target.SetIJKToRASMatrix(ijkToRas)
            target.CreateDefaultDisplayNodes()
        target.StorableModified()
        cls._removeWithHelpers(loaded)
        return target

    @staticmethod
    def _removeWithHelpers(node) -> None:
        """Remove ``node`` and its display and storage nodes from the scene."""
        helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        slicer.mrmlScene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and helper.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(helper)

    @staticmethod
    def _linkOutputs(state: _RunState, transformNode, warpedNode, confidenceNode, report: dict) -> None:
        """Node references so that other modules, scripts and a saved scene know what relates to what.

        The transform uses ``vtkMRMLTransformNode``'s standard registration roles (fixed, moving).
        """
        import json

        for node in (transformNode, warpedNode, confidenceNode):
            node.SetNodeReferenceID(FIXED_VOLUME_REFERENCE, state.fixed.GetID())
            node.SetNodeReferenceID(MOVING_VOLUME_REFERENCE, state.moving.GetID())
        transformNode.SetAttribute(
            DIRECTION_ATTRIBUTE,
            "from parent = fixed to moving (ITK resampling); apply it to the moving volume",
        )
        transformNode.SetAttribute(REPORT_ATTRIBUTE, json.dumps(report))
        for node in (warpedNode, confidenceNode):
            node.SetNodeReferenceID(TRANSFORM_REFERENCE, transformNode.GetID())

    # --- review --------------------------------------------------------------------------

    @staticmethod
    def showOverlay(background, foreground, opacity: float) -> None:
        """``background`` under ``foreground`` in every slice view at ``opacity``."""
        slicer.util.setSliceViewerLayers(
            background=background, foreground=foreground, foregroundOpacity=opacity, fit=True
        )

    @staticmethod
    def setForegroundOpacity(opacity: float) -> None:
        for compositeNode in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
            compositeNode.SetForegroundOpacity(opacity)

    def showConfidence(self, background, confidence, opacity: float) -> None:
        """The confidence map (0..1) in a rainbow colour table over ``background``."""
        confidence.CreateDefaultDisplayNodes()  # no-op when it already has one
        displayNode = confidence.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
        displayNode.AutoWindowLevelOff()
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        self.showOverlay(background, confidence, opacity)

    @staticmethod
    def showDeformation(transformNode, mode: str, region=None) -> None:
        """Grid / Glyph / Contour visualisation of the transform in the slice views; "None" hides it."""
        transformNode.CreateDefaultDisplayNodes()
        displayNode = transformNode.GetDisplayNode()
        if mode not in DEFORMATION_MODES:
            displayNode.SetVisibility(False)
            return
        displayNode.SetVisualizationMode(getattr(slicer.vtkMRMLTransformDisplayNode, DEFORMATION_MODES[mode]))
        if region is not None:
            displayNode.SetAndObserveRegionNode(region)
        displayNode.SetVisibility(True)
        displayNode.SetVisibility2D(True)
        displayNode.SetVisibility3D(False)

    def createCheckerboardVolume(self, fixed, warped, tiles: int = 8):
        """A new volume: fixed and warped (normalised to [0, 1]) in alternating 3D tiles."""
        arrays = self._arraysOnSameGrid(fixed, warped)
        return self._newVolumeLike(fixed, review.checkerboard_dhw(*arrays, tiles=tiles), "checkerboard")

    def createDifferenceVolume(self, fixed, warped):
        """A new volume: normalised fixed minus normalised warped, shown in a diverging colour table."""
        node = self._newVolumeLike(
            fixed, review.difference_dhw(*self._arraysOnSameGrid(fixed, warped)), "difference"
        )
        displayNode = node.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileDivergingBlueRed.txt")
        displayNode.AutoWindowLevelOff()
        displayNode.SetWindowLevelMinMax(-1.0, 1.0)
        return node

    @staticmethod
    def _arraysOnSameGrid(fixed, warped) -> tuple:
        first, second = slicer.util.arrayFromVolume(fixed), slicer.util.arrayFromVolume(warped)
        if first.shape != second.shape:
            raise ValueError(f"'{warped.GetName()}' is not on the grid of '{fixed.GetName()}'")
        return first, second

    @staticmethod
    def _newVolumeLike(reference, array, suffix: str):
        name = slicer.mrmlScene.GenerateUniqueName(f"{reference.GetName()} {suffix}")
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        ijkToRas = vtk.vtkMatrix4x4()
        reference.GetIJKToRASMatrix(ijkToRas)
        node.SetIJKToRASMatrix(ijkToRas)
        slicer.util.updateVolumeFromArray(node, array)
        node.CreateDefaultDisplayNodes()
        return node


#
# VMGGARegistrationTest
#


class VMGGARegistrationTest(ScriptedLoadableModuleTest):
    """Run by Slicer's test runner (Reload and Test, or ctest with the built extension).

    The registration test downloads MRHead (SampleData), moves a copy by a known rigid motion and
    checks that the registration recovers it: the transform node exists, maps fixed points to
    where the known motion put them (within 3 mm), and similarity improves over identity.
    Without torch or the core (an extension build server) it is skipped with a message; set
    ``VMGGA_FULL_SELF_TEST=1`` to have it install them and run.
    """

    #: The known motion applied to the moving copy: rotation about S (degrees) and shift (RAS mm).
    ROTATION_DEG = 6.0
    TRANSLATION_RAS_MM = (6.0, -4.0, 3.0)

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RejectsInvalidInputs()
        self.setUp()
        try:
            self.test_RegisterMovedMRHead()
        except unittest.SkipTest as skipped:
            self.delayDisplay(f"Skipped: {skipped}")

    def test_RejectsInvalidInputs(self):
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        logic = VMGGARegistrationLogic()
        with self.assertRaises(ValueError):
            logic.run(fixed=volume, moving=volume)
        with self.assertRaises(ValueError):
            logic.run(fixed=None, moving=volume)

    def test_RegisterMovedMRHead(self):
        reason = dependencies.self_test_skip_reason(VMGGARegistrationLogic.missingDependencies(), os.environ)
        if reason:
            logging.warning(reason)
            self.skipTest(reason)
        import SampleData

        self.delayDisplay("Loading MRHead and making a moved copy")
        fixed = SampleData.downloadSample("MRHead")
        motion = self._knownMotion()
        moving = self._movedCopy(fixed, motion)
        logic = VMGGARegistrationLogic()
        self.assertTrue(logic.installDependencies(askConfirmation=False))

        self.delayDisplay("Registering with the fast preset")
        result = logic.run(fixed=fixed, moving=moving, preset="fast", device="auto", wait=True)
        self.assertEqual(result.outcome.status, RunStatus.SUCCEEDED, result.outcome.message)
        self.assertIsNotNone(result.transformNode)
        self.assertTrue(result.transformNode.IsA("vtkMRMLTransformNode"))
        self.assertEqual(result.transformNode.GetNodeReferenceID(FIXED_VOLUME_REFERENCE), fixed.GetID())
        self.assertEqual(result.transformNode.GetNodeReferenceID(MOVING_VOLUME_REFERENCE), moving.GetID())

        self._assertRecoversMotion(result.transformNode, motion, fixed)
        before = self._similarity(fixed, self._movingOnFixedGridIdentity(fixed, moving))
        after = self._similarity(fixed, slicer.util.arrayFromVolume(result.warpedVolumeNode))
        logging.info(f"normalised correlation: identity {before:.3f}, registered {after:.3f}")
        self.assertGreater(after, before + 0.05)
        self.delayDisplay("Test passed")

    def _knownMotion(self) -> vtk.vtkTransform:
        """Rigid motion (RAS) that moves the copy: rotation about the S axis, then a shift."""
        motion = vtk.vtkTransform()
        motion.PostMultiply()
        motion.RotateZ(self.ROTATION_DEG)
        motion.Translate(*self.TRANSLATION_RAS_MM)
        return motion

    @staticmethod
    def _movedCopy(fixed, motion: vtk.vtkTransform):
        """A copy of ``fixed`` whose voxels sit at ``motion(x)`` in the world (geometry only)."""
        moving = slicer.modules.volumes.logic().CloneVolume(slicer.mrmlScene, fixed, "MRHead moved")
        transformNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transformNode.SetMatrixTransformToParent(motion.GetMatrix())
        moving.SetAndObserveTransformNodeID(transformNode.GetID())
        slicer.vtkSlicerTransformLogic().hardenTransform(moving)
        slicer.mrmlScene.RemoveNode(transformNode)
        return moving

    def _assertRecoversMotion(self, transformNode, motion: vtk.vtkTransform, fixed) -> None:
        """From parent = fixed -> moving: the fixed point x lies at motion(x) in the moving volume."""
        bounds = [0.0] * 6
        fixed.GetRASBounds(bounds)
        centre = [(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)]
        fromParent = transformNode.GetTransformFromParent()
        for offset in ((0, 0, 0), (20, 0, 0), (0, 25, 0), (0, 0, 15), (-20, -20, 10)):
            point = [c + o for c, o in zip(centre, offset, strict=True)]
            mapped, expected = fromParent.TransformPoint(point), motion.TransformPoint(point)
            error = sum((m - e) ** 2 for m, e in zip(mapped, expected, strict=True)) ** 0.5
            self.assertLess(error, 3.0, f"fixed point {point}: mapped to {mapped}, expected {expected}")

    @staticmethod
    def _movingOnFixedGridIdentity(fixed, moving):
        """The moving volume resampled onto the fixed grid without any transform (the 'before')."""
        import SimpleITK as sitk
        import sitkUtils

        fixedImage = sitkUtils.PullVolumeFromSlicer(fixed)
        movingImage = sitkUtils.PullVolumeFromSlicer(moving)
        resampled = sitk.Resample(movingImage, fixedImage, sitk.Transform(), sitk.sitkLinear, 0.0)
        return sitk.GetArrayFromImage(resampled)

    @staticmethod
    def _similarity(fixed, otherArray) -> float:
        fixedArray = slicer.util.arrayFromVolume(fixed)
        return similarity.normalized_cross_correlation(
            fixedArray, otherArray, mask=fixedArray > fixedArray.mean()
        )
