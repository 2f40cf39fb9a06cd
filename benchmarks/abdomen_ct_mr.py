"""Inter-patient abdomen CT-MR benchmark: organ Dice (labels 1-9) after warping the moving labels.

Data: ``abdomen-ct-mr-totalseg`` (CT and MR of two different patients at 3 mm, TotalSegmentator
label maps; labels 1-9 mean the same organ in both). By default the MR is the moving image and the
CT the fixed one (``--directions ct2mr`` adds the reverse).

Rows:

* ``identity``: the moving labels resampled onto the fixed grid (physical space, no registration).
* ``affine``: the harness's Mattes-MI affine (moments start, :func:`common.mattes_affine`).
* ``ants``, ``elastix``, ``convexadam``: each registers the fixed image to the moving image after
  that affine (the moving image resampled onto the fixed grid through it, written to a file); their
  final transform is the affine applied after their displacement, and their time includes the affine.
  ConvexAdam needs both images on one grid: this resampling gives it the fixed CT's 3 mm isotropic grid.
* ``vmgga-*``: ours from the original files (its own affine stage), one call of ``vmgga.register``.

    python benchmarks/abdomen_ct_mr.py --threads 2

Prints a markdown table and writes ``benchmarks/results/abdomen_ct_mr.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common, peers

DATASET = "abdomen-ct-mr-totalseg"
FILES = {
    "ct": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
    "mr": ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz"),
}
LABELS = list(range(1, 10))
ORGANS = [
    "spleen",
    "kidney_r",
    "kidney_l",
    "gallbladder",
    "liver",
    "stomach",
    "pancreas",
    "adrenal_r",
    "adrenal_l",
]
ALL_METHODS = "identity,affine,vmgga-mind,vmgga-learned,ants,elastix,convexadam"
OURS = list(peers.VMGGA_VARIANTS)
AFFINE = "affine"


@dataclass(frozen=True)
class Case:
    """One direction of the inter-patient pair."""

    name: str  # mr2ct | ct2mr
    fixed_path: Path  # fixed image file
    moving_path: Path  # moving image file
    fixed_labels: np.ndarray  # (D, H, W) labels on the fixed grid
    moving_labels: sitk.Image  # moving label map (its own grid)


def make_case(folder: Path, direction: str) -> Case:
    """``mr2ct``: MR moving onto CT fixed; ``ct2mr``: the reverse."""
    fixed_key, moving_key = ("ct", "mr") if direction == "mr2ct" else ("mr", "ct")
    fixed_labels = sitk.ReadImage(str(folder / FILES[fixed_key][1]))
    return Case(
        name=direction,
        fixed_path=folder / FILES[fixed_key][0],
        moving_path=folder / FILES[moving_key][0],
        fixed_labels=sitk.GetArrayFromImage(fixed_labels),
        moving_labels=sitk.ReadImage(str(folder / FILES[moving_key][1])),
    )


@dataclass(frozen=True)
class AffineStart:
    """The harness affine of one case, computed once and shared by the peers."""

    transform: sitk.Transform  # fixed -> moving, LPS mm
    seconds: float  # reading both files + the affine registration + writing the resampled moving
    moving_affine_path: Path  # moving image resampled onto the fixed grid through the affine


def compute_affine(case: Case, tmp: Path) -> AffineStart:
    """Mattes-MI affine of ``case`` and the moving image resampled through it (a file)."""
    start = time.perf_counter()
    fixed = sitk.ReadImage(str(case.fixed_path), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(case.moving_path), sitk.sitkFloat32)
    affine = common.mattes_affine(fixed, moving, common.AffineSettings())
    path = tmp / f"{case.name}_moving_affine.nii.gz"
    sitk.WriteImage(common.resample(moving, fixed, affine), str(path))
    return AffineStart(affine, time.perf_counter() - start, path)


def run_method(
    method: str, case: Case, affine: AffineStart | None, options: peers.PeerOptions, tmp: Path
) -> tuple[sitk.Transform, float]:
    """Fixed -> moving transform of ``method`` on ``case`` and its seconds (files to transform)."""
    if method.startswith("vmgga-") or method == peers.Method.IDENTITY.value:
        result = peers.PEERS[method](case.fixed_path, case.moving_path, tmp, options)
        return result.transform, result.seconds
    if method == AFFINE:
        return affine.transform, affine.seconds
    result = peers.PEERS[method](case.fixed_path, affine.moving_affine_path, tmp, options)
    return common.then_apply(result.transform, affine.transform), affine.seconds + result.seconds


def evaluate(
    method: str, case: Case, affine: AffineStart | None, options: peers.PeerOptions, tmp: Path
) -> dict:
    """Dice per organ of the warped moving labels vs the fixed labels; folding on the fixed grid."""
    tmp.mkdir(parents=True, exist_ok=True)
    transform, seconds = run_method(method, case, affine, options, tmp)
    fixed = sitk.ReadImage(str(case.fixed_path))
    warped = sitk.GetArrayFromImage(common.resample(case.moving_labels, fixed, transform, labels=True))
    dice = common.dice_per_label(case.fixed_labels, warped, LABELS)
    jacobian = common.jacobian_determinant(common.displacement_lps_mm(transform, fixed), fixed)
    row = {"method": method, "case": case.name, "status": "ok", "seconds": seconds}
    row |= {f"dice_{organ}": dice[label] for label, organ in zip(LABELS, ORGANS, strict=True)}
    row["dice_mean"] = float(np.nanmean(list(dice.values())))
    row["fold_pct_grid"] = 100.0 * common.folding_fraction(jacobian)
    return row


def run_all(methods: list[str], cases: list[Case], options: peers.PeerOptions, tmp: Path) -> list[dict]:
    """Every method on every case; a failing method is recorded and the others go on."""
    rows = []
    needs_affine = any(not (m.startswith("vmgga-") or m == peers.Method.IDENTITY.value) for m in methods)
    for case in cases:
        affine = compute_affine(case, tmp) if needs_affine else None
        for method in methods:
            try:
                row = evaluate(method, case, affine, options, tmp / case.name / method)
            except Exception as error:  # a failing peer must not stop the others
                row = {"method": method, "case": case.name, "status": f"failed: {error!r}"[:500]}
            print(f"{case.name} {method}: " + _short(row), flush=True)
            rows.append(row)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=ALL_METHODS, help=f"comma-separated subset of {ALL_METHODS}")
    parser.add_argument("--directions", nargs="+", default=["mr2ct"], choices=["mr2ct", "ct2mr"])
    parser.add_argument("--preset", default="fast", help="our preset (fast | accurate | inter_patient)")
    parser.add_argument("--set", action="append", default=[], help="dotted override of the vmgga-* methods")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every method")
    parser.add_argument(
        "--weights", default=None, help="VMGGA checkpoint of the learned vmgga-* methods (default: shipped)"
    )
    parser.add_argument("--name", default="abdomen_ct_mr", help="results file name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = common.skip_if_missing(DATASET, [name for pair in FILES.values() for name in pair])
    common.set_threads(args.threads)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = [m if m == AFFINE else peers.parse_methods(m)[0] for m in names]
    options = peers.PeerOptions(
        threads=args.threads,
        preset=args.preset,
        matcher_weights=args.weights,
        vmgga_overrides=peers.parse_overrides(args.set),
    )
    unavailable = peers.preload([m for m in methods if m != AFFINE], options)
    for method, reason in unavailable.items():
        print(f"skipped method {method}: {reason}")
    methods = [m for m in methods if m not in unavailable]
    info = common.machine_info(args.threads)
    cases = [make_case(folder, direction) for direction in args.directions]
    with tempfile.TemporaryDirectory(prefix="vmgga_abdomen_") as tmp_name:
        rows = run_all(methods, cases, options, Path(tmp_name))
    info["load_average_after"] = list(os.getloadavg())
    report(args, rows, info, unavailable)
    return 0


def report(args, rows: list[dict], info: dict, unavailable: dict) -> None:
    """Print the table (one row per method and case) and write JSON + markdown."""
    columns = ["method", "case", "seconds", "dice_mean", *[f"dice_{o}" for o in ORGANS], "fold_pct_grid"]
    ok = [r for r in rows if r["status"] == "ok"]
    load = ", ".join(f"{x:.2f}" for x in info["load_average_1_5_15"])
    after = ", ".join(f"{x:.2f}" for x in info["load_average_after"])
    lines = [
        f"Abdomen CT-MR (inter-patient), directions {args.directions}, preset {args.preset}, "
        f"threads {args.threads}; cpu_count {info['cpu_count']}, load average {load} -> {after}.",
        "Dice of the warped moving labels vs the fixed labels (nearest neighbour), labels 1-9.",
        *[f"Skipped {m}: {reason}" for m, reason in unavailable.items()],
        *[f"Failed {r['method']} ({r['case']}): {r['status']}" for r in rows if r["status"] != "ok"],
        "",
        common.markdown_table(ok, columns),
    ]
    summary = {
        f"{r['method']}@{r['case']}": {"seconds": r["seconds"], "dice_mean": r["dice_mean"]} for r in ok
    }
    ratios = _ratios(ok)
    markdown = "\n".join([*lines, "", "Ratios (ours / peer):", "", *[f"- {r}" for r in ratios]])
    print("\n" + markdown)
    payload = {
        "benchmark": "abdomen_ct_mr",
        "args": vars(args),
        "machine": info,
        "labels": dict(zip(LABELS, ORGANS, strict=True)),
    }
    payload |= {
        "affine_settings": asdict(common.AffineSettings()),
        "summary": summary,
        "ratios": ratios,
        "rows": rows,
    }
    for path in common.write_results(args.name, payload, markdown):
        print(f"wrote {path}")


def _ratios(rows: list[dict]) -> list[str]:
    lines = []
    for case in sorted({r["case"] for r in rows}):
        summary = {r["method"]: r for r in rows if r["case"] == case}
        summary = {m: s for m, s in summary.items() if m != AFFINE}
        lines += [f"{case}: {line}" for line in common.ratio_lines(summary, OURS, ["seconds", "dice_mean"])]
    return lines


def _short(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    return f"{row['seconds']:.1f} s, mean Dice {row['dice_mean']:.3f}, fold {row['fold_pct_grid']:.4f} %"


if __name__ == "__main__":
    sys.exit(main())
