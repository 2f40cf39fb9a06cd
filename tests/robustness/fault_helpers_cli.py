"""Helpers of the fault-injection suite (issue 16, "Also"): tiny real pairs, processes killed at
observable points, and the promise every fault must keep: nothing written, or a complete set that
loads; one line on stderr; the right exit status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import SimpleITK as sitk

DATA = Path(__file__).resolve().parents[1] / "data"
REGISTER_SET = ("transform.h5", "warped.nii.gz", "confidence.nii.gz", "report.json")
#: Events seen from outside a run, in the order they happen.
EVENTS = ("started", "locked", "staging", "complete")


def tiny_pair(folder: Path, names=("T2", "T1")) -> tuple[Path, Path]:
    """The stroke images shrunk by 2 (31 x 40 x 35 at 4 mm): a real pair that registers in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}_small.nii.gz"
        if not path.exists():
            image = sitk.ReadImage(str(DATA / "stroke" / f"{name}.nii.gz"), sitk.sitkFloat32)
            sitk.WriteImage(sitk.Shrink(image, [2, 2, 2]), str(path))
        paths.append(path)
    return paths[0], paths[1]


def vmgga_command(*args) -> list[str]:
    return [sys.executable, "-m", "vmgga", *(str(a) for a in args)]


def start(command: list[str]) -> subprocess.Popen:
    """A CLI run in its own process group (so that kill -9 reaches its worker processes too)."""
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def event_reached(folder: Path, event: str) -> bool:
    """Whether a run writing into ``folder`` has reached ``event`` (see :data:`EVENTS`)."""
    if event == "started":
        return True
    if not folder.is_dir():
        return False
    names = [entry.name for entry in os.scandir(folder)]
    if event == "locked":
        return ".vmgga.lock" in names
    if event == "staging":
        return any(name.startswith(".staging") for name in names)
    return "report.json" in names or "done.json" in names


def kill_at(process: subprocess.Popen, reached: Callable[[], bool], timeout_s: float = 600) -> bool:
    """SIGKILL the process group as soon as ``reached()``; False if the run ended first."""
    deadline = time.monotonic() + timeout_s
    while not reached():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    return True


def register_set_state(out: Path, fixed: Path) -> str:
    """``none`` or ``complete`` (every file present and loadable); fails on anything in between."""
    present = [name for name in REGISTER_SET if (out / name).exists()]
    if not present:
        return "none"
    assert present == list(REGISTER_SET), f"incomplete set in {out}: {present}"
    report = json.loads((out / "report.json").read_text())
    assert report["status"] in ("ok", "suspect")
    transform = sitk.CompositeTransform(sitk.ReadTransform(str(out / "transform.h5")))
    assert transform.GetNumberOfTransforms() >= 1
    size = sitk.ReadImage(str(fixed)).GetSize()
    for name in ("warped.nii.gz", "confidence.nii.gz"):
        assert sitk.ReadImage(str(out / name)).GetSize() == size
    return "complete"


def assert_one_line(stderr: str, *words: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
