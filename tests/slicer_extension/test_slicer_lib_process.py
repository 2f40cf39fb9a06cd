"""The child process runner: streaming without blocking, exit codes, and cancelling the whole tree."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from VMGGARegistrationLib.events import DoneEvent, ErrorEvent, LogLine, ProgressEvent
from VMGGARegistrationLib.outputs import RunStatus, summarise_run
from VMGGARegistrationLib.process import CoreProcess, child_environment, wait_until_finished

#: A stand-in for ``vmgga register --progress-json``: behaviour chosen by argv[1]. It never flushes
#: explicitly: lines must arrive while it runs because the runner sets PYTHONUNBUFFERED.
FAKE_CORE = r"""
import json, os, subprocess, sys, time
mode, out = sys.argv[1], sys.argv[2]
def emit(**event):
    print(json.dumps(event))
if mode == "ok":
    emit(event="progress", stage="affine", fraction=0.25, message="level 1")
    print("a plain warning line")
    time.sleep(float(sys.argv[3]))
    os.makedirs(out, exist_ok=True)
    names = {"transform": "transform.h5", "warped": "warped.nii.gz",
             "confidence": "confidence.nii.gz", "report": "report.json"}
    for name in names.values():
        open(os.path.join(out, name), "w").write("{}")
    emit(event="done", outputs={k: os.path.join(out, v) for k, v in names.items()})
elif mode == "error":
    emit(event="error", message="fixed.nrrd: not a 3D image")
    sys.exit(2)
elif mode == "crash":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: boom", file=sys.stderr)
    sys.exit(1)
elif mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    emit(grandchild=child.pid)
    time.sleep(120)
"""


@pytest.fixture
def fake_core(tmp_path: Path) -> Path:
    path = tmp_path / "fake_core.py"
    path.write_text(FAKE_CORE)
    return path


def _start(fake_core: Path, *args: str) -> CoreProcess:
    process = CoreProcess([sys.executable, str(fake_core), *args], env=child_environment(os.environ))
    process.start()
    return process


def _collect(process: CoreProcess) -> list:
    events = []
    wait_until_finished(process, events.extend, interval_s=0.02)
    return events


def test_events_stream_while_the_child_runs(fake_core, tmp_path):
    process = _start(fake_core, "ok", str(tmp_path / "out"), "1.5")
    started = time.monotonic()
    seen = []
    while not any(isinstance(e, ProgressEvent) for e in seen):
        seen += process.poll()  # must not block until the child exits
        assert time.monotonic() - started < 20, "no progress line arrived"
        time.sleep(0.02)
    assert not process.finished  # the child still sleeps: progress arrived before the end
    assert process.return_code is None
    seen += _collect(process)
    assert process.return_code == 0
    assert seen[0] == ProgressEvent("affine", 0.25, "level 1")
    assert LogLine("a plain warning line") in seen
    assert isinstance(seen[-1], DoneEvent)
    outcome = summarise_run(seen, process.return_code, tmp_path / "out")
    assert outcome.status == RunStatus.SUCCEEDED
    assert outcome.outputs.report.is_file()


def test_error_event_and_exit_status(fake_core, tmp_path):
    process = _start(fake_core, "error", str(tmp_path))
    events = _collect(process)
    assert process.return_code == 2
    assert events == [ErrorEvent("fixed.nrrd: not a 3D image")]
    assert summarise_run(events, 2, tmp_path).message.startswith("fixed.nrrd: not a 3D image")


def test_stderr_is_merged_into_the_log(fake_core, tmp_path):
    process = _start(fake_core, "crash", str(tmp_path))
    events = _collect(process)
    assert process.return_code == 1
    assert events == [LogLine("Traceback (most recent call last):"), LogLine("RuntimeError: boom")]


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (containers may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_kills_the_child_and_its_children(fake_core, tmp_path):
    process = _start(fake_core, "hang", str(tmp_path))
    deadline = time.monotonic() + 20
    lines = []
    while not lines:
        lines = [e for e in process.poll() if isinstance(e, LogLine)]
        assert time.monotonic() < deadline, "the fake core did not report its child"
        time.sleep(0.02)
    grandchild = json.loads(lines[0].text)["grandchild"]
    assert _alive(grandchild) and _alive(process.pid)
    process.cancel(grace_s=10)
    assert process.finished
    assert process.cancelled
    assert process.return_code == -9
    assert not _alive(process.pid)
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    outcome = summarise_run([], process.return_code, tmp_path, cancelled=process.cancelled)
    assert outcome.status == RunStatus.CANCELLED


def test_child_environment_adds_unbuffered_output_without_touching_the_base():
    base = {"PATH": "/bin"}
    assert child_environment(base) == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}
    assert base == {"PATH": "/bin"}


class _FakeStartupInfo:
    """``subprocess.STARTUPINFO`` as Windows' Python defines it (flags start at 0)."""

    def __init__(self):
        self.dwFlags, self.wShowWindow = 0, 1  # SW_SHOWNORMAL


def test_windows_children_get_no_console_window():
    """As Slicer's launchConsoleProcess: a STARTUPINFO that hides the window, plus CREATE_NO_WINDOW.

    Windows' constants (winbase.h / winuser.h) are given here, since this runs on any platform."""
    from VMGGARegistrationLib.process import popen_platform_kwargs

    windows = type("subprocess", (), {})()
    windows.STARTUPINFO = _FakeStartupInfo
    windows.STARTF_USESHOWWINDOW, windows.SW_HIDE = 0x00000001, 0
    windows.CREATE_NEW_PROCESS_GROUP, windows.CREATE_NO_WINDOW = 0x00000200, 0x08000000
    kwargs = popen_platform_kwargs("win32", windows)
    assert kwargs["creationflags"] == 0x00000200 | 0x08000000
    info = kwargs["startupinfo"]
    assert info.dwFlags & 0x00000001 and info.wShowWindow == 0
    assert "start_new_session" not in kwargs


def test_posix_children_get_their_own_session():
    from VMGGARegistrationLib.process import popen_platform_kwargs

    assert popen_platform_kwargs("linux") == {"start_new_session": True}
    assert popen_platform_kwargs("darwin") == {"start_new_session": True}
