"""Issue 8, outputs: a lock refuses concurrent runs, writes are atomic, outputs never overwrite an
input and never leave the output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import SimpleITK as sitk

from vmgga.errors import OutputError, OutputWriteError
from vmgga.io import (
    OutputFolderLock,
    OutputTransaction,
    atomic_write,
    check_not_an_input,
    remove_stale_partials,
    safe_output_path,
    write_image_atomic,
    write_json_atomic,
)
from vmgga.io.lock import LOCK_NAME

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from vmgga.io.lock import OutputFolderLock
    with OutputFolderLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def lock_holder(tmp_path):
    """A separate process holding the lock of ``tmp_path / 'out'``; yields (folder, process)."""
    folder = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    yield folder, process
    if process.poll() is None:
        process.kill()
        process.wait()


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- lock ---------------------------------------------------------------------------------------


def test_lock_refuses_a_concurrent_run(lock_holder, snapshot):
    folder, process = lock_holder
    before = snapshot(folder)
    with pytest.raises(
        OutputError, match=f"output folder '{folder}' is in use by another vmgga run \\(pid {process.pid}"
    ):
        OutputFolderLock(folder).acquire()
    assert snapshot(folder) == before  # the live lock was left alone


def test_lock_of_a_killed_run_is_taken_over(lock_holder):
    folder, process = lock_holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    with OutputFolderLock(folder) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_stale_lock_file_with_dead_pid_is_taken_over(tmp_path):
    import socket

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    with OutputFolderLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_lock_is_exclusive_within_one_process_and_released(tmp_path):
    with OutputFolderLock(tmp_path):
        with pytest.raises(OutputError, match="is in use by another vmgga run"):
            OutputFolderLock(tmp_path).acquire()
    with OutputFolderLock(tmp_path):  # released: can be taken again
        pass


def test_lock_of_another_host_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": "some-other-host"}))
    with pytest.raises(OutputError, match="on some-other-host"):
        OutputFolderLock(tmp_path).acquire()


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_write_leaves_no_partial_file_when_the_writer_raises(tmp_path, snapshot):
    target = tmp_path / "warped.nii.gz"

    def failing_writer(temporary: Path) -> None:
        temporary.write_bytes(b"half of an image")
        raise RuntimeError("codec failure")  # not a full disk: io.verify reads 'disk full' as DiskFullError

    with pytest.raises(
        OutputWriteError, match=r"warped.nii.gz' could not be written completely \(codec failure\)"
    ):
        atomic_write(target, failing_writer)
    assert snapshot(tmp_path) == {}  # neither the target nor a temporary file


def test_atomic_write_keeps_the_old_version_when_the_writer_raises(tmp_path, small_image):
    target = write_image_atomic(small_image, tmp_path / "warped.nii.gz")
    old = target.read_bytes()

    def failing_writer(temporary: Path) -> None:
        temporary.write_bytes(b"garbage")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, failing_writer)
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["warped.nii.gz"]


def test_atomic_image_and_json_round_trip(tmp_path, small_image):
    image_path = write_image_atomic(small_image, tmp_path / "image.nii.gz")
    json_path = write_json_atomic({"a": [1, 2.5], "b": None}, tmp_path / "report.json")
    read_back = sitk.ReadImage(str(image_path))
    assert read_back.GetSize() == small_image.GetSize()
    assert sitk.GetArrayFromImage(read_back).tolist() == sitk.GetArrayFromImage(small_image).tolist()
    assert json.loads(json_path.read_text()) == {"a": [1, 2.5], "b": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz", "report.json"]


def test_json_that_cannot_be_serialised_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []


def test_stale_partials_of_dead_runs_are_removed(tmp_path):
    stale = tmp_path / f".warped.partial-{dead_pid()}-abcd.nii.gz"
    ours = tmp_path / f".report.partial-{os.getpid()}-abcd.json"
    stale.write_bytes(b"x")
    ours.write_bytes(b"y")
    assert remove_stale_partials(tmp_path) == [stale]
    assert ours.exists() and not stale.exists()


def test_transaction_commits_the_marker_last(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    order = []
    real_replace = os.replace

    def recording_replace(source, target):
        order.append(Path(target).name)
        real_replace(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", recording_replace)
        with OutputTransaction(folder) as transaction:
            transaction.staged("report.json").write_text("{}")
            sitk.WriteTransform(sitk.Transform(3, sitk.sitkIdentity), str(transaction.staged("transform.h5")))
            sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkUInt8), str(transaction.staged("warped.nii.gz")))
    assert order == ["transform.h5", "warped.nii.gz", "report.json"]
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "transform.h5", "warped.nii.gz"]


def test_failed_transaction_leaves_the_folder_as_it_was(tmp_path, snapshot):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "report.json").write_text("old complete run")
    before = snapshot(folder)
    with pytest.raises(RuntimeError, match="stage failed"):
        with OutputTransaction(folder) as transaction:
            transaction.staged("transform.h5").write_text("new")
            raise RuntimeError("stage failed")
    assert snapshot(folder) == before
    assert [p.name for p in folder.iterdir()] == ["report.json"]


# --- never overwrite an input, never leave the output folder ------------------------------------


def test_output_that_is_an_input_is_refused(tmp_path, snapshot):
    moving = tmp_path / "moving.nii.gz"
    moving.write_bytes(b"input")
    link = tmp_path / "link.nii.gz"
    link.symlink_to(moving)
    before = snapshot(tmp_path)
    for output in (moving, tmp_path / "." / "moving.nii.gz", link):
        with pytest.raises(OutputError, match="would overwrite the input .*moving.nii.gz"):
            check_not_an_input([tmp_path / "other.nii.gz", output], [tmp_path / "fixed.nii.gz", moving])
    assert snapshot(tmp_path) == before


def test_output_inside_an_input_dicom_folder_is_refused(tmp_path):
    dicom_folder = tmp_path / "ct_dicom"
    dicom_folder.mkdir()
    with pytest.raises(OutputError, match="would overwrite the input .*ct_dicom"):
        check_not_an_input([dicom_folder / "warped.nii.gz"], [dicom_folder])


def test_hard_link_to_an_input_is_refused(tmp_path):
    moving = tmp_path / "moving.nii.gz"
    moving.write_bytes(b"input")
    os.link(moving, tmp_path / "hard.nii.gz")
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_not_an_input([tmp_path / "hard.nii.gz"], [moving])


def test_distinct_outputs_are_accepted(tmp_path):
    check_not_an_input([tmp_path / "out" / "warped.nii.gz"], [tmp_path / "fixed.nii.gz", None])


@pytest.mark.parametrize("name", ["../escape.nii.gz", "/etc/passwd", "qc/../../x.json", "", "."])
def test_names_escaping_the_output_folder_are_refused(tmp_path, name):
    with pytest.raises(OutputError, match="outside the output folder"):
        safe_output_path(tmp_path / "out", name)


def test_symlink_leading_outside_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "qc").symlink_to(elsewhere)
    (out / "report.json").symlink_to(elsewhere / "report.json")
    for name in ("qc/page.html", "report.json"):
        with pytest.raises(OutputError, match="through a symlink"):
            safe_output_path(out, name)
    assert list(elsewhere.iterdir()) == []


def test_plain_and_nested_names_are_accepted(tmp_path):
    assert safe_output_path(tmp_path, "warped.nii.gz") == tmp_path / "warped.nii.gz"
    assert safe_output_path(tmp_path, "qc/page.html") == tmp_path / "qc" / "page.html"


def test_lock_file_names_the_holder(lock_holder):
    folder, process = lock_holder
    owner = json.loads((folder / LOCK_NAME).read_text())
    assert owner["pid"] == process.pid and owner["host"]
