"""Known-deformation benchmark on the stroke T1/T2/FLAIR set: ours vs ANTs, elastix, ConvexAdam.

For each seed, a random cubic B-spline ``phi`` (control points ~40 mm apart, 3.5 mm std per LPS
component) warps T1 into the fixed image, ``fixed(x) = T1(phi(x))``. T2 and FLAIR, co-registered
with T1, are the moving images, so the true fixed -> moving map is ``phi``. Every method starts from
files (fixed and moving written to a temporary folder) and returns a fixed -> moving transform; the
TRE at each brain voxel ``x`` of the fixed grid (``fixed > 0``) is ``|T_est(x) - phi(x)|`` in mm.

    python benchmarks/stroke_known_deformation.py --threads 2 --seeds 0 1 \\
        --methods identity,vmgga-mind,vmgga-learned,ants,elastix,convexadam

Prints a markdown table plus the ratios of ours vs each peer and writes
``benchmarks/results/<name>.json`` and ``.md``. Exits 0 with ``skipped: ...`` without the data.
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

DATASET = "mr-stroke-t1-t2-flair"
MOVING_CHOICES = ("T2", "FLAIR")
ALL_METHODS = "identity,vmgga-mind,vmgga-learned,ants,elastix,convexadam"
OURS = list(peers.VMGGA_VARIANTS)
COLUMNS = ["method", "pairs", "seconds", "tre_mean_mm", "tre_p95_mm", "fold_pct_grid", "fold_pct_brain"]


@dataclass(frozen=True)
class Pair:
    """One fixed/moving pair with its ground truth."""

    name: str  # e.g. "seed0-T2"
    seed: int  # B-spline seed
    moving_name: str  # T2 | FLAIR
    fixed_path: Path  # warped T1 (float32)
    moving_path: Path  # T2 or FLAIR as written to the temp folder
    true_disp_lps_mm: np.ndarray  # (D, H, W, 3) phi(x) - x on the fixed grid
    brain_mask: np.ndarray  # (D, H, W) bool, fixed > 0


def load_sources(folder: Path, shrink: int) -> dict[str, sitk.Image]:
    """T1, T2, FLAIR as float32 (subsampled by ``shrink`` for quick development runs)."""
    images = {}
    for name in ("T1", *MOVING_CHOICES):
        image = sitk.ReadImage(str(folder / f"{name}.nii.gz"), sitk.sitkFloat32)
        images[name] = sitk.Shrink(image, [shrink] * 3) if shrink > 1 else image
    return images


def make_pairs(sources: dict[str, sitk.Image], seeds: list[int], moving: list[str], tmp: Path) -> list[Pair]:
    """Write fixed (warped T1) and moving files for every seed x moving contrast."""
    pairs = []
    for seed in seeds:
        t1 = sources["T1"]
        phi = common.bspline_deformation(t1, common.BSplineDeformationSpec(seed=seed))
        fixed = common.resample(t1, t1, phi)
        fixed_path = tmp / f"fixed_seed{seed}.nii.gz"
        sitk.WriteImage(fixed, str(fixed_path))
        true_disp = common.displacement_lps_mm(phi, fixed)
        mask = sitk.GetArrayFromImage(fixed) > 0
        for name in moving:
            moving_path = tmp / f"moving_{name}.nii.gz"
            if not moving_path.exists():
                sitk.WriteImage(sources[name], str(moving_path))
            pairs.append(Pair(f"seed{seed}-{name}", seed, name, fixed_path, moving_path, true_disp, mask))
    return interleave(pairs, seeds, moving)


def interleave(pairs: list[Pair], seeds: list[int], moving: list[str]) -> list[Pair]:
    """Order pairs so that any prefix mixes seeds and contrasts (seed0-T2, seed1-FLAIR, ...)."""

    def key(pair: Pair) -> tuple[int, int]:
        seed_index, moving_index = seeds.index(pair.seed), moving.index(pair.moving_name)
        return ((seed_index + moving_index) % len(moving), seed_index)

    return sorted(pairs, key=key)


def evaluate(method: str, pair: Pair, options: peers.PeerOptions, out_dir: Path) -> dict:
    """Run ``method`` on ``pair``; TRE over the brain, folding over the grid and the brain."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = peers.PEERS[method](pair.fixed_path, pair.moving_path, out_dir, options)
    fixed = sitk.ReadImage(str(pair.fixed_path))
    est_disp = common.displacement_lps_mm(result.transform, fixed)
    tre = common.tre_stats(est_disp, pair.true_disp_lps_mm, pair.brain_mask)
    jacobian = common.jacobian_determinant(est_disp, fixed)
    return {
        "method": method,
        "pair": pair.name,
        "status": "ok",
        "seconds": result.seconds,
        "tre_mean_mm": tre.mean_mm,
        "tre_p95_mm": tre.p95_mm,
        "tre_max_mm": tre.max_mm,
        "brain_voxels": tre.n_points,
        "fold_pct_grid": 100.0 * common.folding_fraction(jacobian),
        "fold_pct_brain": 100.0 * common.folding_fraction(jacobian, pair.brain_mask),
        "notes": result.notes,
    }


def run_all(
    methods: list[str], pairs: list[Pair], options: peers.PeerOptions, tmp: Path, on_pair_done=None
) -> list[dict]:
    """Every method on every pair (pairs outermost, so load changes hit all methods alike).

    ``on_pair_done(rows)`` is called after each pair, so that a run cut short still leaves a table
    of all methods on the same (finished) pairs.
    """
    rows = []
    for pair in pairs:
        for method in methods:
            started = time.strftime("%H:%M:%S")
            try:
                row = evaluate(method, pair, options, tmp / pair.name / method)
            except Exception as error:  # a failing peer must not stop the others
                row = {"method": method, "pair": pair.name, "status": f"failed: {error!r}"[:500]}
            print(f"[{started}] {pair.name} {method}: {_short(row)}", flush=True)
            rows.append(row)
        if on_pair_done is not None:
            on_pair_done(rows)
    return rows


def summarise(rows: list[dict], methods: list[str]) -> dict[str, dict]:
    """Mean over the pairs of each method's numbers (only pairs that ran)."""
    keys = ["seconds", "tre_mean_mm", "tre_p95_mm", "tre_max_mm", "fold_pct_grid", "fold_pct_brain"]
    summary = {}
    for method in methods:
        ok = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        if ok:
            summary[method] = {"pairs": len(ok), **{k: float(np.mean([r[k] for r in ok])) for k in keys}}
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=ALL_METHODS, help=f"comma-separated subset of {ALL_METHODS}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--moving", nargs="+", default=list(MOVING_CHOICES), choices=MOVING_CHOICES)
    parser.add_argument("--pairs", type=int, default=None, help="use only the first N pairs")
    parser.add_argument("--preset", default="fast", help="our preset (fast | accurate | inter_patient)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every method")
    parser.add_argument(
        "--weights", default=None, help="VMGGA checkpoint of the learned vmgga-* methods (default: shipped)"
    )
    parser.add_argument("--shrink", type=int, default=1, help="subsample the inputs (quick checks only)")
    parser.add_argument("--name", default=None, help="results file name (default: from the methods)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="dotted override of the vmgga-* methods, e.g. dense.instance.iterations=50",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = common.skip_if_missing(DATASET, [f"{n}.nii.gz" for n in ("T1", *MOVING_CHOICES)])
    common.set_threads(args.threads)
    methods = peers.parse_methods(args.methods)
    options = peers.PeerOptions(
        threads=args.threads,
        preset=args.preset,
        matcher_weights=args.weights,
        vmgga_overrides=peers.parse_overrides(args.set),
    )
    unavailable = peers.preload(methods, options)
    for method, reason in unavailable.items():
        print(f"skipped method {method}: {reason}")
    methods = [m for m in methods if m not in unavailable]
    info_before = common.machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="vmgga_bench_") as tmp_name:
        tmp = Path(tmp_name)
        pairs = make_pairs(load_sources(folder, args.shrink), args.seeds, args.moving, tmp)[: args.pairs]

        def write(rows_so_far: list[dict]) -> None:
            done = len({r["pair"] for r in rows_so_far})
            status = "complete" if done == len(pairs) else f"partial: {done} of {len(pairs)} pairs"
            summary = summarise(rows_so_far, methods)
            report(args, rows_so_far, summary, unavailable, info_before, status)

        run_all(methods, pairs, options, tmp, on_pair_done=write)
    return 0


def report(args, rows, summary, unavailable, info_before, status: str) -> None:
    """Print the table and the ratios; write JSON + markdown into ``benchmarks/results``."""
    table = common.markdown_table([{"method": m, **s} for m, s in summary.items()], COLUMNS)
    ratios = common.ratio_lines(summary, OURS, ["seconds", "tre_mean_mm", "tre_p95_mm"])
    info = {**info_before, "load_average_after": list(os.getloadavg())}
    header = _header(args, rows, info, unavailable) + f"\nRun status: {status}."
    ok_rows = [r for r in rows if r["status"] == "ok"]
    per_pair = common.markdown_table(ok_rows, ["pair", *COLUMNS[:1], *COLUMNS[2:]])
    ratio_items = [f"- {r}" for r in ratios]
    markdown = "\n".join(
        [header, "", table, "", "Ratios (ours / peer):", "", *ratio_items, "", "Per pair:", "", per_pair]
    )
    print("\n" + markdown)
    payload = {
        "benchmark": "stroke_known_deformation",
        "status": status,
        "args": vars(args),
        "deformation": asdict(common.BSplineDeformationSpec(seed=-1)) | {"seed": args.seeds},
        "machine": info,
        "skipped_methods": unavailable,
        "summary": summary,
        "ratios": ratios,
        "rows": rows,
    }
    name = args.name or (
        "stroke_known_deformation" if args.shrink == 1 else "stroke_known_deformation_shrunk"
    )
    for path in common.write_results(name, payload, markdown):
        print(f"wrote {path}")


def _header(args, rows: list[dict], info: dict, unavailable: dict) -> str:
    load = ", ".join(f"{x:.2f}" for x in info["load_average_1_5_15"])
    lines = [
        f"Stroke known deformation: pairs {sorted({r['pair'] for r in rows})}, preset {args.preset}, "
        f"threads {args.threads}, shrink {args.shrink}.",
        f"cpu_count {info['cpu_count']}, load average at start {load}, "
        f"after {', '.join(f'{x:.2f}' for x in info['load_average_after'])}.",
        "TRE over brain voxels (fixed > 0), mean of the per-pair mean/p95; fold = % voxels det(J) <= 0.",
    ]
    lines += [f"Skipped {m}: {reason}" for m, reason in unavailable.items()]
    lines += [f"Failed {r['method']} on {r['pair']}: {r['status']}" for r in rows if r["status"] != "ok"]
    return "\n".join(lines)


def _short(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    return (
        f"{row['seconds']:.1f} s, TRE {row['tre_mean_mm']:.3f} / p95 {row['tre_p95_mm']:.3f} mm, "
        f"fold {row['fold_pct_grid']:.4f} %"
    )


if __name__ == "__main__":
    sys.exit(main())
