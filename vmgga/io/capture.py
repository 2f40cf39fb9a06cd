"""Keep the C libraries' own messages (GDCM, HDF5, ITK) off the user's terminal.

ITK, GDCM and HDF5 print warnings and error stacks straight to file descriptor 2, bypassing
Python. Around a library call, :func:`library_output` points descriptor 2 at a temporary file and
hands what was printed to the ``vmgga.libraries`` logger (level DEBUG: shown with ``--verbose`` or
a log handler, never by default). The error the tool raises is then its one-line message.

The redirection is process-wide, so nested or concurrent blocks (threads) share one capture file:
the first block in redirects, the last block out restores the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import SimpleITK as sitk

logger = logging.getLogger("vmgga.libraries")

_lock = threading.Lock()
_state: dict = {"depth": 0, "saved_fd": None, "file": None}


@dataclass
class CapturedOutput:
    """What the libraries printed inside a :func:`library_output` block (filled in on exit)."""

    text: str = ""
    lines: list[str] = field(default_factory=list)


def quiet_itk_warnings() -> None:
    """Stop ITK printing its warnings (e.g. GDCM's "No Series were found") at all."""
    sitk.ProcessObject.SetGlobalWarningDisplay(False)


@contextlib.contextmanager
def library_output(what: str = "library call") -> Iterator[CapturedOutput]:
    """Capture what C libraries print to stderr inside the block; log it at DEBUG level.

    Args:
        what: Names the call in the log (e.g. ``"reading 'x.nii.gz'"``).

    Yields:
        A :class:`CapturedOutput`, filled when the block ends (also when it raises), so a caller
        can search the library's text (e.g. for "No space left on device").
    """
    captured = CapturedOutput()
    start = _enter()
    try:
        yield captured
    finally:
        captured.text = _leave(start)
        captured.lines = [line for line in captured.text.splitlines() if line.strip()]
        if captured.lines:
            logger.debug("%s printed:\n%s", what, captured.text.rstrip())


def _enter() -> int:
    """Redirect descriptor 2 (first block only); return where this block's output starts."""
    with _lock:
        if _state["depth"] == 0:
            _flush_python_stderr()
            capture_file = tempfile.TemporaryFile(mode="w+b")
            _state["saved_fd"] = os.dup(2)
            _state["file"] = capture_file
            os.dup2(capture_file.fileno(), 2)
        _state["depth"] += 1
        return os.lseek(_state["file"].fileno(), 0, os.SEEK_END)


def _leave(start: int) -> str:
    """Read this block's output; restore descriptor 2 when the last block ends."""
    with _lock:
        _flush_python_stderr()
        capture_file = _state["file"]
        capture_file.seek(start)
        text = capture_file.read().decode("utf-8", errors="replace")
        _state["depth"] -= 1
        if _state["depth"] == 0:
            os.dup2(_state["saved_fd"], 2)
            os.close(_state["saved_fd"])
            capture_file.close()
            _state.update(saved_fd=None, file=None)
        return text


def _flush_python_stderr() -> None:
    """Python's own buffered stderr goes out before the descriptor changes."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
