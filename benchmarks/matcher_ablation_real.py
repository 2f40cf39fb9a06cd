"""The seed's claims on REAL slices (issue 14): models trained alike without visual guidance or
without gating, and sparse detect-then-match instead of dense matching (recall).

Pairs and motions: those of ``matcher_2d_real.py`` (stroke, BrainWeb, CT/MR; shifts, rotations,
a smooth field). Per variant checkpoint (``--variant NAME=WEIGHTS``, e.g. the three
``configs/experiments/ablation_*.yaml`` runs), two settings: one pass (global search) and the
``vmgga match`` default (refine 12 px + smoothing 8 px); accuracy at 1/2/4 px and mean / median
end-point error over the brain.

Sparse (``--sparse NAME``: the variant whose weights are used): SIFT keypoints of both images,
described by the network's fine descriptors, mutual nearest neighbours
(:func:`vmgga.matching.sparse.match_sparse`). Per case: matches, correct ones (error < 2 px against
the known motion at the keypoint of image0, keypoint in the brain), precision, and **recall**: correct
matches per brain pixel; the dense matcher's recall is its share of brain pixels matched within
2 px (every pixel has a match). The sparse matches spread to every pixel
(:func:`~vmgga.matching.sparse.dense_from_sparse`) are scored like the dense ones.

    python benchmarks/matcher_ablation_real.py --threads 1 --variant full=W1 --variant no_gating=W2 \
        --variant no_visual_guidance=W3 --sparse full --name matcher_ablation_real
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import matcher_2d_real as real  # noqa: E402

from vmgga.cli.match import REFINE_PX, SMOOTH_PX  # noqa: E402
from vmgga.matching.sparse import dense_from_sparse, match_sparse  # noqa: E402
from vmgga.models.matcher2d import Matcher2D  # noqa: E402
from vmgga.models.network import MatcherNet  # noqa: E402

GROUPS = ("all", "stroke", "brainweb", "ctmr")


def sparse_case(
    model: MatcherNet, image0: np.ndarray, image1: np.ndarray, truth: np.ndarray, mask: np.ndarray
):
    """Sparse matches of one case: counts, recall, and the densified flow's errors over ``mask``."""
    tensors = [torch.from_numpy(np.ascontiguousarray(im))[None, None] for im in (image0, image1)]
    matches = match_sparse(model, *tensors)
    p0, p1 = matches.points0_xy.double().numpy(), matches.points1_xy.double().numpy()
    # the truth at the keypoints of image0 (bilinear), (N, 2) (x, y)
    at = np.stack([ndimage.map_coordinates(truth[c], [p0[:, 1], p0[:, 0]], order=1) for c in range(2)], 1)
    inside = ndimage.map_coordinates(mask.astype(np.float32), [p0[:, 1], p0[:, 0]], order=0) > 0.5
    right = (np.linalg.norm(p0 + at - p1, axis=1) < real.TOLERANCE_PX) & inside
    flow, _ = dense_from_sparse(matches, image0.shape)
    dense_error = np.linalg.norm(flow[0].double().numpy() - truth, axis=0)[mask]
    return {
        "matches_in_brain": int(inside.sum()),
        "right": int(right.sum()),
        "brain_pixels": int(mask.sum()),
    }, dense_error


def pooled_row(label: str, group: str, errors: list[np.ndarray]) -> dict:
    """Accuracy at 1/2/4 px and mean / median error of pooled pixels."""
    e = np.concatenate(errors)
    return {"variant": label, "group": group, "pixels": e.size, "acc_1px": float((e < 1).mean()),
            "acc_2px": float((e < 2).mean()), "acc_4px": float((e < 4).mean()),
            "epe_mean": float(e.mean()), "epe_median": float(np.median(e))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[], help="NAME=WEIGHTS (repeatable)")
    parser.add_argument("--sparse", default=None, help="variant NAME whose weights run sparse matching")
    parser.add_argument("--datasets", default="stroke,brainweb,ctmr")
    parser.add_argument("--name", default="matcher_ablation_real")
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    variants = dict(v.split("=", 1) for v in args.variant)
    pairs = real.load_pairs(args.datasets.split(","))
    if not pairs or not variants:
        print("skipped: no real data present" if not pairs else "nothing to do: no --variant")
        return 0
    started = time.perf_counter()
    matchers = {}
    for name, weights in variants.items():
        matchers[f"{name}, one pass"] = Matcher2D("vmgga", weights, calibrate=False)
        matchers[f"{name}, refine+smooth"] = Matcher2D("vmgga", weights, None, "cpu", None, REFINE_PX, SMOOTH_PX, False)  # fmt: skip
    sparse_model = (
        MatcherNet.from_checkpoint(variants[args.sparse], matching="sparse") if args.sparse else None
    )
    pools: dict[tuple[str, str], list[np.ndarray]] = {}
    sparse_rows = []
    for pair in pairs:
        for motion in real.motions(pair.image_a.shape):
            image0, image1, mask = real.moved_pair(pair, motion)
            for label, matcher in matchers.items():
                flow, _, _ = real.run_method(matcher, image0, image1)
                error = np.linalg.norm(flow - motion.flow_px, axis=0)[mask]
                for group in ("all", pair.dataset):
                    pools.setdefault((label, group), []).append(error)
            if sparse_model is not None:
                counts, error = sparse_case(sparse_model, image0, image1, motion.flow_px, mask)
                sparse_rows.append(
                    {"pair": pair.name, "dataset": pair.dataset, "motion": motion.name, **counts}
                )
                for group in ("all", pair.dataset):
                    pools.setdefault((f"{args.sparse}, sparse (densified)", group), []).append(error)
    rows = [pooled_row(label, group, errs) for (label, group), errs in pools.items()]
    recall = []
    for group in GROUPS:
        mine = [r for r in sparse_rows if group == "all" or r["dataset"] == group]
        if mine:
            found, right = sum(r["matches_in_brain"] for r in mine), sum(r["right"] for r in mine)
            pixels = sum(r["brain_pixels"] for r in mine)
            recall.append({"group": group, "cases": len(mine), "sparse_matches_in_brain": found,
                           "sparse_right": right, "sparse_precision": right / max(found, 1),
                           "sparse_recall": right / max(pixels, 1)})  # fmt: skip
    cols = ["variant", "pixels", "acc_1px", "acc_2px", "acc_4px", "epe_mean", "epe_median"]
    sections = [f"# {args.name}", f"{len(pairs)} real pairs x {len(real.motions((8, 8)))} motions; variants "
                f"{variants}; wall {time.perf_counter() - started:.0f} s; load {info['load_average_1_5_15']}"]  # fmt: skip
    for group in GROUPS:
        mine = [r for r in rows if r["group"] == group]
        if mine:
            sections += [f"## {group}", common.markdown_table(mine, cols)]
    if recall:
        sections += ["## Sparse recall (correct matches per brain pixel; dense: acc_2px above)",
                     common.markdown_table(recall, ["group", "cases", "sparse_matches_in_brain", "sparse_right",
                                                    "sparse_precision", "sparse_recall"])]  # fmt: skip
    markdown = "\n\n".join(sections)
    print(markdown)
    common.write_results(
        args.name, {"rows": rows, "sparse": sparse_rows, "recall": recall, "machine": info}, markdown
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
