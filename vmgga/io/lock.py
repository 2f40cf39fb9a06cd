"""A lock file that refuses a second run writing into the same output folder.

The lock ``OUT/.vmgga.lock`` is created with ``O_CREAT | O_EXCL`` (atomic) and holds the owner's
pid, host and process start time. A lock whose process is gone (killed run) is stale and taken
over; a live one raises :class:`~vmgga.errors.OutputError` naming the folder and the owner.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path

from vmgga.errors import OutputError

LOCK_NAME = ".vmgga.lock"
FRESH_LOCK_S = 2.0  # an empty lock file younger than this is being written by its owner


def pid_is_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (Linux), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _proc_state(pid: int) -> str | None:
    """Process state letter (``R``, ``S``, ``Z``...) where /proc exists."""
    fields = _proc_stat_fields(pid)
    return fields[0] if fields else None


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _proc_stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _lock_owner_alive(owner: dict) -> bool:
    """Whether the run recorded in a lock file still runs (another host: assume it does)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner.get("pid", -1))
    if not pid_is_alive(pid):
        return False
    start = owner.get("start_ticks")
    return start is None or process_start_ticks(pid) in (None, start)


class OutputFolderLock:
    """Exclusive use of an output folder by one run (a context manager).

    Raises:
        OutputError: on entry, if a live run holds the folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start_ticks": process_start_ticks(os.getpid()),
        }
        self.held = False

    def acquire(self) -> OutputFolderLock:
        """Create the lock file, taking over a stale one; raise if a live run holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(30):
            if self._try_create():
                self.held = True
                return self
            self._take_over_stale()
        raise OutputError(
            f"output folder '{self.folder}' is locked ({self.path}) and the lock could not be taken"
        )

    def release(self) -> None:
        """Remove the lock file if it is ours."""
        if self.held and _read_owner(self.path).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> OutputFolderLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()

    def _try_create(self) -> bool:
        """Atomically create the lock file with our owner record; False if it exists."""
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as handle:
            json.dump(self._owner, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _take_over_stale(self) -> None:
        """Move a stale lock aside; put a live one back and raise."""
        owner = _read_owner(self.path)
        if not owner and _age_s(self.path) < FRESH_LOCK_S:
            time.sleep(0.1)  # another run is writing its record right now: look again
            return
        if owner and _lock_owner_alive(owner):
            raise self._busy_error(owner)
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{secrets.token_hex(4)}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return  # another run removed it first: try again
        grabbed = _read_owner(aside)
        if grabbed and _lock_owner_alive(grabbed):  # a live run re-created it meanwhile
            _restore(aside, self.path)
            raise self._busy_error(grabbed)
        aside.unlink(missing_ok=True)

    def _busy_error(self, owner: dict) -> OutputError:
        return OutputError(
            f"output folder '{self.folder}' is in use by another vmgga run (pid {owner.get('pid')} on "
            f"{owner.get('host')}; lock file {self.path}); wait for it to finish or choose another folder "
            "(delete the lock file only if that run is gone)"
        )


def _read_owner(path: Path) -> dict:
    """The owner record of a lock file ({} if absent or unreadable: a lock being written or broken)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _age_s(path: Path) -> float:
    """Seconds since ``path`` was modified (infinite if it is gone)."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _restore(aside: Path, path: Path) -> None:
    """Put a live lock back where it was (unless yet another one appeared there)."""
    try:
        os.link(aside, path)
    except OSError:
        pass
    aside.unlink(missing_ok=True)
