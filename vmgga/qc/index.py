"""``OUT/index.html``: every case of a batch with a thumbnail, its key numbers and outlier flags.

Flags: failed; suspect result (``report.json`` status ``suspect``, with its reasons); low confidence (mean below :data:`LOW_CONFIDENCE_MEAN`, or a robust outlier below
the batch median); folding (fraction of det J <= 0 above :data:`MAX_FOLDING_FRACTION`). Thumbnails
are embedded (base64), so the page works offline and when copied alone; each case id links to
``<case_id>/qc.html``.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from vmgga.io.atomic import write_text_atomic
from vmgga.qc.report import QC_PAGE_NAME, THUMBNAIL_NAME

INDEX_NAME = "index.html"
#: Mean confidence below this is flagged (stroke T2->T1 and abdomen CT->MR, fast preset: about 0.14).
LOW_CONFIDENCE_MEAN = 0.05
#: Folding fraction (det J <= 0) above this is flagged (0.01 % of the working grid).
MAX_FOLDING_FRACTION = 1e-4
#: A case whose mean confidence is this many robust SDs (1.4826 MAD) below the batch median is flagged.
OUTLIER_ROBUST_SD = 3.0

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:middle}
td.v{font-family:ui-monospace,monospace;text-align:right}.flag{color:#b00;font-weight:bold}
.ok{color:#080}img{display:block;width:128px;height:auto}
"""


def case_flags(row: dict, confidence_floor: float | None = None) -> list[str]:
    """Outlier flags of one summary row (``status``, ``metrics``)."""
    if row.get("status") == "failed":
        return ["failed"]
    metrics = row.get("metrics") or {}
    flags = ["suspect result"] if metrics.get("result_status") == "suspect" else []
    confidence = metrics.get("confidence_mean")
    if confidence is not None and (
        confidence < LOW_CONFIDENCE_MEAN or (confidence_floor is not None and confidence < confidence_floor)
    ):
        flags.append("low confidence")
    if (metrics.get("jacobian_negative_fraction") or 0.0) > MAX_FOLDING_FRACTION:
        flags.append("folding")
    return flags


def robust_confidence_floor(rows: list[dict]) -> float | None:
    """Median - 3 robust SDs of the cases' mean confidence (None with fewer than 4 cases)."""
    values = np.asarray(
        [
            r["metrics"]["confidence_mean"]
            for r in rows
            if (r.get("metrics") or {}).get("confidence_mean") is not None
        ]
    )
    if values.size < 4:
        return None
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return median - OUTLIER_ROBUST_SD * spread if spread > 0 else None


def write_index(output_dir: str | os.PathLike, rows: list[dict], title: str = "vmgga batch") -> Path:
    """Write ``OUT/index.html`` (atomically) from summary rows (``case_id``, ``status``, ``metrics``...)."""
    output_dir = Path(output_dir)
    floor = robust_confidence_floor(rows)
    body = "".join(_row_html(output_dir, row, case_flags(row, floor)) for row in rows)
    flagged = sum(1 for row in rows if case_flags(row, floor))
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(rows)} cases, {flagged} flagged. Flags: failed; suspect result (the registration "
        "looks failed or implausible, reasons listed; see the case's report.json); low confidence (mean &lt; "
        f"{LOW_CONFIDENCE_MEAN} or a robust outlier of this batch); folding (det J &le; 0 in more than "
        f"{100 * MAX_FOLDING_FRACTION:g}% of voxels). Thumbnails: axial colour fusion after registration "
        "(fixed magenta, moving green).</p><table><tr><th>thumbnail</th><th>case</th><th>status</th>"
        "<th>confidence</th><th>folding</th><th>Dice</th><th>time (s)</th><th>flags</th></tr>"
        f"{body}</table></body></html>\n"
    )
    return write_text_atomic(page, output_dir / INDEX_NAME)


def _row_html(output_dir: Path, row: dict, flags: list[str]) -> str:
    case_id = str(row["case_id"])
    metrics = row.get("metrics") or {}
    link = f"{quote(case_id)}/{QC_PAGE_NAME}"
    has_page = row.get("status") != "failed" and (output_dir / case_id / QC_PAGE_NAME).is_file()
    name = f'<a href="{link}">{html.escape(case_id)}</a>' if has_page else html.escape(case_id)
    flag_html = (
        f'<span class="flag">{html.escape(", ".join(flags))}</span>'
        if flags
        else '<span class="ok">ok</span>'
    )
    if row.get("error"):
        flag_html += f"<br>{html.escape(str(row['error']))}"
    for reason in metrics.get("suspect_reasons") or []:
        flag_html += f"<br>{html.escape(str(reason))}"
    cells = [
        _thumbnail_html(output_dir / case_id / THUMBNAIL_NAME, case_id, link) if has_page else "",
        name,
        html.escape(str(row.get("status", ""))),
        _number(metrics.get("confidence_mean")),
        _number(metrics.get("jacobian_negative_fraction")),
        _number(metrics.get("dice_mean")),
        _number(row.get("run_time_s"), "{:.1f}"),
        flag_html,
    ]
    return "<tr>" + "".join(f'<td class="v">{c}</td>' if i in (3, 4, 5, 6) else f"<td>{c}</td>"
                            for i, c in enumerate(cells)) + "</tr>"  # fmt: skip


def _thumbnail_html(path: Path, case_id: str, link: str) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return ""
    return f'<a href="{link}"><img src="data:image/png;base64,{data}" alt="{html.escape(case_id)}"></a>'


def _number(value, template: str = "{:.4g}") -> str:
    return "" if value is None else template.format(float(value))
