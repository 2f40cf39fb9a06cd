"""The files of one registration, written as one transaction into one output folder."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import SimpleITK as sitk

from vmgga.export.compact import encode_scaled_nifti, quantise_intensities, quantise_unit_interval
from vmgga.io.atomic import OutputTransaction

if TYPE_CHECKING:
    from vmgga.result import RegistrationResult

#: Output name -> file name. ``report`` is moved into place last: it marks a complete set.
OUTPUT_FILES = {
    "transform": "transform.h5",
    "warped": "warped.nii.gz",
    "confidence": "confidence.nii.gz",
    "report": "report.json",
}
QC_FILE = "qc.html"
QC_THUMBNAIL_FILE = "qc_thumbnail.png"
#: Every file a registration writes into its folder: a new set removes those it does not write.
OWNED_FILES = (*OUTPUT_FILES.values(), QC_FILE, QC_THUMBNAIL_FILE)


def write_registration_outputs(
    result: RegistrationResult, output_dir: Path, *, qc: bool = False
) -> dict[str, Path]:
    """Write the transform, warped image, confidence map, report (and QC page) into ``output_dir``.

    The files are staged in a hidden folder, each read back to check it is complete, and moved
    into place with ``report.json`` last, so an interrupted or failed run (a full disk) leaves
    either the previous complete set or none. Files of a previous set that this one does not
    write (``qc.html`` from an earlier ``--qc`` run) are removed.

    Returns:
        Output name -> final path.

    Raises:
        DiskFullError, OutputWriteError: an output could not be written completely.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with OutputTransaction(output_dir, marker=OUTPUT_FILES["report"], owned=OWNED_FILES) as transaction:
        transaction.write(
            OUTPUT_FILES["transform"], lambda path: sitk.WriteTransform(result.transform, str(path))
        )
        for name, encode in _ENCODERS.items():  # compared byte for byte with what was encoded
            transaction.write(OUTPUT_FILES[name], functools.partial(_write_encoded, encode, result))
        if qc:
            from vmgga.qc.report import write_qc_page

            write_qc_page(result, transaction.staging)
        report = (json.dumps(result.report, indent=2, sort_keys=False) + "\n").encode("utf-8")
        transaction.write(
            OUTPUT_FILES["report"], lambda path: path.write_bytes(report), expected_bytes=len(report)
        )
    names = {**OUTPUT_FILES, **({"qc": QC_FILE} if qc else {})}
    return {name: output_dir / file for name, file in names.items()}


def _warped_bytes(result: RegistrationResult, scratch: Path) -> bytes:
    """``warped`` as int16 (+ slope/intercept): an integer moving image in its own units (rounded),
    a floating-point one over the int16 range (step 1.5e-5 of its range). Readers see floats."""
    moving_type = str(result.report.get("inputs", {}).get("moving", {}).get("pixel_type", ""))
    warped = sitk.GetArrayViewFromImage(result.warped)
    return encode_scaled_nifti(
        quantise_intensities(warped, "integer" in moving_type), result.warped, scratch=scratch
    )


def _confidence_bytes(result: RegistrationResult, scratch: Path) -> bytes:
    """``confidence`` in [0, 1] as uint8 with slope 1/255 (readers see floats)."""
    confidence = sitk.GetArrayViewFromImage(result.confidence)
    return encode_scaled_nifti(quantise_unit_interval(confidence), result.confidence, scratch=scratch)


#: The image outputs, each encoded in memory (then written and compared byte for byte).
_ENCODERS = {"warped": _warped_bytes, "confidence": _confidence_bytes}


def _write_encoded(encode, result: RegistrationResult, path: Path) -> bytes:
    """``encode(result, scratch)`` written to ``path``; returns the bytes (see :func:`vmgga.io.atomic.write_verified`)."""
    data = encode(result, path.parent)
    path.write_bytes(data)
    return data
