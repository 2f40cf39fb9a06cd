"""DICOM series: list the series of a folder, pick one (and say which), check the slice stack, read it.

SimpleITK/GDCM groups the files into series and reads the voxels; pydicom reads the headers that
GDCM does not check: slice positions (missing slices, uneven spacing, gantry tilt), orientation,
multi-frame objects. Anything unusable raises :class:`~vmgga.errors.DicomError` naming the folder
and the problem; a gantry tilt up to ``MAX_TILT_DEG`` is corrected by resampling (see
:mod:`vmgga.io.tilt`) and said in the messages. Physical space is LPS mm, as in DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from vmgga.errors import DicomError
from vmgga.io.capture import library_output
from vmgga.io.tilt import correct_gantry_tilt, stack_geometry
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
TILT_TOLERANCE_DEG = 0.05  # smaller shears of the slice stack are read as they are
MAX_TILT_DEG = 30.0  # larger shears are refused (a mis-sorted series, not a gantry tilt)
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
    with library_output(f"listing the DICOM series of '{folder}'"):
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        series = [
            DicomSeries(uid, tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)))
            for uid in series_ids
        ]
    if not series_ids:
        raise DicomError(_no_dicom_message(folder, entries))
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


@dataclass(frozen=True)
class SliceStack:
    """Where the slices of a series lie (sorted along the slice normal).

    Attributes:
        order: Indices that sort the headers along the normal.
        origin_lps_mm: Position of the first sorted slice.
        step_lps_mm: Mean vector from one slice to the next (not along the normal under tilt).
        step_mm: Median step along the normal (0.0 for a single slice).
        tilt_deg: Angle between the step and the normal (gantry tilt).
    """

    order: np.ndarray
    origin_lps_mm: np.ndarray
    step_lps_mm: np.ndarray
    step_mm: float
    tilt_deg: float


def check_slice_positions(
    headers: list[pydicom.Dataset], orientation: np.ndarray, folder: str | Path
) -> SliceStack:
    """Slices must be evenly spaced along the normal, without gaps or duplicates, in a regular stack."""
    normal = np.cross(orientation[0], orientation[1])
    positions_lps_mm = np.asarray([h.ImagePositionPatient for h in headers], dtype=np.float64)
    order = np.argsort(positions_lps_mm @ normal, kind="stable")
    positions_lps_mm = positions_lps_mm[order]
    along_mm = positions_lps_mm @ normal
    if len(along_mm) < 2:
        return SliceStack(order, positions_lps_mm[0], np.zeros(3), 0.0, 0.0)
    steps_mm = np.diff(along_mm)
    _check_steps(steps_mm, along_mm, folder)
    step_lps_mm, tilt_deg = _tilt_of(positions_lps_mm, normal, headers, folder)
    return SliceStack(order, positions_lps_mm[0], step_lps_mm, float(np.median(steps_mm)), tilt_deg)


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


def _tilt_of(
    positions_lps_mm: np.ndarray, normal: np.ndarray, headers: list[pydicom.Dataset], folder: str | Path
) -> tuple[np.ndarray, float]:
    """Mean slice step (LPS mm) and its angle to the normal; refuse irregular or extreme shears."""
    steps_lps_mm = np.diff(positions_lps_mm, axis=0)  # (N - 1, 3)
    mean_step = steps_lps_mm.mean(axis=0)
    along = float(mean_step @ normal)
    in_plane = mean_step - along * normal
    deviation = float(np.abs(steps_lps_mm - mean_step).max())
    if deviation > SPACING_TOLERANCE * abs(along):
        raise DicomError(
            f"DICOM series in '{folder}' is an irregular slice stack: the step between slices varies by "
            f"up to {deviation:.3g} mm in the slice plane; resample it to a regular grid first"
        )
    angle = float(np.degrees(np.arctan2(np.linalg.norm(in_plane), abs(along))))
    if angle > MAX_TILT_DEG:
        tag = headers[0].get("GantryDetectorTilt", None)
        raise DicomError(
            f"DICOM series in '{folder}' has gantry tilt: the slices are sheared by {angle:.2f} degrees "
            f"(GantryDetectorTilt={tag}), more than the {MAX_TILT_DEG:g} degrees corrected here; "
            "correct the tilt first (e.g. dcm2niix) and pass the NIfTI file"
        )
    return mean_step, angle


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
            duplicate slices, uneven spacing, inconsistent orientation, irregular stack, gantry tilt
            over 30 degrees, unreadable voxels. A smaller gantry tilt is corrected by resampling.
    """
    all_series = list_series(folder)
    series, messages = pick_series(all_series, folder, series_uid)
    unreadable = unreadable_files(folder, all_series)
    messages = [*messages, *(_left_out_message(path, reason) for path, reason in unreadable)]
    headers = read_headers(series)
    check_not_multiframe(headers, folder)
    orientation = check_orientation(headers, folder)
    try:
        stack = check_slice_positions(headers, orientation, folder)
    except DicomError as error:
        if not unreadable:
            raise
        path, reason = unreadable[0]
        raise DicomError(f"{_left_out_message(path, reason)}; so {error}") from None
    size_ijk = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    if len(headers) > 1:
        check_size(size_ijk, f"DICOM series {series.uid} in '{folder}'", limits)
    image = _read_voxels([series.files[i] for i in stack.order], series, folder)
    if stack.tilt_deg > TILT_TOLERANCE_DEG:
        image, message = _corrected(image, headers[0], orientation, stack, folder)
        messages = [*messages, message]
    info = {**series_info(headers, series, stack.step_mm), "gantry_tilt_deg": round(stack.tilt_deg, 4)}
    return DicomRead(image=image, series=series, info=info, phi=phi_of(headers[0]), messages=messages)


def _read_voxels(files: list[str], series: DicomSeries, folder: str | Path) -> sitk.Image:
    """SimpleITK/GDCM read of the files in the given (position) order."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with library_output(f"reading DICOM series {series.uid}"):
            return reader.Execute()
    except RuntimeError as error:
        bad = next(((Path(f), r) for f in files if (r := dicom_file_problem(Path(f), strict=True))), None)
        if bad is not None:
            raise DicomError(_left_out_message(*bad).replace("was left out of its series", "")) from None
        reason = [line.strip() for line in str(error).splitlines() if line.strip()][-1:] or ["unknown"]
        raise DicomError(
            f"cannot read the voxels of DICOM series {series.uid} in '{folder}': {reason[0]}"
        ) from None


# --- corrupt files -------------------------------------------------------------------------------


def unreadable_files(folder: str | Path, series: list[DicomSeries]) -> list[tuple[Path, str]]:
    """DICOM files of ``folder`` that GDCM left out of every series, with what is wrong with each.

    GDCM silently skips a corrupt slice; the series then looks as if a slice were missing. Files
    that are not DICOM at all (no ``DICM`` marker, no ``.dcm`` name) are not listed.
    """
    listed = {Path(f).name for s in series for f in s.files}
    found = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.is_file() and entry.name not in listed:
            problem = dicom_file_problem(entry)
            if problem is not None:
                found.append((entry, problem))
    return found


def dicom_file_problem(path: Path, strict: bool = False) -> str | None:
    """What is wrong with a DICOM file, or ``None`` (not DICOM at all, or, with ``strict``, no
    problem found: a file GDCM skipped without a reason pydicom sees is "not readable by GDCM")."""
    looks_dicom = path.suffix.lower() in (".dcm", ".dicom", ".ima") or _has_dicm_marker(path)
    if not looks_dicom:
        return None
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for damaged files
        return f"corrupt DICOM ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    short = _pixel_data_shortfall(dataset)
    if short:
        return f"truncated pixel data ({short} bytes missing)"
    return None if strict else "damaged or unsupported: GDCM cannot read it"


def _has_dicm_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _pixel_data_shortfall(dataset: pydicom.Dataset) -> int:
    """Bytes missing from uncompressed pixel data (0 when complete, compressed or absent)."""
    if "PixelData" not in dataset or dataset.file_meta.get("TransferSyntaxUID", None) is None:
        return 0
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return 0
    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        expected = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * frames
            * int(dataset.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError):
        return 0
    return max(expected - len(dataset.PixelData), 0)


def _left_out_message(path: Path, reason: str) -> str:
    """Names the bad file."""
    return f"DICOM file '{path}' cannot be read ({reason}) and was left out of its series"


def _corrected(
    image: sitk.Image, header: pydicom.Dataset, orientation: np.ndarray, stack: SliceStack, folder: str | Path
) -> tuple[sitk.Image, str]:
    """The tilted stack resampled onto an orthogonal grid, and a message saying so."""
    row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
    as_read, true_linear = stack_geometry(
        tuple(image.GetSize()),
        (col_spacing, row_spacing),
        orientation,
        stack.origin_lps_mm,
        stack.step_lps_mm,
    )
    corrected = correct_gantry_tilt(image, as_read, true_linear)
    message = (
        f"DICOM series in '{folder}' has a gantry tilt of {stack.tilt_deg:.2f} degrees: resampled onto an "
        f"orthogonal grid of size {corrected.GetSize()} (linear interpolation)"
    )
    return corrected, message
