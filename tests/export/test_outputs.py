"""Issue 16 item 2: a new output set replaces the whole previous one (no stale QC page), and the
QC page names the pair it shows (file names only)."""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from vmgga.api import RegistrationResult
from vmgga.export.outputs import OWNED_FILES, QC_FILE, QC_THUMBNAIL_FILE, write_registration_outputs
from vmgga.qc.report import QC_PAGE_NAME, THUMBNAIL_NAME, inputs_line

STROKE = Path(__file__).resolve().parents[1] / "data" / "stroke"


def identity_result(report_inputs: dict | None = None) -> RegistrationResult:
    """A registration result of the stroke pair through an identity transform (no registration)."""
    fixed = sitk.Cast(sitk.ReadImage(str(STROKE / "T2.nii.gz")), sitk.sitkFloat32)
    moving = sitk.Cast(sitk.ReadImage(str(STROKE / "T1.nii.gz")), sitk.sitkFloat32)
    grid = sitk.Image([16, 16, 16], sitk.sitkVectorFloat64, 3)
    grid.CopyInformation(sitk.Image([16, 16, 16], sitk.sitkFloat32))
    grid.SetSpacing([s * z / 16 for s, z in zip(fixed.GetSpacing(), fixed.GetSize(), strict=True)])
    grid.SetOrigin(fixed.GetOrigin())
    grid.SetDirection(fixed.GetDirection())
    transform = sitk.CompositeTransform(
        [sitk.AffineTransform(3), sitk.DisplacementFieldTransform(sitk.Image(grid))]
    )
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0)
    ones = sitk.Cast(sitk.VectorIndexSelectionCast(grid, 0), sitk.sitkFloat32) + 1.0
    return RegistrationResult(
        transform=transform,
        fixed=fixed,
        moving=moving,
        warped=warped,
        moving_affine=warped,
        confidence=sitk.Cast(fixed * 0 + 0.5, sitk.sitkFloat32),
        jacobian_determinant=ones,
        displacement_lps_mm=sitk.Cast(grid, sitk.sitkVectorFloat32),
        report={"inputs": report_inputs or {}, "confidence": {"mean": 0.5}},
    )


def test_rerun_without_qc_removes_the_previous_qc_page_and_keeps_user_files(tmp_path):
    result = identity_result()
    written = write_registration_outputs(result, tmp_path, qc=True)
    assert (tmp_path / QC_FILE).is_file() and (tmp_path / QC_THUMBNAIL_FILE).is_file()
    assert written["qc"] == tmp_path / QC_FILE
    (tmp_path / "notes.txt").write_text("the user's own file")
    (tmp_path / "qc_old.html").write_text("not a name the tool writes")
    write_registration_outputs(result, tmp_path, qc=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = [
        "confidence.nii.gz",
        "notes.txt",
        "qc_old.html",
        "report.json",
        "transform.h5",
        "warped.nii.gz",
    ]
    assert names == expected
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"


def test_owned_names_are_the_names_the_qc_page_uses():
    assert QC_FILE == QC_PAGE_NAME and QC_THUMBNAIL_FILE == THUMBNAIL_NAME
    assert {QC_FILE, QC_THUMBNAIL_FILE, "report.json", "transform.h5"} <= set(OWNED_FILES)


def test_qc_page_names_its_inputs_by_file_name_only(tmp_path):
    inputs = {
        "fixed": {"source": "file", "path": "/data/Doe^John/visit1/T2.nii.gz"},
        "moving": {
            "source": "dicom",
            "path": "/data/Doe^John/visit1/mr_series",
            "dicom": {"series_number": 7, "num_slices": 20, "series_description": "T1 AX"},
        },
    }
    assert inputs_line({"inputs": inputs}) == (
        "Fixed: T2.nii.gz \u00b7 Moving: mr_series (DICOM folder, series 7, 20 slices)"
    )
    write_registration_outputs(identity_result(inputs), tmp_path, qc=True)
    page = (tmp_path / QC_FILE).read_text(encoding="utf-8")
    assert "Fixed: T2.nii.gz" in page and "Moving: mr_series (DICOM folder, series 7, 20 slices)" in page
    assert "Doe^John" not in page and "visit1" not in page  # ('^' and digits: not base64 by chance)
    assert json.loads((tmp_path / "report.json").read_text())["inputs"]["fixed"]["path"].endswith("T2.nii.gz")


def test_in_memory_inputs_are_said_to_be_in_memory():
    line = inputs_line({"inputs": {"fixed": {"source": "memory", "path": None}, "moving": {}}})
    assert line == "Fixed: (in memory) \u00b7 Moving: (unknown)"
