"""``OUT/summary.csv`` and ``OUT/summary.json``: one row per case, plus counts."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from vmgga.batch.case import CaseOutcome, CaseStatus
from vmgga.io.atomic import write_json_atomic, write_text_atomic

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
#: CSV columns; metrics missing for a case (failed, no labels) are left empty.
CSV_COLUMNS = (
    "case_id",
    "status",
    "result",
    "run_time_s",
    "jacobian_negative_fraction",
    "jacobian_sd_log_j",
    "confidence_mean",
    "dice_mean",
    "dice_per_label",
    "suspect_reasons",
    "error",
)


def status_counts(outcomes: list[CaseOutcome]) -> dict[str, int]:
    """Number of cases per status (every status listed, zeros included)."""
    counts = Counter(o.status for o in outcomes)
    return {s: counts.get(s, 0) for s in (CaseStatus.DONE, CaseStatus.SKIPPED, CaseStatus.FAILED)}


def csv_row(outcome: CaseOutcome) -> dict[str, str]:
    """One CSV row; Dice per label as ``label:score`` pairs separated by spaces."""
    metrics = outcome.metrics or {}
    row = {"case_id": outcome.case_id, "status": outcome.status, "run_time_s": f"{outcome.run_time_s:.2f}"}
    for column in ("jacobian_negative_fraction", "jacobian_sd_log_j", "confidence_mean", "dice_mean"):
        row[column] = "" if metrics.get(column) is None else f"{metrics[column]:.6g}"
    row["dice_per_label"] = " ".join(f"{k}:{v:.4f}" for k, v in (metrics.get("dice") or {}).items())
    row["result"] = metrics.get("result_status", "") if outcome.status != CaseStatus.FAILED else ""
    row["suspect_reasons"] = "; ".join(metrics.get("suspect_reasons") or [])
    row["error"] = outcome.error or ""
    return row


def write_summary(output_dir: Path, outcomes: list[CaseOutcome], info: dict) -> tuple[Path, Path]:
    """Write both summary files atomically; ``info`` (manifest, config, timing) goes into the JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(o) for o in outcomes)
    csv_path = write_text_atomic(buffer.getvalue(), output_dir / SUMMARY_CSV)
    content = {**info, "counts": status_counts(outcomes), "cases": [o.as_dict() for o in outcomes]}
    return csv_path, write_json_atomic(content, output_dir / SUMMARY_JSON)


def summary_line(counts: dict[str, int], output_dir: Path) -> str:
    """The one-line result printed at the end of a batch."""
    return (
        f"vmgga batch: {counts[CaseStatus.DONE]} succeeded, {counts[CaseStatus.SKIPPED]} skipped "
        f"(already complete), {counts[CaseStatus.FAILED]} failed; see {output_dir / SUMMARY_CSV} "
        f"and {output_dir / 'index.html'}"
    )
