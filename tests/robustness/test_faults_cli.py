"""Fault injection through the real ``vmgga register`` command on a tiny real pair (issue 16):
kill -9 at several points, a concurrent second run, a read-only output, a full disk. Each checks
the promise: nothing written or a complete set that loads, one line on stderr, the right exit code.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from fault_helpers_cli import (
    EVENTS,
    assert_one_line,
    event_reached,
    kill_at,
    register_set_state,
    start,
    tiny_pair,
    vmgga_command,
)

pytestmark = pytest.mark.slow


def _mount_tmpfs(folder, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return tiny_pair(tmp_path_factory.mktemp("pair"))


def test_register_killed_at_each_point_leaves_nothing_or_a_complete_set(pair, tmp_path):
    fixed, moving = pair
    out = tmp_path / "out"
    command = vmgga_command("register", fixed, moving, "-o", out, "--quiet")
    killed, had_set = [], False
    # before any set exists, then over a complete earlier set ("the old set or a complete new one")
    for event in (*EVENTS[:3], None, *EVENTS[1:3]):
        process = start(command)
        if event is None:  # a full run in between
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr
            assert register_set_state(out, fixed) == "complete"
            continue
        if kill_at(process, lambda e=event: event_reached(out, e)):
            killed.append(event)
        else:  # finished before the kill point was seen: it must have succeeded
            assert process.returncode == 0
        state = register_set_state(out, fixed)  # "none" or "complete", never in between
        if had_set:
            assert state == "complete"  # a killed rerun keeps the earlier complete set
        had_set = had_set or state == "complete"
    assert {"started", "locked"} <= set(killed)  # the early points are always reached in time
    process = start(command)  # a run after the killed ones: stale locks and partial files are cleared
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert register_set_state(out, fixed) == "complete"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["transform.h5", "warped.nii.gz", "confidence.nii.gz", "report.json"]
    )  # no lock, no staging folder, no partial file


def test_concurrent_second_register_is_refused_and_the_first_completes(pair, tmp_path):
    fixed, moving = pair
    out = tmp_path / "out"
    first = start(vmgga_command("register", fixed, moving, "-o", out, "--quiet"))
    deadline = time.monotonic() + 300
    while not event_reached(out, "locked"):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    second = subprocess.run(
        vmgga_command("register", fixed, moving, "-o", out, "--quiet"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if first.poll() is None:  # the first run still held the folder while the second one checked
        assert second.returncode == 2
        assert_one_line(second.stderr, "in use by another vmgga run", str(out))
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert register_set_state(out, fixed) == "complete"


def test_register_into_a_read_only_mount(pair, tmp_path):
    fixed, moving = pair
    folder = tmp_path / "ro"
    if not _mount_tmpfs(folder, "ro,size=64k"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        for out in (folder, folder / "new"):
            run = subprocess.run(
                vmgga_command("register", fixed, moving, "-o", out, "--quiet"),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 2
            assert_one_line(run.stderr, "read-only file system")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_register_onto_a_full_disk(pair, tmp_path):
    fixed, moving = pair
    folder = tmp_path / "small"
    if not _mount_tmpfs(folder, "size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = folder / "out"
        run = subprocess.run(
            vmgga_command("register", fixed, moving, "-o", out, "--quiet"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 2, run.stderr
        assert_one_line(run.stderr, "no space left on the device")  # no HDF5 diagnostics, no traceback
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
