"""VMGGA Registration: CT-MRI deformable registration with a gated-attention dense matcher."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting steal the CPU from each other on shared machines (2-5x
# slower wall time measured on a loaded 2-core machine); must be set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vmgga.config import RegistrationConfig, make_config  # noqa: E402
from vmgga.version import __version__  # noqa: E402

__all__ = ["RegistrationConfig", "make_config", "register", "write_outputs", "__version__"]


def __getattr__(name: str):
    """Import the heavy API lazily so ``import vmgga`` stays cheap."""
    if name in ("register", "write_outputs"):
        from vmgga import api

        return getattr(api, name)
    if name == "RegistrationResult":
        from vmgga.result import RegistrationResult

        return RegistrationResult
    raise AttributeError(name)
