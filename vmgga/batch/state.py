"""Resumability: a case's fingerprint, its ``done.json`` (written last) and ``error.json``.

A case is complete when ``OUT/<case_id>/done.json`` exists, records the same fingerprint as the
case would have now (hash of its manifest row, its registration config, the content of its input
files and, for a chained case, its predecessor's fingerprint), and every output it lists still has
the recorded size and SHA-256 and loads (image headers, JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback
from functools import lru_cache
from pathlib import Path

import SimpleITK as sitk

import vmgga
from vmgga.batch.manifest import Case
from vmgga.io.atomic import write_json_atomic

DONE_NAME = "done.json"
ERROR_NAME = "error.json"
#: Bump when the meaning of outputs changes, so older done.json files no longer count.
STATE_FORMAT = 1
#: Config fields that change how fast a case runs, not what it produces.
EXECUTION_ONLY_FIELDS = ("num_threads",)
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=4096)
def _cached_file_digest(path: str, size: int, mtime_ns: int) -> str:
    """File digests are cached per (path, size, mtime) within one process (baselines repeat)."""
    return sha256_of_file(Path(path))


def input_digest(path: str | None) -> str | None:
    """Content digest of an input file or folder (all files, sorted); a marker if unreadable."""
    if path is None:
        return None
    target = Path(path)
    try:
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        digest = hashlib.sha256()
        for file in files:
            stat = file.stat()
            name = file.relative_to(target).as_posix() if target.is_dir() else file.name
            digest.update(
                f"{name}\0{_cached_file_digest(str(file), stat.st_size, stat.st_mtime_ns)}\0".encode()
            )
        return digest.hexdigest()
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


def config_for_fingerprint(config) -> dict:
    """The registration config as a dict, without execution-only fields."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in values.items() if k not in EXECUTION_ONLY_FIELDS}


def case_fingerprint(case: Case, config, pair_fixed: str | None, predecessor: str | None) -> str:
    """SHA-256 over everything a case's outputs depend on.

    Args:
        case: the manifest case.
        config: its :class:`vmgga.RegistrationConfig` (``num_threads`` is ignored).
        pair_fixed: for a chained case, the image it is registered to (the predecessor's moving).
        predecessor: the predecessor's fingerprint for a chained case.
    """
    inputs = {
        role: input_digest(getattr(case, role))
        for role in ("fixed", "moving", "fixed_labels", "moving_labels")
    }
    payload = {
        "format": STATE_FORMAT,
        "vmgga": vmgga.__version__,
        "case": case.as_dict(),
        "config": config_for_fingerprint(config),
        "inputs": inputs,
        "pair_fixed": input_digest(pair_fixed),
        "predecessor": predecessor,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def clear_markers(case_dir: Path) -> None:
    """Remove ``done.json`` and ``error.json`` before a case is (re)computed."""
    for name in (DONE_NAME, ERROR_NAME):
        (case_dir / name).unlink(missing_ok=True)


def write_done(case_dir: Path, fingerprint: str, outputs: dict[str, Path], record: dict) -> Path:
    """Write ``done.json`` (atomically, after every output): fingerprint, output digests, metrics."""
    files = {
        name: {
            "file": Path(path).name,
            "bytes": Path(path).stat().st_size,
            "sha256": sha256_of_file(Path(path)),
        }
        for name, path in outputs.items()
    }
    content = {"fingerprint": fingerprint, "format": STATE_FORMAT, "outputs": files, **record}
    return write_json_atomic(_plain(content), case_dir / DONE_NAME)


def write_error(case_dir: Path, case_id: str, error: BaseException, run_time_s: float) -> Path:
    """Write ``error.json`` with the error's type, message and traceback."""
    content = {
        "case_id": case_id,
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        "run_time_s": run_time_s,
        "finished_utc": utc_now(),
    }
    return write_json_atomic(content, case_dir / ERROR_NAME)


def read_done(case_dir: Path) -> dict | None:
    """The content of ``done.json``, or None when absent or unreadable."""
    try:
        content = json.loads((case_dir / DONE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def completed_record(case_dir: Path, fingerprint: str) -> dict | None:
    """``done.json``'s content if the case is complete and valid for ``fingerprint``, else None."""
    record = read_done(case_dir)
    if record is None or record.get("fingerprint") != fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return None
    valid = all(_output_is_valid(case_dir, entry) for entry in outputs.values())
    return record if valid else None


def _output_is_valid(case_dir: Path, entry) -> bool:
    """The file exists, has the recorded size and digest, and loads."""
    if not isinstance(entry, dict) or "file" not in entry:
        return False
    path = case_dir / Path(str(entry["file"])).name
    try:
        if path.stat().st_size != entry.get("bytes") or sha256_of_file(path) != entry.get("sha256"):
            return False
    except OSError:
        return False
    return _loads(path)


def _loads(path: Path) -> bool:
    """Image headers and JSON files parse; other files are trusted to their digest."""
    try:
        if path.name.endswith(_IMAGE_SUFFIXES):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (RuntimeError, OSError, ValueError):
        return False
    return True


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _plain(value):
    """JSON-friendly copy (dataclasses, paths, numpy scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (Path, os.PathLike)):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
