"""Input and output: images, label maps and DICOM series, header and validation checks, verified
atomic writes, output-folder lock, capture of the C libraries' own output.

Names are imported lazily, so that ``vmgga.io.lock`` or ``vmgga.io.atomic`` load without torch.
"""

from __future__ import annotations

import importlib

#: Public name -> submodule of vmgga.io that defines it.
_EXPORTS = {
    "OutputTransaction": "atomic",
    "atomic_write": "atomic",
    "remove_stale_partials": "atomic",
    "write_bytes_atomic": "atomic",
    "write_image_atomic": "atomic",
    "write_json_atomic": "atomic",
    "write_text_atomic": "atomic",
    "library_output": "capture",
    "DicomSeries": "dicom",
    "list_series": "dicom",
    "read_dicom_folder": "dicom",
    "LoadedImage": "images",
    "read_image": "images",
    "read_label_map": "labels",
    "OutputFolderLock": "lock",
    "check_not_an_input": "paths",
    "safe_output_path": "paths",
    "VolumeLimits": "validate",
    "validate_volume": "validate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the submodule that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vmgga.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vmgga.io.{_EXPORTS[name]}"), name)
