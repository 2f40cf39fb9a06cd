"""Fit the confidence calibration of ``vmgga match`` on a real-image CALIBRATION split (issue 14).

The split is disjoint from the pairs of ``matcher_2d_real.py`` (the benchmark):

* stroke: other slices (axial 40 % and 70 %, coronal 35 % and 65 %, sagittal 60 %; the benchmark
  uses axial 55 %, coronal 50 %, sagittal 40 %) and, besides the benchmark's couples, T2->FLAIR and
  FLAIR->T2;
* CT/MR: other axial slices (45 % and 65 %; the benchmark uses 55 %), both directions;
* BrainWeb: none (it is one slice, all of it in the benchmark): BrainWeb is the data set the
  calibration has never seen;
* motions: other shifts ((3,-8), (-9,4), (6,6)), rotations (+5, -7 degrees) and smooth fields
  (seeds 1 and 2) than the benchmark's.

The matcher runs raw (no calibration); an isotonic map of "error < 2 px" against its confidence is
fitted on the pooled brain pixels (:func:`vmgga.models.calibration.fit_isotonic`) and, with
``--write``, saved beside the weights (``vmgga/weights/vmgga_matcher.calibration.json`` for the
shipped ones), where ``Matcher2D`` finds and applies it. Writes the ECE before/after (in-sample on
this split; the benchmark measures it out of sample) and reliability plots.

    python benchmarks/matcher_calibration.py --threads 1 [--weights W] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import matcher_2d_real as real  # noqa: E402

from vmgga.cli.match import REFINE_PX, SMOOTH_PX  # noqa: E402
from vmgga.models import calibration as cal  # noqa: E402
from vmgga.models.checkpoint import resolve_weights  # noqa: E402
from vmgga.models.matcher2d import Matcher2D  # noqa: E402
from vmgga.training import evaluate  # noqa: E402

CAL_STROKE_CUTS = [
    ("ax40", 0, 0.40),
    ("ax70", 0, 0.70),
    ("cor35", 1, 0.35),
    ("cor65", 1, 0.65),
    ("sag60", 2, 0.60),
]
CAL_STROKE_COUPLES = [("FLAIR", "T1"), ("T2", "T1"), ("T1", "FLAIR"), ("T2", "FLAIR"), ("FLAIR", "T2")]
CAL_CTMR_FRACTIONS = (0.45, 0.65)
CAL_SHIFTS = [(3.0, -8.0), (-9.0, 4.0), (6.0, 6.0)]
CAL_ROTATIONS_DEG = [5.0, -7.0]
CAL_SMOOTH_SEEDS = [1, 2]
SPLIT = (
    "stroke slices ax40/ax70/cor35/cor65/sag60 x FLAIR->T1, T2->T1, T1->FLAIR, T2->FLAIR, FLAIR->T2; "
    "CT/MR axial 45 % and 65 %, both directions; motions shift (3,-8), (-9,4), (6,6), rotation +5/-7 deg, "
    "smooth seeds 1, 2 (benchmark: other slices and motions; BrainWeb not used)"
)


def calibration_pairs() -> list[real.RealPair]:
    """The calibration split's real pairs whose files are present."""
    root, pairs = common.data_root(), []
    if not common.missing_files(real.STROKE, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"]):
        pairs += real.stroke_pairs(root / real.STROKE, CAL_STROKE_CUTS, CAL_STROKE_COUPLES)
    ctmr_files = ["scct.nii.gz", "mr_t1_freesurfer.nii.gz", "scgrey.nii.gz", "scwhite.nii.gz"]
    if not common.missing_files(real.CTMR, ctmr_files):
        pairs += real.ctmr_pairs(root / real.CTMR, fractions=CAL_CTMR_FRACTIONS)
    return pairs


def collect(matcher: Matcher2D, pairs: list[real.RealPair]) -> dict[str, dict[str, list[np.ndarray]]]:
    """Per data set: end-point errors and raw confidences of the brain pixels of every case."""
    pools: dict[str, dict[str, list[np.ndarray]]] = {}
    for pair in pairs:
        for motion in real.motions(pair.image_a.shape, CAL_SHIFTS, CAL_ROTATIONS_DEG, CAL_SMOOTH_SEEDS):
            image0, image1, mask = real.moved_pair(pair, motion)
            flow, confidence, _ = real.run_method(matcher, image0, image1)
            pool = pools.setdefault(pair.dataset, {"errors": [], "conf": []})
            pool["errors"].append(np.linalg.norm(flow - motion.flow_px, axis=0)[mask])
            pool["conf"].append(confidence[mask])
    return pools


def ece_of(confidence: np.ndarray, errors: np.ndarray) -> float:
    """ECE (10 bins) of ``confidence`` against ``errors < 2 px``."""
    correct = torch.from_numpy(errors < real.TOLERANCE_PX)
    return evaluate.losses.expected_calibration_error(torch.from_numpy(confidence), correct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default=None, help="VMGGA checkpoint (default: the shipped one)")
    parser.add_argument("--bins", type=int, default=20, help="equal-count bins of the isotonic fit")
    parser.add_argument("--write", action="store_true", help="save the map beside the weights")
    parser.add_argument("--name", default="matcher_calibration")
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    pairs = calibration_pairs()
    if not pairs:
        print("skipped: no real data present")
        return 0
    weights = resolve_weights(args.weights)
    matcher = Matcher2D("vmgga", weights, None, "cpu", None, REFINE_PX, SMOOTH_PX, calibrate=False)
    started = time.perf_counter()
    pools = collect(matcher, pairs)
    conf = {k: np.concatenate(v["conf"]) for k, v in pools.items()}
    errors = {k: np.concatenate(v["errors"]) for k, v in pools.items()}
    all_conf, all_err = np.concatenate(list(conf.values())), np.concatenate(list(errors.values()))
    raw_knots, cal_knots = cal.fit_isotonic(all_conf, all_err < real.TOLERANCE_PX, args.bins)
    setting = cal.setting_key(None, REFINE_PX, SMOOTH_PX)
    calibration = cal.ConfidenceCalibration(raw_knots, cal_knots, real.TOLERANCE_PX, setting, SPLIT)
    rows = []
    for name in [*conf, "all"]:
        c, e = (all_conf, all_err) if name == "all" else (conf[name], errors[name])
        mapped = calibration.apply(torch.from_numpy(c)).numpy()
        rows.append({"data": name, "pixels": c.size, "acc_2px": float((e < 2).mean()),
                     "mean_conf_raw": float(c.mean()), "ece_raw": ece_of(c, e),
                     "mean_conf_calibrated": float(mapped.mean()), "ece_calibrated": ece_of(mapped, e)})  # fmt: skip
    figures = common.RESULTS_DIR / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for label, values in (
        ("raw", all_conf),
        ("calibrated", calibration.apply(torch.from_numpy(all_conf)).numpy()),
    ):
        result = evaluate.summarise(f"calibration split, {label}", torch.from_numpy(all_err).float(),
                                    torch.from_numpy(values).float(), len(pairs), real.TOLERANCE_PX)  # fmt: skip
        evaluate.plot_reliability(result, figures / f"{args.name}_{label}_reliability.png")
    written = cal.save_calibration(weights, calibration) if args.write else None
    cols = ["data", "pixels", "acc_2px", "mean_conf_raw", "ece_raw", "mean_conf_calibrated", "ece_calibrated"]
    markdown = "\n\n".join([
        f"# {args.name}", f"split: {SPLIT}", f"setting {setting}; weights {weights}; {len(pairs)} pairs; "
        f"wall {time.perf_counter() - started:.0f} s; load {info['load_average_1_5_15']}; written: {written}",
        "In-sample ECE (the map was fitted on these pixels); out of sample: matcher_2d_real.py.",
        common.markdown_table(rows, cols),
        "knots (raw -> calibrated): " + ", ".join(f"{r:.3f}->{c:.3f}" for r, c in zip(raw_knots, cal_knots, strict=True)),
    ])  # fmt: skip
    print(markdown)
    common.write_results(
        args.name, {"rows": rows, "calibration": calibration.to_dict(), "machine": info}, markdown
    )
    Path("runs").mkdir(exist_ok=True)
    np.savez_compressed(Path("runs") / f"{args.name}_pixels.npz", **{f"conf_{k}": v for k, v in conf.items()},
                        **{f"err_{k}": v for k, v in errors.items()})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
