"""Quick tuning loop for the abdomen CT-MR pair: our pipeline only, Dice in both directions.

Runs ``vmgga.register`` (the ``fast`` preset plus ``--set key=value`` overrides) for MR->CT and
CT->MR and prints the mean Dice of the warped moving labels 1-9 (plus the affine-only Dice of our
own affine stage) and the seconds. The full table with the peers comes from ``abdomen_ct_mr.py``.

    python benchmarks/tune_abdomen.py --threads 1 --set dense.matching.search_radius_steps=4
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common
from benchmarks.abdomen_ct_mr import DATASET, FILES, LABELS, make_case


def _value(text: str):
    """``"4"`` -> 4, ``"(-200, 300)"`` -> tuple, anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def overrides_from(pairs: list[str]) -> dict:
    """``["dense.matching.search_radius_steps=4"]`` -> ``{"dense.matching.search_radius_steps": 4}``."""
    return {key: _value(value) for key, _, value in (p.partition("=") for p in pairs)}


def dice_mean(case, transform: sitk.Transform) -> float:
    """Mean Dice over labels 1-9 of the moving labels warped through ``transform``."""
    fixed = sitk.ReadImage(str(case.fixed_path))
    warped = common.resample(case.moving_labels, fixed, transform, labels=True)
    dice = common.dice_per_label(case.fixed_labels, sitk.GetArrayFromImage(warped), LABELS)
    return float(np.nanmean(list(dice.values())))


def run_case(case, preset: str, threads: int, overrides: dict) -> dict:
    """Our registration of one case: affine-only Dice, final Dice, seconds."""
    from vmgga.api import register
    from vmgga.config import make_config

    config = make_config(preset, num_threads=threads, **overrides)
    start = time.perf_counter()
    result = register(str(case.fixed_path), str(case.moving_path), config, progress=False)
    seconds = time.perf_counter() - start
    affine_only = result.transform.GetNthTransform(0)
    return {
        "case": case.name,
        "affine": dice_mean(case, affine_only),
        "ours": dice_mean(case, result.transform),
        "seconds": seconds,
        "neg_j_pct": 100.0 * result.report["jacobian"]["negative_fraction"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--directions", nargs="+", default=["mr2ct", "ct2mr"])
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    args = parser.parse_args(argv)
    folder = common.skip_if_missing(DATASET, [name for pair in FILES.values() for name in pair])
    if folder is None:
        return 0
    common.set_threads(args.threads)
    rows = [
        run_case(make_case(folder, d), args.preset, args.threads, overrides_from(args.set))
        for d in args.directions
    ]
    for row in rows:
        print(
            f"{row['case']}: affine {row['affine']:.3f} ours {row['ours']:.3f} "
            f"neg J {row['neg_j_pct']:.3f} % ({row['seconds']:.1f} s)"
        )
    print(f"mean ours {np.mean([r['ours'] for r in rows]):.3f}  set {' '.join(args.set)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
