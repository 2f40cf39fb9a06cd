"""``monai.bundle run`` registers real pairs and writes what ``vmgga.register`` writes.

The reference is :func:`vmgga.register` + :func:`vmgga.write_outputs` called directly on the same
pair with the same settings (``library_outputs``); the bundle's files must match it up to
floating-point tolerance.
"""

from __future__ import annotations

import json
import os

import numpy as np
import SimpleITK as sitk
from bundle_helpers import (
    BUNDLE,
    CT_DICOM,
    CT_DICOM_LABELS,
    CT_NIFTI,
    EVALUATE,
    INFERENCE,
    MR_LABELS,
    MR_NIFTI,
    QUICK_OVERRIDES,
    SEED,
    assert_same_transform_files,
    quick_overrides_arg,
    run_bundle_cli,
    transform_leaves,
)

#: Label values with the same organ in the CT and MR maps (tests/data/README.md): 1 spleen ... 9 left adrenal.
SHARED_MEANING_LABELS = list(range(1, 10))

OUTPUT_FILES = {"transform.h5", "warped.nii.gz", "confidence.nii.gz", "report.json"}


def _read_dicom_series(folder) -> sitk.Image:
    """The CT series read independently with SimpleITK/GDCM (reference grid for point checks)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_outputs(actual, expected) -> None:
    """Same file set, same transform, same warped/confidence voxels, same registration config."""
    assert {p.name for p in actual.iterdir()} == OUTPUT_FILES
    assert_same_transform_files(
        actual / "transform.h5", expected / "transform.h5", _read_dicom_series(CT_DICOM)
    )
    for name in ("warped.nii.gz", "confidence.nii.gz"):
        a, e = sitk.ReadImage(str(actual / name)), sitk.ReadImage(str(expected / name))
        assert a.GetSize() == e.GetSize()
        np.testing.assert_allclose(a.GetOrigin(), e.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(e), atol=1e-4)
    report_a = json.loads((actual / "report.json").read_text())
    report_e = json.loads((expected / "report.json").read_text())
    assert report_a["config"] == report_e["config"]
    assert report_a["working_grid"] == report_e["working_grid"]


def _bundle_run(**override) -> None:
    """``monai.bundle.run`` in this process with the bundle's configs."""
    from monai.bundle import run

    override.setdefault("config_file", str(INFERENCE))
    run(bundle_root=str(BUNDLE), device="cpu", seed=SEED, overrides=dict(QUICK_OVERRIDES), **override)


def test_cli_one_pair_dicom_vs_nifti_matches_library(library_outputs, tmp_path):
    out = tmp_path / "bundle_out"
    process = run_bundle_cli(
        "run",
        "--config_file", str(INFERENCE),
        "--bundle_root", str(BUNDLE),
        "--fixed", str(CT_DICOM),
        "--moving", str(MR_NIFTI),
        "--output_dir", str(out),
        "--device", "cpu",
        "--preset", "fast",
        "--seed", str(SEED),
        "--overrides", quick_overrides_arg(),
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    _assert_same_outputs(out, library_outputs)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["device"] == "cpu" and report["config"]["dense"]["features"]["backend"] == "auto"


def test_datalist_runs_two_pairs(library_outputs, tmp_path):
    datalist = tmp_path / "lists" / "pairs.json"
    datalist.parent.mkdir()
    relative_mr = os.path.relpath(MR_NIFTI, datalist.parent)  # relative to the datalist's folder
    pairs = [
        {"fixed": str(CT_DICOM), "moving": relative_mr, "case_id": "ct_dicom_vs_mr"},
        {"fixed": str(MR_NIFTI), "moving": str(CT_NIFTI), "case_id": "mr_vs_ct"},
    ]
    datalist.write_text(json.dumps(pairs))
    out = tmp_path / "many"
    _bundle_run(datalist=str(datalist), output_dir=str(out))
    assert sorted(p.name for p in out.iterdir()) == ["ct_dicom_vs_mr", "mr_vs_ct"]
    _assert_same_outputs(out / "ct_dicom_vs_mr", library_outputs)
    second = json.loads((out / "mr_vs_ct" / "report.json").read_text())
    assert {p.name for p in (out / "mr_vs_ct").iterdir()} == OUTPUT_FILES
    warped = sitk.ReadImage(str(out / "mr_vs_ct" / "warped.nii.gz"))
    assert warped.GetSize() == sitk.ReadImage(str(MR_NIFTI)).GetSize()  # on the fixed (MR) grid
    assert second["inputs"]["fixed"] != second["inputs"]["moving"]


def _dice(fixed_labels: sitk.Image, warped_labels: sitk.Image, label: int) -> float:
    """Dice of one label by SimpleITK's overlap filter (independent of the bundle's numpy code)."""
    a = sitk.Cast(fixed_labels == label, sitk.sitkUInt8)
    b = sitk.Cast(warped_labels == label, sitk.sitkUInt8)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(a, b)
    return overlap.GetDiceCoefficient()


def test_evaluate_scores_warped_labels(library_outputs, tmp_path):
    out = tmp_path / "eval"
    _bundle_run(
        config_file=[str(INFERENCE), str(EVALUATE)],
        fixed=str(CT_DICOM),
        moving=str(MR_NIFTI),
        fixed_labels=str(CT_DICOM_LABELS),
        moving_labels=str(MR_LABELS),
        labels=SHARED_MEANING_LABELS,
        output_dir=str(out),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    case = metrics["cases"]["pair"]
    _assert_same_outputs_subset(out, library_outputs)
    fixed_labels = sitk.ReadImage(str(CT_DICOM_LABELS))
    moving_labels = sitk.ReadImage(str(MR_LABELS))
    transform = sitk.ReadTransform(str(out / "transform.h5"))
    affine = transform_leaves(out / "transform.h5")[0]
    assert affine.GetName() == "AffineTransform"
    ways = {"registered": transform, "affine": affine, "identity": sitk.Transform()}
    shared = set(np.unique(sitk.GetArrayFromImage(fixed_labels))) & set(
        np.unique(sitk.GetArrayFromImage(moving_labels))
    )
    expected_labels = {str(v) for v in SHARED_MEANING_LABELS if v in shared}
    assert len(expected_labels) >= 3
    for name, way in ways.items():
        warped = sitk.Resample(moving_labels, fixed_labels, way, sitk.sitkNearestNeighbor, 0)
        assert set(case[f"dice_{name}"]) == expected_labels
        for label, value in case[f"dice_{name}"].items():
            assert abs(value - _dice(fixed_labels, warped, int(label))) < 1e-9, (name, label)
        assert abs(case[f"mean_dice_{name}"] - np.mean(list(case[f"dice_{name}"].values()))) < 1e-12
    report = json.loads((out / "report.json").read_text())
    assert case["jacobian"] == report["jacobian"]
    assert metrics["summary"]["n_cases"] == 1


def _assert_same_outputs_subset(out, expected) -> None:
    """Evaluation writes the registration files (plus metrics.json); they match the library's."""
    assert OUTPUT_FILES | {"metrics.json"} == {p.name for p in out.iterdir()}
    assert_same_transform_files(out / "transform.h5", expected / "transform.h5", _read_dicom_series(CT_DICOM))


def test_features_vmgga_uses_the_bundle_checkpoint(tmp_path):
    """With ``--features vmgga`` the registration is configured with ``<bundle_root>/models/model.pt``."""
    import torch
    from monai.bundle import run

    from vmgga.models.checkpoint import save_checkpoint
    from vmgga.models.network import MatcherNet

    bundle_root = tmp_path / "bundle"
    torch.manual_seed(0)
    checkpoint = save_checkpoint(MatcherNet().eval(), bundle_root / "models" / "model.pt", {"note": "test"})
    out = tmp_path / "out"
    run(
        config_file=str(INFERENCE), bundle_root=str(bundle_root), device="cpu", seed=SEED,
        overrides=dict(QUICK_OVERRIDES), features="vmgga", fixed=str(MR_NIFTI), moving=str(CT_NIFTI),
        output_dir=str(out),
    )  # fmt: skip
    dense = json.loads((out / "report.json").read_text())["config"]["dense"]
    assert dense["features"]["backend"] == "vmgga"
    assert dense["features"]["weights"] == str(checkpoint)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
