"""Tune presets in-process on the full-size dev pairs (benchmarks/fullsize_brain.py) and the stroke set.

Runs :func:`vmgga.register` (no process start-up, no file writing) with a preset plus dotted
overrides on every full-size pair, and reports TRE over the brain, folding and the report's stage
timings. Each named variant is one ``name=key=value,key=value`` argument:

    python benchmarks/tune_fullsize.py --threads 2 --seeds 0 1 --preset fast \\
        --variant base= --variant coarse=preprocess.working_spacing_mm=2.0

The pairs are written once into ``--workdir`` (kept between runs). Writes
``benchmarks/results/<name>.json`` and ``.md``; exits 0 with ``skipped: ...`` without the data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common, peers
from benchmarks import fullsize_brain as fullsize
from benchmarks import stroke_known_deformation as stroke


def parse_variant(text: str) -> tuple[str, dict]:
    """``name=key=value,key=value`` -> ``(name, {key: value})``; values are Python literals or text."""
    name, _, rest = text.partition("=")
    return name, dict(peers.parse_overrides([item for item in rest.split(",") if item]))


def cached_pairs(folder: Path, seeds: list[int], workdir: Path) -> list:
    """The full-size pairs, written into ``workdir`` once and reloaded from there after (JSON + npz)."""
    workdir.mkdir(parents=True, exist_ok=True)
    index = workdir / f"pairs_{'_'.join(map(str, seeds))}.json"
    if index.is_file():
        return [_load_pair(workdir, fields) for fields in json.loads(index.read_text())]
    pairs = fullsize.make_pairs(folder, seeds, workdir)
    for pair in pairs:
        np.savez(workdir / f"{pair.name}_truth.npz", disp=pair.true_disp_lps_mm, brain=pair.brain_mask)
    fields = [
        {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(pair).items()
            if not isinstance(v, np.ndarray)
        }
        for pair in pairs
    ]
    index.write_text(json.dumps(fields))
    return pairs


def _load_pair(workdir: Path, fields: dict):
    truth = np.load(workdir / f"{fields['name']}_truth.npz", allow_pickle=False)
    paths = {k: Path(fields[k]) for k in ("fixed_path", "moving_path")}
    return stroke.Pair(**{**fields, **paths}, true_disp_lps_mm=truth["disp"], brain_mask=truth["brain"])


def run_variant(pair, preset: str, overrides: dict, threads: int) -> dict:
    """One in-process registration; TRE, folding and timings."""
    from vmgga import register
    from vmgga.config import make_config

    config = make_config(preset, num_threads=threads, **overrides)
    start = time.perf_counter()
    result = register(str(pair.fixed_path), str(pair.moving_path), config, progress=False)
    seconds = time.perf_counter() - start
    fixed = sitk.ReadImage(str(pair.fixed_path))
    est = common.displacement_lps_mm(result.transform, fixed)
    tre = common.tre_stats(est, pair.true_disp_lps_mm, pair.brain_mask)
    jacobian = common.jacobian_determinant(est, fixed)
    timings = result.report["timings_s"]
    return {
        "pair": pair.name,
        "seconds": seconds,
        "tre_mean_mm": tre.mean_mm,
        "tre_p95_mm": tre.p95_mm,
        "fold_pct": 100.0 * common.folding_fraction(jacobian),
        "timings_s": timings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--variant", action="append", default=[], help="name=key=value,key=value")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/vmgga_tune_fullsize")
    parser.add_argument("--name", default="tune_fullsize")
    args = parser.parse_args(argv)
    folder = common.skip_if_missing(fullsize.DATASET, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"])
    common.set_threads(args.threads)
    pairs = cached_pairs(folder, args.seeds, Path(args.workdir))
    variants = [parse_variant(v) for v in args.variant] or [("base", {})]
    rows = []
    for name, overrides in variants:
        for pair in pairs:
            row = {
                "variant": name,
                "overrides": overrides,
                **run_variant(pair, args.preset, overrides, args.threads),
            }
            rows.append(row)
            t = row["timings_s"]
            stages = " ".join(f"{k} {v:.1f}" for k, v in t.items() if isinstance(v, float))
            print(
                f"{name:>14} {pair.name:>16}: TRE {row['tre_mean_mm']:.3f} p95 {row['tre_p95_mm']:.3f} "
                f"fold {row['fold_pct']:.4f}% {row['seconds']:.1f} s | {stages} | {t.get('dense_detail')}",
                flush=True,
            )
    summary = []
    for name, overrides in variants:
        mine = [r for r in rows if r["variant"] == name]
        summary.append(
            {
                "variant": name,
                "overrides": overrides,
                "pairs": len(mine),
                "tre_mean_mm": float(np.mean([r["tre_mean_mm"] for r in mine])),
                "fold_pct": float(np.max([r["fold_pct"] for r in mine])),
                "register_s": float(np.mean([r["seconds"] for r in mine])),
                "dense_s": float(np.mean([r["timings_s"]["dense"] for r in mine])),
            }
        )
    columns = ["variant", "overrides", "pairs", "tre_mean_mm", "fold_pct", "register_s", "dense_s"]
    header = (
        f"In-process `register()` on the full-size dev pairs (seeds {args.seeds}), preset {args.preset}, "
        f"threads {args.threads}, load {common.machine_info(args.threads).get('load_average')}.\n\n"
    )
    markdown = header + common.markdown_table(summary, columns)
    print(markdown)
    common.write_results(args.name, {"args": vars(args), "rows": rows, "summary": summary}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
