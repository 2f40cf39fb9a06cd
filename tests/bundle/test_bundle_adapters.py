"""Unit tests of the bundle adapters (:mod:`vmgga.bundle`), no registration run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_helpers import CT_DICOM, MR_NIFTI

import vmgga
import vmgga.api
from vmgga.bundle import config as bundle_config
from vmgga.bundle import evaluation as bundle_evaluation
from vmgga.bundle import network as bundle_network
from vmgga.bundle import outputs as bundle_outputs
from vmgga.bundle import pairs as bundle_pairs
from vmgga.bundle import runner as bundle_runner
from vmgga.errors import ConfigError, InputError, OutputError


def test_registration_config_equals_make_config_with_the_same_settings():
    config = bundle_config.registration_config(
        preset="accurate", device="cpu", features="mind", seed=5, overrides={"dense.instance.iterations": 7}
    )
    expected = dataclasses.replace(
        vmgga.make_config("accurate", **{"dense.instance.iterations": 7, "dense.features.backend": "mind"}),
        device="cpu",
        seed=5,
    )
    assert config == expected


def test_registration_config_refuses_unknown_fields():
    with pytest.raises(ConfigError, match="threads_per_core"):
        bundle_config.registration_config(device="cpu", overrides={"threads_per_core": 2})
    with pytest.raises(ConfigError, match="adam_steps"):
        bundle_config.registration_config(device="cpu", overrides={"dense.adam_steps": 2})


def test_one_pair_writes_into_output_dir_and_datalist_into_case_folders(tmp_path):
    (one,) = bundle_pairs.load_pairs(fixed=CT_DICOM, moving=MR_NIFTI)
    assert bundle_outputs.pair_output_dir(tmp_path, one) == tmp_path
    listing = tmp_path / "sub" / "pairs.json"
    listing.parent.mkdir()
    listing.write_text(json.dumps([{"fixed": "../a.nii.gz", "moving": str(MR_NIFTI), "case_id": "c1"}]))
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (pair,) = bundle_pairs.load_pairs(datalist=listing)
    assert pair.fixed == str(listing.parent / "../a.nii.gz")  # relative to the datalist's folder
    assert bundle_outputs.pair_output_dir(tmp_path, pair) == tmp_path / "c1"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "empty"),
        ([{"fixed": str(MR_NIFTI)}], "needs 'fixed' and 'moving'"),
        ([{"fixed": str(MR_NIFTI), "moving": str(MR_NIFTI), "case_id": "../up"}], "not a safe folder name"),
        ([{"fixed": str(MR_NIFTI), "moving": str(MR_NIFTI), "label": "x"}], "unknown keys"),
        ([{"fixed": str(MR_NIFTI), "moving": str(MR_NIFTI), "case_id": "a"}] * 2, "more than once"),
    ],
)
def test_bad_datalists_are_refused(entries, message):
    with pytest.raises(ConfigError, match=message):
        bundle_pairs.load_pairs(datalist=entries)


def test_pair_forms_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        bundle_pairs.load_pairs(fixed=MR_NIFTI, moving=MR_NIFTI, datalist=[])
    with pytest.raises(ConfigError, match="either"):
        bundle_pairs.load_pairs()
    with pytest.raises(ConfigError, match="both --fixed and --moving"):
        bundle_pairs.load_pairs(fixed=MR_NIFTI)


def test_output_may_not_replace_an_input(tmp_path):
    moving = tmp_path / "warped.nii.gz"
    moving.write_bytes(b"")
    (pair,) = bundle_pairs.load_pairs(fixed=MR_NIFTI, moving=moving)
    with pytest.raises(OutputError, match="would overwrite the input"):
        bundle_outputs.check_no_input_overwritten(pair, tmp_path)


def test_scored_labels_are_those_shared_by_both_maps():
    fixed = np.array([0, 1, 2, 5])
    moving = np.array([0, 2, 5, 9])
    assert bundle_evaluation.scored_labels(fixed, moving, None) == [2, 5]
    assert bundle_evaluation.scored_labels(fixed, moving, [1, 2, 3]) == [2]


class _FakeResult:
    """Stands in for a RegistrationResult; write_outputs is replaced in these tests."""


def test_failed_write_leaves_no_folder_and_no_staging(tmp_path, monkeypatch):
    def write_half_then_fail(result, output_dir, qc=False):
        (output_dir / "transform.h5").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(vmgga.api, "write_outputs", write_half_then_fail)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        bundle_outputs.commit_outputs(_FakeResult(), out)
    assert list(tmp_path.iterdir()) == []


def test_successful_write_moves_every_file_in_place(tmp_path, monkeypatch):
    def write_all(result, output_dir, qc=False):
        paths = {
            name: output_dir / file
            for name, file in zip(["transform", "report"], ["transform.h5", "report.json"], strict=True)
        }
        for path in paths.values():
            path.write_text(path.name)
        return paths

    monkeypatch.setattr(vmgga.api, "write_outputs", write_all)
    out = tmp_path / "out"
    written = bundle_outputs.commit_outputs(_FakeResult(), out)
    assert written == {"transform": out / "transform.h5", "report": out / "report.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "report.json").read_text() == "report.json"


def test_datalist_runner_goes_on_after_a_failed_pair(tmp_path, monkeypatch):
    def fake_register(fixed, moving, config, progress=True):
        if "bad" in str(fixed):
            raise InputError(f"fixed image '{fixed}': broken")
        return _FakeResult()

    def fake_write(result, output_dir, qc=False):
        path = output_dir / "report.json"
        path.write_text("{}")
        return {"report": path}

    monkeypatch.setattr(vmgga.api, "register", fake_register)
    monkeypatch.setattr(vmgga.api, "write_outputs", fake_write)
    pairs = [
        bundle_pairs.RegistrationPair("bad.nii.gz", "m", "c0", output_subdir="c0"),
        bundle_pairs.RegistrationPair("ok", "m", "c1", output_subdir="c1"),
    ]
    runner = bundle_runner.RegistrationRunner(pairs, tmp_path / "out", config=vmgga.make_config())
    with pytest.raises(
        bundle_runner.BundleRunError, match=r"1 of 2 pairs failed: c0: fixed image 'bad.nii.gz': broken"
    ):
        runner.run()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c1"]


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("false", False), ("True", True), (0, False)])
def test_flags_from_the_command_line_parse_as_booleans(value, expected):
    assert bundle_config.as_bool(value, "qc") is expected


def test_unclear_flags_are_refused():
    with pytest.raises(ConfigError, match="stop_on_error='maybe'"):
        bundle_config.as_bool("maybe", "stop_on_error")


def test_bundle_weights_are_used_only_when_the_network_runs(tmp_path):
    weights = str(tmp_path / "model.pt")
    learned = bundle_config.registration_config(device="cpu", matcher="fused", matcher_weights=weights)
    assert (learned.dense.matching.matcher, learned.dense.features.weights) == ("fused", weights)
    preset = bundle_config.registration_config(device="cpu", matcher_weights=weights)  # fast: MIND only
    assert (preset.dense.matching.matcher, preset.dense.features.weights) == ("auto", None)
    free = bundle_config.registration_config(device="cpu", matcher="cost_volume", matcher_weights=weights)
    assert (free.dense.matching.matcher, free.dense.features.weights) == ("cost_volume", None)
    assert free == dataclasses.replace(
        vmgga.make_config(**{"dense.matching.matcher": "cost_volume"}), device="cpu"
    )


def test_existing_output_folder_keeps_its_files_when_the_write_fails(tmp_path, monkeypatch):
    def write_half_then_fail(result, output_dir, qc=False):
        raise OSError("disk full")

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    monkeypatch.setattr(vmgga.api, "write_outputs", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        bundle_outputs.commit_outputs(_FakeResult(), out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "report.json").read_text() == "old"


def test_affine_part_is_the_linear_transform_of_the_composite():
    affine = sitk.AffineTransform(3)
    affine.SetTranslation((1.0, 2.0, 3.0))

    def field():  # a fresh image each time: the transform takes the image over
        return sitk.DisplacementFieldTransform(sitk.Image([4, 4, 4], sitk.sitkVectorFloat64, 3))

    composite = sitk.CompositeTransform([affine, field()])
    part = bundle_evaluation.affine_part(composite)
    assert part.TransformPoint((0.0, 0.0, 0.0)) == pytest.approx((1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match="no affine part"):
        bundle_evaluation.affine_part(sitk.CompositeTransform([field()]))


def test_trained_weights_are_installed_atomically(tmp_path, monkeypatch):
    import vmgga.training

    trained = tmp_path / "run" / "weights.pt"
    trained.parent.mkdir()
    trained.write_bytes(b"new weights")
    monkeypatch.setattr(vmgga.training, "run_training", lambda config, resume, progress: trained)
    target = tmp_path / "bundle" / "models" / "model.pt"
    assert bundle_network.train_matcher(object(), model_path=target) == target
    assert target.read_bytes() == b"new weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]  # no temporary file left

    trained.unlink()  # the copy fails: the installed weights stay as they were
    from vmgga.errors import OutputWriteError

    with pytest.raises(OutputWriteError, match="No such file"):
        bundle_network.train_matcher(object(), model_path=target)
    assert target.read_bytes() == b"new weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]
