"""DICOM series: list the series of a folder, pick one (and say which), check the slice stack, read it.

SimpleITK/GDCM groups the files into series and reads the voxels; pydicom reads the headers that
GDCM does not check: slice positions (missing slices, uneven spacing, gantry tilt), orientation,
multi-frame objects. Anything unusable raises :class:`~vmgga.errors.DicomError` naming the folder
and the problem. Physical space is LPS mm, as DICOM's patient coordinates are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from vmgga.errors import DicomError
from vmgga.io.validate import VolumeLimits, check_size

#: Header tags read from every file of a series (no pixel data).
_HEADER_TAGS = (
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfFrames",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "GantryDetectorTilt",
)

#: Patient identifiers and other PHI, reported only with ``include_phi``.
PHI_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyDate",
)

ORIENTATION_TOLERANCE = 1e-4  # max difference of direction cosines within a series
SPACING_TOLERANCE = 0.05  # max relative deviation of a slice step from the median step
GAP_FACTOR = 1.5  # a step this many times the median step means missing slices
TILT_TOLERANCE = 1e-3  # max in-plane shift of the slice stack per mm along the normal
_ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image Storage
}


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder, as GDCM groups it.

    Attributes:
        uid: SeriesInstanceUID (GDCM's series identifier).
        files: File paths in GDCM's slice order.
    """

    uid: str
    files: tuple[str, ...]

    @property
    def num_files(self) -> int:
        """Number of files (slices, for a classic single-frame series)."""
        return len(self.files)


@dataclass(frozen=True)
class DicomRead:
    """A DICOM series read from a folder.

    Attributes:
        image: The volume as SimpleITK reads it (rescaled values, LPS geometry).
        series: The series that was read.
        info: Non-identifying series information (UID, description, modality, slices...).
        phi: Patient identifiers from the first file (only to be reported with ``include_phi``).
        messages: What was decided, e.g. which series was picked among several.
    """

    image: sitk.Image
    series: DicomSeries
    info: dict
    phi: dict
    messages: list[str] = field(default_factory=list)


# --- listing and picking series ----------------------------------------------------------------


def list_series(folder: str | Path) -> list[DicomSeries]:
    """All DICOM series of ``folder`` (not recursive), largest first.

    Raises:
        DicomError: if the folder is empty or holds no DICOM image files.
    """
    folder = Path(folder)
    entries = list(folder.iterdir())
    if not entries:
        raise DicomError(f"DICOM folder '{folder}' is empty")
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise DicomError(_no_dicom_message(folder, entries))
    series = [
        DicomSeries(uid, tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)))
        for uid in series_ids
    ]
    return sorted(series, key=lambda s: (-s.num_files, s.uid))


def _no_dicom_message(folder: Path, entries: list[Path]) -> str:
    """Say what the folder holds instead of DICOM images."""
    subfolders = [e for e in entries if e.is_dir()]
    files = [e for e in entries if e.is_file()]
    message = f"folder '{folder}' holds no DICOM image files ({len(files)} files, none readable as DICOM"
    if subfolders:
        message += f"; {len(subfolders)} subfolders: pass the folder of one series"
    return message + ")"


def pick_series(
    series: list[DicomSeries], folder: str | Path, uid: str | None = None
) -> tuple[DicomSeries, list[str]]:
    """Pick the series with ``uid``, or else the largest; return it with a message saying which.

    Raises:
        DicomError: if ``uid`` is not one of the folder's series (the message lists them).
    """
    if uid is not None:
        chosen = [s for s in series if s.uid == uid]
        if not chosen:
            raise DicomError(
                f"DICOM folder '{folder}' has no series {uid!r}; available: {_series_list(series)}"
            )
        return chosen[0], [f"picked series {uid} ({chosen[0].num_files} files) as requested"]
    chosen = series[0]
    if len(series) == 1:
        return chosen, []
    others = _series_list(series[1:])
    message = (
        f"picked series {chosen.uid} ({chosen.num_files} files), the largest of {len(series)} series "
        f"in folder '{folder}'; choose another with --dicom-series UID: {others}"
    )
    return chosen, [message]


def _series_list(series: list[DicomSeries]) -> str:
    """``uid (n files), ...`` for messages."""
    return ", ".join(f"{s.uid} ({s.num_files} files)" for s in series)


# --- header checks -----------------------------------------------------------------------------


def read_headers(series: DicomSeries) -> list[pydicom.Dataset]:
    """The headers of every file of ``series`` (no pixel data)."""
    return [
        pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[*_HEADER_TAGS, *PHI_TAGS])
        for path in series.files
    ]


def check_not_multiframe(headers: list[pydicom.Dataset], folder: str | Path) -> None:
    """Refuse multi-frame (enhanced) objects: their per-frame geometry is not read reliably."""
    for header in headers:
        frames = int(header.get("NumberOfFrames", 1) or 1)
        enhanced = str(header.get("SOPClassUID", "")) in _ENHANCED_SOP_CLASSES
        if frames > 1 or enhanced:
            raise DicomError(
                f"DICOM folder '{folder}' holds a multi-frame (enhanced) DICOM object with {frames} frames; "
                "it is not supported: convert it to NIfTI first (e.g. dcm2niix) and pass the file"
            )


def check_orientation(headers: list[pydicom.Dataset], folder: str | Path) -> np.ndarray:
    """All slices must share one orientation; return the (2, 3) row/column direction cosines."""
    orientations = [_orientation_of(h, folder) for h in headers]
    spread = np.abs(np.asarray(orientations) - orientations[0]).max()
    if spread > ORIENTATION_TOLERANCE:
        raise DicomError(
            f"DICOM series in '{folder}' has inconsistent slice orientation "
            f"(ImageOrientationPatient differs by up to {spread:.3g} between slices)"
        )
    pixel_grids = {(h.get("Rows"), h.get("Columns"), tuple(h.get("PixelSpacing") or ())) for h in headers}
    if len(pixel_grids) > 1:
        raise DicomError(
            f"DICOM series in '{folder}' has slices of different sizes or pixel spacings: "
            f"{sorted(pixel_grids)}"
        )
    return orientations[0]


def _orientation_of(header: pydicom.Dataset, folder: str | Path) -> np.ndarray:
    """(2, 3) row and column direction cosines of one slice."""
    if "ImageOrientationPatient" not in header or "ImagePositionPatient" not in header:
        raise DicomError(
            f"DICOM series in '{folder}' lacks ImagePositionPatient/ImageOrientationPatient "
            "(not a cross-sectional image series); its geometry is unknown"
        )
    return np.asarray(header.ImageOrientationPatient, dtype=np.float64).reshape(2, 3)


def check_slice_positions(
    headers: list[pydicom.Dataset], orientation: np.ndarray, folder: str | Path
) -> float:
    """Slices must be evenly spaced along the normal, without gaps, duplicates or tilt.

    Returns:
        The slice step in mm (0.0 for a single slice).
    """
    normal = np.cross(orientation[0], orientation[1])
    positions_lps_mm = np.asarray([h.ImagePositionPatient for h in headers], dtype=np.float64)
    order = np.argsort(positions_lps_mm @ normal)
    positions_lps_mm = positions_lps_mm[order]
    along_mm = positions_lps_mm @ normal
    if len(along_mm) < 2:
        return 0.0
    steps_mm = np.diff(along_mm)
    _check_steps(steps_mm, along_mm, folder)
    _check_tilt(positions_lps_mm, normal, headers, folder)
    return float(np.median(steps_mm))


def _check_steps(steps_mm: np.ndarray, along_mm: np.ndarray, folder: str | Path) -> None:
    """Duplicates, gaps (missing slices) and uneven spacing of the sorted slice positions."""
    median = float(np.median(steps_mm))
    if steps_mm.min() < 1e-3 * max(median, 1e-3):
        count = int((steps_mm < 1e-3 * max(median, 1e-3)).sum())
        raise DicomError(
            f"DICOM series in '{folder}' has {count} duplicate slice positions: the folder may hold several "
            "acquisitions, echoes or time points under one series UID; separate them first"
        )
    worst = int(np.argmax(np.abs(steps_mm - median)))
    if steps_mm[worst] > GAP_FACTOR * median:
        missing = int(round(steps_mm[worst] / median)) - 1
        raise DicomError(
            f"DICOM series in '{folder}' has missing slices: a gap of {steps_mm[worst]:.3g} mm between "
            f"slice positions {along_mm[worst]:.2f} and {along_mm[worst + 1]:.2f} mm where the spacing "
            f"is {median:.3g} mm (about {missing} slice(s) missing)"
        )
    if abs(steps_mm[worst] - median) > SPACING_TOLERANCE * median:
        raise DicomError(
            f"DICOM series in '{folder}' has inconsistent slice spacing: steps from {steps_mm.min():.3g} "
            f"to {steps_mm.max():.3g} mm; resample it to a regular grid first"
        )


def _check_tilt(
    positions_lps_mm: np.ndarray, normal: np.ndarray, headers: list[pydicom.Dataset], folder: str | Path
) -> None:
    """The slice stack must run along the slice normal; a sheared (gantry-tilted) stack is refused."""
    stack = positions_lps_mm[-1] - positions_lps_mm[0]
    along = float(stack @ normal)
    in_plane = float(np.linalg.norm(stack - along * normal))
    if in_plane > TILT_TOLERANCE * abs(along):
        angle = float(np.degrees(np.arctan2(in_plane, abs(along))))
        tag = headers[0].get("GantryDetectorTilt", None)
        raise DicomError(
            f"DICOM series in '{folder}' has gantry tilt: the slices are sheared by {angle:.2f} degrees "
            f"(GantryDetectorTilt={tag}); it is not resampled here: correct the tilt first "
            "(e.g. dcm2niix) and pass the NIfTI file"
        )


# --- reading -----------------------------------------------------------------------------------


def series_info(headers: list[pydicom.Dataset], series: DicomSeries, step_mm: float) -> dict:
    """Non-identifying series description for reports."""
    first = headers[0]
    return {
        "series_uid": series.uid,
        "series_description": str(first.get("SeriesDescription", "")),
        "series_number": _plain(first.get("SeriesNumber", None)),
        "modality": str(first.get("Modality", "")),
        "num_slices": series.num_files,
        "slice_step_mm": step_mm,
    }


def phi_of(header: pydicom.Dataset) -> dict:
    """Patient identifiers of one header (only reported with ``include_phi``)."""
    return {tag: str(header.get(tag, "")) for tag in PHI_TAGS}


def _plain(value):
    """pydicom value -> JSON-friendly value."""
    return None if value is None or value == "" else int(value)


def modality_hint(modality: str) -> str | None:
    """``ct``/``mr`` from the DICOM Modality tag, else None."""
    return {"CT": "ct", "MR": "mr"}.get(modality.strip().upper())


def read_dicom_folder(
    folder: str | Path, series_uid: str | None = None, limits: VolumeLimits = VolumeLimits()
) -> DicomRead:
    """Read one series of ``folder``: the one with ``series_uid``, else the largest (and say so).

    The volume size is checked against ``limits`` from the headers, before any voxel is read.

    Raises:
        DicomError: empty folder, no DICOM files, unknown UID, multi-frame object, missing or
            duplicate slices, uneven spacing, inconsistent orientation, gantry tilt, unreadable voxels.
    """
    series, messages = pick_series(list_series(folder), folder, series_uid)
    headers = read_headers(series)
    check_not_multiframe(headers, folder)
    step_mm = check_slice_positions(headers, check_orientation(headers, folder), folder)
    size_ijk = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    if len(headers) > 1:
        check_size(size_ijk, f"DICOM series {series.uid} in '{folder}'", limits)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise DicomError(
            f"cannot read the voxels of DICOM series {series.uid} in '{folder}': {error}"
        ) from None
    info = series_info(headers, series, step_mm)
    return DicomRead(image=image, series=series, info=info, phi=phi_of(headers[0]), messages=messages)
