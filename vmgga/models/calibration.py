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

A map can also take two more inputs that the matcher computes at test time (file version 2):

* the **agreement** of the two images after the match (:func:`vmgga.models.matcher2d.gradient_agreement`,
  in [0, 1]: 1 where image0's edges and image1's, warped by the flow, run the same way): the map is
  a ``(R, K)`` table over ``agreement_knots`` x ``raw_knots``, read bilinearly;
* the **pair confidence**, the mean raw confidence over image0's foreground: a pair below
  ``unsure_pair_below`` (the matcher is unsure of the pair as a whole) is read in its own table
  ``unsure_table``, which is nowhere above ``table``.

The calibrated confidence is then non-decreasing in each of the three inputs (checked on load).
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

#: Version of the calibration file layout (2: optional agreement table and pair level).
FILE_VERSION = 2


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A map ``raw confidence [, agreement, pair confidence] -> P(error < tolerance_px)``.

    ``raw_knots`` are increasing raw confidences in [0, 1]. Without a table (``agreement_knots``
    empty) the map is the non-decreasing piecewise-linear ``raw_knots -> calibrated_knots``,
    constant outside the knots. With a table, ``table[r][k]`` is the calibrated confidence at
    agreement ``agreement_knots[r]`` and raw confidence ``raw_knots[k]`` (bilinear between knots,
    constant outside) for sure pairs (pair confidence at least ``unsure_pair_below``), and
    ``unsure_table`` the same for the others; ``calibrated_knots`` is then the 1D map fitted on the
    same split, kept for comparison and not applied.
    """

    raw_knots: tuple[float, ...]
    calibrated_knots: tuple[float, ...]
    tolerance_px: float  # a match is "right" when its end-point error is below this
    setting: str  # the matcher setting it was fitted for (:func:`setting_key`)
    fitted_on: str = ""  # the calibration split, in words
    agreement_knots: tuple[float, ...] = ()  # (R,) increasing; empty: a 1D map
    table: tuple[tuple[float, ...], ...] = ()  # (R, K) sure pairs; non-decreasing along both axes
    unsure_table: tuple[tuple[float, ...], ...] = ()  # (R, K) unsure pairs, <= table; empty: table
    unsure_pair_below: float = 0.0  # pair confidence under which ``unsure_table`` applies
    agreement_sigma_px: float = 4.0  # Gaussian sigma of the agreement the table was fitted with

    def __post_init__(self) -> None:
        raw, cal = np.asarray(self.raw_knots), np.asarray(self.calibrated_knots)
        if raw.ndim != 1 or raw.shape != cal.shape or raw.size < 1:
            raise InputError(f"calibration knots need equal 1D lengths >= 1, got {raw.shape} and {cal.shape}")
        if np.any(np.diff(raw) <= 0) or np.any(np.diff(cal) < 0):
            raise InputError("calibration knots must be increasing (raw) and non-decreasing (calibrated)")
        if cal.min() < 0 or cal.max() > 1:
            raise InputError("calibrated confidences must lie in [0, 1]")
        if not self.agreement_knots and not self.table and not self.unsure_table:
            return
        agreement = np.asarray(self.agreement_knots, float)
        if agreement.ndim != 1 or agreement.size < 1 or np.any(np.diff(agreement) <= 0):
            raise InputError("agreement knots must be increasing (at least one)")
        table = np.asarray(self.table, float)
        unsure = np.asarray(self.unsure_table or self.table, float)
        for name, values in (("table", table), ("unsure table", unsure)):
            if values.shape != (agreement.size, raw.size):
                raise InputError(
                    f"calibration {name} must be (agreement knots, raw knots), got {values.shape}"
                )
            if np.any(np.diff(values, axis=0) < 0) or np.any(np.diff(values, axis=1) < 0):
                raise InputError(f"the calibration {name} must be non-decreasing along both axes")
            if values.min() < 0 or values.max() > 1:
                raise InputError(f"calibration {name} values must lie in [0, 1]")
        if np.any(unsure > table + 1e-12):
            raise InputError("the unsure-pair table must nowhere be above the table of sure pairs")

    @property
    def needs_agreement(self) -> bool:
        """Whether :meth:`apply` needs the agreement and pair confidence (a table map)."""
        return bool(self.agreement_knots)

    def apply(
        self, confidence: Tensor, agreement: Tensor | None = None, pair_confidence: Tensor | None = None
    ) -> Tensor:
        """Calibrated confidence, same shape, dtype and device as ``confidence`` (``(B, ...)``).

        A table map needs ``agreement`` (same shape) and takes ``pair_confidence``, ``(B,)`` or the
        same shape (None: every pair sure); a 1D map ignores both.
        """
        x = confidence.detach().to("cpu", torch.float64)
        if not self.needs_agreement:
            return _interp(x, self.raw_knots, self.calibrated_knots).to(confidence.device, confidence.dtype)
        if agreement is None or agreement.shape != confidence.shape:
            raise InputError("this confidence calibration needs the agreement map of the match (same shape)")
        a = agreement.detach().to("cpu", torch.float64)
        out = self._bilinear(self.table, x, a)
        if pair_confidence is not None and self.unsure_table:
            unsure = pair_confidence.detach().to("cpu", torch.float64) < self.unsure_pair_below
            if unsure.shape != x.shape:
                unsure = unsure.reshape(-1, *([1] * (x.dim() - 1)))
            out = torch.where(unsure, self._bilinear(self.unsure_table, x, a), out)
        return out.to(confidence.device, confidence.dtype)

    def _bilinear(self, table: tuple[tuple[float, ...], ...], x: Tensor, a: Tensor) -> Tensor:
        """``table`` read at raw confidences ``x`` and agreements ``a`` (same shape, float64): each row
        interpolated along the raw knots, then the rows weighted by their piecewise-linear "hat" in
        the agreement (:func:`_interp` of a one-hot row: constant outside the knots)."""
        rows = len(self.agreement_knots)
        out = torch.zeros_like(x)
        for r, row in enumerate(table):
            hat = tuple(float(i == r) for i in range(rows))
            out += _interp(a, self.agreement_knots, hat) * _interp(x, self.raw_knots, row)
        return out

    def to_dict(self) -> dict:
        """JSON-friendly dict (lists of floats)."""
        return {
            **asdict(self),
            "raw_knots": list(self.raw_knots),
            "calibrated_knots": list(self.calibrated_knots),
            "agreement_knots": list(self.agreement_knots),
            "table": [list(row) for row in self.table],
            "unsure_table": [list(row) for row in self.unsure_table],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceCalibration:
        """Inverse of :meth:`to_dict` (also reads version-1 maps, which have no table)."""
        return cls(
            tuple(float(v) for v in data["raw_knots"]),
            tuple(float(v) for v in data["calibrated_knots"]),
            float(data["tolerance_px"]),
            str(data["setting"]),
            str(data.get("fitted_on", "")),
            tuple(float(v) for v in data.get("agreement_knots", ())),
            tuple(tuple(float(v) for v in row) for row in data.get("table", ())),
            tuple(tuple(float(v) for v in row) for row in data.get("unsure_table", ())),
            float(data.get("unsure_pair_below", 0.0)),
            float(data.get("agreement_sigma_px", 4.0)),
        )


def _interp(x: Tensor, knots: tuple[float, ...], values: tuple[float, ...]) -> Tensor:
    """Piecewise-linear ``knots -> values`` at ``x`` (float64), constant outside the knots."""
    raw = torch.tensor(knots, dtype=torch.float64)
    cal = torch.tensor(values, dtype=torch.float64)
    if raw.numel() == 1:
        return torch.full_like(x, float(cal[0]))
    x = x.clamp(float(raw[0]), float(raw[-1]))
    upper = torch.searchsorted(raw, x.flatten().contiguous(), right=True).clamp(1, raw.numel() - 1)
    x0, x1, y0, y1 = raw[upper - 1], raw[upper], cal[upper - 1], cal[upper]
    t = (x.flatten() - x0) / (x1 - x0)
    return (y0 + t * (y1 - y0)).reshape(x.shape)


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


def fit_agreement_table(
    confidence: np.ndarray,
    correct: np.ndarray,
    agreement: np.ndarray,
    pair_confidence: np.ndarray,
    agreement_edges: tuple[float, ...],
    unsure_pair_below: float,
    raw_grid: np.ndarray,
    n_bins: int = 20,
    min_pixels: int = 2000,
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """Fit the tables of a table map (:class:`ConfidenceCalibration`) on pixels ``(N,)``.

    Returns (agreement knots: the centres of the bins ``agreement_edges``, the table of sure pairs,
    the table of unsure pairs), each table ``(bins, raw_grid.size)``: see :func:`agreement_rows`
    for one table; where the unsure table is above the sure one, the sure one is raised to it (so the
    map never falls when the pair confidence rises). No unsure pixels: both tables are the same.
    """
    sure = pair_confidence >= unsure_pair_below
    sure_rows = agreement_rows(
        confidence[sure], correct[sure], agreement[sure], agreement_edges, raw_grid, n_bins, min_pixels
    )
    if sure.all():
        unsure_rows = sure_rows
    else:
        unsure_rows = agreement_rows(
            confidence[~sure], correct[~sure], agreement[~sure], agreement_edges, raw_grid, n_bins, min_pixels
        )
    sure_rows = np.maximum(sure_rows, unsure_rows)
    edges = np.asarray(agreement_edges, float)
    centres = 0.5 * (edges[:-1] + edges[1:])

    def rows(table: np.ndarray) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(float(v) for v in row) for row in table)

    return tuple(float(c) for c in centres), rows(sure_rows), rows(unsure_rows)


def agreement_rows(
    confidence: np.ndarray,
    correct: np.ndarray,
    agreement: np.ndarray,
    agreement_edges: tuple[float, ...],
    raw_grid: np.ndarray,
    n_bins: int = 20,
    min_pixels: int = 2000,
) -> np.ndarray:
    """``(bins, G)`` table, non-decreasing along both axes, of "correct" against ``confidence (N,)``
    (read at ``raw_grid (G,)``) and ``agreement (N,)`` (bins ``agreement_edges``, increasing).

    Each bin gets an isotonic map (:func:`fit_isotonic`); a bin with fewer than ``min_pixels`` takes
    the row below it (the first filled row for the lowest bins; the pooled map if no bin is
    filled); then each row is raised to the one below it (cumulative maximum over the bins).
    """
    grid = np.asarray(raw_grid, float)
    found: list[np.ndarray | None] = []
    for low, high in zip(agreement_edges[:-1], agreement_edges[1:], strict=True):
        chosen = (agreement >= low) & (agreement < high)
        if chosen.sum() < min_pixels:
            found.append(None)
            continue
        knots, values = fit_isotonic(confidence[chosen], correct[chosen], n_bins)
        found.append(np.interp(grid, knots, values))
    if all(row is None for row in found):
        knots, values = fit_isotonic(confidence, correct, n_bins)
        found = [np.interp(grid, knots, values)] * len(found)
    first = next(row for row in found if row is not None)
    filled: list[np.ndarray] = []
    for row in found:
        filled.append(row if row is not None else (filled[-1] if filled else first))
    return np.maximum.accumulate(np.stack(filled), axis=0)


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
