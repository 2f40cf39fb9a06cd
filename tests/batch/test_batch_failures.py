"""Failures that need no registration: broken chains, missing inputs, a folder in use."""

from __future__ import annotations

import csv
import json
import os

import pytest

from vmgga.batch.runner import BatchOptions, run_batch
from vmgga.errors import OutputError
from vmgga.io.lock import OutputFolderLock


def write_manifest(folder, content) -> str:
    path = folder / "manifest.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_a_failed_follow_up_fails_the_rest_of_its_chain_but_not_the_batch(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    manifest = write_manifest(tmp_path, {
        "cases": [{"case_id": "missing", "fixed": "nope.nii.gz", "moving": "nope2.nii.gz"}],
        "subjects": [{"subject": "S1", "baseline": "broken.nii.gz",
                      "followups": ["broken.nii.gz", "broken.nii.gz"], "chain": True}],
    })  # fmt: skip
    summary = run_batch(manifest, BatchOptions(tmp_path / "out", quiet=True))
    errors = {o.case_id: o.error for o in summary.outcomes}
    assert summary.counts == {"done": 0, "skipped": 0, "failed": 3} and summary.exit_status == 1
    assert "nope" in errors["missing"]
    assert "broken.nii.gz" in errors["S1_fu1"]
    assert "chained predecessor case 'S1_fu1' failed" in errors["S1_fu2"]
    for case_id in errors:
        assert json.loads((tmp_path / "out" / case_id / "error.json").read_text())["case_id"] == case_id
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["failed"] * 3


def test_a_folder_in_use_by_another_batch_is_refused(tmp_path):
    manifest = write_manifest(tmp_path, [{"case_id": "c1", "fixed": "a.nii.gz", "moving": "b.nii.gz"}])
    out = tmp_path / "out"
    with OutputFolderLock(out):  # held by this (live) process, as by a running batch
        with pytest.raises(OutputError, match="in use by another vmgga run"):
            run_batch(manifest, BatchOptions(out, quiet=True))
    assert not (out / "c1").exists()


def test_outputs_never_go_outside_the_case_folder(tmp_path):
    """A case whose input lies inside its own output folder is refused, nothing is overwritten."""
    out = tmp_path / "out"
    (out / "c1").mkdir(parents=True)
    image = out / "c1" / "warped.nii.gz"
    image.write_bytes(b"precious")
    manifest = write_manifest(tmp_path, [{"case_id": "c1", "fixed": str(image), "moving": str(image)}])
    summary = run_batch(manifest, BatchOptions(out, quiet=True))
    assert summary.outcomes[0].status == "failed" and "inside its output folder" in summary.outcomes[0].error
    assert image.read_bytes() == b"precious"
    assert sorted(os.listdir(out)) == ["c1", "index.html", "summary.csv", "summary.json"]
