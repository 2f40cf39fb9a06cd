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
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but PyTorch sees no CUDA GPU; use cpu or auto")
    return device
