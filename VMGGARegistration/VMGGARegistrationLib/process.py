"""Running the core as a child process without blocking the caller.

A reader thread turns the child's merged stdout/stderr into events in a queue; the caller drains it
with :meth:`CoreProcess.poll` (the Slicer module does so from a ``qt.QTimer``, so the GUI stays
live). :meth:`CoreProcess.cancel` kills the whole process tree: ``PythonSlicer`` is a launcher
whose real Python is a grandchild, so killing the direct child alone would leave it running.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .events import Event, LineSplitter, parse_line

_READ_CHUNK_BYTES = 65536


class CoreProcess:
    """One child process whose output lines are parsed into events (see :mod:`.events`)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None):
        self.command = [str(part) for part in command]
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._events: queue.Queue[Event] = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.cancelled = False

    def start(self) -> None:
        """Launch the child in its own process group/session and start reading its output."""
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
            bufsize=0,
            **_new_group_kwargs(),
        )
        self._reader = threading.Thread(target=self._read_output, name="vmgga-output", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        """Reader thread: bytes -> lines -> events, until the child closes its output."""
        splitter = LineSplitter()
        stream = self._proc.stdout
        while chunk := stream.read(_READ_CHUNK_BYTES):
            self._put_lines(splitter.feed(chunk))
        self._put_lines(splitter.flush())
        stream.close()
        self._proc.wait()

    def _put_lines(self, lines: list[str]) -> None:
        for line in lines:
            event = parse_line(line)
            if event is not None:
                self._events.put(event)

    def poll(self) -> list[Event]:
        """Every event that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def finished(self) -> bool:
        """True once the child exited and all its output was read (then ``poll`` has the rest)."""
        return self._reader is not None and not self._reader.is_alive()

    @property
    def return_code(self) -> int | None:
        """The child's exit status once :attr:`finished`, else ``None``."""
        return self._proc.returncode if self.finished else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until :attr:`finished` (or the timeout); return the exit status."""
        if self._reader is not None:
            self._reader.join(timeout_s)
        return self.return_code

    def cancel(self, grace_s: float = 5.0) -> None:
        """Kill the child and everything it started; waits up to ``grace_s`` for the output to end."""
        if self._proc is None or self.finished:
            return
        self.cancelled = True
        kill_process_tree(self._proc)
        self.wait(grace_s)


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus ``PYTHONUNBUFFERED=1``: the core's JSON lines then arrive as they are printed."""
    return {**base, "PYTHONUNBUFFERED": "1"}


def popen_platform_kwargs(platform: str = sys.platform, api=subprocess) -> dict:
    """Popen arguments that put the child in a new process group (so the whole tree can be killed).

    On Windows the child also gets no console window (``CREATE_NO_WINDOW`` and a ``STARTUPINFO``
    that hides the window, as Slicer's ``launchConsoleProcess`` does); otherwise every run would
    open a black console. ``api`` is the ``subprocess`` module (a stand-in in tests off Windows).
    """
    if platform != "win32":
        return {"start_new_session": True}
    startupinfo = api.STARTUPINFO()
    startupinfo.dwFlags |= api.STARTF_USESHOWWINDOW
    startupinfo.wShowWindow = api.SW_HIDE
    return {
        "creationflags": api.CREATE_NEW_PROCESS_GROUP | api.CREATE_NO_WINDOW,
        "startupinfo": startupinfo,
    }


def _new_group_kwargs() -> dict:
    return popen_platform_kwargs(sys.platform, subprocess)


def kill_process_tree(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and its descendants (POSIX: its process group; Windows: ``taskkill /T``)."""
    if sys.platform == "win32":
        command = ["taskkill", "/F", "/T", "/PID", str(proc.pid)]
        flags = subprocess.CREATE_NO_WINDOW  # taskkill is a console program too
        subprocess.run(command, capture_output=True, check=False, creationflags=flags)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the child's pid
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.kill()
    except OSError:
        pass


def wait_until_finished(process: CoreProcess, on_events, idle=None, interval_s: float = 0.1) -> None:
    """Blocking loop for scripts: hand events to ``on_events`` until the child is done.

    ``idle`` is called between polls (the Slicer module passes ``slicer.app.processEvents``).
    """
    while not process.finished:
        on_events(process.poll())
        if idle is not None:
            idle()
        time.sleep(interval_s)
    on_events(process.poll())
