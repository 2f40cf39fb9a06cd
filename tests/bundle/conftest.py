"""Fixtures of the MONAI bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import CT_DICOM, MR_NIFTI, library_config


@pytest.fixture(scope="session")
def library_outputs(tmp_path_factory) -> Path:
    """``vmgga.register`` + ``vmgga.write_outputs`` on CT DICOM (fixed) vs MR NIfTI, quick settings."""
    import vmgga

    out = tmp_path_factory.mktemp("library") / "ct_dicom_vs_mr"
    result = vmgga.register(str(CT_DICOM), str(MR_NIFTI), library_config(), progress=False)
    vmgga.write_outputs(result, out)
    return out
