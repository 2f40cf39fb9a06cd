"""Input and output: images and DICOM series, validation, atomic writes, output-folder lock."""

from __future__ import annotations

from vmgga.io.atomic import (
    OutputTransaction,
    atomic_write,
    remove_stale_partials,
    write_image_atomic,
    write_json_atomic,
    write_text_atomic,
)
from vmgga.io.dicom import DicomSeries, list_series, read_dicom_folder
from vmgga.io.images import LoadedImage, read_image
from vmgga.io.lock import OutputFolderLock
from vmgga.io.paths import check_not_an_input, safe_output_path
from vmgga.io.validate import VolumeLimits, validate_volume

__all__ = [
    "DicomSeries",
    "LoadedImage",
    "OutputFolderLock",
    "OutputTransaction",
    "VolumeLimits",
    "atomic_write",
    "check_not_an_input",
    "list_series",
    "read_dicom_folder",
    "read_image",
    "remove_stale_partials",
    "safe_output_path",
    "validate_volume",
    "write_image_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
