"""The pairs of a bundle run: one ``fixed``/``moving`` pair or a datalist."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmgga.errors import ConfigError, InputError

#: Datalist keys of a pair; the label keys are needed by ``evaluate.json`` only.
_PAIR_KEYS = ("fixed", "moving", "case_id", "fixed_labels", "moving_labels")

_SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RegistrationPair:
    """One registration job of the bundle.

    Attributes:
        fixed: Fixed image: a DICOM series folder or a NIfTI/NRRD/MHA file.
        moving: Moving image, same kinds.
        case_id: Name of the pair's output sub-folder (datalist form).
        fixed_labels: Label map aligned with ``fixed`` (evaluation only).
        moving_labels: Label map aligned with ``moving`` (evaluation only).
        output_subdir: Sub-folder of the run's output folder for this pair (datalist form: the
            ``case_id``); None writes into the output folder itself (one-pair form).
    """

    fixed: str
    moving: str
    case_id: str = "pair"
    fixed_labels: str | None = None
    moving_labels: str | None = None
    output_subdir: str | None = None

    def input_paths(self) -> dict[str, str]:
        """``{role: path}`` of every input given (labels included when set)."""
        roles = {"fixed": self.fixed, "moving": self.moving}
        roles.update({k: getattr(self, k) for k in ("fixed_labels", "moving_labels") if getattr(self, k)})
        return roles


def load_pairs(
    fixed: str | os.PathLike | None = None,
    moving: str | os.PathLike | None = None,
    datalist: str | os.PathLike | Sequence[dict[str, Any]] | None = None,
    case_id: str = "pair",
    fixed_labels: str | os.PathLike | None = None,
    moving_labels: str | os.PathLike | None = None,
) -> list[RegistrationPair]:
    """The pairs of a bundle run: either one ``fixed``/``moving`` pair or a ``datalist``.

    Args:
        fixed: Fixed image path (one-pair form).
        moving: Moving image path (one-pair form).
        datalist: A JSON file holding a list of ``{"fixed", "moving", "case_id"}`` objects (label
            keys ``fixed_labels``/``moving_labels`` optional), or that list itself. Relative paths
            in a datalist file are relative to the file's folder.
        case_id: Name of the one pair (recorded in logs only).
        fixed_labels: Label map of ``fixed`` (one-pair form, evaluation only).
        moving_labels: Label map of ``moving`` (one-pair form, evaluation only).

    Raises:
        ConfigError: if both forms or neither are given, or a datalist entry is malformed.
        InputError: if an input path does not exist (checked for every pair before any runs).
    """
    one_pair = fixed is not None or moving is not None
    if one_pair == (datalist is not None):
        raise ConfigError("give either --fixed and --moving (one pair) or --datalist (many pairs), not both")
    if one_pair:
        if fixed is None or moving is None:
            raise ConfigError("the one-pair form needs both --fixed and --moving")
        labels = {"fixed_labels": fixed_labels, "moving_labels": moving_labels}
        labels = {k: str(v) for k, v in labels.items() if v is not None}
        pairs = [RegistrationPair(fixed=str(fixed), moving=str(moving), case_id=str(case_id), **labels)]
    else:
        pairs = _pairs_from_datalist(datalist)
    for pair in pairs:
        _check_inputs_exist(pair)
    return pairs


def _pairs_from_datalist(datalist: str | os.PathLike | Sequence[dict[str, Any]]) -> list[RegistrationPair]:
    """Parse and validate a datalist (file or list); case ids must be unique folder names."""
    entries, base = _read_datalist(datalist)
    pairs = [_pair_from_entry(entry, index, base) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for pair in pairs:
        if pair.case_id in seen:
            raise ConfigError(f"datalist: case_id {pair.case_id!r} appears more than once")
        seen.add(pair.case_id)
    if not pairs:
        raise ConfigError("datalist: the list of pairs is empty")
    return pairs


def _read_datalist(datalist: str | os.PathLike | Sequence[dict[str, Any]]) -> tuple[list, Path | None]:
    """``(entries, base folder for relative paths)`` from a JSON file or an in-memory list."""
    if isinstance(datalist, (str, os.PathLike)):
        path = Path(datalist)
        if not path.is_file():
            raise InputError(f"datalist {path} does not exist")
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"datalist {path} is not readable JSON: {error}") from error
        base: Path | None = path.resolve().parent
    else:
        entries, base = datalist, None
    if not isinstance(entries, list):
        raise ConfigError(f"datalist {datalist}: expected a JSON list of pairs, got {type(entries).__name__}")
    return list(entries), base


def _pair_from_entry(entry: Any, index: int, base: Path | None) -> RegistrationPair:
    """One datalist entry -> :class:`RegistrationPair` (paths made absolute against ``base``)."""
    if not isinstance(entry, dict) or not {"fixed", "moving"} <= set(entry):
        raise ConfigError(f"datalist entry {index} needs 'fixed' and 'moving' keys, got {entry!r}")
    unknown = sorted(set(entry) - set(_PAIR_KEYS))
    if unknown:
        raise ConfigError(f"datalist entry {index}: unknown keys {unknown}; allowed: {list(_PAIR_KEYS)}")
    case_id = str(entry.get("case_id", f"pair_{index:03d}"))
    if not _SAFE_CASE_ID.match(case_id) or case_id in (".", ".."):
        raise ConfigError(f"datalist entry {index}: case_id {case_id!r} is not a safe folder name")
    paths = {k: _resolve(entry[k], base) for k in _PAIR_KEYS[:2] + _PAIR_KEYS[3:] if entry.get(k)}
    return RegistrationPair(case_id=case_id, output_subdir=case_id, **paths)


def _resolve(path: str, base: Path | None) -> str:
    """``path`` (``~`` expanded), made absolute against ``base`` when relative and ``base`` is set."""
    path_obj = Path(str(path)).expanduser()
    if base is not None and not path_obj.is_absolute():
        path_obj = base / path_obj
    return str(path_obj)


def _check_inputs_exist(pair: RegistrationPair) -> None:
    """Raise :class:`InputError` naming the first input path that does not exist."""
    for role, path in pair.input_paths().items():
        if not Path(path).exists():
            raise InputError(f"{role} image {path} does not exist (case {pair.case_id!r})")
