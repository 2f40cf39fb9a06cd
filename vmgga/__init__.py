"""VMGGA Registration: CT-MRI deformable registration with a gated-attention dense matcher."""

from __future__ import annotations

__version__ = "0.1.0"

from vmgga.config import RegistrationConfig, make_config  # noqa: E402

__all__ = ["RegistrationConfig", "make_config", "register", "write_outputs", "__version__"]


def __getattr__(name: str):
    """Import the heavy API lazily so ``import vmgga`` stays cheap."""
    if name in ("register", "write_outputs", "RegistrationResult"):
        from vmgga import api

        return getattr(api, name)
    raise AttributeError(name)
