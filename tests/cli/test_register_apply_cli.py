"""The command line: register writes a complete set with JSON progress; apply warps labels; user errors
are one clear line with exit status 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "data"
T1, T2 = DATA / "stroke" / "T1.nii.gz", DATA / "stroke" / "T2.nii.gz"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """``vmgga register`` run as a user would, with JSON-lines progress."""
    out = tmp_path_factory.mktemp("cli") / "out"
    command = [
        sys.executable,
        "-m",
        "vmgga",
        "register",
        str(T1),
        str(T2),
        "-o",
        str(out),
        "--progress-json",
        "--threads",
        "2",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return out, completed


def test_register_writes_outputs_and_json_progress(registered):
    out, completed = registered
    assert completed.returncode == 0, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1]["event"] == "done"
    assert sorted(Path(p).name for p in events[-1]["outputs"].values()) == [
        "confidence.nii.gz",
        "report.json",
        "transform.h5",
        "warped.nii.gz",
    ]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "confidence.nii.gz",
        "report.json",
        "transform.h5",
        "warped.nii.gz",
    ]


def test_apply_labels_matches_simpleitk_nearest_neighbour(registered, tmp_path):
    out, _ = registered
    t1 = sitk.ReadImage(str(T1))
    labels = sitk.Cast(sitk.OtsuMultipleThresholds(t1, 2), sitk.sitkUInt8)
    labels_path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(labels, str(labels_path))
    warped_path = tmp_path / "warped_labels.nii.gz"
    status = main(
        [
            "apply",
            str(out / "transform.h5"),
            str(labels_path),
            "--reference",
            str(T1),
            "-o",
            str(warped_path),
            "--labels",
        ]
    )
    assert status == 0
    warped = sitk.ReadImage(str(warped_path))
    expected = sitk.Resample(
        labels, t1, sitk.ReadTransform(str(out / "transform.h5")), sitk.sitkNearestNeighbor, 0
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(expected))
    assert warped.GetPixelID() == sitk.sitkUInt8


def test_missing_input_is_one_clear_line(tmp_path, capsys):
    status = main(["register", str(tmp_path / "nope.nii.gz"), str(T2), "-o", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert status == 2
    assert "nope.nii.gz" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()  # a failed run leaves not even an empty folder


def test_an_input_inside_the_output_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    moving = out / "warped.nii.gz"  # the name register would write
    moving.write_bytes(T2.read_bytes())
    status = main(["register", str(T1), str(moving), "-o", str(out)])
    assert status == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert moving.read_bytes() == T2.read_bytes()


def test_output_onto_an_input_is_refused(tmp_path, capsys):
    copy = tmp_path / "T1.nii.gz"
    copy.write_bytes(T1.read_bytes())
    before = copy.read_bytes()
    status = main(["apply", str(tmp_path / "t.h5"), str(copy), "--reference", str(copy), "-o", str(copy)])
    assert status == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert copy.read_bytes() == before


def test_apply_with_a_foreign_transform_file(tmp_path, capsys):
    foreign = tmp_path / "transform.h5"
    foreign.write_text("not hdf5")
    status = main(["apply", str(foreign), str(T2), "--reference", str(T1), "-o", str(tmp_path / "w.nii.gz")])
    assert status == 2
    assert "not a readable ITK transform" in capsys.readouterr().err
    assert not (tmp_path / "w.nii.gz").exists()


def test_matcher_and_features_options_reach_the_config():
    import argparse

    from vmgga.cli.register import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["f.nii", "m.nii", "-o", "out", "--matcher", "vmgga", "--features", "mind+vmgga"]
    )
    dense = config_from_args(args).dense
    assert (dense.matching.matcher, dense.features.backend) == ("vmgga", "mind+vmgga")
    default = config_from_args(parser.parse_args(["f.nii", "m.nii", "-o", "out"])).dense
    assert (default.matching.matcher, default.features.backend) == (
        "auto",
        "auto",
    )  # the preset's: auto resolves to mind for the cost volume


def test_register_report_judges_a_good_pair_ok(registered):
    out, completed = registered
    report = json.loads((out / "report.json").read_text())
    assert (report["status"], report["suspect_reasons"]) == ("ok", [])
    assert "suspect" not in completed.stderr


def test_ct_window_option_sets_the_window_the_ct_is_scaled_with():
    """A CT not in HU (a template from air 0 to bone 3800): its own units map to 0..1."""
    import argparse

    from vmgga.cli.register import add_arguments, config_from_args
    from vmgga.config import Modality
    from vmgga.preprocess.intensity import normalise_intensity

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["f.nii", "m.nii", "-o", "out", "--moving-modality", "ct", "--ct-window", "0", "3800"]
    )
    config = config_from_args(args)
    assert config.preprocess.ct_window_hu == (0.0, 3800.0)
    assert config.preprocess.moving_modality == "ct"
    scaled = normalise_intensity(
        np.array([-50.0, 0.0, 1900.0, 3800.0, 5000.0]), Modality.CT, config.preprocess
    )
    np.testing.assert_allclose(scaled, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    default = config_from_args(parser.parse_args(["f.nii", "m.nii", "-o", "out"]))
    assert default.preprocess.ct_window_hu == (-1000.0, 1500.0)


def test_half_turn_search_option_turns_the_search_on():
    import argparse

    from vmgga.cli.register import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    on = config_from_args(parser.parse_args(["f.nii", "m.nii", "-o", "out", "--half-turn-search"]))
    off = config_from_args(parser.parse_args(["f.nii", "m.nii", "-o", "out"]))
    assert on.affine.half_turn_search is True and off.affine.half_turn_search is False
