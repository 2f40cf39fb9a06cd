"""Fit the confidence calibration of ``vmgga match`` on a real-image CALIBRATION split (issue 14).

The split is disjoint from the pairs of ``matcher_2d_real.py`` (the benchmark):

* stroke: other slices (axial 40 % and 70 %, coronal 35 % and 65 %, sagittal 60 %; the benchmark
  uses axial 55 %, coronal 50 %, sagittal 40 %) and, besides the benchmark's couples, T2->FLAIR and
  FLAIR->T2;
* CT/MR: other axial slices (35, 45, 65 and 75 %; the benchmark uses 55 %), both directions;
* whole head (``head``, session 6): coronal (40 %, 55 %) and sagittal (35 %, 60 %) slices of the
  whole-head, not skull-stripped T1 ``ct-mr-head/mr_t1_freesurfer`` (the benchmark only takes
  axial slices of it, through the CT template's grid), each against two other "contrasts" made by
  fixed non-monotone intensity look-ups of the same slice (:data:`HEAD_LOOKUPS`: PD-like and
  T2-like tissue orderings, background dark), both directions; scored over the head;
* BrainWeb: none (it is one slice, all of it in the benchmark): BrainWeb is the data set the
  calibration has never seen;
* motions: other shifts ((3,-8), (-9,4), (6,6)), rotations (+5, -7 degrees) and smooth fields
  (seeds 1 and 2) than the benchmark's.

The matcher runs raw (no calibration). Two maps of "error < 2 px" are fitted on the pooled pixels:
the 1D isotonic map of the confidence (:func:`vmgga.models.calibration.fit_isotonic`, the session-5
map, for comparison) and the shipped table map (:func:`vmgga.models.calibration.fit_agreement_table`):
confidence x agreement of the two images after the match
(:func:`vmgga.models.matcher2d.gradient_agreement`), with pairs whose mean confidence is under
:data:`UNSURE_PAIR_BELOW` on their own 1D map. With ``--write`` the table map is saved beside the
weights (``vmgga/weights/vmgga_matcher.calibration.json`` for the shipped ones), where
``Matcher2D`` finds and applies it. Writes the ECE before/after (in-sample on this split; the
benchmark measures it out of sample) and reliability plots.

    python benchmarks/matcher_calibration.py --threads 1 [--weights W] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import matcher_2d_real as real  # noqa: E402

from vmgga.cli.match import REFINE_PX, SMOOTH_PX  # noqa: E402
from vmgga.models import calibration as cal  # noqa: E402
from vmgga.models.checkpoint import resolve_weights  # noqa: E402
from vmgga.models.matcher2d import Matcher2D, gradient_agreement, pair_confidence  # noqa: E402
from vmgga.training import evaluate  # noqa: E402

CAL_STROKE_CUTS = [
    ("ax40", 0, 0.40),
    ("ax70", 0, 0.70),
    ("cor35", 1, 0.35),
    ("cor65", 1, 0.65),
    ("sag60", 2, 0.60),
]
CAL_STROKE_COUPLES = [("FLAIR", "T1"), ("T2", "T1"), ("T1", "FLAIR"), ("T2", "FLAIR"), ("FLAIR", "T2")]
CAL_CTMR_FRACTIONS = (0.35, 0.45, 0.65, 0.75)
CAL_SHIFTS = [(3.0, -8.0), (-9.0, 4.0), (6.0, 6.0)]
CAL_ROTATIONS_DEG = [5.0, -7.0]
CAL_SMOOTH_SEEDS = [1, 2]
#: Whole-head slices of ``mr_t1_freesurfer`` (name, array axis of the 1 mm LPS grid, fraction).
CAL_HEAD_CUTS = [("cor40", 1, 0.40), ("cor55", 1, 0.55), ("sag35", 2, 0.35), ("sag60", 2, 0.60)]
#: Intensity look-ups of the T1 slice (values at 8 even steps of [0, 1]): other tissue orderings.
HEAD_LOOKUPS = {
    "PDlike": (0.0, 0.75, 0.8, 0.7, 0.55, 0.6, 0.8, 0.85),
    "T2like": (0.0, 0.9, 0.85, 0.55, 0.35, 0.4, 0.6, 0.7),
}
#: Agreement bins of the table map, and the pair confidence under which a pair counts as unsure.
AGREEMENT_EDGES = (0.0, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99, 1.01)
UNSURE_PAIR_BELOW = 0.3
AGREEMENT_SIGMA_PX = 4.0  # Gaussian sigma of the agreement (:func:`gradient_agreement`)
RAW_GRID = np.linspace(0.0, 1.0, 41)
SPLIT = (
    "stroke slices ax40/ax70/cor35/cor65/sag60 x FLAIR->T1, T2->T1, T1->FLAIR, T2->FLAIR, FLAIR->T2; "
    "CT/MR axial 35, 45, 65 and 75 %, both directions; whole-head T1 (mr_t1_freesurfer) coronal 40/55 %, "
    "sagittal 35/60 % x PD-like and T2-like look-ups, both directions; motions shift (3,-8), (-9,4), "
    "(6,6), rotation +5/-7 deg, smooth seeds 1, 2 (benchmark: other slices and motions; BrainWeb not used)"
)


def head_mask(image: np.ndarray, level: float = 0.05) -> np.ndarray:
    """``(H, W)`` bool: the largest connected region above ``level``, holes filled (the head)."""
    labels, count = ndimage.label(image > level)
    if count == 0:
        return np.zeros(image.shape, bool)
    sizes = ndimage.sum(np.ones_like(image), labels, range(1, count + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def whole_head_pairs(path: Path, margin_px: int = 8) -> list[real.RealPair]:
    """Whole-head T1 slices (:data:`CAL_HEAD_CUTS`, 1 mm) cropped to the head (+ ``margin_px``),
    against the :data:`HEAD_LOOKUPS` of themselves (blurred 0.5 px), both directions."""
    mr = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(
        sitk.Resample(mr, real.lps_grid(mr, 1.0), sitk.Transform(), sitk.sitkLinear, 0.0)
    )
    pairs = []
    for cut, axis, fraction in CAL_HEAD_CUTS:
        t1 = real.unit(np.flipud(np.take(array, int(fraction * array.shape[axis]), axis=axis)))
        rows, cols = np.nonzero(head_mask(t1))
        box = (slice(max(rows.min() - margin_px, 0), rows.max() + margin_px + 1),
               slice(max(cols.min() - margin_px, 0), cols.max() + margin_px + 1))  # fmt: skip
        t1 = t1[box]
        mask = real.pad_to(head_mask(t1))
        for name, knots in HEAD_LOOKUPS.items():
            looked_up = np.interp(t1, np.linspace(0, 1, len(knots)), knots)
            other = real.pad_to(real.unit(ndimage.gaussian_filter(looked_up, 0.5)))
            plain = real.pad_to(t1)
            pairs.append(real.RealPair(f"head/{cut}/{name}->T1", "head", other, plain, mask))
            pairs.append(real.RealPair(f"head/{cut}/T1->{name}", "head", plain, other, mask))
    return pairs


def calibration_pairs() -> list[real.RealPair]:
    """The calibration split's real pairs whose files are present."""
    root, pairs = common.data_root(), []
    if not common.missing_files(real.STROKE, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"]):
        pairs += real.stroke_pairs(root / real.STROKE, CAL_STROKE_CUTS, CAL_STROKE_COUPLES)
    ctmr_files = ["scct.nii.gz", "mr_t1_freesurfer.nii.gz", "scgrey.nii.gz", "scwhite.nii.gz"]
    if not common.missing_files(real.CTMR, ctmr_files):
        pairs += real.ctmr_pairs(root / real.CTMR, fractions=CAL_CTMR_FRACTIONS)
    if not common.missing_files(real.CTMR, ["mr_t1_freesurfer.nii.gz"]):
        pairs += whole_head_pairs(root / real.CTMR / "mr_t1_freesurfer.nii.gz")
    return pairs


def collect(matcher: Matcher2D, pairs: list[real.RealPair]) -> dict[str, dict[str, list[np.ndarray]]]:
    """Per data set, over the scored pixels of every case: end-point errors, raw confidences, the
    agreement of the match (sigma ``agreement_sigma_px``) and the pair confidence."""
    pools: dict[str, dict[str, list[np.ndarray]]] = {}
    for pair in pairs:
        for motion in real.motions(pair.image_a.shape, CAL_SHIFTS, CAL_ROTATIONS_DEG, CAL_SMOOTH_SEEDS):
            image0, image1, mask = real.moved_pair(pair, motion)
            flow, confidence, _ = real.run_method(matcher, image0, image1)
            t0, t1 = torch.from_numpy(image0)[None, None], torch.from_numpy(image1)[None, None]
            agreement = gradient_agreement(t0, t1, torch.from_numpy(flow)[None], AGREEMENT_SIGMA_PX)[
                0, 0
            ].numpy()
            pair_conf = float(pair_confidence(torch.from_numpy(confidence)[None, None], t0)[0])
            pool = pools.setdefault(pair.dataset, {"errors": [], "conf": [], "agreement": [], "pair": []})
            pool["errors"].append(np.linalg.norm(flow - motion.flow_px, axis=0)[mask])
            pool["conf"].append(confidence[mask])
            pool["agreement"].append(agreement[mask])
            pool["pair"].append(np.full(int(mask.sum()), pair_conf))
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
    pools = {
        k: {f: np.concatenate(v) for f, v in pool.items()} for k, pool in collect(matcher, pairs).items()
    }
    every = {
        f: np.concatenate([pool[f] for pool in pools.values()])
        for f in ("conf", "errors", "agreement", "pair")
    }
    correct = every["errors"] < real.TOLERANCE_PX
    setting = cal.setting_key(None, REFINE_PX, SMOOTH_PX)
    raw_knots, cal_knots = cal.fit_isotonic(every["conf"], correct, args.bins)
    one_d = cal.ConfidenceCalibration(raw_knots, cal_knots, real.TOLERANCE_PX, setting, SPLIT)
    agreement_knots, table, unsure_table = cal.fit_agreement_table(
        every["conf"], correct, every["agreement"], every["pair"], AGREEMENT_EDGES, UNSURE_PAIR_BELOW,
        RAW_GRID, args.bins,
    )  # fmt: skip
    grid_1d = tuple(float(v) for v in np.interp(RAW_GRID, raw_knots, cal_knots))
    calibration = cal.ConfidenceCalibration(
        tuple(float(v) for v in RAW_GRID), grid_1d, real.TOLERANCE_PX, setting, SPLIT, agreement_knots, table,
        unsure_table, UNSURE_PAIR_BELOW, AGREEMENT_SIGMA_PX,
    )  # fmt: skip

    rows = []
    for name, pool in [*pools.items(), ("all", every)]:
        c, e = pool["conf"], pool["errors"]
        agreement, pair = torch.from_numpy(pool["agreement"]), torch.from_numpy(pool["pair"])
        table_conf = calibration.apply(torch.from_numpy(c), agreement, pair).numpy()
        unsure_share = float((pool["pair"] < UNSURE_PAIR_BELOW).mean())
        rows.append({"data": name, "pixels": c.size, "acc_2px": float((e < 2).mean()),
                     "unsure_pair_share": unsure_share, "mean_conf_raw": float(c.mean()),
                     "ece_raw": ece_of(c, e), "ece_1d_map": ece_of(one_d.apply(torch.from_numpy(c)).numpy(), e),
                     "mean_conf_table": float(table_conf.mean()), "ece_table_map": ece_of(table_conf, e)})  # fmt: skip
        if name == "all":
            all_table = table_conf
    figures = common.RESULTS_DIR / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for label, values in (("raw", every["conf"]), ("calibrated", all_table)):
        result = evaluate.summarise(f"calibration split, {label}", torch.from_numpy(every["errors"]).float(),
                                    torch.from_numpy(values).float(), len(pairs), real.TOLERANCE_PX)  # fmt: skip
        evaluate.plot_reliability(result, figures / f"{args.name}_{label}_reliability.png")
    written = cal.save_calibration(weights, calibration) if args.write else None
    cols = ["data", "pixels", "acc_2px", "unsure_pair_share", "mean_conf_raw", "ece_raw", "ece_1d_map",
            "mean_conf_table", "ece_table_map"]  # fmt: skip
    table_text = "\n".join(
        f"{label} pairs, agreement {a:.3f}: " + " ".join(f"{v:.2f}" for v in row[::4])
        for label, rows_of in (("sure", table), ("unsure", unsure_table))
        for a, row in zip(agreement_knots, rows_of, strict=True)
    )
    markdown = "\n\n".join([
        f"# {args.name}", f"split: {SPLIT}", f"setting {setting}; weights {weights}; {len(pairs)} pairs; "
        f"wall {time.perf_counter() - started:.0f} s; load {info['load_average_1_5_15']}; written: {written}",
        "In-sample ECE (the maps were fitted on these pixels); out of sample: matcher_2d_real.py.",
        common.markdown_table(rows, cols),
        f"table map (raw confidence 0, 0.1, ..., 1 across; unsure: pair confidence < {UNSURE_PAIR_BELOW}):",
        "    " + table_text.replace("\n", "\n    "),
        "1D map knots (raw -> calibrated): " + ", ".join(f"{r:.3f}->{c:.3f}" for r, c in zip(raw_knots, cal_knots, strict=True)),
    ])  # fmt: skip
    print(markdown)
    common.write_results(
        args.name,
        {"rows": rows, "calibration": calibration.to_dict(), "one_d_map": one_d.to_dict(), "machine": info},
        markdown,
    )
    Path("runs").mkdir(exist_ok=True)
    np.savez_compressed(Path("runs") / f"{args.name}_pixels.npz",
                        **{f"{f}_{k}": v[f] for k, v in pools.items() for f in v})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
