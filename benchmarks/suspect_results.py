"""Calibrate and check the suspect-result detector (``vmgga.qc.plausibility``) on real pairs.

Good pairs (the benchmark pairs: stroke MR contrasts, the stroke pairs with a known B-spline
deformation, abdomen CT-MR both ways, head CT template -> head MR, phantom CT -> MR) must all be
``ok``; deliberately wrong pairs (head vs chest, brain vs abdomen) should be ``suspect``. Each pair
is registered once with the ``fast`` preset; its report's measures and verdict are recorded, so
that thresholds can be re-checked from the JSON without re-running (``--reassess``).

    python benchmarks/suspect_results.py --threads 2
    python benchmarks/suspect_results.py --reassess   # verdicts from the saved measures

Writes ``benchmarks/results/suspect_results.json`` / ``.md``. Pairs whose data is absent are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from vmgga.errors import VmggaError  # noqa: E402
from vmgga.qc.plausibility import assess_report  # noqa: E402

TESTS_DATA = common.REPO_ROOT / "tests" / "data"
RESULT_NAME = "suspect_results"


@dataclass(frozen=True)
class CalibrationPair:
    """One pair to register; ``expected`` is ``ok`` (a good pair) or ``suspect`` (a wrong pair)."""

    name: str
    fixed: str  # path relative to tests/data ("t:...") or to the shared data root ("s:...")
    moving: str
    expected: str


PAIRS = (
    CalibrationPair("stroke T2 <- T1", "t:stroke/T2.nii.gz", "t:stroke/T1.nii.gz", "ok"),
    CalibrationPair("stroke FLAIR <- T1", "t:stroke/FLAIR.nii.gz", "t:stroke/T1.nii.gz", "ok"),
    CalibrationPair("stroke T1 (deformed, seed 0) <- T2", "deformed:0", "t:stroke/T2.nii.gz", "ok"),
    CalibrationPair("stroke T1 (deformed, seed 1) <- FLAIR", "deformed:1", "t:stroke/FLAIR.nii.gz", "ok"),
    CalibrationPair(
        "stroke 1 mm T2 <- T1", "s:mr-stroke-t1-t2-flair/T2.nii.gz", "s:mr-stroke-t1-t2-flair/T1.nii.gz", "ok"
    ),  # fmt: skip
    CalibrationPair("abdomen CT <- MR", "t:abdomen/ct.nii.gz", "t:abdomen/mr.nii.gz", "ok"),
    CalibrationPair("abdomen MR <- CT", "t:abdomen/mr.nii.gz", "t:abdomen/ct.nii.gz", "ok"),
    CalibrationPair("abdomen CT DICOM <- MR", "t:abdomen/ct_dicom", "t:abdomen/mr.nii.gz", "ok"),
    CalibrationPair(
        "abdomen full CT <- MR",
        "s:abdomen-ct-mr-totalseg/example_ct.nii.gz",
        "s:abdomen-ct-mr-totalseg/example_mr_sm.nii.gz",
        "ok",
    ),  # fmt: skip
    CalibrationPair(
        "head CT template <- T1 MR", "s:ct-mr-head/scct.nii.gz", "s:ct-mr-head/mr_t1_freesurfer.nii.gz", "ok"
    ),  # fmt: skip
    CalibrationPair(
        "phantom CT <- T2 MR", "s:ct-mr-head/phantom_ct_1mm.nii.gz", "s:ct-mr-head/phantom_mr_t2.nii.gz", "ok"
    ),  # fmt: skip
    CalibrationPair(
        "head CT <- chest MR (wrong)", "s:ct-mr-head/scct.nii.gz", "s:dicom-mr-chest-series", "suspect"
    ),  # fmt: skip
    CalibrationPair(
        "chest MR <- head CT (wrong)", "s:dicom-mr-chest-series", "s:ct-mr-head/scct.nii.gz", "suspect"
    ),  # fmt: skip
    CalibrationPair(
        "head T1 MR <- chest MR (wrong)",
        "s:ct-mr-head/mr_t1_freesurfer.nii.gz",
        "s:dicom-mr-chest-series",
        "suspect",
    ),  # fmt: skip
    CalibrationPair("brain T1 <- abdomen MR (wrong)", "t:stroke/T1.nii.gz", "t:abdomen/mr.nii.gz", "suspect"),
    CalibrationPair("abdomen CT <- brain T2 (wrong)", "t:abdomen/ct.nii.gz", "t:stroke/T2.nii.gz", "suspect"),
    CalibrationPair(
        "abdomen CT DICOM <- head MR (wrong)",
        "t:abdomen/ct_dicom",
        "s:head-mr-with-skull-masks/MR.nii.gz",
        "suspect",
    ),  # fmt: skip
)

#: Report entries recorded per pair (dotted paths).
MEASURES = (
    "confidence.mean",
    "confidence.fraction_above_0_5",
    "affine.foreground_dice",
    "affine.foreground_overlap",
    "affine.overlap_fraction",
    "affine.principal_scales",
    "affine.determinant",
    "similarity.nmi_affine",
    "similarity.nmi_final",
    "similarity.nmi_gain",
)


def resolve(spec: str, tmp: Path) -> Path | None:
    """The path of a pair's image (None when its data is absent); ``deformed:SEED`` is written to ``tmp``."""
    kind, _, rest = spec.partition(":")
    if kind == "deformed":
        t1 = sitk.ReadImage(str(TESTS_DATA / "stroke" / "T1.nii.gz"), sitk.sitkFloat32)
        phi = common.bspline_deformation(t1, common.BSplineDeformationSpec(seed=int(rest)))
        path = tmp / f"t1_deformed_{rest}.nii.gz"
        sitk.WriteImage(common.resample(t1, t1, phi), str(path))
        return path
    root = TESTS_DATA if kind == "t" else common.data_root()
    path = root / rest
    return path if path.exists() else None


def dotted(tree: dict, key: str):
    for part in key.split("."):
        tree = (tree or {}).get(part)
    return tree


def run_pair(pair: CalibrationPair, threads: int, tmp: Path) -> dict | None:
    """Register one pair; its measures, verdict and time (None when its data is absent)."""
    import vmgga

    fixed, moving = resolve(pair.fixed, tmp), resolve(pair.moving, tmp)
    if fixed is None or moving is None:
        return None
    config = vmgga.make_config("fast", num_threads=threads)
    start = time.perf_counter()
    try:
        report = vmgga.register(fixed, moving, config, progress=False).report
    except VmggaError as error:  # e.g. no overlap at all: refused, which is also a detection
        return {"pair": pair.name, "expected": pair.expected, "error": str(error), "status": "error"}
    row = {"pair": pair.name, "expected": pair.expected, "seconds": round(time.perf_counter() - start, 1)}
    row["measures"] = {key: dotted(report, key) for key in MEASURES}
    row["status"], row["suspect_reasons"] = report["status"], report["suspect_reasons"]
    return row


def reassess(row: dict) -> dict:
    """The row's verdict from its recorded measures with the current thresholds."""
    if "measures" not in row:
        return row
    report: dict = {}
    for key, value in row["measures"].items():
        section, name = key.split(".")
        report.setdefault(section, {})[name] = value
    verdict = assess_report(report)
    return {**row, "status": verdict.status, "suspect_reasons": list(verdict.reasons)}


def summary(rows: list[dict]) -> dict:
    good = [r for r in rows if r["expected"] == "ok"]
    wrong = [r for r in rows if r["expected"] == "suspect"]
    return {
        "good_pairs": len(good),
        "false_alarms": sum(r["status"] != "ok" for r in good),
        "wrong_pairs": len(wrong),
        "wrong_pairs_flagged": sum(r["status"] != "ok" for r in wrong),
    }


def markdown(rows: list[dict], totals: dict, info: dict) -> str:
    header = [
        "pair",
        "expected",
        "status",
        "conf. mean",
        "fg overlap",
        "fg Dice",
        "scales",
        "NMI gain",
        "reasons",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        m = r.get("measures") or {}
        scales = m.get("affine.principal_scales") or []
        cells = [r["pair"], r["expected"], r["status"], _num(m.get("confidence.mean")),
                 _num(m.get("affine.foreground_overlap")), _num(m.get("affine.foreground_dice")), " ".join(f"{s:.2f}" for s in scales),
                 _num(m.get("similarity.nmi_gain")), "; ".join(r.get("suspect_reasons") or [r.get("error", "")])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"# Suspect-result detection ({info.get('when', '')})\n\n"
        f"False alarms on good pairs: {totals['false_alarms']} of {totals['good_pairs']}; wrong pairs "
        f"flagged: {totals['wrong_pairs_flagged']} of {totals['wrong_pairs']}.\n\n" + "\n".join(lines) + "\n"
    )


def _num(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _merged(old_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The saved rows with those of the pairs run now replaced, in the order of :data:`PAIRS`."""
    by_name = {r["pair"]: r for r in old_rows} | {r["pair"]: r for r in new_rows}
    order = [p.name for p in PAIRS]
    return sorted(
        by_name.values(), key=lambda r: order.index(r["pair"]) if r["pair"] in order else len(order)
    )


def _save_partial(rows: list[dict]) -> None:
    """Keep the rows so far in the temp folder (a long run that is stopped keeps its measures)."""
    partial = Path(tempfile.gettempdir()) / f"{RESULT_NAME}.partial.json"
    partial.write_text(json.dumps({"rows": rows}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reassess", action="store_true", help="re-judge the saved measures, no registration"
    )
    parser.add_argument("--only", default=None, help="run only the pairs whose name contains this text")
    parser.add_argument("--expected", choices=["ok", "suspect"], default=None, help="only good / wrong pairs")
    parser.add_argument("--wrong-first", action="store_true", help="run the wrong pairs before the good ones")
    parser.add_argument("--merge", action="store_true", help="keep the saved rows of pairs not run now")
    args = parser.parse_args(argv)
    saved = common.RESULTS_DIR / f"{RESULT_NAME}.json"
    if args.reassess:
        payload = json.loads(saved.read_text())
        rows = [reassess(r) for r in payload["rows"]]
        info = payload.get("info", {})
    else:
        pairs = [p for p in PAIRS if args.only is None or args.only in p.name]
        pairs = [p for p in pairs if args.expected in (None, p.expected)]
        if args.wrong_first:
            pairs.sort(key=lambda p: p.expected == "ok")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for pair in pairs:
                row = run_pair(pair, args.threads, Path(tmp))
                if row is not None:
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    _save_partial(rows)
        if args.merge and saved.exists():
            rows = _merged(json.loads(saved.read_text())["rows"], rows)
        info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "preset": "fast",
                **common.machine_info(args.threads)}  # fmt: skip
    totals = summary(rows)
    text = markdown(rows, totals, info)
    common.write_results(RESULT_NAME, {"info": info, "totals": totals, "rows": rows}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
