"""Read an input image (file, DICOM folder or ``sitk.Image``), validate it, return float32 in LPS.

Every error names the input (``fixed image '/path/x.nii.gz'``) and the problem. Nothing large is
allocated before the header has been checked (dimension, components, size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from vmgga.errors import GeometryError, InputError, VmggaError
from vmgga.frames import geometry_of
from vmgga.io.capture import library_output
from vmgga.io.dicom import check_not_multiframe, modality_hint, read_dicom_folder
from vmgga.io.header_checks import (
    check_nifti_header,
    check_stored_bytes,
    check_stored_bytes_bound,
    declared_stored_data,
)
from vmgga.io.nifti_check import check_nifti_data, is_nifti
from vmgga.io.stored_data import StoredData
from vmgga.io.validate import (
    VolumeLimits,
    check_components,
    check_dimension,
    check_direction,
    check_size,
    validate_volume,
)
from vmgga.threads import beside


@dataclass(frozen=True)
class LoadedImage:
    """A validated input volume.

    Attributes:
        image: 3D float32 volume, LPS geometry as SimpleITK gives it.
        path: The file or DICOM folder it came from (None for an in-memory image).
        modality_hint: ``"ct"``/``"mr"`` from the DICOM Modality tag, else None.
        series_uid: SeriesInstanceUID for DICOM input (None if absent or not DICOM).
        description: JSON-friendly: geometry, pixel type, source, series information (patient
            identifiers only under ``"patient"`` when read with ``include_phi=True``).
        messages: Decisions and warnings worth telling the user (series picked, padding...).
    """

    image: sitk.Image
    path: str | None
    modality_hint: str | None
    series_uid: str | None
    description: dict
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Raw:
    """An image as read, before validation and casting."""

    image: sitk.Image
    source: str  # file | dicom | memory
    modality_hint: str | None = None
    dicom_info: dict | None = None
    phi: dict | None = None
    messages: list[str] = field(default_factory=list)


def read_image(
    source: str | os.PathLike | sitk.Image,
    *,
    role: str = "fixed",
    dicom_series: str | None = None,
    volume_index: int | None = None,
    include_phi: bool = False,
    limits: VolumeLimits = VolumeLimits(),
) -> LoadedImage:
    """Read and validate one input volume.

    Args:
        source: NIfTI/NRRD/MHA/any SimpleITK file, a DICOM series folder, or a ``sitk.Image``.
        role: What to call the image in messages (``fixed``, ``moving``...).
        dicom_series: SeriesInstanceUID to read from a folder with several series.
        volume_index: Volume to take from a 4D image.
        include_phi: Put DICOM patient identifiers into ``description["patient"]``.
        limits: Size limits (see :class:`VolumeLimits`).

    Raises:
        InputError: missing/unreadable path or unreadable file; its subclasses DicomError,
            GeometryError and IntensityError for the problems they name.
    """
    if isinstance(source, sitk.Image):
        name = f"{role} image (in memory)"
        raw, path = _Raw(_extract_volume(source, volume_index, name), "memory"), None
    else:
        path = Path(source)
        name = f"{role} image '{path}'"
        check_path(path, name)
        raw = _read_path(path, name, dicom_series, volume_index, limits)
    warnings = validate_volume(raw.image, name, modality=raw.modality_hint, limits=limits)
    image = sitk.Cast(raw.image, sitk.sitkFloat32)
    return LoadedImage(
        image=image,
        path=None if path is None else str(path),
        modality_hint=raw.modality_hint,
        series_uid=(raw.dicom_info or {}).get("series_uid") or None,
        description=_describe(raw, image, role, path, volume_index, include_phi),
        messages=[*raw.messages, *warnings],
    )


def check_path(path: Path, name: str) -> None:
    """Missing and unreadable paths get their own messages."""
    if not path.exists():
        raise InputError(f"{name}: does not exist")
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    if not os.access(path, mode):
        raise InputError(f"{name}: cannot be read (permission denied)")


def _read_path(path: Path, name: str, dicom_series: str | None, volume_index: int | None, limits) -> _Raw:
    """A folder is a DICOM series; a file goes through SimpleITK."""
    if path.is_dir():
        if volume_index is not None:
            raise InputError(f"{name}: --volume-index applies to 4D files, not to a DICOM folder")
        read = read_dicom_folder(path, dicom_series, limits)
        hint = modality_hint(read.info["modality"])
        return _Raw(read.image, "dicom", hint, read.info, read.phi, list(read.messages))
    if dicom_series is not None:
        raise InputError(f"{name}: --dicom-series applies to a DICOM folder, not to a file")
    if pydicom.misc.is_dicom(str(path)):
        check_not_multiframe([pydicom.dcmread(path, stop_before_pixels=True)], path)
    return _Raw(read_volume_file(path, name, volume_index, limits), "file")


def read_volume_file(path: Path, name: str, volume_index: int | None, limits: VolumeLimits) -> sitk.Image:
    """Check the header against the limits, then read (one volume of a 4D file) while the stored data
    is checked beside the read.

    The header's claims are checked against the limits, and against what the file can hold at most
    (its size; a compressed stream's size times deflate's largest ratio), before ITK allocates
    anything. With two or more ITK threads, a compressed stream's bytes are then counted (a
    truncated file is refused, not read as zeros) and a float NIfTI is scanned for NaN/Inf on a
    second thread while ITK decompresses and reads the same file: each of those checks decompresses
    it once more. A problem of the stored data is the
    error raised, before any error of the read itself; what ITK prints goes to the
    ``vmgga.libraries`` log (see :mod:`vmgga.io.capture`).
    """
    if is_nifti(path):
        check_nifti_header(path, name)
    stored = declared_stored_data(path, name, limits)
    if stored is not None:
        check_stored_bytes_bound(stored, path, name)  # nothing allocated for a file that cannot hold it
    with beside(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()) as side:
        data_checked = side(lambda: _check_stored_voxels(stored, path, name))
        try:
            image = _read_checked(path, name, volume_index, limits)
        except VmggaError:
            data_checked()  # the stored data's own problem first, when there is one
            raise
    data_checked()
    return image


def _check_stored_voxels(stored: StoredData | None, path: Path, name: str) -> None:
    """A compressed stream holds what its header declares (a raw file's size was checked exactly by
    :func:`check_stored_bytes_bound`); a float NIfTI holds no NaN or Inf."""
    if stored is not None and stored.compression is not None:
        check_stored_bytes(stored, path, name)
    if is_nifti(path):
        check_nifti_data(path, name)


def _read_checked(path: Path, name: str, volume_index: int | None, limits: VolumeLimits) -> sitk.Image:
    """ITK's header checked (dimension, components, size, direction), then the volume read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with library_output(f"reading the header of {name}"):
            reader.ReadImageInformation()
    except RuntimeError as error:
        geometry = _itk_geometry_reason(error)
        if geometry is not None:
            raise GeometryError(f"{name}: {geometry}") from None
        raise InputError(f"{name}: cannot be read as an image ({_first_line(error)})") from None
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) == 4:
        index = _volume_index_of(size, volume_index, name)
        reader.SetExtractIndex([0, 0, 0, index])
        reader.SetExtractSize([*size[:3], 0])
        size = size[:3]
    elif volume_index is not None:
        raise InputError(f"{name}: --volume-index {volume_index} given but the image is {len(size)}D")
    check_dimension(size, name)
    check_components(int(reader.GetNumberOfComponents()), name)
    check_size(size, name, limits)
    check_direction(_direction_3d(reader.GetDirection()), reader.GetSpacing()[:3], name, limits)
    try:
        with library_output(f"reading {name}"):
            return reader.Execute()
    except RuntimeError as error:
        geometry = _itk_geometry_reason(error)
        if geometry is not None:
            raise GeometryError(f"{name}: {geometry}") from None
        raise InputError(
            f"{name}: cannot be read (truncated or corrupt file: {_first_line(error)})"
        ) from None


def _direction_3d(direction: tuple[float, ...]) -> tuple[float, ...]:
    """The spatial 3x3 block of a 3D or 4D (row-major) direction matrix."""
    n = int(round(len(direction) ** 0.5))
    return tuple(float(v) for v in np.asarray(direction).reshape(n, n)[:3, :3].ravel())


def _volume_index_of(size_4d: tuple[int, ...], volume_index: int | None, name: str) -> int:
    """The volume to take from a 4D image; a single-volume 4D image needs no index."""
    if volume_index is None:
        if size_4d[3] == 1:
            return 0
        check_dimension(size_4d, name)  # raises, asking for --volume-index
    if not 0 <= volume_index < size_4d[3]:
        raise InputError(f"{name}: --volume-index {volume_index} is out of range 0 to {size_4d[3] - 1}")
    return volume_index


def _extract_volume(image: sitk.Image, volume_index: int | None, name: str) -> sitk.Image:
    """One volume of an in-memory 4D image (other images pass unchanged)."""
    if image.GetDimension() != 4:
        if volume_index is not None:
            raise InputError(
                f"{name}: --volume-index {volume_index} given but the image is {image.GetDimension()}D"
            )
        return image
    size = tuple(image.GetSize())
    index = _volume_index_of(size, volume_index, name)
    return sitk.Extract(image, [*size[:3], 0], [0, 0, 0, index])


def _itk_geometry_reason(error: Exception) -> str | None:
    """A plain reason when ITK refused the header's geometry (not a damaged file), else None."""
    text = str(error)
    if "orthonormal direction cosines" in text:
        return "its direction matrix is singular or not orthonormal (degenerate voxel axes)"
    if "determinant is 0" in text:
        return "has a singular direction matrix (determinant 0: a zero or repeated voxel axis)"
    if "Refusing to change spacing" in text:
        return f"its header gives an invalid voxel spacing (zero or negative): {_first_line(error)}"
    return None


def _first_line(error: Exception) -> str:
    """The informative last non-empty line of an ITK exception text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _describe(raw: _Raw, image: sitk.Image, role: str, path, volume_index, include_phi: bool) -> dict:
    """JSON-friendly description; patient identifiers only with ``include_phi``."""
    description = {
        "role": role,
        "source": raw.source,
        "path": None if path is None else str(path),
        "geometry": geometry_of(image).to_dict(),
        "pixel_type": raw.image.GetPixelIDTypeAsString(),
        "volume_index": volume_index,
    }
    if raw.dicom_info is not None:
        description["dicom"] = dict(raw.dicom_info)
    if include_phi and raw.phi is not None:
        description["patient"] = dict(raw.phi)
    return description
