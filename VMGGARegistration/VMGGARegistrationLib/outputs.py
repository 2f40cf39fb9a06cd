"""What a finished ``vmgga register`` run left behind, and what to tell the user about it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .events import DoneEvent, ErrorEvent, Event, LogLine

#: Exit status of the core (docs/ARCHITECTURE.md) -> what it means.
EXIT_MEANINGS = {0: "done", 1: "crashed", 2: "user error", 130: "interrupted"}

#: Outputs the module loads back into the scene, as named in the ``done`` event.
REQUIRED_OUTPUTS = ("transform", "warped", "confidence", "report")


class OutputsError(RuntimeError):
    """The core claimed success but its outputs are missing or incomplete."""


class RunStatus(str, Enum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RegistrationOutputs:
    """Files written by the core; ``transform`` maps fixed to moving points (LPS mm, ITK)."""

    transform: Path  # ITK composite transform (.h5): affine, then displacement field
    warped: Path  # moving image resampled onto the fixed grid
    confidence: Path  # float image in [0, 1] on the fixed grid
    report: Path  # JSON report


@dataclass(frozen=True)
class RunOutcome:
    """The end of one run: its status, outputs (on success) and a message for the user."""

    status: RunStatus
    message: str
    outputs: RegistrationOutputs | None = None
    return_code: int | None = None


def describe_exit_code(return_code: int | None) -> str:
    """``'exit status 2 (user error)'``; unknown codes (e.g. -9 after a kill) are shown as they are."""
    if return_code is None:
        return "no exit status"
    meaning = EXIT_MEANINGS.get(return_code)
    return f"exit status {return_code}" + (f" ({meaning})" if meaning else "")


def outputs_from_done(event: DoneEvent, working_dir: Path) -> RegistrationOutputs:
    """Paths of the ``done`` event, checked to exist.

    Relative paths are relative to ``working_dir``, the folder the core ran in (its ``cwd``).

    Raises:
        OutputsError: naming each missing key or file.
    """
    missing_keys = [key for key in REQUIRED_OUTPUTS if key not in event.outputs]
    if missing_keys:
        have = sorted(event.outputs)
        raise OutputsError(f"the core's done event lacks outputs {missing_keys}; it has {have}")
    paths = {key: Path(working_dir, event.outputs[key]) for key in REQUIRED_OUTPUTS}
    missing_files = [str(path) for path in paths.values() if not path.is_file()]
    if missing_files:
        raise OutputsError(f"the core reported outputs that do not exist: {missing_files}")
    return RegistrationOutputs(**paths)


def summarise_run(
    events: Iterable[Event], return_code: int | None, working_dir: Path, cancelled: bool = False
) -> RunOutcome:
    """Decide how a run ended from its events and exit status (``working_dir``: the core's cwd)."""
    events = list(events)
    if cancelled:
        return RunOutcome(RunStatus.CANCELLED, "registration cancelled", return_code=return_code)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    done = [e for e in events if isinstance(e, DoneEvent)]
    if return_code == 0 and done and not errors:
        try:
            outputs = outputs_from_done(done[-1], working_dir)
        except OutputsError as error:
            return RunOutcome(RunStatus.FAILED, str(error), return_code=return_code)
        return RunOutcome(RunStatus.SUCCEEDED, "registration finished", outputs, return_code)
    message = _failure_message(errors, events, return_code)
    return RunOutcome(RunStatus.FAILED, message, return_code=return_code)


def _failure_message(errors: list[ErrorEvent], events: list[Event], return_code: int | None) -> str:
    """The core's own error message when it sent one, else the last lines it printed."""
    status = describe_exit_code(return_code)
    if errors:
        return f"{errors[-1].message} ({status})"
    if return_code == 0:
        return f"the core exited ({status}) without reporting its outputs"
    tail = [e.text for e in events if isinstance(e, LogLine)][-5:]
    return f"the registration failed ({status})" + (": " + " | ".join(tail) if tail else "")


def read_report(path: Path) -> dict:
    """The run's ``report.json`` as a dict.

    Raises:
        OutputsError: when it is not a JSON object.
    """
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OutputsError(f"cannot read the report {path}: {error}") from error
    if not isinstance(report, dict):
        raise OutputsError(f"the report {path} is not a JSON object")
    return report
