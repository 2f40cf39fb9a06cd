"""The stroke pair that the Slicer tests run the real core on (``vmgga register`` end to end)."""

from __future__ import annotations

from pathlib import Path

STROKE_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "stroke"
FIXED, MOVING = STROKE_DIR / "T2.nii.gz", STROKE_DIR / "T1.nii.gz"


def stroke_pair_present() -> bool:
    """Whether the stroke T2 (fixed) and T1 (moving) images are there.

    Only missing data skips a real-core test: a core that fails to import fails it.
    """
    return FIXED.is_file() and MOVING.is_file()
