"""Issue 8, safety: registration reports carry no DICOM patient identifiers unless asked to."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from vmgga.config import make_config

CT_DICOM_DIR = Path(__file__).resolve().parents[1] / "data" / "abdomen" / "ct_dicom"


@pytest.fixture(scope="module")
def identifiers() -> list[str]:
    header = pydicom.dcmread(CT_DICOM_DIR / "slice_00.dcm", stop_before_pixels=True)
    values = [str(header.PatientName), str(header.PatientID)]
    assert all(values)  # the test series carries synthetic identifiers
    return values


@pytest.mark.slow
@pytest.mark.parametrize("include_phi", [False, True])
def test_report_has_patient_identifiers_only_with_include_phi(identifiers, include_phi):
    from vmgga.api import register

    config = make_config(
        **{"preprocess.working_spacing_mm": 6.0, "dense.instance.iterations": 2, "affine.enabled": False}
    )
    result = register(CT_DICOM_DIR, CT_DICOM_DIR, config, progress=False, include_phi=include_phi)
    text = json.dumps(result.report)
    for value in identifiers:
        assert (value in text) == include_phi
