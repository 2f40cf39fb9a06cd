"""(This folder must not be named ``slicer``: ``tests/`` is on ``sys.path`` during the tests, and the
``slicer`` namespace package of slicer-core would then import every file here as its own module.)

Make the Slicer module's pure helpers (``VMGGARegistrationLib``) importable without Slicer."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_DIR / "VMGGARegistration"

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))
