"""Atomic writes: a file is either absent, its old complete version, or its new complete version.

Each file is written to a hidden temporary file in the same folder (same file system), flushed to
disk, read back (:mod:`vmgga.io.verify`: a full disk can leave a short file without any error from
the writer), then renamed over the target with :func:`os.replace`, which is atomic. A writer that raises,
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

from vmgga.errors import DiskFullError, OutputWriteError
from vmgga.io.capture import library_output
from vmgga.io.lock import OutputFolderLock, pid_is_alive  # noqa: F401  (re-exported)
from vmgga.io.paths import check_not_an_input, safe_output_path  # noqa: F401  (re-exported)
from vmgga.io.verify import is_disk_full, problem_with

PARTIAL_TAG = ".partial-"  # in the names of temporary files: ".NAME.partial-PID-TOKEN.EXT"


def partial_path(path: Path) -> Path:
    """Hidden temporary name next to ``path``, keeping its extensions (``.nii.gz``) for writers."""
    base, dot, extensions = path.name.partition(".")
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f".{base}{PARTIAL_TAG}{token}{dot}{extensions}")


def atomic_write(
    path: str | os.PathLike,
    writer_fn: Callable[[Path], object],
    *,
    expected_bytes: int | None = None,
) -> Path:
    """Write ``path`` atomically: ``writer_fn(temporary_path)`` writes, the file is verified, renamed.

    Args:
        path: Final file path (its folder must exist).
        writer_fn: Called with the temporary path (same folder, same extensions) to write to.
        expected_bytes: The file's size when the caller knows it (text, bytes).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        DiskFullError: no space left; ``path`` keeps its previous version (or stays absent).
        OutputWriteError: the writer failed or the file does not read back complete.
    """
    path = Path(path)
    temporary = partial_path(path)
    try:
        write_verified(temporary, writer_fn, final=path, expected_bytes=expected_bytes)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    _fsync_folder(path.parent)
    return path


def write_verified(
    target: Path,
    writer_fn: Callable[[Path], object],
    *,
    final: Path | None = None,
    expected_bytes: int | None = None,
) -> Path:
    """``writer_fn(target)``, flush ``target`` to disk and read it back (:mod:`vmgga.io.verify`).

    What the writing library prints is captured (see :mod:`vmgga.io.capture`). Errors name
    ``final`` (the path the user knows), not the temporary ``target``. A ``writer_fn`` that returns
    ``bytes`` says that they are the file's exact content: the file is read back raw and compared
    with them instead of being decoded.

    Raises:
        DiskFullError: the writer or the flush failed, or the file is short, on a full disk.
        OutputWriteError: the writer failed or the file is incomplete for another reason.
    """
    final = Path(final or target)
    error, problem, written = None, None, None
    with library_output(f"writing '{final.name}'") as captured:
        try:
            written = writer_fn(target)
            _fsync_file(target)
        except (OSError, RuntimeError) as raised:
            error = raised
    if error is None:
        problem = problem_with(target, expected_bytes, written if isinstance(written, bytes) else None)
        if problem is None:
            return target
    raise write_error(final, target.parent, error, problem, captured.text)


def write_error(
    final: Path, folder: Path, error: BaseException | None, problem: str | None, library_text: str = ""
) -> OutputWriteError:
    """The one-line error for a failed write of ``final`` (a :class:`DiskFullError` if space ran out)."""
    if is_disk_full(folder, error, library_text):
        return DiskFullError(
            f"no space left on the device to write '{final}': free some space or choose another output "
            "folder; nothing was committed"
        )
    if isinstance(error, OSError):
        return OutputWriteError(f"cannot write '{final}': {error.strerror or error}; nothing was committed")
    reason = problem or _one_line(error)
    return OutputWriteError(f"'{final}' could not be written completely ({reason}); nothing was committed")


def _one_line(error: BaseException | None) -> str:
    """The last non-empty line of an error (ITK puts its reason last)."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


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


#: Formats whose header names a separate data file (``x.mhd`` + ``x.zraw``, ``x.hdr`` + ``x.img``).
SPLIT_HEADER_SUFFIXES = (".mhd", ".hdr", ".nhdr")


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a SimpleITK image atomically and verified (format from the extension).

    A two-file format is written under its final names in a hidden folder beside ``path``, then
    the data file is moved into place and the header last, so the header never names a
    temporary file.
    """
    path = Path(path)
    if not path.name.lower().endswith(SPLIT_HEADER_SUFFIXES):
        return atomic_write(path, lambda temporary: sitk.WriteImage(image, str(temporary), compress))
    staging = path.with_name(f".{path.name}{PARTIAL_TAG}{os.getpid()}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        staged = write_verified(
            staging / path.name, lambda target: sitk.WriteImage(image, str(target), compress), final=path
        )
        for written in sorted(staging.iterdir(), key=lambda p: p == staged):  # header last
            os.replace(written, path.with_name(written.name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_folder(path.parent)
    return path


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically; it is serialised before the file is opened."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return write_text_atomic(text, path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 text atomically (verified by its size)."""
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write bytes atomically (verified by reading them back)."""

    def write(temporary: Path) -> bytes:
        temporary.write_bytes(data)
        return data

    return atomic_write(path, write)


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

    Use as a context manager; write every file with :meth:`write` (written and verified) or into
    :attr:`staging` (a hidden folder inside ``output_dir``; verified at commit). On success every
    staged file is verified, the old marker is removed first, the files are moved into place
    (each rename atomic), files of the previous set that this one does not write (names in
    ``owned``) are removed, and the marker goes last. On error the staging folder is deleted and
    the output folder is left as it was.

    Args:
        output_dir: The output folder.
        marker: The file whose presence certifies a complete set.
        owned: Every name the tool may write into ``output_dir`` (other files are never touched).
    """

    def __init__(
        self, output_dir: str | os.PathLike, marker: str = "report.json", owned: Iterable[str] = ()
    ) -> None:
        self.output_dir = Path(output_dir)
        self.marker = marker
        self.owned = frozenset(owned)
        self.staging = self.output_dir / f".staging{PARTIAL_TAG}{os.getpid()}-{secrets.token_hex(4)}"
        self._verified: set[str] = set()

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

    def write(
        self,
        name: str,
        writer_fn: Callable[[Path], object],
        *,
        expected_bytes: int | None = None,
    ) -> Path:
        """Stage output ``name``: ``writer_fn(staged_path)``, flushed and verified now.

        Raises:
            DiskFullError, OutputWriteError: see :func:`write_verified`.
        """
        staged = self.staged(name)
        write_verified(staged, writer_fn, final=self.output_dir / name, expected_bytes=expected_bytes)
        self._verified.add(name)
        return staged

    def _commit(self) -> None:
        """Verify and flush the staged files (slow), then the quick renames, marker last."""
        names = sorted(str(p.relative_to(self.staging)) for p in self.staging.rglob("*") if p.is_file())
        targets = {name: safe_output_path(self.output_dir, name) for name in names}
        for name in names:
            if name not in self._verified:
                self._verify_staged(name)
            targets[name].parent.mkdir(parents=True, exist_ok=True)
        (self.output_dir / self.marker).unlink(missing_ok=True)  # from here the folder is uncertified
        self._remove_previous(set(names))
        for name in _marker_last(names, self.marker):
            if name == self.marker:
                _fsync_folder(self.output_dir)  # the set's files are in place before the marker
            os.replace(self.staging / name, targets[name])
        _fsync_folder(self.output_dir)

    def _verify_staged(self, name: str) -> None:
        """A file written into :attr:`staging` directly: flush it and read it back."""
        path = self.staging / name
        try:
            _fsync_file(path)
        except OSError as error:
            raise write_error(self.output_dir / name, self.staging, error, None) from None
        problem = problem_with(path)
        if problem is not None:
            raise write_error(self.output_dir / name, self.staging, None, problem)

    def _remove_previous(self, written: set[str]) -> None:
        """Delete the files of an earlier set that this set does not write (owned names only)."""
        for name in sorted(self.owned - written):
            path = self.output_dir / name
            if path.is_file() or path.is_symlink():
                path.unlink()


def _marker_last(names: Iterable[str], marker: str) -> list[str]:
    """``names`` with the marker moved to the end."""
    names = list(names)
    return [n for n in names if n != marker] + [n for n in names if n == marker]
