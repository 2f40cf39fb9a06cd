"""Atomic writes: a file is either absent, its old complete version, or its new complete version.

Each file is written to a hidden temporary file in the same folder (same file system), flushed to
disk, then renamed over the target with :func:`os.replace`, which is atomic. A writer that raises,
Ctrl-C or SIGTERM leaves no partial file; a SIGKILL can leave only a hidden ``.NAME.partial-PID-*``
file, never a file with the final name (:func:`remove_stale_partials` clears those of dead runs).

:class:`OutputTransaction` extends this to a set of files: they are staged, then moved into place
with the marker file (``report.json``) last, so a folder with the marker holds a complete set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import SimpleITK as sitk

from vmgga.io.lock import OutputFolderLock, pid_is_alive  # noqa: F401  (re-exported)
from vmgga.io.paths import check_not_an_input, safe_output_path  # noqa: F401  (re-exported)

PARTIAL_TAG = ".partial-"  # in the names of temporary files: ".NAME.partial-PID-TOKEN.EXT"


def partial_path(path: Path) -> Path:
    """Hidden temporary name next to ``path``, keeping its extensions (``.nii.gz``) for writers."""
    base, dot, extensions = path.name.partition(".")
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f".{base}{PARTIAL_TAG}{token}{dot}{extensions}")


def atomic_write(path: str | os.PathLike, writer_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``writer_fn(temporary_path)`` writes, then it is renamed.

    Args:
        path: Final file path (its folder must exist).
        writer_fn: Called with the temporary path (same folder, same extensions) to write to.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    temporary = partial_path(path)
    try:
        writer_fn(temporary)
        _fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    _fsync_folder(path.parent)
    return path


def _fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Flush a folder entry (the rename) to disk; not possible on every platform."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a SimpleITK image atomically (format from the extension)."""
    return atomic_write(path, lambda temporary: sitk.WriteImage(image, str(temporary), compress))


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically; it is serialised before the file is opened."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return write_text_atomic(text, path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files and staging folders left in ``folder`` by killed runs (dead pids)."""
    removed = []
    for path in Path(folder).glob(f".*{PARTIAL_TAG}*"):
        pid_text = path.name.split(PARTIAL_TAG, 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or pid_is_alive(int(pid_text)) or path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class OutputTransaction:
    """Write a set of files into ``output_dir`` so that the marker file certifies the set.

    Use as a context manager; write every file into :attr:`staging` (a hidden folder inside
    ``output_dir``). On success the old marker is removed first, the files are moved into place
    (each rename atomic) and the marker last. On error the staging folder is deleted and the
    output folder is left as it was.
    """

    def __init__(self, output_dir: str | os.PathLike, marker: str = "report.json") -> None:
        self.output_dir = Path(output_dir)
        self.marker = marker
        self.staging = self.output_dir / f".staging{PARTIAL_TAG}{os.getpid()}-{secrets.token_hex(4)}"

    def __enter__(self) -> OutputTransaction:
        self.staging.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def staged(self, name: str) -> Path:
        """Where to write output ``name`` (a plain relative name) during the transaction."""
        return safe_output_path(self.staging, name)

    def _commit(self) -> None:
        """Flush every staged file first (slow), then the quick renames, marker last."""
        names = sorted(str(p.relative_to(self.staging)) for p in self.staging.rglob("*") if p.is_file())
        targets = {name: safe_output_path(self.output_dir, name) for name in names}
        for name in names:
            _fsync_file(self.staging / name)
            targets[name].parent.mkdir(parents=True, exist_ok=True)
        (self.output_dir / self.marker).unlink(missing_ok=True)
        for name in _marker_last(names, self.marker):
            os.replace(self.staging / name, targets[name])
        _fsync_folder(self.output_dir)


def _marker_last(names: Iterable[str], marker: str) -> list[str]:
    """``names`` with the marker moved to the end."""
    names = list(names)
    return [n for n in names if n != marker] + [n for n in names if n == marker]
