"""Error classes. Every error a user can cause names the file and what was wrong.

The CLI prints ``VmggaError`` messages without a traceback (``--debug`` shows it) and exits 2.
"""

from __future__ import annotations


class VmggaError(Exception):
    """Base class of all errors the user can act on."""


class InputError(VmggaError):
    """An input file or folder is missing, unreadable or not a usable image."""


class DicomError(InputError):
    """A DICOM folder or series is unusable (no DICOM, missing slices, mixed series...)."""


class GeometryError(InputError):
    """An image's geometry is unusable (2D, 4D, tiny, non-orthogonal direction...)."""


class IntensityError(InputError):
    """Voxel values are unusable (NaN/Inf, constant image...)."""


class TransformFileError(InputError):
    """A transform file is not one of ours, or is truncated or unreadable."""


class RegistrationFailedError(VmggaError):
    """The registration could not produce a result (e.g. the images do not overlap)."""


class OutputError(VmggaError):
    """An output cannot be written safely (locked folder, would overwrite an input...)."""


class OutputWriteError(OutputError):
    """An output file could not be written completely: the writer failed or the file written
    does not read back as complete. Nothing is committed (the previous set stays)."""


class DiskFullError(OutputWriteError):
    """No space left on the output device (ENOSPC, or a quota: EDQUOT)."""


class ConfigError(VmggaError, ValueError):
    """A configuration value is not allowed."""


def look_up_option(value, allowed, name: str):
    """Return ``value`` if it is one of ``allowed``; else raise :class:`ConfigError` naming both."""
    allowed_values = [getattr(a, "value", a) for a in allowed]
    raw = getattr(value, "value", value)
    if raw not in allowed_values:
        raise ConfigError(f"{name}={raw!r} is not allowed; expected one of {allowed_values}")
    return raw
