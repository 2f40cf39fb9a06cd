"""Progress reporting: one callback type, shown as a tqdm bar, JSON lines, or nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

from tqdm.auto import tqdm

#: ``(stage, fraction_of_stage in [0, 1], message)``.
ProgressCallback = Callable[[str, float, str], None]

#: Share of the whole run taken by each stage (for one overall fraction).
STAGE_SPANS: dict[str, tuple[float, float]] = {
    "read": (0.0, 0.05),
    "preprocess": (0.05, 0.08),
    "affine": (0.08, 0.2),
    "dense": (0.2, 0.85),
    "export": (0.85, 1.0),
}


def overall_fraction(stage: str, fraction: float) -> float:
    """Fraction of the whole run done when ``stage`` is ``fraction`` done."""
    start, end = STAGE_SPANS.get(stage, (0.0, 1.0))
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


def silent(stage: str, fraction: float, message: str) -> None:
    """A callback that shows nothing."""


class TqdmProgress:
    """A tqdm bar over the whole run (0-100 %), its description naming the stage."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._bar = tqdm(total=100, unit="%", file=file or sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        done = round(100 * overall_fraction(stage, fraction))
        self._bar.set_description_str(f"{stage}: {message}"[:60])
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        self._bar.close()


class JsonLinesProgress:
    """One JSON object per line: ``{"event": "progress", "stage", "fraction", "message"}``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        self.emit(
            {
                "event": "progress",
                "stage": stage,
                "fraction": round(overall_fraction(stage, fraction), 4),
                "message": message,
            }
        )

    def emit(self, event: dict) -> None:
        self._stream.write(json.dumps(event) + "\n")
        self._stream.flush()


def as_callback(progress: ProgressCallback | bool | None) -> ProgressCallback:
    """``True`` -> a tqdm bar, ``False``/``None`` -> silent, a callable -> itself."""
    if progress is True:
        return TqdmProgress()
    if not progress:
        return silent
    return progress
