"""Start-up of the command line: help and argument errors come before torch or any heavy import.

Each case runs ``vmgga.cli.main.main`` in a fresh interpreter and then lists which heavy packages
that interpreter has imported; the list must be empty.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vmgga.cli.main import SUBCOMMANDS

STROKE = Path(__file__).resolve().parents[1] / "data" / "stroke"

#: Packages that cost start-up time (torch alone ~1-2 s of CPU) and that parsing never needs.
HEAVY = (
    "torch",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "pydicom",
    "matplotlib",
    "PIL",
    "cv2",
    "transformers",
    "distributed",
    "monai",
)


def run_main(args: list[str], cwd: Path) -> tuple[int, list[str], subprocess.CompletedProcess]:
    """Exit status of ``vmgga ARGS`` and the heavy packages imported by then (fresh interpreter)."""
    code = textwrap.dedent(f"""
        import json, sys
        from vmgga.cli.main import main
        try:
            status = main({args!r})
        except SystemExit as exit:
            status = exit.code
        heavy = [name for name in {HEAVY!r} if name in sys.modules]
        print(json.dumps({{"status": status, "heavy": heavy}}), file=sys.stderr)
    """)
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stderr.splitlines()[-1])
    return result["status"], result["heavy"], completed


@pytest.mark.parametrize("command", [[], *([name] for name in SUBCOMMANDS)])
def test_help_imports_nothing_heavy(command, tmp_path):
    status, heavy, completed = run_main([*command, "--help"], tmp_path)
    assert status == 0
    assert heavy == []
    assert "usage: vmgga" in completed.stdout
    if command:
        assert f"vmgga {command[0]}" in completed.stdout


def test_top_level_help_lists_every_subcommand(tmp_path):
    _, _, completed = run_main(["--help"], tmp_path)
    for name in SUBCOMMANDS:
        assert name in completed.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["register", "fixed.nii.gz"],  # missing the moving image and -o
        ["register", "a.nii.gz", "b.nii.gz", "-o", "out", "--preset", "slowest"],
        ["apply", "t.h5", "image.nii.gz", "-o", "w.nii.gz"],  # missing --reference
        ["match", "a.png", "b.png", "-o", "out", "--backend", "sift"],
        ["batch", "cases.csv"],  # missing -o
        ["train"],  # missing --config
        ["unknown-command"],
    ],
)
def test_argument_errors_exit_2_before_heavy_imports(args, tmp_path):
    status, heavy, completed = run_main(args, tmp_path)
    assert status == 2
    assert heavy == []
    assert "error:" in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_register_config_error_comes_before_heavy_imports(tmp_path):
    """A value argparse accepts but the configuration refuses (``--device gpu``): one line, exit 2."""
    args = ["register", str(STROKE / "T1.nii.gz"), str(STROKE / "T2.nii.gz"), "-o", "out", "--device", "gpu"]
    status, heavy, completed = run_main(args, tmp_path)
    assert status == 2
    assert heavy == []
    assert completed.stderr.splitlines()[0].startswith("vmgga register: error: device='gpu' is not allowed")
    assert len(completed.stderr.splitlines()) == 2  # the error line, then the test's own report
    assert list(tmp_path.iterdir()) == []


def test_register_output_over_an_input_is_refused_before_torch(tmp_path):
    """Refused before torch (the output names come from vmgga.export.outputs, which loads SimpleITK)."""
    moving = tmp_path / "moving.nii.gz"
    moving.write_bytes((STROKE / "T2.nii.gz").read_bytes())
    status, heavy, completed = run_main(
        ["register", str(STROKE / "T1.nii.gz"), str(moving), "-o", str(moving)], tmp_path
    )
    assert status == 2
    assert "torch" not in heavy
    assert completed.stderr.splitlines()[0].startswith("vmgga register: error:")
    assert moving.read_bytes() == (STROKE / "T2.nii.gz").read_bytes()


def test_apply_output_over_an_input_is_refused_before_heavy_imports(tmp_path):
    image = tmp_path / "labels.nii.gz"
    image.write_bytes((STROKE / "T2.nii.gz").read_bytes())
    args = ["apply", "transform.h5", str(image), "--reference", str(STROKE / "T1.nii.gz"), "-o", str(image)]
    status, heavy, completed = run_main(args, tmp_path)
    assert status == 2
    assert heavy == []
    assert completed.stderr.splitlines()[0].startswith("vmgga apply: error:")
    assert image.read_bytes() == (STROKE / "T2.nii.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]
