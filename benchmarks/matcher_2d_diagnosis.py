"""Why does the learned matcher miss a pure shift on real slices? Controlled checks (issue 14).

On real pairs of :mod:`matcher_2d_real` (stroke FLAIR->T1, T2->T1 axial, FLAIR->T1 coronal):

1. **capture range**: the shift (5, -7) px with the global coarse search and with 16 px: share of
   coarse tokens (8 px cells, brain) whose coarse match is more than 8 / 4 px off;
2. **where the errors are**: median error in the brain interior (8 px erosion) and near its edge;
3. **the fine stage's floor**: the same slice pair with no motion at all (cross-contrast), and the
   same-contrast pair (image1 against itself) moved by the shift: with one contrast the stride-2
   output, its upsampling and the cell centres are tested alone;
4. **test-time fixes**: second local pass after a robust affine (``refine_px`` 12) and
   confidence-weighted smoothing of its flow (``smooth_px`` none / 2 / 4 / 8), median / acc@2px,
   on stroke and BrainWeb pairs moved by a shift, two rotations and a smooth field.

    python benchmarks/matcher_2d_diagnosis.py --threads 1 [--weights W]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import matcher_2d_real as real  # noqa: E402

from vmgga.models.matcher2d import Matcher2D  # noqa: E402

CONTROL_PAIRS = ("stroke/ax55/FLAIR->T1", "stroke/ax55/T2->T1", "stroke/cor50/FLAIR->T1")
FIX_PAIRS = ("stroke/ax55/FLAIR->T1", "stroke/sag40/T1->FLAIR", "brainweb/T1->PD")


def run(matcher: Matcher2D, pair: real.RealPair, motion: real.Motion):
    """Per-pixel error ``(H, W)``, evaluation mask, and coarse-token errors over the brain."""
    image0, image1, mask = real.moved_pair(pair, motion)
    result = matcher(torch.from_numpy(image0)[None, None], torch.from_numpy(image1)[None, None])
    error = np.linalg.norm(result.flow_px[0].double().numpy() - motion.flow_px, axis=0)
    coarse = result.coarse_flow_px[0].double().numpy()
    stride = result.coarse_stride
    centre = stride // 2
    tokens = mask[centre::stride, centre::stride]
    truth = motion.flow_px[:, centre::stride, centre::stride]
    coarse = coarse[:, : truth.shape[1], : truth.shape[2]]  # tokens of the padding are dropped
    coarse_error = np.linalg.norm(coarse - truth, axis=0)[tokens]
    return error, mask, coarse_error


def constant(name: str, dx: float, dy: float, shape=(real.MIN_SIZE, real.MIN_SIZE)) -> real.Motion:
    return real.Motion(name, "shift", np.stack([np.full(shape, dx), np.full(shape, dy)]))


def controls(pairs: dict[str, real.RealPair], weights: str | None) -> list[dict]:
    """Checks 1-3."""
    rows = []
    shift, still = constant("shift(5,-7)", 5.0, -7.0), constant("none", 0.0, 0.0)
    for name in CONTROL_PAIRS:
        pair = pairs[name]
        for label, search in (("global", None), ("16 px", 16.0)):
            error, mask, coarse = run(Matcher2D("vmgga", weights, max_displacement_px=search), pair, shift)
            inner = ndimage.binary_erosion(mask, iterations=8)
            rows.append({"pair": name, "case": f"shift (5,-7), search {label}", "median": np.median(error[mask]),
                         "acc_1px": (error[mask] < 1).mean(), "acc_2px": (error[mask] < 2).mean(),
                         "coarse_gt8px": (coarse > 8).mean(), "coarse_gt4px": (coarse > 4).mean(),
                         "median_interior": np.median(error[inner]), "median_edge": np.median(error[mask & ~inner])})  # fmt: skip
        matcher = Matcher2D("vmgga", weights, max_displacement_px=16.0)
        error, mask, _ = run(matcher, pair, still)
        rows.append({"pair": name, "case": "no motion, cross-contrast", "median": np.median(error[mask]),
                     "acc_1px": (error[mask] < 1).mean(), "acc_2px": (error[mask] < 2).mean()})  # fmt: skip
        same = real.RealPair("same", "stroke", pair.image_b, pair.image_b, pair.foreground_a)
        error, mask, _ = run(matcher, same, shift)
        rows.append({"pair": name, "case": "shift (5,-7), SAME contrast", "median": np.median(error[mask]),
                     "acc_1px": (error[mask] < 1).mean(), "acc_2px": (error[mask] < 2).mean()})  # fmt: skip
    return [{k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()} for r in rows]


def fixes(pairs: dict[str, real.RealPair], weights: str | None) -> list[dict]:
    """Check 4."""
    matchers = {"one pass": Matcher2D("vmgga", weights)}
    matchers |= {f"refine 12, smooth {s}": Matcher2D("vmgga", weights, refine_px=12.0, smooth_px=s) for s in (None, 2.0, 4.0, 8.0)}  # fmt: skip
    rows = []
    for name in FIX_PAIRS:
        pair = pairs[name]
        chosen = real.motions(pair.image_a.shape)
        chosen = [chosen[0], *[m for m in chosen if m.kind in ("rotation", "smooth")]]
        for motion in chosen:
            row = {"pair": name, "motion": motion.name}
            for label, matcher in matchers.items():
                error, mask, _ = run(matcher, pair, motion)
                row[label] = f"{np.median(error[mask]):.2f} / {(error[mask] < 2).mean():.2f}"
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--name", default="matcher_2d_diagnosis")
    args = parser.parse_args(argv)
    common.skip_if_missing(real.STROKE, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"])
    common.set_threads(args.threads)
    pairs = {p.name: p for p in real.load_pairs(["stroke", "brainweb"])}
    control_rows, fix_rows = controls(pairs, args.weights), fixes(pairs, args.weights)
    cols = ["pair", "case", "median", "acc_1px", "acc_2px", "coarse_gt8px", "coarse_gt4px", "median_interior", "median_edge"]  # fmt: skip
    fix_cols = ["pair", "motion", *[k for k in fix_rows[0] if k not in ("pair", "motion")]]
    markdown = "\n\n".join([f"# {args.name}", f"weights: {args.weights or 'shipped'}",
                            "## Controls (errors in px, brain pixels)", common.markdown_table(control_rows, cols),
                            "## Test-time fixes: median px / acc@2px", common.markdown_table(fix_rows, fix_cols)])  # fmt: skip
    print(markdown)
    info = common.machine_info(args.threads)
    common.write_results(args.name, {"controls": control_rows, "fixes": fix_rows, "machine": info}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
