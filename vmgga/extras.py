"""Optional features and the pip extra that installs each one.

The core (``pip install vmgga``) registers, applies, runs local batches and writes QC pages. The
rest comes with extras named for what they enable (``pyproject.toml``). A feature imports its
optional package through :func:`import_optional`, so that a missing extra is one user error naming
the command that installs it, raised before anything is written::

    cv2 = import_optional("cv2", extra="match", feature="vmgga match")
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from vmgga.errors import VmggaError

#: Extra -> {import name: pip distribution} of the packages it installs that vmgga imports.
EXTRA_PACKAGES: dict[str, dict[str, str]] = {
    "bundle": {
        "monai": "monai",
        "fire": "fire",
        "yaml": "pyyaml",
        "jsonschema": "jsonschema",
        "ignite": "pytorch-ignite",
    },
    "dask": {"distributed": "dask[distributed]"},
    "dinov2": {"transformers": "transformers"},
    "match": {"cv2": "opencv-python-headless"},
    "sparse": {"cv2": "opencv-python-headless"},
    "train": {"yaml": "pyyaml"},
}


class MissingExtraError(VmggaError):
    """A feature needs an optional package that is not installed; the message says what to install."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "vmgga[EXTRA]"``."""
    if extra not in EXTRA_PACKAGES:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRA_PACKAGES)}")
    return f'pip install "vmgga[{extra}]"'


def missing_extra_message(feature: str, module: str, extra: str) -> str:
    """One line: the feature, the missing package, and the command that installs it."""
    package = EXTRA_PACKAGES.get(extra, {}).get(module.partition(".")[0], module)
    return f"{feature} needs {package}, which is not installed: {install_hint(extra)}"


def import_optional(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` of ``extra``, or raise :class:`MissingExtraError` if it is not installed.

    Only the absence of ``module`` itself (or of its top-level package) becomes a
    :class:`MissingExtraError`; an installed package that fails to import re-raises its own error.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if not _names_module(error, module):
            raise
        raise MissingExtraError(missing_extra_message(feature, module, extra)) from None


def require_extra(extra: str, *, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every package of ``extra`` can be imported.

    Checks without importing (``importlib.util.find_spec``), so it is cheap enough to call before
    any work, e.g. while checking the arguments.
    """
    for module in EXTRA_PACKAGES[extra]:
        if not is_installed(module):
            raise MissingExtraError(missing_extra_message(feature, module, extra))


def is_installed(module: str) -> bool:
    """Whether ``module`` can be found (a ``None`` entry in ``sys.modules`` counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _names_module(error: ImportError, module: str) -> bool:
    """Whether ``error`` reports ``module`` (or one of its parent packages) as missing."""
    name = getattr(error, "name", None)
    return name is not None and (module == name or module.startswith(name + "."))
