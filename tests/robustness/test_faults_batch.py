"""Fault injection and concurrency through ``vmgga batch`` on tiny real pairs (issue 16): kill -9
at several points then resume, a concurrent second batch, and ``--workers 2`` and a Dask cluster
(scheduler and workers started on 127.0.0.1 here) giving the same outputs as a serial run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fault_helpers_cli import (
    assert_one_line,
    event_reached,
    kill_at,
    register_set_state,
    start,
    tiny_pair,
    vmgga_command,
)

from vmgga.batch.runner import BatchOptions, run_batch

pytestmark = pytest.mark.slow

CASES = ("c1", "c2")
#: A quick registration (seconds per case on tiny images); not for accuracy.
QUICK = {"preprocess.working_spacing_mm": 4.0, "dense.instance.iterations": 10, "affine.iterations": 20}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("manifest")
    t2, t1 = tiny_pair(folder, ("T2", "T1"))
    flair, _ = tiny_pair(folder, ("FLAIR", "T1"))
    cases = [{"case_id": "c1", "fixed": str(t2), "moving": str(t1)},
             {"case_id": "c2", "fixed": str(flair), "moving": str(t1)}]  # fmt: skip
    path = folder / "manifest.json"
    path.write_text(json.dumps({"config": QUICK, "cases": cases}))
    return path


@pytest.fixture(scope="module")
def serial(manifest, tmp_path_factory) -> Path:
    """OUT of the serial reference batch (one process, one thread)."""
    out = tmp_path_factory.mktemp("serial") / "out"
    summary = run_batch(manifest, BatchOptions(out, workers=1, threads=1, quiet=True))
    assert summary.counts == {"done": 2, "skipped": 0, "failed": 0}
    return out


def fixed_of(manifest: Path, case_id: str) -> Path:
    cases = json.loads(manifest.read_text())["cases"]
    return Path(next(c["fixed"] for c in cases if c["case_id"] == case_id))


def transform_parameters(path: Path) -> list[np.ndarray]:
    composite = sitk.CompositeTransform(sitk.ReadTransform(str(path)))
    return [
        np.asarray(composite.GetNthTransform(n).GetParameters())
        for n in range(composite.GetNumberOfTransforms())
    ]


def assert_same_outputs(out_a: Path, out_b: Path) -> None:
    """Identical images, transforms, report statistics and verdicts for every case."""
    for case_id in CASES:
        a, b = out_a / case_id, out_b / case_id
        for name in ("warped.nii.gz", "confidence.nii.gz"):
            np.testing.assert_array_equal(
                sitk.GetArrayFromImage(sitk.ReadImage(str(a / name))),
                sitk.GetArrayFromImage(sitk.ReadImage(str(b / name))),
                err_msg=f"{case_id}/{name}",
            )
        for pa, pb in zip(transform_parameters(a / "transform.h5"), transform_parameters(b / "transform.h5"),
                          strict=True):  # fmt: skip
            np.testing.assert_array_equal(pa, pb, err_msg=f"{case_id}/transform.h5")
        reports = [json.loads((o / "report.json").read_text()) for o in (a, b)]
        for key in ("jacobian", "confidence", "similarity", "status", "suspect_reasons"):
            assert reports[0][key] == reports[1][key], (case_id, key)


def assert_cases_none_or_complete(out: Path, manifest: Path) -> None:
    """Every case folder holds no set or a complete loadable one; done.json only with a complete set."""
    for case_id in CASES:
        state = register_set_state(out / case_id, fixed_of(manifest, case_id))
        if (out / case_id / "done.json").exists():
            assert state == "complete"


# --- concurrency ----------------------------------------------------------------------------------


def test_two_local_workers_give_the_serial_outputs(manifest, serial, tmp_path):
    summary = run_batch(manifest, BatchOptions(tmp_path / "out", workers=2, threads=1, quiet=True))
    assert summary.counts == {"done": 2, "skipped": 0, "failed": 0}
    assert_same_outputs(serial, tmp_path / "out")


def test_a_dask_cluster_on_localhost_gives_the_serial_outputs(manifest, serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:  # fmt: skip
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        summary = run_batch(
            manifest, BatchOptions(tmp_path / "out", scheduler=cluster.scheduler_address, quiet=True)
        )
    assert summary.counts == {"done": 2, "skipped": 0, "failed": 0}
    assert_same_outputs(serial, tmp_path / "out")


# --- kill -9 and a second batch -------------------------------------------------------------------


def test_batch_killed_at_several_points_resumes_to_the_serial_outputs(manifest, serial, tmp_path):
    out = tmp_path / "out"
    command = vmgga_command("batch", manifest, "-o", out, "--workers", "1", "--threads", "1", "--quiet")
    points = [
        ("locked", lambda: event_reached(out, "locked")),
        ("c1 writing", lambda: event_reached(out / "c1", "staging")),
        ("c1 done", lambda: event_reached(out / "c1", "complete")),
        ("c2 writing", lambda: event_reached(out / "c2", "staging")),
    ]
    killed = []
    for name, reached in points:
        process = start(command)
        if kill_at(process, reached):
            killed.append(name)
        assert_cases_none_or_complete(out, manifest)
        assert not (out / "summary.csv").exists() or process.returncode == 0
    assert "locked" in killed
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_outputs(serial, out)
    assert not list(out.rglob(".*partial*")) and not (out / ".vmgga.lock").exists()


def test_a_second_batch_on_the_same_folder_is_refused(manifest, tmp_path):
    out = tmp_path / "out"
    first = start(vmgga_command("batch", manifest, "-o", out, "--threads", "1", "--quiet"))
    deadline = time.monotonic() + 300
    while not event_reached(out, "locked"):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    second = subprocess.run(
        vmgga_command("batch", manifest, "-o", out, "--quiet"), capture_output=True, text=True, timeout=300
    )
    if first.poll() is None:  # still running when the second batch checked the lock
        assert second.returncode == 2
        assert_one_line(second.stderr, "in use by another vmgga run")
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert_cases_none_or_complete(out, manifest)
    assert all((out / c / "done.json").exists() for c in CASES)


def test_batch_onto_a_full_disk_is_one_line_and_exit_2(manifest, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = folder / "out"
        run = subprocess.run(
            vmgga_command("batch", manifest, "-o", out, "--quiet"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr
        ours = [line for line in run.stderr.splitlines() if line.startswith("vmgga")]
        assert len(ours) == 1 and "no space left" in ours[0].lower(), run.stderr
        assert not list(out.rglob("done.json")) and not list(out.rglob("report.json"))
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
