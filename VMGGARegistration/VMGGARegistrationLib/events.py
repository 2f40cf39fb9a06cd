"""Parsing the core's ``--progress-json`` output: one JSON object per line on stdout.

``{"event": "progress", "stage": ..., "fraction": 0..1, "message": ...}``, then
``{"event": "done", "outputs": {...}}`` or ``{"event": "error", "message": ...}``. Any other line
(warnings, tracebacks on stderr merged into the stream, malformed JSON) becomes a :class:`LogLine`
so that nothing the process says is lost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """The core finished ``fraction`` (clamped to [0, 1]) of its work, currently in ``stage``."""

    stage: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class DoneEvent:
    """The core wrote its outputs; ``outputs`` maps a name (transform, warped, ...) to a path."""

    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorEvent:
    """The core gave up with a message meant for the user."""

    message: str


@dataclass(frozen=True)
class LogLine:
    """Any line that is not a well-formed event (plain text, malformed JSON, unknown event)."""

    text: str


Event = ProgressEvent | DoneEvent | ErrorEvent | LogLine


def parse_line(line: str) -> Event | None:
    """One output line -> an event; ``None`` for a blank line. Never raises."""
    text = line.strip()
    if not text:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return LogLine(text)
    if not isinstance(payload, dict):
        return LogLine(text)
    return _event_from_dict(payload) or LogLine(text)


def _event_from_dict(payload: dict) -> Event | None:
    """A typed event from a decoded JSON object, or ``None`` when it does not follow the contract."""
    kind = payload.get("event")
    if kind == "progress":
        return _progress_from_dict(payload)
    if kind == "done":
        outputs = payload.get("outputs")
        if isinstance(outputs, dict) and all(isinstance(v, str) for v in outputs.values()):
            return DoneEvent({str(k): v for k, v in outputs.items()})
        return None
    if kind == "error":
        return ErrorEvent(str(payload.get("message") or "the registration failed (no message)"))
    return None


def _progress_from_dict(payload: dict) -> ProgressEvent | None:
    """A :class:`ProgressEvent` with its fraction clamped to [0, 1]; ``None`` if it has no number."""
    fraction = payload.get("fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not math.isfinite(fraction):
        return None
    stage = str(payload.get("stage") or "")
    return ProgressEvent(stage, min(1.0, max(0.0, float(fraction))), str(payload.get("message") or ""))


class LineSplitter:
    """Turns arbitrary chunks of bytes from a pipe into complete text lines.

    A line is complete at ``\\n``; ``\\r\\n`` and a lone ``\\r`` (progress bars) also end a line.
    Bytes that are not valid UTF-8 are replaced rather than raising.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Add bytes; return the lines they completed (without line endings)."""
        data, hold = self._pending + chunk, b""
        if data.endswith(b"\r"):  # may be the first half of a \r\n split across chunks
            data, hold = data[:-1], b"\r"
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = data.split(b"\n")
        self._pending = rest + hold
        return [line.decode("utf-8", errors="replace") for line in lines]

    def flush(self) -> list[str]:
        """The last unterminated line, if any (call when the stream ends)."""
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        return [rest.decode("utf-8", errors="replace")] if rest else []
