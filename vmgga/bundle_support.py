"""Adapters that the MONAI bundle (``monai_bundle/configs/*.json``) reaches through ``_target_``.

The bundle holds no registration logic: every pair goes through :func:`vmgga.register` and
:func:`vmgga.write_outputs`, exactly as ``vmgga register`` does. This module only turns bundle
settings into a :class:`~vmgga.config.RegistrationConfig`, lists the pairs (one pair or a datalist),
stages each pair's outputs so that a failed pair leaves nothing behind, and computes the label
metrics of ``evaluate.json``.

Images are passed to :func:`vmgga.register` as paths, so the bundle reads DICOM folders and
NIfTI/NRRD/MHA files with the same reader, in the same LPS geometry, as the command line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from vmgga.config import RegistrationConfig, make_config
from vmgga.errors import ConfigError, InputError, OutputError, VmggaError, look_up_option
from vmgga.export.outputs import OUTPUT_FILES, QC_FILE

logger = logging.getLogger("vmgga.bundle")

#: Datalist keys of a pair; the label keys are needed by ``evaluate.json`` only.
_PAIR_KEYS = ("fixed", "moving", "case_id", "fixed_labels", "moving_labels")

_SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class BundleDevice(str, Enum):
    """Device setting of the bundle; ``auto`` takes CUDA when PyTorch sees a GPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class BundleRunError(VmggaError):
    """One or more pairs of a datalist failed; the message lists each case and its error."""


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


# --------------------------------------------------------------------------------------------- config


def as_bool(value: bool | str | int, name: str) -> bool:
    """A command-line flag as a bool: ``True``/``False``, ``"true"``/``"false"``, ``1``/``0``.

    Raises:
        ConfigError: for any other value (``bool("false")`` would silently be True).
    """
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no value; use true or false")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cpu``/``cuda``/``cuda:N`` pass through.

    Raises:
        ConfigError: for another value, or ``cuda`` asked for on a machine without a GPU.
    """
    import torch

    device = str(device)
    base = device.split(":", 1)[0]
    look_up_option(base, BundleDevice, "device")
    if base == BundleDevice.AUTO.value:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if base == BundleDevice.CUDA.value and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but PyTorch sees no CUDA GPU; use cpu or auto")
    return device


def registration_config(
    preset: str = "fast",
    device: str = "auto",
    features: str | None = None,
    matcher_weights: str | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    matcher: str | None = None,
) -> RegistrationConfig:
    """The :class:`RegistrationConfig` of a bundle run (the same one ``vmgga register`` would build).

    Args:
        preset: ``fast`` or ``accurate``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see :func:`resolve_device`).
        features: ``mind`` (training-free), ``vmgga`` or ``dinov2``; None keeps the preset's.
        matcher_weights: VMGGA checkpoint, used (and recorded) only when the configuration runs the
            network (learned matcher or features); None keeps the package's weights.
        seed: Random seed; None keeps the default.
        matcher: ``fused`` (the presets'), ``vmgga`` or ``cost_volume`` (training-free); None keeps the preset's.
        overrides: More :func:`vmgga.make_config` overrides, dotted (``{"dense.adam_iterations": 20}``)
            or nested (``{"dense": {...}}``).
    """
    values: dict[str, Any] = dict(overrides or {})
    values["device"] = resolve_device(device)
    if features is not None:
        values["dense.features"] = features
    if matcher is not None:
        values["dense.matcher"] = matcher
    if seed is not None:
        values["seed"] = int(seed)
    top = {k: v for k, v in values.items() if "." not in k and not isinstance(v, dict)}
    sections = {k: v for k, v in values.items() if k not in top}
    config = make_config(preset, **sections)
    _check_top_level_fields(top)
    from vmgga.matching.base import needs_matcher_network

    if matcher_weights is not None and needs_matcher_network(config.dense):
        config = dataclasses.replace(
            config, dense=dataclasses.replace(config.dense, matcher_weights=str(matcher_weights))
        )
    return dataclasses.replace(config, **top)


def _check_top_level_fields(values: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key that is not a top-level :class:`RegistrationConfig` field."""
    names = {f.name for f in dataclasses.fields(RegistrationConfig) if f.name != "preset"}
    names -= {"preprocess", "affine", "dense"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config fields {unknown}; top-level fields are {sorted(names)}")


def bundle_checkpoint(bundle_root: str | os.PathLike) -> str | None:
    """``<bundle_root>/models/model.pt`` if the bundle ships it, else None (training-free mode)."""
    path = Path(bundle_root) / "models" / "model.pt"
    return str(path) if path.is_file() else None


def load_network(checkpoint: str | os.PathLike | None = None, config: dict[str, Any] | None = None):
    """The bundle's ``network_def``: a :class:`~vmgga.models.network.VMGGANet`.

    Args:
        checkpoint: A matcher checkpoint (it rebuilds its own config and weights); None builds an
            untrained network from ``config``.
        config: :class:`~vmgga.models.config.MatcherConfig` fields, used when ``checkpoint`` is None.
    """
    from vmgga.models.config import matcher_config_from_dict
    from vmgga.models.network import VMGGANet

    if checkpoint is not None:
        return VMGGANet.from_checkpoint(checkpoint)
    return VMGGANet(matcher_config_from_dict(dict(config or {})))


def train_matcher(
    config: Any,
    resume: bool = False,
    model_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """``train.json``: :func:`vmgga.training.run_training`, then optionally install the weights.

    Args:
        config: A :class:`~vmgga.training.config.TrainConfig` (or what ``load_train_config`` takes).
        resume: Continue from the run folder's checkpoint when it exists.
        model_path: If set (e.g. ``<bundle_root>/models/model.pt``), the final weights are copied
            there atomically; None leaves the bundle's weights untouched.
        progress: Show a progress bar.

    Returns:
        The installed weights file, or the run's own weights file when ``model_path`` is None.
    """
    from vmgga.training import run_training

    weights = Path(run_training(config, resume=resume, progress=progress))
    logger.info("training finished: %s", weights)
    if model_path is None:
        return weights
    target = Path(model_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(weights, tmp)
    os.replace(tmp, target)
    logger.info("weights installed as %s", target)
    return target


# ---------------------------------------------------------------------------------------------- pairs


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


# ------------------------------------------------------------------------------------------- outputs


def pair_output_dir(output_dir: str | os.PathLike, pair: RegistrationPair) -> Path:
    """Where a pair's files go: ``output_dir`` for one pair, ``output_dir/<case_id>`` for a datalist."""
    return Path(output_dir) / pair.output_subdir if pair.output_subdir else Path(output_dir)


def _check_no_input_overwritten(pair: RegistrationPair, out_dir: Path) -> None:
    """Raise :class:`OutputError` if an output file would replace one of the pair's inputs."""
    inputs = {Path(p).resolve() for p in pair.input_paths().values()}
    for name in (*OUTPUT_FILES.values(), QC_FILE):
        if (out_dir / name).resolve() in inputs:
            raise OutputError(f"output {out_dir / name} would overwrite an input of case {pair.case_id!r}")


def commit_outputs(result: Any, out_dir: Path, qc: bool = False) -> dict[str, Path]:
    """Write ``result`` with :func:`vmgga.write_outputs` into a staging folder, then move it in place.

    ``out_dir`` is created only once every file is written, so a failure leaves no folder and no
    partial set of files. Files are moved with :func:`os.replace` (atomic per file).
    """
    from vmgga import write_outputs

    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=parent))
    try:
        written = write_outputs(result, staging, qc=qc)
        out_dir.mkdir(exist_ok=True)
        final = {}
        for key in sorted(written, key=lambda k: k == "report"):  # report.json last: marks a complete set
            target = out_dir / Path(written[key]).relative_to(staging)
            os.replace(written[key], target)
            final[key] = target
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -------------------------------------------------------------------------------------------- runner


class ProgressLogger:
    """A :data:`vmgga.api.ProgressCallback` that logs each stage once, at its start and end."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self._stage: str | None = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if stage != self._stage:
            self._stage = stage
            logger.info("case %s: %s started %s", self.case_id, stage, message)
        elif fraction >= 1.0:
            logger.info("case %s: %s done %s", self.case_id, stage, message)


class RegistrationRunner:
    """Registers every pair with :func:`vmgga.register` and writes its outputs.

    Args:
        pairs: From :func:`load_pairs`.
        output_dir: One pair: its files go here. Datalist: one sub-folder per ``case_id``.
        config: Shared by every pair (see :func:`registration_config`).
        qc: Also write ``qc.html`` per pair.
        stop_on_error: Datalist form: stop at the first failed pair (default: go on, then raise a
            :class:`BundleRunError` listing the failures). A single pair always re-raises its error.
    """

    def __init__(
        self,
        pairs: Sequence[RegistrationPair],
        output_dir: str | os.PathLike,
        config: RegistrationConfig,
        qc: bool = False,
        stop_on_error: bool = False,
    ) -> None:
        if output_dir is None or str(output_dir) == "":
            raise ConfigError("--output_dir is required")
        self.pairs = list(pairs)
        self.output_dir = Path(output_dir)
        self.config = config
        self.qc = as_bool(qc, "qc")
        self.stop_on_error = as_bool(stop_on_error, "stop_on_error")

    def register_pair(self, pair: RegistrationPair) -> tuple[Any, dict[str, Path]]:
        """Register one pair and commit its outputs; returns ``(result, {name: path})``."""
        from vmgga import register

        out_dir = pair_output_dir(self.output_dir, pair)
        _check_no_input_overwritten(pair, out_dir)
        logger.info("case %s: fixed=%s moving=%s -> %s", pair.case_id, pair.fixed, pair.moving, out_dir)
        result = register(pair.fixed, pair.moving, self.config, progress=ProgressLogger(pair.case_id))
        return result, commit_outputs(result, out_dir, qc=self.qc)

    def run(self) -> dict[str, dict[str, str]]:
        """Run every pair; returns ``{case_id: {output name: path}}`` of the pairs that succeeded.

        Raises:
            VmggaError: the pair's own error in the one-pair form; :class:`BundleRunError` listing
                every failed case in the datalist form. Failed pairs leave no output folder.
        """
        return self._run_all(lambda pair: {k: str(v) for k, v in self.register_pair(pair)[1].items()})

    def _run_all(self, job) -> dict[str, Any]:
        """Apply ``job`` to every pair, logging and collecting failures (see :meth:`run`)."""
        done: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for pair in self.pairs:
            try:
                done[pair.case_id] = job(pair)
            except VmggaError as error:
                logger.error("case %s: error: %s (no output written)", pair.case_id, error)
                if len(self.pairs) == 1 or self.stop_on_error:
                    raise
                failures[pair.case_id] = str(error)
        if failures:
            listing = "; ".join(f"{case}: {message}" for case, message in failures.items())
            raise BundleRunError(f"{len(failures)} of {len(self.pairs)} pairs failed: {listing}")
        return done


# ---------------------------------------------------------------------------------------- evaluation


def dice_per_label(fixed_zyx: np.ndarray, warped_zyx: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
    """Dice ``2|A∩B| / (|A|+|B|)`` of each label between two label arrays of the same shape.

    Labels absent from both arrays are left out (no NaN in reports).
    """
    dice: dict[int, float] = {}
    for label in labels:
        a, b = fixed_zyx == label, warped_zyx == label
        total = int(a.sum()) + int(b.sum())
        if total:
            dice[int(label)] = 2.0 * int(np.logical_and(a, b).sum()) / total
    return dice


def label_metrics(pair: RegistrationPair, result: Any, labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Dice of the moving labels warped three ways, and the Jacobian summary, for one pair.

    The moving labels are warped with :func:`vmgga.export.apply.apply_transform` (nearest
    neighbour, as ``vmgga apply --labels``) onto the fixed label map's grid, where Dice is measured:
    ``identity`` (no transform: images in their scanner positions), ``affine`` (the affine part of
    the transform only) and ``registered`` (the full transform). The Jacobian summary is the one
    :func:`vmgga.register` puts in its report. Only labels present in both maps are scored.
    """
    from vmgga.export.apply import apply_transform

    if not (pair.fixed_labels and pair.moving_labels):
        raise ConfigError(f"case {pair.case_id!r}: evaluation needs fixed_labels and moving_labels")
    fixed_lab = _read_labels(pair.fixed_labels, "fixed_labels")
    moving_lab = _read_labels(pair.moving_labels, "moving_labels")
    fixed_zyx = sitk.GetArrayFromImage(fixed_lab)
    labels = scored_labels(fixed_zyx, sitk.GetArrayViewFromImage(moving_lab), labels)
    transforms = {
        "identity": sitk.Transform(3, sitk.sitkIdentity),
        "affine": affine_part(result.transform),
        "registered": result.transform,
    }
    metrics: dict[str, Any] = {}
    for name, transform in transforms.items():
        warped_zyx = sitk.GetArrayFromImage(apply_transform(transform, moving_lab, fixed_lab, labels=True))
        dice = dice_per_label(fixed_zyx, warped_zyx, labels)
        metrics[f"dice_{name}"] = {str(k): v for k, v in dice.items()}
        metrics[f"mean_dice_{name}"] = _mean(dice.values())
    metrics["jacobian"] = dict(result.report.get("jacobian", {}))
    return metrics


def affine_part(transform: sitk.Transform) -> sitk.Transform:
    """The linear sub-transform of a ``vmgga`` composite (affine, then displacement field).

    Raises:
        ConfigError: if the composite holds no linear transform.
    """
    composite = sitk.CompositeTransform(transform)
    for index in range(composite.GetNumberOfTransforms()):
        part = composite.GetNthTransform(index)
        if part.IsLinear():
            return part
    raise ConfigError("the registration transform holds no affine part")


def scored_labels(fixed_zyx: np.ndarray, moving_zyx: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    """Labels > 0 present in both maps, restricted to ``labels`` when given (sorted)."""
    present = set(np.unique(fixed_zyx).tolist()) & set(np.unique(moving_zyx).tolist())
    wanted = present if labels is None else present & {int(v) for v in labels}
    return sorted(int(v) for v in wanted if v > 0)


def _read_labels(path: str, role: str) -> sitk.Image:
    """A 3D label map, or :class:`InputError` naming the file and the problem."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{role} {path} cannot be read as an image: {error}") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{role} {path} must be a 3D scalar label map, got {image.GetDimension()}D")
    return image


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


class EvaluationRunner(RegistrationRunner):
    """Registers labelled pairs, writes their outputs, and writes ``metrics.json`` in ``output_dir``.

    Args:
        labels: Label values to score (those present in both maps); None: every shared label > 0.
        (others): as :class:`RegistrationRunner`.
    """

    def __init__(self, *args: Any, labels: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = None if labels is None else [int(v) for v in labels]

    def evaluate_pair(self, pair: RegistrationPair) -> dict[str, Any]:
        """Register one pair, commit its outputs, return its metrics."""
        if not (pair.fixed_labels and pair.moving_labels):
            raise ConfigError(f"case {pair.case_id!r}: evaluation needs fixed_labels and moving_labels")
        result, _ = self.register_pair(pair)
        metrics = label_metrics(pair, result, self.labels)
        logger.info(
            "case %s: mean Dice %.3f (identity), %.3f (affine), %.3f (registered); Jacobian %s",
            pair.case_id,
            _or_nan(metrics["mean_dice_identity"]),
            _or_nan(metrics["mean_dice_affine"]),
            _or_nan(metrics["mean_dice_registered"]),
            metrics["jacobian"],
        )
        return metrics

    def run(self) -> dict[str, Any]:
        """Evaluate every pair; write and return ``{"cases": {...}, "summary": {...}}``."""
        cases = self._run_all(self.evaluate_pair)
        metrics = {"cases": cases, "summary": _summary(cases)}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "metrics.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(metrics, indent=2))
        os.replace(tmp, path)
        logger.info("metrics written to %s", path)
        return metrics


def _summary(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over cases of each mean Dice and of the folded-voxel fraction."""
    summary: dict[str, Any] = {"n_cases": len(cases)}
    for name in ("identity", "affine", "registered"):
        key = f"mean_dice_{name}"
        summary[key] = _mean(c[key] for c in cases.values() if c[key] is not None)
    folded = (c["jacobian"].get("negative_fraction", 0.0) for c in cases.values())
    summary["jacobian_negative_fraction"] = _mean(folded)
    return summary
