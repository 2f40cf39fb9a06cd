"""How the module decides that a run succeeded, failed or was cancelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from VMGGARegistrationLib.events import DoneEvent, ErrorEvent, LogLine, ProgressEvent
from VMGGARegistrationLib.outputs import (
    OutputsError,
    RunStatus,
    describe_exit_code,
    outputs_from_done,
    read_report,
    summarise_run,
)

NAMES = {
    "transform": "transform.h5",
    "warped": "warped.nii.gz",
    "confidence": "confidence.nii.gz",
    "report": "report.json",
}


def _write_outputs(folder: Path) -> dict[str, str]:
    for name in NAMES.values():
        (folder / name).write_text("{}")
    return {key: str(folder / name) for key, name in NAMES.items()}


def test_done_event_with_existing_files_succeeds(tmp_path):
    events = [ProgressEvent("affine", 0.2), DoneEvent(_write_outputs(tmp_path))]
    outcome = summarise_run(events, 0, tmp_path)
    assert outcome.status == RunStatus.SUCCEEDED
    assert outcome.outputs.transform == tmp_path / "transform.h5"
    assert outcome.outputs.confidence == tmp_path / "confidence.nii.gz"


def test_relative_output_paths_are_taken_under_the_working_folder(tmp_path):
    """``vmgga register ... -o out`` reports ``out/transform.h5``: relative to the core's cwd."""
    (tmp_path / "out").mkdir()
    _write_outputs(tmp_path / "out")
    relative = {key: f"out/{name}" for key, name in NAMES.items()}
    outputs = outputs_from_done(DoneEvent(relative), tmp_path)
    assert outputs.warped == tmp_path / "out" / "warped.nii.gz"
    with pytest.raises(OutputsError, match="do not exist"):
        outputs_from_done(DoneEvent(relative), tmp_path / "out")


def test_missing_output_key_or_file_fails(tmp_path):
    outputs = _write_outputs(tmp_path)
    with pytest.raises(OutputsError, match=r"lacks outputs \['confidence'\]"):
        outputs_from_done(DoneEvent({k: v for k, v in outputs.items() if k != "confidence"}), tmp_path)
    Path(outputs["warped"]).unlink()
    outcome = summarise_run([DoneEvent(outputs)], 0, tmp_path)
    assert outcome.status == RunStatus.FAILED
    assert "warped.nii.gz" in outcome.message


def test_error_event_message_reaches_the_user(tmp_path):
    events = [ProgressEvent("read", 0.01), ErrorEvent("moving.nrrd: the image is 2D")]
    outcome = summarise_run(events, 2, tmp_path)
    assert outcome.status == RunStatus.FAILED
    assert outcome.message == "moving.nrrd: the image is 2D (exit status 2 (user error))"
    assert outcome.outputs is None


def test_crash_without_error_event_shows_the_last_lines(tmp_path):
    events = [LogLine(f"line {i}") for i in range(8)] + [LogLine("MemoryError")]
    outcome = summarise_run(events, 1, tmp_path)
    assert outcome.status == RunStatus.FAILED
    assert "exit status 1 (crashed)" in outcome.message
    assert outcome.message.endswith("line 4 | line 5 | line 6 | line 7 | MemoryError")


def test_exit_zero_without_done_event_is_a_failure(tmp_path):
    outcome = summarise_run([ProgressEvent("dense", 0.5)], 0, tmp_path)
    assert outcome.status == RunStatus.FAILED
    assert "without reporting its outputs" in outcome.message


def test_error_event_wins_over_exit_zero(tmp_path):
    outcome = summarise_run([DoneEvent(_write_outputs(tmp_path)), ErrorEvent("late failure")], 0, tmp_path)
    assert outcome.status == RunStatus.FAILED


def test_cancelled_run(tmp_path):
    outcome = summarise_run([DoneEvent(_write_outputs(tmp_path))], -9, tmp_path, cancelled=True)
    assert outcome.status == RunStatus.CANCELLED
    assert outcome.outputs is None


def test_describe_exit_code():
    assert describe_exit_code(0) == "exit status 0 (done)"
    assert describe_exit_code(130) == "exit status 130 (interrupted)"
    assert describe_exit_code(-9) == "exit status -9"
    assert describe_exit_code(None) == "no exit status"


def test_read_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"timings_s": {"total": 12.5}}))
    assert read_report(path) == {"timings_s": {"total": 12.5}}
    path.write_text("[1, 2]")
    with pytest.raises(OutputsError, match="not a JSON object"):
        read_report(path)
    with pytest.raises(OutputsError, match="cannot read the report"):
        read_report(tmp_path / "absent.json")
