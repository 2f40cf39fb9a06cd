"""The files of one registration, written as one transaction into one output folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import SimpleITK as sitk

from vmgga.export.compact import quantise_intensities, quantise_unit_interval, write_scaled_nifti
from vmgga.io.atomic import OutputTransaction, write_json_atomic

if TYPE_CHECKING:
    from vmgga.api import RegistrationResult

#: Output name -> file name. ``report`` is moved into place last: it marks a complete set.
OUTPUT_FILES = {
    "transform": "transform.h5",
    "warped": "warped.nii.gz",
    "confidence": "confidence.nii.gz",
    "report": "report.json",
}
QC_FILE = "qc.html"


def write_registration_outputs(
    result: RegistrationResult, output_dir: Path, *, qc: bool = False
) -> dict[str, Path]:
    """Write the transform, warped image, confidence map, report (and QC page) into ``output_dir``.

    The files are staged in a hidden folder and moved into place with ``report.json`` last, so an
    interrupted run leaves either the previous complete set or none.

    Returns:
        Output name -> final path.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with OutputTransaction(output_dir, marker=OUTPUT_FILES["report"]) as transaction:
        staged = {name: transaction.staged(file) for name, file in OUTPUT_FILES.items()}
        sitk.WriteTransform(result.transform, str(staged["transform"]))
        _write_compact_images(result, staged["warped"], staged["confidence"])
        if qc:
            from vmgga.qc.report import write_qc_page

            write_qc_page(result, transaction.staging)
        write_json_atomic(result.report, staged["report"])
    names = {**OUTPUT_FILES, **({"qc": QC_FILE} if qc else {})}
    return {name: output_dir / file for name, file in names.items()}


def _write_compact_images(result: RegistrationResult, warped_path: Path, confidence_path: Path) -> None:
    """``warped`` as int16 (+ slope/intercept), ``confidence`` as uint8 with slope 1/255.

    An integer moving image is written in its own units (rounded); a floating-point one over the
    int16 range (step 1.5e-5 of its range). Readers see float intensities either way.
    """
    moving_type = str(result.report.get("inputs", {}).get("moving", {}).get("pixel_type", ""))
    warped = sitk.GetArrayViewFromImage(result.warped)
    write_scaled_nifti(quantise_intensities(warped, "integer" in moving_type), result.warped, warped_path)
    confidence = sitk.GetArrayViewFromImage(result.confidence)
    write_scaled_nifti(quantise_unit_interval(confidence), result.confidence, confidence_path)
