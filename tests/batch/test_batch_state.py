"""Resumability bookkeeping: fingerprints and done.json validation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import SimpleITK as sitk

from vmgga.batch.manifest import Case
from vmgga.batch.state import DONE_NAME, case_fingerprint, completed_record, input_digest, write_done
from vmgga.config import make_config


def small_image(path, value: float = 1.0):
    image = sitk.GetImageFromArray(np.full((4, 5, 6), value, np.float32))
    sitk.WriteImage(image, str(path))
    return path


def make_case(tmp_path) -> Case:
    return Case("c1", str(small_image(tmp_path / "f.nii.gz")), str(small_image(tmp_path / "m.nii.gz", 2.0)))


def test_fingerprint_follows_inputs_config_and_predecessor_not_threads(tmp_path):
    case, config = make_case(tmp_path), make_config("fast")
    reference = case_fingerprint(case, config, None, None)
    assert case_fingerprint(case, dataclasses.replace(config, num_threads=3), None, None) == reference
    assert case_fingerprint(case, make_config("fast", seed=1), None, None) != reference
    assert case_fingerprint(case, config, None, "abc") != reference
    assert case_fingerprint(dataclasses.replace(case, moving_modality="mr"), config, None, None) != reference
    small_image(tmp_path / "m.nii.gz", 3.0)  # same path, new content
    assert case_fingerprint(case, config, None, None) != reference


def test_input_digest_of_folders_and_missing_paths(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"one")
    before = input_digest(str(folder))
    (folder / "b.dcm").write_bytes(b"two")
    assert input_digest(str(folder)) != before
    assert input_digest(str(tmp_path / "absent")).startswith("unreadable")
    assert input_digest(None) is None


def test_completed_record_checks_fingerprint_files_and_content(tmp_path):
    case_dir = tmp_path / "out" / "c1"
    case_dir.mkdir(parents=True)
    image = small_image(case_dir / "warped.nii.gz")
    report = case_dir / "report.json"
    report.write_text(json.dumps({"ok": 1}))
    write_done(case_dir, "fp", {"warped": image, "report": report}, {"metrics": {"x": 1.0}})
    assert completed_record(case_dir, "fp")["metrics"] == {"x": 1.0}
    assert completed_record(case_dir, "other") is None  # manifest row / config / inputs changed
    report.write_text(json.dumps({"ok": 2}))  # same size, other content
    assert completed_record(case_dir, "fp") is None
    report.write_text(json.dumps({"ok": 1}))
    assert completed_record(case_dir, "fp") is not None
    image.unlink()
    assert completed_record(case_dir, "fp") is None
    (case_dir / DONE_NAME).write_text("{trunc")
    assert completed_record(case_dir, "fp") is None


def test_an_output_that_no_longer_loads_is_not_complete(tmp_path):
    """Digests match what done.json records, but the file is not an image: not complete."""
    case_dir = tmp_path / "c1"
    case_dir.mkdir()
    fake = case_dir / "warped.nii.gz"
    fake.write_bytes(b"not a nifti")
    write_done(case_dir, "fp", {"warped": fake}, {})
    assert completed_record(case_dir, "fp") is None
