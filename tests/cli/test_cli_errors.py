"""Issue 16 items 4 and 5: user errors of register / apply / batch are one line on stderr, exit 2,
nothing written, checked before any work; per-image volume indexes."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from vmgga.api import RegistrationResult, _volume_index_for
from vmgga.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "data"
T1, T2 = DATA / "stroke" / "T1.nii.gz", DATA / "stroke" / "T2.nii.gz"


def run_cli(argv: list[str], capfd) -> tuple[int, list[str]]:
    """``vmgga ARGV`` in this process: exit status and the lines written to stderr (fd 2 included)."""
    status = main([str(a) for a in argv])
    return status, capfd.readouterr().err.strip().splitlines()


def assert_one_line_error(status: int, lines: list[str], *words: str) -> None:
    assert status == 2
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "error:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


# --- folders that cannot be written (root ignores permission bits: a read-only mount or chattr +i)


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder on a read-only tmpfs (skipped where mounting is not allowed)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if not _run("mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount permission)")
    yield folder
    _run("umount", str(folder))


@pytest.fixture
def immutable_folder(tmp_path):
    """An empty folder with the immutable attribute (chattr +i; skipped where not supported)."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    if not _run("chattr", "+i", str(folder)):
        pytest.skip("chattr +i is not supported here")
    yield folder
    _run("chattr", "-i", str(folder))


def test_register_output_that_is_an_existing_file(tmp_path, capfd, snapshot):
    target = tmp_path / "results"
    target.write_text("keep me")
    before = snapshot(tmp_path)
    status, lines = run_cli(["register", T2, T1, "-o", target, "--quiet"], capfd)
    assert_one_line_error(status, lines, str(target), "existing file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sub", ["", "new/deeper"])
def test_register_into_a_read_only_folder(read_only_folder, capfd, sub):
    target = read_only_folder / sub if sub else read_only_folder
    status, lines = run_cli(["register", T2, T1, "-o", target, "--quiet"], capfd)
    assert_one_line_error(status, lines, str(target), "read-only file system")
    assert list(read_only_folder.iterdir()) == []


def test_register_into_an_immutable_folder(immutable_folder, capfd):
    status, lines = run_cli(["register", T2, T1, "-o", immutable_folder / "out", "--quiet"], capfd)
    assert_one_line_error(status, lines, str(immutable_folder), "cannot be written")
    assert list(immutable_folder.iterdir()) == []


def test_apply_output_folder_or_unknown_suffix(tmp_path, capfd, snapshot):
    before = snapshot(tmp_path)
    base = ["apply", tmp_path / "transform.h5", T1, "--reference", T2, "-o"]
    status, lines = run_cli([*base, tmp_path], capfd)
    assert_one_line_error(status, lines, str(tmp_path), "is a folder")
    status, lines = run_cli([*base, tmp_path / "warped.png"], capfd)
    assert_one_line_error(status, lines, "warped.png", "unknown suffix", ".nii.gz")
    assert snapshot(tmp_path) == before


def test_apply_into_a_read_only_folder(read_only_folder, capfd, tmp_path):
    argv = ["apply", tmp_path / "t.h5", T1, "--reference", T2, "-o", read_only_folder / "w.nii.gz"]
    status, lines = run_cli(argv, capfd)
    assert_one_line_error(status, lines, "read-only file system")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a usable GPU")
def test_device_cuda_without_cuda_is_refused_before_any_work(tmp_path, capfd):
    # the inputs do not exist: the device must be checked first, before any reading
    argv = ["register", tmp_path / "no_fixed.nii.gz", tmp_path / "no_moving.nii.gz", "-o", tmp_path / "out"]
    status, lines = run_cli([*argv, "--device", "cuda"], capfd)
    assert_one_line_error(status, lines, "--device cuda", "--device cpu")
    status, lines = run_cli([*argv, "--device", "gpu0"], capfd)
    assert_one_line_error(status, lines, "gpu0")
    assert list(tmp_path.iterdir()) == []


# --- full disk -----------------------------------------------------------------------------------


def constructed_result(size: int = 40) -> RegistrationResult:
    """A registration result made by hand (affine + displacement field), large enough to fill 256 kB."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.uniform(0, 1, (size, size, size)).astype(np.float32))
    field = sitk.GetImageFromArray(rng.normal(0, 1, (size, size, size, 3)), isVector=True)
    field.CopyInformation(image)
    transform = sitk.CompositeTransform(
        [sitk.AffineTransform(3), sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))]
    )
    return RegistrationResult(
        transform,
        image,
        image,
        image,
        image,
        image,
        image,
        image,
        report={"status": "ok", "suspect_reasons": []},
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs (skipped where mounting is not allowed)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if not _run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    yield folder
    _run("umount", str(folder))


def test_register_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk, capfd, monkeypatch):
    import vmgga.api

    monkeypatch.setattr(vmgga.api, "register", lambda *args, **kwargs: constructed_result())
    status, lines = run_cli(["register", T2, T1, "-o", small_disk / "out", "--quiet"], capfd)
    assert_one_line_error(status, lines, "no space left on the device")
    assert list(small_disk.iterdir()) == []  # no partial file, no staging folder, no empty folder


# --- batch ---------------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "cases.csv"
    path.write_text(f"case_id,fixed,moving\nc1,{T2},{T1}\n")
    return path


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batch_with_no_scheduler_answering(manifest, tmp_path, capfd):
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    status, lines = run_cli(
        [
            "batch",
            manifest,
            "-o",
            tmp_path / "out",
            "--scheduler",
            address,
            "--connect-timeout",
            "1",
            "--quiet",
        ],
        capfd,
    )
    assert_one_line_error(status, lines, address, "--connect-timeout")
    assert time.perf_counter() - start < 30  # waited about 1 s, not the 30 s of distributed's default
    assert not (tmp_path / "out").exists()


def test_batch_output_that_is_a_file_or_read_only(manifest, tmp_path, capfd, read_only_folder):
    status, lines = run_cli(["batch", manifest, "-o", manifest, "--quiet"], capfd)
    assert_one_line_error(status, lines, "existing file")
    status, lines = run_cli(["batch", manifest, "-o", read_only_folder / "out", "--quiet"], capfd)
    assert_one_line_error(status, lines, "read-only file system")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a usable GPU")
def test_batch_device_cuda_without_cuda(manifest, tmp_path, capfd):
    status, lines = run_cli(["batch", manifest, "-o", tmp_path / "out", "--set", 'device="cuda"'], capfd)
    assert_one_line_error(status, lines, "cuda")
    assert not (tmp_path / "out").exists()


def test_batch_connect_timeout_default_matches_the_executor():
    from vmgga.batch.executors import DEFAULT_CONNECT_TIMEOUT_S
    from vmgga.cli import batch

    assert batch.DEFAULT_CONNECT_TIMEOUT_S == DEFAULT_CONNECT_TIMEOUT_S


# --- per-image volume index (item 4) ---------------------------------------------------------------


def test_volume_index_choice_per_image(tmp_path, small_image):
    volumes = sitk.JoinSeries([small_image, small_image * 2, small_image * 3])
    four_d = tmp_path / "four_d.nii.gz"
    three_d = tmp_path / "three_d.nii.gz"
    sitk.WriteImage(volumes, str(four_d))
    sitk.WriteImage(small_image, str(three_d))
    assert _volume_index_for(four_d, 1, None) == 1  # its own index
    assert _volume_index_for(four_d, 1, 2) == 1  # its own index wins over the shared one
    assert _volume_index_for(four_d, None, 2) == 2  # the shared (deprecated) one for a 4D file
    assert _volume_index_for(three_d, None, 2) is None  # ... and not for a 3D file
    assert _volume_index_for(volumes, None, 2) == 2  # an in-memory 4D image
    assert _volume_index_for(DATA / "abdomen" / "ct_dicom", None, 2) is None  # a DICOM folder


def test_3d_fixed_with_a_4d_moving_registers(tmp_path, capfd):
    fixed = sitk.Shrink(sitk.ReadImage(str(T2)), [2, 2, 2])
    moving = sitk.Shrink(sitk.ReadImage(str(T1), sitk.sitkFloat32), [2, 2, 2])
    blank = sitk.Image(moving.GetSize(), sitk.sitkFloat32)
    blank.CopyInformation(moving)
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([blank, moving]), str(tmp_path / "moving_4d.nii.gz"))
    argv = ["register", tmp_path / "fixed.nii.gz", tmp_path / "moving_4d.nii.gz", "--quiet", "-o"]
    assert main([str(a) for a in [*argv, tmp_path / "a", "--moving-volume-index", "1"]]) == 0
    # the deprecated --volume-index applies to the 4D moving image only
    assert main([str(a) for a in [*argv, tmp_path / "b", "--volume-index", "1"]]) == 0
    capfd.readouterr()
    for out in ("a", "b"):
        report = json.loads((tmp_path / out / "report.json").read_text())
        assert report["inputs"]["fixed"]["volume_index"] is None
        assert report["inputs"]["moving"]["volume_index"] == 1
        assert report["status"] == "ok"  # volume 0 is blank: a wrong pick would not be a plausible result


def test_a_system_error_the_user_can_act_on_is_one_line(tmp_path, capfd, monkeypatch):
    import errno

    import vmgga.api

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(vmgga.api, "register", full_disk)
    status, lines = run_cli(["register", T2, T1, "-o", tmp_path / "out", "--quiet"], capfd)
    assert_one_line_error(status, lines, "No space left on device", str(tmp_path / "out" / "x"))
    assert not (tmp_path / "out").exists()  # the folder made for the run is removed again

    def bug(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")  # not a user error: the traceback stays

    monkeypatch.setattr(vmgga.api, "register", bug)
    with pytest.raises(OSError):
        main([str(a) for a in ["register", T2, T1, "-o", tmp_path / "out", "--quiet"]])


def test_sigterm_during_a_simpleitk_callback_becomes_a_clean_interrupt(small_image):
    """A SIGTERM that lands inside SimpleITK's Python callback (the affine's progress) must not turn
    into SimpleITK's RuntimeError and printed traceback: it is re-sent and interrupts afterwards."""
    import os
    import signal

    from vmgga.cli.register import _raise_interrupt

    moved = sitk.Image(small_image)
    moved.SetOrigin(tuple(o + 1.5 for o in small_image.GetOrigin()))  # something to optimise
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 5)
    method.SetInitialTransform(sitk.TranslationTransform(3), inPlace=False)
    method.SetInterpolator(sitk.sitkLinear)
    sent = []

    def callback():
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # handled inside this callback, inside Execute

    method.AddCommand(sitk.sitkIterationEvent, callback)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            method.Execute(small_image, moved)
            time.sleep(5)  # the re-sent signal arrives here, outside SimpleITK
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent
