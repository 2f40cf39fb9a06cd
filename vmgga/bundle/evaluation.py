"""``evaluate.json``: Dice of warped label maps and the Jacobian summary, per pair and over pairs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from vmgga.bundle.pairs import RegistrationPair
from vmgga.bundle.runner import RegistrationRunner
from vmgga.errors import ConfigError
from vmgga.export.itk_transform import flatten_composite
from vmgga.frames import array_from_image
from vmgga.io.atomic import write_json_atomic
from vmgga.io.labels import read_label_map
from vmgga.metrics import dice_per_label

logger = logging.getLogger("vmgga.bundle")


def label_metrics(pair: RegistrationPair, result: Any, labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Dice of the moving labels warped three ways, and the Jacobian summary, for one pair.

    The moving labels are warped with :func:`vmgga.export.apply.apply_transform` (nearest
    neighbour, as ``vmgga apply --labels``) onto the fixed label map's grid, where Dice is measured:
    ``identity`` (no transform: images in their scanner positions), ``affine`` (the affine part of
    the transform only) and ``registered`` (the full transform). The Jacobian summary is the one
    :func:`vmgga.register` puts in its report. Only labels present in both maps are scored, so
    :func:`vmgga.metrics.dice_per_label` never meets a label absent from both (no NaN in reports).
    """
    from vmgga.export.apply import apply_transform

    if not (pair.fixed_labels and pair.moving_labels):
        raise ConfigError(f"case {pair.case_id!r}: evaluation needs fixed_labels and moving_labels")
    fixed_lab = _read_labels(pair.fixed_labels, "fixed_labels")
    moving_lab = _read_labels(pair.moving_labels, "moving_labels")
    fixed_zyx = array_from_image(fixed_lab)
    labels = scored_labels(fixed_zyx, array_from_image(moving_lab), labels)
    transforms = {
        "identity": sitk.Transform(3, sitk.sitkIdentity),
        "affine": affine_part(result.transform),
        "registered": result.transform,
    }
    metrics: dict[str, Any] = {}
    for name, transform in transforms.items():
        warped_zyx = array_from_image(apply_transform(transform, moving_lab, fixed_lab, labels=True))
        dice = dice_per_label(fixed_zyx, warped_zyx, labels)
        metrics[f"dice_{name}"] = {str(k): v for k, v in dice.items()}
        metrics[f"mean_dice_{name}"] = _mean(dice.values())
    metrics["jacobian"] = dict(result.report.get("jacobian", {}))
    return metrics


def affine_part(transform: sitk.Transform) -> sitk.Transform:
    """The linear sub-transform of a ``vmgga`` composite (affine, then displacement field), found with
    :func:`vmgga.export.itk_transform.flatten_composite`.

    Raises:
        ConfigError: if the composite holds no linear transform.
    """
    for part in flatten_composite(transform):
        if part.IsLinear():
            return part
    raise ConfigError("the registration transform holds no affine part")


def scored_labels(fixed_zyx: np.ndarray, moving_zyx: np.ndarray, labels: Sequence[int] | None) -> list[int]:
    """Labels > 0 present in both maps, restricted to ``labels`` when given (sorted)."""
    present = set(np.unique(fixed_zyx).tolist()) & set(np.unique(moving_zyx).tolist())
    wanted = present if labels is None else present & {int(v) for v in labels}
    return sorted(int(v) for v in wanted if v > 0)


def _read_labels(path: str, role: str) -> sitk.Image:
    """A 3D label map in its integer type, or an :class:`InputError` naming the file and the problem."""
    return read_label_map(path, role=role)


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
        path = write_json_atomic(metrics, self.output_dir / "metrics.json")
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
