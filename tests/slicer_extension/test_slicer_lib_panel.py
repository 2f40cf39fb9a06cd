"""The panel's decisions that need no Qt: pre-selection, enabled widgets, the end-of-run view."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from VMGGARegistrationLib.outputs import RunStatus
from VMGGARegistrationLib.panel import (
    REVIEW_WIDGETS,
    PanelInputs,
    auto_select_volumes,
    before_after_text,
    finished_view,
    progress_text,
    report_verdict,
    widget_states,
)

SCENE = [
    ("vtkMRMLVectorVolumeNode1", "vtkMRMLVectorVolumeNode"),
    ("vtkMRMLLabelMapVolumeNode1", "vtkMRMLLabelMapVolumeNode"),
    ("vtkMRMLScalarVolumeNode1", "vtkMRMLScalarVolumeNode"),
    ("vtkMRMLDiffusionWeightedVolumeNode1", "vtkMRMLDiffusionWeightedVolumeNode"),
    ("vtkMRMLScalarVolumeNode2", "vtkMRMLScalarVolumeNode"),
    ("vtkMRMLScalarVolumeNode3", "vtkMRMLScalarVolumeNode"),
]


def test_auto_selection_takes_only_what_the_selectors_show():
    assert auto_select_volumes(SCENE, None, None) == ("vtkMRMLScalarVolumeNode1", "vtkMRMLScalarVolumeNode2")


def test_auto_selection_keeps_choices_and_never_picks_one_volume_twice():
    assert auto_select_volumes(SCENE, None, "vtkMRMLScalarVolumeNode1") == (
        "vtkMRMLScalarVolumeNode2",
        "vtkMRMLScalarVolumeNode1",
    )
    assert auto_select_volumes(SCENE, "vtkMRMLScalarVolumeNode3", None) == (
        "vtkMRMLScalarVolumeNode3",
        "vtkMRMLScalarVolumeNode1",
    )
    chosen = ("vtkMRMLVectorVolumeNode1", "x")  # a choice made by the user is not second-guessed
    assert auto_select_volumes(SCENE, *chosen) == chosen
    assert auto_select_volumes(SCENE[:3], None, None) == ("vtkMRMLScalarVolumeNode1", None)
    assert auto_select_volumes(SCENE[:2], None, None) == (None, None)


def _inputs(**overrides) -> PanelInputs:
    values = dict(has_fixed=True, has_moving=True, same_volumes=False, running=False, has_results=False,
                  has_confidence=False, has_transform=False)  # fmt: skip
    return PanelInputs(**{**values, **overrides})


def test_apply_needs_two_different_volumes_and_no_run():
    assert widget_states(_inputs()).enabled["applyButton"]
    assert widget_states(_inputs()).apply_tooltip == "Run the registration."
    for blocked in (dict(has_fixed=False), dict(has_moving=False), dict(same_volumes=True)):
        states = widget_states(_inputs(**blocked))
        assert not states.enabled["applyButton"] and states.apply_tooltip == "Select two different volumes."
    assert not widget_states(_inputs(running=True)).enabled["applyButton"]


def test_every_widget_is_disabled_while_running_except_cancel():
    everything = dict(has_results=True, has_confidence=True, has_transform=True)
    running = widget_states(_inputs(running=True, **everything)).enabled
    assert {name for name, on in running.items() if on} == {"cancelButton"}
    idle = widget_states(_inputs(**everything)).enabled
    assert {name for name, on in idle.items() if not on} == {"cancelButton"}


def test_review_tools_need_results():
    for flags in itertools.product([False, True], repeat=3):
        results, confidence, transform = flags
        enabled = widget_states(
            _inputs(has_results=results, has_confidence=confidence, has_transform=transform)
        ).enabled
        assert all(enabled[name] == results for name in REVIEW_WIDGETS)
        assert enabled["confidenceCheckBox"] == confidence
        assert enabled["deformationComboBox"] == transform


def test_texts():
    assert progress_text("affine", "level 2") == "affine: level 2"
    assert progress_text("export", "") == "export"
    assert before_after_text(True) == "Showing: before registration"
    assert before_after_text(False) == "Showing: after registration"


def test_report_verdict():
    assert not report_verdict({}).suspect  # reports written before the status existed
    assert not report_verdict({"status": "ok", "suspect_reasons": []}).suspect
    verdict = report_verdict({"status": "suspect", "suspect_reasons": ["Jacobian folds: 2.1%", "low NMI"]})
    assert verdict.suspect and verdict.reasons == ("Jacobian folds: 2.1%", "low NMI")
    assert report_verdict({"status": "suspect"}).reasons == ("the core marked the result as suspect",)
    odd = report_verdict({"status": "weird"})
    assert odd.suspect and "'weird'" in odd.reasons[0]


def test_a_suspect_result_is_kept_but_shown_with_a_warning():
    report = {"status": "suspect", "suspect_reasons": ["low NMI"]}
    view = finished_view(RunStatus.SUCCEEDED, "registration finished", report, has_parameter_node=True)
    assert view.store_outputs and view.error is None
    assert view.status_text == "Suspect result: low NMI"
    assert "suspect: low NMI" in view.warning


def test_finished_views():
    ok = finished_view(RunStatus.SUCCEEDED, "registration finished", {"status": "ok"}, True)
    assert ok == type(ok)("registration finished", True)
    failed = finished_view(RunStatus.FAILED, "moving.nrrd is empty (exit status 2)", {}, True)
    assert (
        not failed.store_outputs
        and failed.error == "Registration failed: moving.nrrd is empty (exit status 2)"
    )
    cancelled = finished_view(RunStatus.CANCELLED, "registration cancelled", {}, True)
    assert not cancelled.store_outputs and cancelled.error is None and cancelled.warning is None


@pytest.mark.parametrize("status", list(RunStatus))
def test_nothing_is_stored_while_the_scene_closes(status):
    """The parameter node is gone (scene closing): the view never asks to store into it."""
    view = finished_view(status, "m", {"status": "suspect"}, has_parameter_node=False)
    assert not view.store_outputs
    assert dataclasses.asdict(view)["status_text"]
