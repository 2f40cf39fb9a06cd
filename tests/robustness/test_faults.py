"""Issue 8, faults through the real pipeline: determinism, killed runs, bad transform files for
``vmgga apply``, images that do not overlap, and user errors without a traceback."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.cli.main import main
from vmgga.config import make_config
from vmgga.errors import RegistrationFailedError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
FIXED, MOVING = DATA_DIR / "stroke" / "T2.nii.gz", DATA_DIR / "stroke" / "T1.nii.gz"
FINAL_OUTPUTS = ("transform.h5", "warped.nii.gz", "confidence.nii.gz", "report.json")


def quick_config(**overrides):
    """A coarse, short registration (seconds) for fault tests; not for accuracy."""
    return make_config(**{"preprocess.working_spacing_mm": 4.0, "dense.instance.iterations": 10}, **overrides)


def flat_parameters(transform: sitk.Transform) -> list[np.ndarray]:
    """Parameters of every transform inside a composite, in order."""
    composite = sitk.CompositeTransform(transform)
    return [
        np.asarray(composite.GetNthTransform(n).GetParameters())
        for n in range(composite.GetNumberOfTransforms())
    ]


def assert_none_or_complete(out: Path) -> str:
    """``out`` holds no final output, or all of them, loadable; returns which."""
    present = [name for name in FINAL_OUTPUTS if (out / name).exists()]
    if not present:
        return "none"
    assert present == list(FINAL_OUTPUTS), f"incomplete outputs in {out}: {present}"
    report = json.loads((out / "report.json").read_text())
    assert isinstance(report, dict) and report
    assert sitk.CompositeTransform(sitk.ReadTransform(str(out / "transform.h5"))).GetNumberOfTransforms() >= 1
    fixed_size = sitk.ReadImage(str(FIXED)).GetSize()
    for name in ("warped.nii.gz", "confidence.nii.gz"):
        assert sitk.ReadImage(str(out / name)).GetSize() == fixed_size
    return "complete"


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_inputs_and_seed_give_bit_identical_outputs():
    from vmgga.api import register

    config = quick_config(seed=7)
    first = register(FIXED, MOVING, config, progress=False)
    second = register(FIXED, MOVING, config, progress=False)
    for a, b in zip(flat_parameters(first.transform), flat_parameters(second.transform), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("warped", "confidence", "jacobian_determinant"):
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(getattr(first, name)), sitk.GetArrayFromImage(getattr(second, name))
        )


# --- killed runs --------------------------------------------------------------------------------


def start_register(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "vmgga", "register", str(FIXED), str(MOVING), "-o", str(out), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_registrations_leave_no_output_or_a_complete_one(tmp_path):
    rng = random.Random(2024)
    out = tmp_path / "out"
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
        process = start_register(out)
        time.sleep(rng.uniform(1.0, 12.0))
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
        # 130: the CLI's SIGTERM handler unwound cleanly; -15/-9: killed before it was installed
        assert process.returncode in (0, 130, -int(sig)), stderr
        if process.returncode == 130:
            assert "Traceback" not in stderr and "interrupted" in stderr
        assert_none_or_complete(out)
    process = start_register(out)  # a full run after the killed ones (their locks are stale)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert assert_none_or_complete(out) == "complete"
    assert not [p.name for p in out.iterdir() if p.name not in FINAL_OUTPUTS]  # no lock, no debris


# --- vmgga apply with bad transform files --------------------------------------------------------


@pytest.fixture
def transform_file(tmp_path) -> Path:
    """A composite (affine + displacement field) transform file, as ``vmgga register`` writes one."""
    reference = sitk.ReadImage(str(FIXED))
    field = sitk.Image(reference.GetSize(), sitk.sitkVectorFloat64, 3)
    field.CopyInformation(reference)
    composite = sitk.CompositeTransform([sitk.AffineTransform(3), sitk.DisplacementFieldTransform(field)])
    path = tmp_path / "transform.h5"
    sitk.WriteTransform(composite, str(path))
    return path


def run_apply(transform: Path, out: Path, capsys) -> tuple[int, str]:
    status = main(["apply", str(transform), str(MOVING), "--reference", str(FIXED), "-o", str(out)])
    return status, capsys.readouterr().err


def test_apply_works_with_a_good_transform_file(transform_file, tmp_path, capsys):
    status, _ = run_apply(transform_file, tmp_path / "warped.nii.gz", capsys)
    assert status == 0 and (tmp_path / "warped.nii.gz").exists()


@pytest.mark.parametrize("damage", ["truncated", "image", "text", "empty"])
def test_apply_refuses_a_truncated_or_foreign_transform_file(transform_file, tmp_path, capsys, damage):
    bad = tmp_path / f"{damage}.h5"
    data = {
        "truncated": transform_file.read_bytes()[: transform_file.stat().st_size // 2],
        "image": FIXED.read_bytes(),
        "text": b"#Insight Transform File V1.0\nnot a transform\n",
        "empty": b"",
    }[damage]
    bad.write_bytes(data)
    out = tmp_path / "warped.nii.gz"
    status, stderr = run_apply(bad, out, capsys)
    assert status == 2
    assert f"{damage}.h5" in stderr and "not a readable ITK transform file" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_apply_refuses_to_overwrite_its_input(transform_file, tmp_path, capsys):
    moving_copy = tmp_path / "moving.nii.gz"
    moving_copy.write_bytes(MOVING.read_bytes())
    before = moving_copy.read_bytes()
    status = main(
        ["apply", str(transform_file), str(moving_copy), "--reference", str(FIXED), "-o", str(moving_copy)]
    )
    assert status == 2 and "would overwrite the input" in capsys.readouterr().err
    assert moving_copy.read_bytes() == before


# --- inputs the pipeline must refuse ------------------------------------------------------------


def test_images_that_do_not_overlap_after_initial_alignment(tmp_path):
    from vmgga.api import register

    moving = sitk.ReadImage(str(MOVING))
    moving.SetOrigin(tuple(np.asarray(moving.GetOrigin()) + 500.0))  # half a metre away
    with pytest.raises(RegistrationFailedError, match="do not overlap"):
        config = quick_config(**{"affine.enabled": False})
        register(FIXED, moving, config, initial_transform=sitk.AffineTransform(3), progress=False)


def test_register_user_error_exits_2_without_traceback(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["register", str(tmp_path / "missing.nii.gz"), str(MOVING), "-o", str(out), "--quiet"])
    stderr = capsys.readouterr().err
    assert status == 2 and "missing.nii.gz" in stderr and "does not exist" in stderr
    assert "Traceback" not in stderr
    assert not out.exists() or not any(out.iterdir())


def test_register_refuses_a_busy_output_folder(tmp_path, capsys):
    from vmgga.io.lock import OutputFolderLock

    out = tmp_path / "out"
    with OutputFolderLock(out):
        status = main(["register", str(FIXED), str(MOVING), "-o", str(out), "--quiet"])
    stderr = capsys.readouterr().err
    assert status == 2 and "is in use by another vmgga run" in stderr and f"pid {os.getpid()}" in stderr
    assert sorted(p.name for p in out.iterdir()) == []


# --- memory cap ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_memory_cap_coarsens_the_working_grid():
    from vmgga.api import register
    from vmgga.dense.memory import estimate_dense_memory_bytes

    config = make_config(max_memory_gb=0.02, **{"dense.instance.iterations": 2})
    result = register(FIXED, MOVING, config, progress=False)
    grid = result.report["working_grid"]
    assert grid["spacing_mm"][0] > config.preprocess.working_spacing_mm
    assert any("memory cap of 0.02 GB" in note for note in grid["notes"])
    shape_dhw = tuple(reversed(grid["size_ijk"]))
    assert estimate_dense_memory_bytes(shape_dhw, config.dense) <= 0.02 * 2**30
    assert result.displacement_lps_mm.GetSize() == tuple(grid["size_ijk"])


def test_impossible_memory_cap_is_a_clear_error():
    from vmgga.api import register
    from vmgga.errors import ConfigError

    with pytest.raises(ConfigError, match="needs more memory than the cap .* raise --max-memory"):
        register(FIXED, MOVING, make_config(max_memory_gb=1e-6), progress=False)


def test_an_initial_transform_turns_the_half_turn_search_off_and_says_so():
    """The user's start replaces the centred one: no turned starts run, and the report notes why."""
    import SimpleITK as sitk

    from vmgga.api import register

    config = make_config(**{"affine.half_turn_search": True, "dense.instance.iterations": 2})
    result = register(FIXED, MOVING, config, progress=False, initial_transform=sitk.AffineTransform(3))
    assert list(result.report["affine"]["mattes_mi_by_start"]) == ["none"]
    assert any("half_turn_search: not run" in note for note in result.report["working_grid"]["notes"])
    searched = register(FIXED, MOVING, config, progress=False)
    assert set(searched.report["affine"]["mattes_mi_by_start"]) == {"none", "x", "y", "z"}
    assert searched.report["affine"]["start_half_turn"] == "none"
