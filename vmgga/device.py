"""The one device resolver: a device name from a config or a command line -> a torch device string."""

from __future__ import annotations

import re

from vmgga.errors import ConfigError

#: Concrete device names: ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
_CONCRETE = re.compile(r"cpu|cuda(:\d+)?|mps")
AUTO = "auto"


def check_device_name(device: str, *, allow_auto: bool = False) -> str:
    """``device`` unchanged if it is a device name (``auto`` too when ``allow_auto``).

    Only the spelling is checked, not the hardware: a config naming ``cuda`` can be built on a
    machine without a GPU.

    Raises:
        ConfigError: naming the value and the allowed ones.
    """
    device = str(device)
    if (allow_auto and device == AUTO) or _CONCRETE.fullmatch(device):
        return device
    allowed = ("'auto', " if allow_auto else "") + "'cpu', 'cuda', 'cuda:N' or 'mps'"
    raise ConfigError(f"device={device!r} is not allowed; expected {allowed}")


def resolve_device(device: str = AUTO) -> str:
    """The device to run on: ``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``.

    ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` pass through.

    Raises:
        ConfigError: for another name, or ``cuda``/``cuda:N`` on a machine where PyTorch sees no GPU.
    """
    import torch

    device = check_device_name(device, allow_auto=True)
    if device == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device_available(device)
    return device


def check_device_available(device: str, *, option: str = "device") -> None:
    """Refuse a device string that is malformed or not available on this machine (before any work).

    Raises:
        ConfigError: e.g. ``--device cuda`` with a torch built without CUDA, or ``cuda:3`` on a 1-GPU machine.
    """
    text = str(device).strip().lower()
    if not _CONCRETE.fullmatch(text):
        raise ConfigError(f"{option} {device!r} is not a device; expected cpu, cuda, cuda:N or mps")
    if text == "cpu":
        return
    import torch

    if text == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{option} mps: this machine has no Apple GPU (MPS); use {option} cpu")
        return

    if not torch.cuda.is_available():
        why = "was built without CUDA" if torch.version.cuda is None else "finds no usable GPU"
        raise ConfigError(f"{option} {device}: this torch ({torch.__version__}) {why}; use {option} cpu")
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"{option} {device}: only {torch.cuda.device_count()} GPU(s) found (cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1})"
        )
