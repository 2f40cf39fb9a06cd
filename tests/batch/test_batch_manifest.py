"""Manifests: CSV and JSON rows, the longitudinal shorthand, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmgga.batch.manifest import read_manifest
from vmgga.errors import ConfigError, InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_with_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    manifest = write(
        folder / "m.csv",
        "case_id,fixed,moving,fixed_modality,moving_modality,fixed_labels,moving_labels\n"
        "p1,ct/p1.nii.gz,mr/p1.nii.gz,CT,mr,ct/p1_seg.nii.gz,\n"
        "p2,/abs/ct.nii.gz,mr/p2,,,,\n",
    )
    cases = read_manifest(manifest).cases
    assert [c.case_id for c in cases] == ["p1", "p2"]
    assert cases[0].fixed == str(folder / "ct" / "p1.nii.gz")
    assert cases[0].fixed_modality == "ct" and cases[0].moving_modality == "mr"
    assert cases[0].fixed_labels == str(folder / "ct" / "p1_seg.nii.gz") and cases[0].moving_labels is None
    assert cases[1].fixed == "/abs/ct.nii.gz" and cases[1].fixed_modality == "auto"


def test_longitudinal_subject_expands_to_follow_up_cases(tmp_path):
    content = {
        "config": {"dense.instance.iterations": 5},
        "cases": [{"case_id": "extra", "fixed": "a.nii.gz", "moving": "b.nii.gz"}],
        "subjects": [
            {"subject": "S1", "baseline": "s1/base.nii.gz", "baseline_labels": "s1/base_seg.nii.gz",
             "followups": ["s1/m06.nii.gz", {"image": "s1/m12.nii.gz", "labels": "s1/m12_seg.nii.gz"}],
             "chain": True, "modality": "mr"},
            {"subject": "S2", "baseline": "s2/base.nii.gz", "followups": ["s2/m06.nii.gz", "s2/m12.nii.gz"]},
        ],
    }  # fmt: skip
    manifest = read_manifest(write(tmp_path / "m.json", json.dumps(content)))
    ids = [c.case_id for c in manifest.cases]
    assert ids == ["extra", "S1_fu1", "S1_fu2", "S2_fu1", "S2_fu2"]
    by_id = {c.case_id: c for c in manifest.cases}
    assert by_id["S1_fu2"].fixed == str(tmp_path / "s1" / "base.nii.gz")  # every follow-up -> baseline
    assert by_id["S1_fu2"].moving == str(tmp_path / "s1" / "m12.nii.gz")
    assert by_id["S1_fu2"].moving_labels == str(tmp_path / "s1" / "m12_seg.nii.gz")
    assert by_id["S1_fu2"].fixed_labels == str(tmp_path / "s1" / "base_seg.nii.gz")
    assert by_id["S1_fu1"].chain_from is None and by_id["S1_fu2"].chain_from == "S1_fu1"
    assert by_id["S2_fu2"].chain_from is None  # not chained: registered to the baseline directly
    assert by_id["S1_fu1"].moving_modality == "mr"
    assert manifest.config_overrides == {"dense.instance.iterations": 5}


@pytest.mark.parametrize("case_id", ["../evil", "a/b", ".hidden", "", "x" * 101, "index.html", "a b", "ca$e"])
def test_unsafe_case_ids_are_refused(tmp_path, case_id):
    rows = [{"case_id": case_id, "fixed": "f.nii.gz", "moving": "m.nii.gz"}]
    with pytest.raises((ConfigError, InputError), match="case id|missing"):
        read_manifest(write(tmp_path / "m.json", json.dumps(rows)))


def test_dice_labels_from_csv_text_and_json_lists(tmp_path):
    csv_manifest = write(tmp_path / "m.csv", 'case_id,fixed,moving,dice_labels\np1,a,b,"5 1;3"\np2,a,b,\n')
    assert [c.dice_labels for c in read_manifest(csv_manifest).cases] == [(1, 3, 5), None]
    subject = {"subject": "S", "baseline": "b", "followups": ["f"], "dice_labels": [2, 1]}
    json_manifest = write(tmp_path / "m.json", json.dumps({"subjects": [subject]}))
    assert read_manifest(json_manifest).cases[0].dice_labels == (1, 2)
    for bad in ("liver", "0 1"):
        with pytest.raises(ConfigError, match="dice_labels"):
            read_manifest(write(tmp_path / "bad.csv", f"case_id,fixed,moving,dice_labels\np1,a,b,{bad}\n"))


def test_duplicate_ids_unknown_columns_and_bad_modalities_are_refused(tmp_path):
    duplicate = write(tmp_path / "d.csv", "case_id,fixed,moving\nP1,a,b\np1,c,d\n")
    with pytest.raises(ConfigError, match="repeats"):
        read_manifest(duplicate)
    typo = write(tmp_path / "t.csv", "case_id,fixed,moving,moving_lables\np1,a,b,c\n")
    with pytest.raises(ConfigError, match="unknown columns"):
        read_manifest(typo)
    modality = write(tmp_path / "mod.csv", "case_id,fixed,moving,fixed_modality\np1,a,b,pet\n")
    with pytest.raises(ConfigError, match="modality"):
        read_manifest(modality)
    subject = [{"subject": "S/1", "baseline": "b", "followups": ["f"]}]
    with pytest.raises(ConfigError, match="case id"):
        read_manifest(write(tmp_path / "s.json", json.dumps({"subjects": subject})))


def test_unreadable_or_empty_manifests_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="not readable JSON"):
        read_manifest(write(tmp_path / "bad.json", "{not json"))
    with pytest.raises(InputError, match="no cases"):
        read_manifest(write(tmp_path / "empty.csv", "case_id,fixed,moving\n"))
    with pytest.raises(InputError, match="csv or .json"):
        read_manifest(write(tmp_path / "m.txt", "x"))
