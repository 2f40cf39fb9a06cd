"""Batch manifests: one registration case per row, as CSV or JSON, with a longitudinal shorthand.

CSV: a header with ``case_id, fixed, moving`` and optionally ``fixed_modality, moving_modality,
fixed_labels, moving_labels, dice_labels`` (the labels to score, e.g. ``1 2 3``; default: every
label both maps contain). JSON: ``{"cases": [row, ...], "subjects": [...], "config": {...}}``
(or a bare list of rows). A subject expands into one case per follow-up::

    {"subject": "S1", "baseline": "s1/base.nii.gz", "baseline_labels": "s1/base_seg.nii.gz",
     "followups": ["s1/m06.nii.gz", {"image": "s1/m12.nii.gz", "labels": "s1/m12_seg.nii.gz"}],
     "chain": false, "modality": "mr"}

giving cases ``S1_fu1``, ``S1_fu2``... each mapped to the baseline: registered to it directly, or
with ``"chain": true`` registered to its predecessor and composed with the predecessor's transform.
Relative paths resolve against the manifest's folder. ``config`` holds :func:`vmgga.make_config`
overrides for every case. Case ids name output folders, so they must be safe file names.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vmgga.config import Modality
from vmgga.errors import ConfigError, InputError, look_up_option

#: Allowed case ids and subject names: a letter or digit, then letters, digits, ``._-``.
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Names used by the batch itself inside the output folder.
RESERVED_NAMES = {"summary.csv", "summary.json", "index.html"}
REQUIRED_COLUMNS = ("case_id", "fixed", "moving")
OPTIONAL_COLUMNS = ("fixed_modality", "moving_modality", "fixed_labels", "moving_labels", "dice_labels")
SUBJECT_KEYS = {"subject", "baseline", "baseline_labels", "followups", "chain", "modality", "dice_labels"}


@dataclass(frozen=True)
class Case:
    """One registration of a batch. Paths are absolute; the output goes to ``OUT/<case_id>/``."""

    case_id: str  # safe file name, unique in the manifest
    fixed: str  # fixed image (file or DICOM folder); the frame the result lives in
    moving: str  # moving image
    fixed_modality: str = "auto"  # auto | ct | mr
    moving_modality: str = "auto"  # auto | ct | mr
    fixed_labels: str | None = None  # label map on (or resampled to) the fixed grid, for Dice
    moving_labels: str | None = None  # label map of the moving image, warped (nearest neighbour)
    chain_from: str | None = None  # predecessor case id: register to its moving image, compose
    dice_labels: tuple[int, ...] | None = None  # labels to score; None: those both maps contain

    def as_dict(self) -> dict:
        """Plain dict (for fingerprints and summaries)."""
        return asdict(self)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest."""

    path: Path  # the manifest file
    cases: tuple[Case, ...]  # in manifest order (a chain's cases in chain order)
    config_overrides: dict = field(default_factory=dict)  # make_config overrides for every case


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a CSV or JSON manifest.

    Raises:
        InputError: unreadable file or malformed content.
        ConfigError: a bad case id, duplicate case id, unknown column or modality.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"manifest '{path}' does not exist or is not a file")
    if path.suffix.lower() == ".json":
        cases, overrides = _cases_from_json(_load_json(path), path.parent)
    elif path.suffix.lower() in (".csv", ".tsv"):
        cases, overrides = _cases_from_csv(path), {}
    else:
        raise InputError(f"manifest '{path}': expected a .csv or .json file")
    if not cases:
        raise InputError(f"manifest '{path}' lists no cases")
    _check_unique(cases, path)
    return Manifest(path=path, cases=tuple(cases), config_overrides=overrides)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"manifest '{path}' is not readable JSON: {error}") from error


def _cases_from_csv(path: Path) -> list[Case]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            rows = list(csv.DictReader(handle, dialect=dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"manifest '{path}' is not a readable CSV file: {error}") from error
    return [case_from_row(row, path.parent, f"row {n + 2}") for n, row in enumerate(rows)]


def _cases_from_json(content, base: Path) -> tuple[list[Case], dict]:
    if isinstance(content, list):
        content = {"cases": content}
    if not isinstance(content, dict):
        raise InputError("manifest JSON must be an object or a list of case rows")
    unknown = set(content) - {"cases", "subjects", "config"}
    if unknown:
        raise ConfigError(f"manifest: unknown keys {sorted(unknown)}; expected cases, subjects, config")
    overrides = content.get("config") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("manifest: 'config' must be an object of make_config overrides")
    cases = [case_from_row(row, base, f"case {n + 1}") for n, row in enumerate(content.get("cases") or [])]
    for subject in content.get("subjects") or []:
        cases += cases_from_subject(subject, base)
    return cases, overrides


def case_from_row(row: dict, base: Path, where: str) -> Case:
    """A :class:`Case` from one manifest row (strings; empty optional values are absent)."""
    if not isinstance(row, dict):
        raise InputError(f"manifest {where}: expected an object with case_id, fixed, moving")
    values = {
        str(k).strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None
    }
    unknown = set(values) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ConfigError(f"manifest {where}: unknown columns {sorted(unknown)}")
    missing = [c for c in REQUIRED_COLUMNS if not values.get(c)]
    if missing:
        raise InputError(f"manifest {where}: missing {missing}")
    return Case(
        case_id=check_case_id(str(values["case_id"]), where),
        fixed=resolve_path(values["fixed"], base),
        moving=resolve_path(values["moving"], base),
        fixed_modality=_modality(values.get("fixed_modality"), where),
        moving_modality=_modality(values.get("moving_modality"), where),
        fixed_labels=_optional_path(values.get("fixed_labels"), base),
        moving_labels=_optional_path(values.get("moving_labels"), base),
        dice_labels=_label_list(values.get("dice_labels"), where),
    )


def cases_from_subject(subject: dict, base: Path) -> list[Case]:
    """Expand a longitudinal subject into cases ``<subject>_fu1``, ``<subject>_fu2``..."""
    if not isinstance(subject, dict) or not subject.get("subject") or not subject.get("baseline"):
        raise InputError("manifest subjects: each needs 'subject', 'baseline' and 'followups'")
    unknown = set(subject) - SUBJECT_KEYS
    if unknown:
        raise ConfigError(f"manifest subject {subject['subject']!r}: unknown keys {sorted(unknown)}")
    name = check_case_id(str(subject["subject"]), "subject")
    followups = subject.get("followups") or []
    if not isinstance(followups, list) or not followups:
        raise InputError(f"manifest subject {name!r}: 'followups' must be a non-empty list")
    modality = _modality(subject.get("modality"), f"subject {name!r}")
    baseline = resolve_path(subject["baseline"], base)
    baseline_labels = _optional_path(subject.get("baseline_labels"), base)
    dice_labels = _label_list(subject.get("dice_labels"), f"subject {name!r}")
    chain = bool(subject.get("chain", False))
    cases: list[Case] = []
    for number, entry in enumerate(followups, start=1):
        image, labels = _followup(entry, base, name)
        previous = cases[-1] if (chain and cases) else None
        cases.append(
            Case(
                case_id=check_case_id(f"{name}_fu{number}", "subject"),
                fixed=baseline,
                moving=image,
                fixed_modality=modality,
                moving_modality=modality,
                fixed_labels=baseline_labels,
                moving_labels=labels,
                dice_labels=dice_labels,
                chain_from=previous.case_id if previous else None,
            )
        )
    return cases


def _followup(entry, base: Path, subject: str) -> tuple[str, str | None]:
    """(image, labels) of a follow-up given as a path or ``{"image": ..., "labels": ...}``."""
    if isinstance(entry, str) and entry:
        return resolve_path(entry, base), None
    if isinstance(entry, dict) and entry.get("image"):
        return resolve_path(entry["image"], base), _optional_path(entry.get("labels"), base)
    raise InputError(f"manifest subject {subject!r}: a follow-up must be a path or {{'image': path}}")


def check_case_id(case_id: str, where: str) -> str:
    """Return ``case_id`` if it is a safe folder name, else raise :class:`ConfigError`."""
    if not CASE_ID_PATTERN.match(case_id) or case_id.lower() in RESERVED_NAMES:
        raise ConfigError(
            f"manifest {where}: case id {case_id!r} is not allowed; use 1-100 letters, digits, '.', '_' "
            f"or '-', starting with a letter or digit (not {sorted(RESERVED_NAMES)})"
        )
    return case_id


def _check_unique(cases: list[Case], path: Path) -> None:
    """Case ids must differ, also ignoring case (folders on case-insensitive file systems)."""
    seen: dict[str, str] = {}
    for case in cases:
        key = case.case_id.lower()
        if key in seen:
            raise ConfigError(f"manifest '{path}': case id {case.case_id!r} repeats {seen[key]!r}")
        seen[key] = case.case_id


def resolve_path(value, base: Path) -> str:
    """An input path as an absolute string; relative paths are relative to the manifest's folder."""
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _label_list(value, where: str) -> tuple[int, ...] | None:
    """Label values to score: a JSON list or a CSV text like ``"1 2 3"`` / ``"1;2;3"``."""
    if value in (None, "", []):
        return None
    items = value.replace(";", " ").replace(",", " ").split() if isinstance(value, str) else value
    try:
        labels = tuple(sorted({int(str(item)) for item in items}))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"manifest {where}: dice_labels must be integers, got {value!r}") from error
    if any(label <= 0 for label in labels):
        raise ConfigError(f"manifest {where}: dice_labels must be positive (0 is background)")
    return labels


def _optional_path(value, base: Path) -> str | None:
    return resolve_path(value, base) if value not in (None, "") else None


def _modality(value, where: str) -> str:
    if value in (None, ""):
        return Modality.AUTO.value
    return look_up_option(str(value).lower(), Modality, f"manifest {where}: modality")
