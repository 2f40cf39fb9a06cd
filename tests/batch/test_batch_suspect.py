"""Issue 16 item 10: a suspect result is marked in the batch summary.csv, index.html and the
command's output; the QC page shows a banner."""

from __future__ import annotations

import csv
import io

from vmgga.batch.case import CaseOutcome, CaseStatus, case_metrics
from vmgga.batch.summary import write_summary
from vmgga.qc.index import case_flags, write_index
from vmgga.qc.report import suspect_banner_html

REASON = "extreme affine scale (principal scales 0.43 to 0.71; allowed 0.67 to 1.5) <b>"


def report(status: str, reasons: list[str]) -> dict:
    return {"status": status, "suspect_reasons": reasons, "confidence": {"mean": 0.3}, "jacobian": {}}


def outcomes() -> list[CaseOutcome]:
    return [
        CaseOutcome("good", CaseStatus.DONE, 1.0, case_metrics(report("ok", []), None)),
        CaseOutcome("wrong", CaseStatus.DONE, 1.0, case_metrics(report("suspect", [REASON]), None)),
        CaseOutcome("broken", CaseStatus.FAILED, 0.5, error="InputError: unreadable"),
    ]


def test_summary_csv_marks_the_suspect_case(tmp_path):
    csv_path, _ = write_summary(tmp_path, outcomes(), {})
    rows = {r["case_id"]: r for r in csv.DictReader(io.StringIO(csv_path.read_text()))}
    assert (rows["good"]["result"], rows["good"]["suspect_reasons"]) == ("ok", "")
    assert (rows["wrong"]["result"], rows["wrong"]["suspect_reasons"]) == ("suspect", REASON)
    assert rows["broken"]["result"] == ""  # no result at all


def test_index_flags_the_suspect_case_with_its_reasons(tmp_path):
    rows = [o.as_dict() for o in outcomes()]
    assert case_flags(rows[0]) == []
    assert case_flags(rows[1]) == ["suspect result"]
    page = write_index(tmp_path, rows).read_text()
    assert "suspect result" in page
    assert "principal scales 0.43 to 0.71" in page and "<b>" not in page.split("<table>")[1]  # escaped


def test_qc_banner_only_for_a_suspect_report():
    assert suspect_banner_html(report("ok", [])) == ""
    assert suspect_banner_html({}) == ""
    banner = suspect_banner_html(report("suspect", [REASON]))
    assert "Suspect result" in banner and "&lt;b&gt;" in banner and "<b>" not in banner


def test_register_warning_is_one_line_and_a_json_event(capsys):
    from vmgga.cli.register import warn_if_suspect

    class Events:
        def __init__(self):
            self.events = []

        def emit(self, event):
            self.events.append(event)

    warn_if_suspect(report("ok", []))
    assert capsys.readouterr().err == ""
    events = Events()
    warn_if_suspect(report("suspect", [REASON, "no similarity gain"]), events)
    lines = capsys.readouterr().err.splitlines()
    assert (
        len(lines) == 1 and "warning: the result is suspect" in lines[0] and "no similarity gain" in lines[0]
    )
    assert events.events == [{"event": "warning", "message": lines[0].split("warning: ", 1)[1]}]
