"""Confidence calibration maps: a monotone map from a matcher's raw confidence to the probability
that its match is right (end-point error below a tolerance), fitted on real pairs.

The network's confidence head is trained on synthetic pairs; on real slices, and after the
refinement and smoothing of ``vmgga match``, its raw value is no longer a probability (smoothing
makes the flow better without telling the confidence). A :class:`ConfidenceCalibration` is an
isotonic (pool-adjacent-violators) fit of "right" against the raw confidence, stored as knots of a
piecewise-linear, non-decreasing map in a JSON file beside the weights
(``<weights stem>.calibration.json``, :func:`calibration_path`). Each map is bound to the weights
file (SHA-256) and to one matcher setting (:func:`setting_key`): another checkpoint or setting
gets no map rather than a wrong one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vmgga.errors import InputError

#: Version of the calibration file layout.
FILE_VERSION = 1


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A non-decreasing piecewise-linear map ``raw confidence -> P(error < tolerance_px)``.

    ``raw_knots`` are increasing raw confidences in [0, 1], ``calibrated_knots`` the probabilities
    there (non-decreasing, in [0, 1]); outside the knots the map is constant.
    """

    raw_knots: tuple[float, ...]
    calibrated_knots: tuple[float, ...]
    tolerance_px: float  # a match is "right" when its end-point error is below this
    setting: str  # the matcher setting it was fitted for (:func:`setting_key`)
    fitted_on: str = ""  # the calibration split, in words

    def __post_init__(self) -> None:
        raw, cal = np.asarray(self.raw_knots), np.asarray(self.calibrated_knots)
        if raw.ndim != 1 or raw.shape != cal.shape or raw.size < 1:
            raise InputError(f"calibration knots need equal 1D lengths >= 1, got {raw.shape} and {cal.shape}")
        if np.any(np.diff(raw) <= 0) or np.any(np.diff(cal) < 0):
            raise InputError("calibration knots must be increasing (raw) and non-decreasing (calibrated)")
        if cal.min() < 0 or cal.max() > 1:
            raise InputError("calibrated confidences must lie in [0, 1]")

    def apply(self, confidence: Tensor) -> Tensor:
        """Calibrated confidence, same shape, dtype and device as ``confidence``."""
        raw = torch.tensor(self.raw_knots, dtype=torch.float64)
        cal = torch.tensor(self.calibrated_knots, dtype=torch.float64)
        x = confidence.detach().to("cpu", torch.float64).clamp(float(raw[0]), float(raw[-1]))
        if raw.numel() == 1:
            return torch.full_like(confidence, float(cal[0]))
        upper = torch.searchsorted(raw, x.flatten().contiguous(), right=True).clamp(1, raw.numel() - 1)
        x0, x1, y0, y1 = raw[upper - 1], raw[upper], cal[upper - 1], cal[upper]
        t = (x.flatten() - x0) / (x1 - x0)
        out = (y0 + t * (y1 - y0)).reshape(confidence.shape)
        return out.to(confidence.device, confidence.dtype)

    def to_dict(self) -> dict:
        """JSON-friendly dict (lists of floats)."""
        return {
            **asdict(self),
            "raw_knots": list(self.raw_knots),
            "calibrated_knots": list(self.calibrated_knots),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(float(v) for v in data["raw_knots"]),
            tuple(float(v) for v in data["calibrated_knots"]),
            float(data["tolerance_px"]),
            str(data["setting"]),
            str(data.get("fitted_on", "")),
        )


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``values (N,)`` (weights ``(N,)``, > 0)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values.astype(float), weights.astype(float), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v1, w1, n1), (v2, w2, n2) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2]]
    return np.concatenate([np.full(int(n), v) for v, _, n in blocks])


def fit_isotonic(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 20
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Knots of an isotonic map: ``n_bins`` equal-count bins of ``confidence (N,)``, the accuracy of
    each (``correct (N,)`` bool) made non-decreasing by :func:`pool_adjacent_violators`, placed at the
    bins' mean raw confidence (equal means merged)."""
    order = np.argsort(confidence, kind="stable")
    conf, hit = confidence[order].astype(float), correct[order].astype(float)
    bins = [b for b in np.array_split(np.arange(conf.size), min(n_bins, conf.size)) if b.size]
    centres = np.array([conf[b].mean() for b in bins])
    accuracy = np.array([hit[b].mean() for b in bins])
    counts = np.array([b.size for b in bins], dtype=float)
    fitted = pool_adjacent_violators(accuracy, counts)
    raw, cal = [], []
    for centre, value in zip(centres, fitted, strict=True):
        if raw and centre <= raw[-1]:
            cal[-1] = max(cal[-1], float(value))
            continue
        raw.append(float(centre))
        cal.append(float(value))
    return tuple(raw), tuple(cal)


def setting_key(max_displacement_px: float | None, refine_px: float | None, smooth_px: float | None) -> str:
    """The name of a 2D matcher setting, e.g. ``search=global,refine=12,smooth=8``."""

    def name(value: float | None, unset: str) -> str:
        return unset if value is None else f"{value:g}"

    return (
        f"search={name(max_displacement_px, 'global')},refine={name(refine_px, 'off')},"
        f"smooth={name(smooth_px, 'off')}"
    )


def calibration_path(weights: str | Path) -> Path:
    """Where the calibration maps of a weights file live: ``<stem>.calibration.json`` beside it."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.calibration.json")


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_calibration(weights: str | Path, calibration: ConfidenceCalibration) -> Path:
    """Add (or replace) ``calibration`` in the file beside ``weights``; returns that file's path.

    A file fitted for another weights file (other SHA-256) is started afresh.
    """
    path, digest = calibration_path(weights), file_sha256(weights)
    document = {"version": FILE_VERSION, "weights_sha256": digest, "maps": {}}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("weights_sha256") == digest:
            document["maps"] = dict(old.get("maps", {}))
    document["maps"][calibration.setting] = calibration.to_dict()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(path)
    return path


def load_calibration(weights: str | Path, setting: str) -> ConfidenceCalibration | None:
    """The map fitted for ``weights`` (same SHA-256) and ``setting``, or None when there is none."""
    path = calibration_path(weights)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"confidence calibration {path} cannot be read: {error}") from None
    if document.get("weights_sha256") != file_sha256(weights) or setting not in document.get("maps", {}):
        return None
    return ConfidenceCalibration.from_dict(document["maps"][setting])
