"""2D BrainWeb T1 vs. PD moved by known transforms: end-point error of the 2D matchers.

Fixed: ``BrainT1SliceBorder20.png`` (T1 with a 20-pixel border). Moving: PD images moved by the
transforms in their names. The ``Shifted``/``Rotated``/``R10X13Y17`` files are the ``Border20`` PD
image moved as a whole, so each content motion ``M`` is checked against the images first:
``warpAffine(PD_Border20, M)`` must reproduce the moving file (mean absolute residual printed).
Rotations are about the image centre ``(W/2, H/2)`` in pixel coordinates (x right, y down), positive
angles as OpenCV's ``[[cos, -sin], [sin, cos]]``. The R10X13Y17 file is best explained by a
translation of (13, 16) px, not (13, 17): both are checked, and the better fit is the ground truth.
True flow of fixed pixel ``p``: ``M(p) - p``. EPE over the brain (``T1 > 0.05``) where ``M(p)`` stays
inside the image.

    python benchmarks/matcher_2d_brainweb.py --threads 2 [--weights W] [--backends mind,vmgga]

``--max-displacement 0 --refine 12 --smooth 8`` measures the ``vmgga match`` default (global search,
second pass, smoothing, and the shipped confidence calibration).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from vmgga.errors import VmggaError  # noqa: E402
from vmgga.models.matcher2d import Matcher2D  # noqa: E402

FOLDER = "brainweb-2d-t1-pd"
FIXED = "BrainT1SliceBorder20.png"
REFERENCE_PD = "BrainProtonDensitySliceBorder20.png"
#: moving file -> candidate content motions (angle_deg, translation_xy), the first from the name.
CASES = {
    "BrainProtonDensitySliceBorder20.png": [(0.0, (0.0, 0.0))],
    "BrainProtonDensitySliceShifted13x17y.png": [(0.0, (13.0, 17.0))],
    "BrainProtonDensitySliceRotated10.png": [(10.0, (0.0, 0.0))],
    "BrainProtonDensitySliceR10X13Y17.png": [(10.0, (13.0, 17.0)), (10.0, (13.0, 16.0))],
}


def read_grey(path: Path) -> np.ndarray:
    """PNG -> float32 ``(H, W)`` in [0, 1]."""
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0


def content_motion(angle_deg: float, translation_xy: tuple[float, float], shape_hw) -> np.ndarray:
    """``(2, 3)`` matrix of ``p -> R (p - c) + c + t`` with ``c = (W/2, H/2)`` (pixels, x right, y down)."""
    theta = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([shape_hw[1] / 2.0, shape_hw[0] / 2.0])
    return np.hstack([rotation, (centre - rotation @ centre + np.asarray(translation_xy))[:, None]])


def check_motion(reference: np.ndarray, moving: np.ndarray, motion: np.ndarray) -> float:
    """Mean absolute residual (interior) between ``moving`` and ``reference`` moved by ``motion``."""
    predicted = cv2.warpAffine(
        reference, motion, (reference.shape[1], reference.shape[0]), flags=cv2.INTER_LINEAR
    )
    return float(np.abs(predicted - moving)[30:-30, 30:-30].mean())


def true_flow(motion: np.ndarray, shape_hw) -> np.ndarray:
    """``(2, H, W)`` (x, y): ``M(p) - p`` at every pixel."""
    ys, xs = np.mgrid[0 : shape_hw[0], 0 : shape_hw[1]].astype(np.float64)
    points = np.stack([xs, ys])  # (2, H, W)
    moved = np.einsum("ij,jhw->ihw", motion[:, :2], points) + motion[:, 2, None, None]
    return moved - points


def epe_stats(flow: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean / median / p95 end-point error and % within 1 and 3 px over ``mask``."""
    error = np.linalg.norm(flow - truth, axis=0)[mask]
    return {
        "epe_mean": float(error.mean()),
        "epe_median": float(np.median(error)),
        "epe_p95": float(np.percentile(error, 95)),
        "within_1px_pct": float((error < 1).mean() * 100),
        "within_3px_pct": float((error < 3).mean() * 100),
    }


def make_matchers(args) -> tuple[dict[str, Matcher2D], dict[str, str]]:
    """The requested 2D matchers; those that cannot be built are reported with the reason."""
    matchers, unavailable = {}, {}
    for backend in args.backends.split(","):
        try:
            weights = args.weights if backend != "mind" else None
            matchers[backend] = Matcher2D(
                backend,
                weights,
                args.dinov2_path,
                max_displacement_px=args.max_displacement or None,
                refine_px=args.refine or None,
                smooth_px=args.smooth or None,
            )
        except VmggaError as error:
            unavailable[backend] = str(error)
    return matchers, unavailable


def evaluate_case(name: str, data: Path, fixed: np.ndarray, matchers, reference: np.ndarray) -> list[dict]:
    """Check the ground truth of one moving file, then run every matcher on it."""
    moving = read_grey(data / name)
    fits = [
        (check_motion(reference, moving, content_motion(a, t, moving.shape)), a, t) for a, t in CASES[name]
    ]
    residual, angle, translation = min(fits)
    motion = content_motion(angle, translation, fixed.shape)
    truth = true_flow(motion, fixed.shape)
    target = truth + np.mgrid[0 : fixed.shape[0], 0 : fixed.shape[1]][::-1]
    inside = (
        (target[0] >= 0)
        & (target[0] <= fixed.shape[1] - 1)
        & (target[1] >= 0)
        & (target[1] <= fixed.shape[0] - 1)
    )
    mask = (fixed > 0.05) & inside
    rows = [{"pair": name, "method": "identity", **epe_stats(np.zeros_like(truth), truth, mask)}]
    image0, image1 = (torch.from_numpy(x)[None, None] for x in (fixed, moving))
    for method, matcher in matchers.items():
        start = time.perf_counter()
        result = matcher(image0, image1)
        seconds = time.perf_counter() - start
        flow = result.flow_px[0].double().numpy()
        rows.append({"pair": name, "method": method, **epe_stats(flow, truth, mask), "time_s": seconds,
                     "mean_confidence": float(result.confidence[0, 0].numpy()[mask].mean())})  # fmt: skip
    for row in rows:
        row.update({"gt_angle_deg": angle, "gt_translation_xy": list(translation), "gt_check_residual": residual,
                    "gt_name_residuals": [f[0] for f in fits]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="mind,vmgga", help="comma list of mind, vmgga, dinov2")
    parser.add_argument("--weights", default=None, help="VMGGA checkpoint (default: the shipped one)")
    parser.add_argument("--dinov2-path", default=None, help="local DINOv2 directory (backend dinov2)")
    parser.add_argument(
        "--max-displacement", type=float, default=48.0, help="coarse search limit (px; 0: global)"
    )
    parser.add_argument("--refine", type=float, default=0.0, help="second local pass (px; 0: none)")
    parser.add_argument("--smooth", type=float, default=0.0, help="smoothing of the second pass (px)")
    parser.add_argument("--name", default="matcher_2d_brainweb", help="results file name")
    args = parser.parse_args(argv)
    data = common.skip_if_missing(FOLDER, [FIXED, REFERENCE_PD, *CASES])
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    fixed, reference = read_grey(data / FIXED), read_grey(data / REFERENCE_PD)
    matchers, unavailable = make_matchers(args)
    for backend, reason in unavailable.items():
        print(f"{backend}: not run: {reason}")
    rows = [row for name in CASES for row in evaluate_case(name, data, fixed, matchers, reference)]
    columns = ["pair", "method", "epe_mean", "epe_median", "epe_p95", "within_1px_pct", "within_3px_pct",
               "mean_confidence", "time_s", "gt_check_residual"]  # fmt: skip
    table = common.markdown_table(rows, columns)
    summary = _summary(rows)
    markdown = "\n\n".join([f"# {args.name}", table, "Mean EPE over the moved pairs (px):",
                            common.markdown_table(summary, ["method", "epe_mean", "within_1px_pct"])])  # fmt: skip
    print(markdown)
    described = {m: matcher.describe() for m, matcher in matchers.items()}
    payload = {
        "rows": rows,
        "summary": summary,
        "machine": info,
        "matchers": described,
        "unavailable": unavailable,
    }
    common.write_results(args.name, payload, markdown)
    return 0


def _summary(rows: list[dict]) -> list[dict]:
    """Per method, the mean over the moved pairs (Border20 identity pair excluded)."""
    methods = dict.fromkeys(r["method"] for r in rows)
    moved = [r for r in rows if "Border20" not in r["pair"]]
    out = []
    for method in methods:
        mine = [r for r in moved if r["method"] == method]
        out.append(
            {
                "method": method,
                **{k: float(np.mean([r[k] for r in mine])) for k in ("epe_mean", "within_1px_pct")},
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
