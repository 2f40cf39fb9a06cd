"""Decisions of the module's panel that need no Qt and no MRML.

Which volumes to pre-select, which widgets are enabled, and what the status line and message
boxes say when a run ends. The Widget only applies these answers to the ``.ui``'s widgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .outputs import RunStatus

#: Node classes the fixed/moving selectors show: the ``.ui``'s ``nodeTypes``, with
#: ``showChildNodeTypes`` off, so vector, diffusion, tensor and label map volumes are not offered.
VOLUME_SELECTOR_CLASSES = ("vtkMRMLScalarVolumeNode",)

#: Widgets of the review section (``.ui`` names), usable once a run filled the outputs.
REVIEW_WIDGETS = ("beforeAfterButton", "checkerboardButton", "differenceButton")


def auto_select_volumes(
    candidates: Sequence[tuple[str, str]], fixed_id: str | None, moving_id: str | None
) -> tuple[str | None, str | None]:
    """Fill empty fixed/moving choices with the first selectable volumes, never the same one twice.

    Args:
        candidates: ``(node ID, class name)`` of the scene's volumes, in scene order; only the
            classes in :data:`VOLUME_SELECTOR_CLASSES` (exactly, not subclasses) can be chosen.
        fixed_id, moving_id: the current choices (``None``: empty); a choice made is kept.

    Returns:
        ``(fixed_id, moving_id)``.
    """
    selectable = [node_id for node_id, class_name in candidates if class_name in VOLUME_SELECTOR_CLASSES]
    if fixed_id is None:
        fixed_id = next((i for i in selectable if i != moving_id), None)
    if moving_id is None:
        moving_id = next((i for i in selectable if i != fixed_id), None)
    return fixed_id, moving_id


@dataclass(frozen=True)
class PanelInputs:
    """What the enabled states depend on."""

    has_fixed: bool
    has_moving: bool
    same_volumes: bool  # fixed and moving are the same node
    running: bool
    has_results: bool  # a run filled the output transform, warped and confidence volumes
    has_confidence: bool
    has_transform: bool


@dataclass(frozen=True)
class WidgetStates:
    """``enabled`` per ``.ui`` widget name, and the Apply button's tool tip."""

    enabled: dict[str, bool]
    apply_tooltip: str


def widget_states(inputs: PanelInputs) -> WidgetStates:
    """Apply only with two different volumes and no run going; review tools only with results."""
    ready = inputs.has_fixed and inputs.has_moving and not inputs.same_volumes
    idle = not inputs.running
    enabled = {
        "applyButton": ready and idle,
        "cancelButton": inputs.running,
        "installDependenciesButton": idle,
        "confidenceCheckBox": inputs.has_confidence and idle,
        "deformationComboBox": inputs.has_transform and idle,
    }
    enabled.update({name: inputs.has_results and idle for name in REVIEW_WIDGETS})
    tooltip = "Run the registration." if ready else "Select two different volumes."
    return WidgetStates(enabled, tooltip)


def progress_text(stage: str, message: str) -> str:
    """Status line while the core runs: ``'affine: level 2'``, or the stage alone."""
    return f"{stage}: {message}" if message else stage


def before_after_text(before: bool) -> str:
    """Label of the before/after toggle for the state it shows."""
    return "Showing: before registration" if before else "Showing: after registration"


@dataclass(frozen=True)
class ReportVerdict:
    """The core's own judgement of a finished run (``report.json``'s ``status``)."""

    suspect: bool
    reasons: tuple[str, ...] = ()


def report_verdict(report: Mapping) -> ReportVerdict:
    """``status: "suspect"`` with its ``suspect_reasons``; a missing status counts as ``ok``.

    Any status other than ``ok`` or ``suspect`` is treated as suspect too, naming the value, so a
    result is never presented as trusted because its report could not be read.
    """
    status = report.get("status", "ok")
    if status == "ok":
        return ReportVerdict(False)
    reasons = report.get("suspect_reasons") or []
    reasons = [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)]
    if status != "suspect":
        reasons.insert(0, f"the report's status is {status!r} (expected 'ok' or 'suspect')")
    return ReportVerdict(True, tuple(reasons) or ("the core marked the result as suspect",))


@dataclass(frozen=True)
class FinishedView:
    """What the panel shows when a run ends."""

    status_text: str  # the status line under the progress bar
    store_outputs: bool  # put the output nodes into the parameter node and show them
    error: str | None = None  # for an error message box
    warning: str | None = None  # for a warning message box


def finished_view(status: RunStatus, message: str, report: Mapping, has_parameter_node: bool) -> FinishedView:
    """Status line, message boxes and whether to keep the outputs, for a run that ended.

    ``has_parameter_node`` is False while the scene closes: then nothing is stored.
    """
    if status == RunStatus.FAILED:
        return FinishedView(message, False, error=f"Registration failed: {message}")
    if status != RunStatus.SUCCEEDED:
        return FinishedView(message, False)
    verdict = report_verdict(report)
    if not verdict.suspect:
        return FinishedView(message, has_parameter_node)
    reasons = "; ".join(verdict.reasons)
    warning = (
        f"The registration finished, but the core marked its result as suspect: {reasons}. "
        "Check the alignment carefully before using it."
    )
    return FinishedView(f"Suspect result: {reasons}", has_parameter_node, warning=warning)
