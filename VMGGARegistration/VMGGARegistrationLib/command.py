"""Command line of the core (``vmgga register``) as the Slicer module launches it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Preset(str, Enum):
    """``--preset`` values of ``vmgga register``."""

    FAST = "fast"
    ACCURATE = "accurate"
    INTER_PATIENT = "inter_patient"


class Matcher(str, Enum):
    """``--matcher`` values of ``vmgga register``; ``preset`` leaves the option out (the preset's)."""

    PRESET = "preset"  # the preset's matcher: cost_volume in every preset
    FUSED = "fused"  # the learned path with the learned and MIND cost-volume matches fused by confidence
    VMGGA = "vmgga"  # the learned path: learned matches, pixel descriptors with MIND in the refinement
    COST_VOLUME = "cost_volume"  # training-free MIND-SSC search, needs no weights


class Modality(str, Enum):
    """``--fixed-modality`` / ``--moving-modality`` values."""

    AUTO = "auto"
    CT = "ct"
    MR = "mr"


class Device(str, Enum):
    """Devices offered in the GUI; ``auto`` is resolved before launching (the core takes cpu|cuda)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class CommandError(ValueError):
    """A registration request cannot be turned into a valid command line."""


@dataclass(frozen=True)
class RegisterRequest:
    """Everything one ``vmgga register`` run needs; paths are files written by the module."""

    fixed_path: Path  # fixed image file (NRRD/NIfTI), LPS as every ITK file
    moving_path: Path  # moving image file
    output_dir: Path  # the core writes transform.h5, warped.nii.gz, confidence.nii.gz, report.json here
    preset: str = Preset.FAST.value  # fast | accurate | inter_patient
    matcher: str = Matcher.PRESET.value  # preset (the preset's) | fused | vmgga | cost_volume
    fixed_modality: str = Modality.AUTO.value  # auto | ct | mr
    moving_modality: str = Modality.AUTO.value  # auto | ct | mr
    device: str = Device.CPU.value  # cpu | cuda (resolve "auto" with resolve_device first)
    initial_transform_path: Path | None = None  # optional ITK transform file, fixed -> moving, LPS mm
    threads: int | None = None  # CPU threads of the core; None = the core's default (all cores)
    half_turn_search: bool = False  # the affine stage also tries half turns (an object scanned turned)


def _check_option(value: str, allowed: type[Enum], name: str) -> str:
    """Return ``value`` if it is one of the enum's values; else raise naming what is allowed."""
    values = [member.value for member in allowed]
    if value not in values:
        raise CommandError(f"{name}={value!r} is not allowed; expected one of {values}")
    return value


def resolve_device(requested: str, cuda_available: bool) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu``; explicit choices pass through.

    Raises:
        CommandError: for an unknown device, or ``cuda`` requested without CUDA.
    """
    requested = _check_option(requested, Device, "device")
    if requested == Device.AUTO.value:
        return Device.CUDA.value if cuda_available else Device.CPU.value
    if requested == Device.CUDA.value and not cuda_available:
        raise CommandError("device='cuda' was requested but no CUDA device is available; choose cpu or auto")
    return requested


def python_slicer_name(platform: str = sys.platform) -> str:
    """File name of Slicer's Python launcher on ``platform`` (``sys.platform`` values)."""
    return "PythonSlicer.exe" if platform == "win32" else "PythonSlicer"


def python_executable(
    app_home: str | Path | None,
    which: Callable[[str], str | None] = shutil.which,
    platform: str = sys.platform,
    is_file: Callable[[Path], bool] = Path.is_file,
) -> str:
    """The Python that runs the core: Slicer's ``PythonSlicer`` launcher.

    Looked up on the ``PATH`` (Slicer puts its ``bin`` folder there), then in ``<app_home>/bin``
    (``slicer.app.slicerHome``; on macOS that is ``Slicer.app/Contents``). Inside Slicer,
    ``sys.executable`` is the Slicer application itself, never a fallback.

    Raises:
        CommandError: when neither place has it.
    """
    name = python_slicer_name(platform)
    found = which("PythonSlicer")
    if found:
        return found
    if app_home:
        candidate = Path(app_home, "bin", name)
        if is_file(candidate):
            return str(candidate)
    raise CommandError(
        f"cannot find {name}: it is neither on the PATH nor in {Path(app_home or '<Slicer home>', 'bin')}; "
        "run the module inside 3D Slicer"
    )


def build_register_command(python: str, request: RegisterRequest) -> list[str]:
    """``[python, -m, vmgga, register, FIXED, MOVING, -o, OUT, ...options, --progress-json]``.

    Raises:
        CommandError: for an option outside the core's contract (e.g. ``device='auto'``).
    """
    _check_option(request.device, Device, "device")
    if request.device == Device.AUTO.value:
        raise CommandError("device='auto' must be resolved with resolve_device() before launching")
    command = [python, "-m", "vmgga", "register", str(request.fixed_path), str(request.moving_path)]
    command += ["-o", str(request.output_dir)]
    command += ["--preset", _check_option(request.preset, Preset, "preset")]
    if _check_option(request.matcher, Matcher, "matcher") != Matcher.PRESET.value:
        command += ["--matcher", request.matcher]
    command += ["--fixed-modality", _check_option(request.fixed_modality, Modality, "fixed_modality")]
    command += ["--moving-modality", _check_option(request.moving_modality, Modality, "moving_modality")]
    command += ["--device", request.device]
    if request.initial_transform_path is not None:
        command += ["--initial-transform", str(request.initial_transform_path)]
    if request.half_turn_search:
        command += ["--half-turn-search"]
    if request.threads is not None:
        if request.threads < 1:
            raise CommandError(f"threads={request.threads} is not allowed; expected a positive number")
        command += ["--threads", str(request.threads)]
    return [*command, "--progress-json"]
