"""2D matchers on REAL slices of different contrasts moved by known transforms (issue 14).

Pairs of co-registered real images of two contrasts, ``A`` (image0) and ``B`` (image1):

* ``stroke``: the shared stroke patient (T1, T2, FLAIR are co-registered: the identity is the truth),
  axial, coronal and sagittal slices, FLAIR->T1, T2->T1, T1->FLAIR;
* ``brainweb``: BrainWeb T1 and PD slices (``BrainT1Slice.png``, ``BrainProtonDensitySlice.png``),
  both directions;
* ``ctmr``: the CT template ``ct-mr-head/scct.nii.gz`` and the T1 ``mr_t1_freesurfer.nii.gz`` of
  another subject, after a rough alignment (moments + Mattes-MI affine of the MR onto the CT,
  :func:`common.mattes_affine`), axial slices, both directions. Inter-subject: the "truth" is the
  rough alignment, so errors include the anatomy that the affine cannot explain.

Each slice is zero-padded to at least 200 x 200 px. A known transform ``f`` moves image0:
``image0(p) = A(p + f(p))`` (bilinear), image1 = ``B``, so pixel ``p`` of image0 truly matches
``p + f(p)`` in image1 (``f`` in (x, y) pixels: x = column, y = row). Transforms: pure shifts up to
10 px, rotations of +8 and -10 degrees about the image centre, and a smooth random field (cubic
upsampling of a 6 x 6 Gaussian grid, largest displacement 6 px). Errors are measured over the
foreground of image0 (brain for stroke and CT/MR, head for BrainWeb) where ``p + f(p)`` lies in image1.

Metrics per method, pooled over pixels: accuracy at 1/2/4 px, mean and median end-point error,
ECE of the confidence against "error < 2 px" (15 bins) and a reliability plot; per pure-shift pair
the median error (the issue's target: <= 1 px) and the share of pixels within 2 px (>= 70 %).

    python benchmarks/matcher_2d_real.py --threads 2 [--weights W] [--methods mind,vmgga,...]

Methods: ``mind`` (training-free MIND-SSC, global search), ``mind-refine``, ``vmgga`` (the weights,
global coarse search), ``vmgga-md16`` / ``vmgga-md32`` (``--max-displacement`` 16 / 32 px),
``vmgga-refine`` (global search, robust affine of the matches, second pass searching 12 px),
``vmgga-refine-s8`` (the same, second flow smoothed by confidence, Gaussian sigma 8 px: the
``vmgga match`` default, with the confidence calibration fitted for these weights and this setting
when there is one, see ``matcher_calibration.py``), ``vmgga-refine-s8-raw`` (the same without the
calibration map), ``mind-refine-s8``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from vmgga.cli.match import normalise  # noqa: E402
from vmgga.models.matcher2d import Matcher2D  # noqa: E402
from vmgga.training import evaluate  # noqa: E402

STROKE = "mr-stroke-t1-t2-flair"
BRAINWEB = "brainweb-2d-t1-pd"
CTMR = "ct-mr-head"
MIN_SIZE = 200
TOLERANCE_PX = 2.0
SHIFTS = [(5.0, -7.0), (10.0, 0.0), (0.0, -10.0), (-7.0, 7.0)]
ROTATIONS_DEG = [8.0, -10.0]
SMOOTH_SEEDS = [0]
SMOOTH_MAX_PX = 6.0
METHODS = {  # name -> (backend, max_displacement_px, refine_px, smooth_px, calibrate)
    "mind": ("mind", None, None, None, True),
    "mind-refine": ("mind", None, 12.0, None, True),
    "vmgga": ("vmgga", None, None, None, True),
    "vmgga-md16": ("vmgga", 16.0, None, None, True),
    "vmgga-md32": ("vmgga", 32.0, None, None, True),
    "vmgga-refine": ("vmgga", None, 12.0, None, True),
    "vmgga-refine-s8": ("vmgga", None, 12.0, 8.0, True),
    "vmgga-refine-s8-raw": ("vmgga", None, 12.0, 8.0, False),
    "mind-refine-s8": ("mind", None, 12.0, 8.0, True),
}


@dataclass(frozen=True)
class RealPair:
    """Two co-registered real images of different contrasts and image A's foreground (H, W)."""

    name: str  # dataset/slice/contrasts
    dataset: str  # stroke | brainweb | ctmr
    image_a: np.ndarray  # (H, W) float32 in [0, 1]: image0's contrast (moved)
    image_b: np.ndarray  # (H, W) float32 in [0, 1]: image1's contrast
    foreground_a: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class Motion:
    """A known transform: ``flow_px (2, H, W)`` (x, y) from image0 pixels to image1 positions."""

    name: str  # e.g. shift(5,-7)
    kind: str  # shift | rotation | smooth
    flow_px: np.ndarray


# --- real pairs ---------------------------------------------------------------------------------


def pad_to(image: np.ndarray, size: int = MIN_SIZE) -> np.ndarray:
    """Zero-pad ``(H, W)`` symmetrically to at least ``size`` x ``size``."""
    pads = [((max(size - n, 0)) // 2, max(size - n, 0) - (max(size - n, 0)) // 2) for n in image.shape]
    return np.pad(image, pads)


def unit(image: np.ndarray) -> np.ndarray:
    """Robust [0, 1] scaling, as ``vmgga match`` does (:func:`vmgga.cli.match.normalise`)."""
    return normalise(image.astype(np.float32))


#: Benchmark slices: (name, array axis, fraction along it); calibration uses others.
STROKE_CUTS = [("ax55", 0, 0.55), ("cor50", 1, 0.5), ("sag40", 2, 0.4)]
STROKE_COUPLES = [("FLAIR", "T1"), ("T2", "T1"), ("T1", "FLAIR")]
CTMR_FRACTIONS = (0.55,)


def stroke_pairs(
    folder: Path,
    cuts: list[tuple[str, int, float]] = STROKE_CUTS,
    couples: list[tuple[str, str]] = STROKE_COUPLES,
) -> list[RealPair]:
    """Slices ``cuts`` (name, array axis, fraction) of the contrast ``couples`` (image0, image1)."""
    volumes = {
        m: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{m}.nii.gz"))) for m in ("T1", "T2", "FLAIR")
    }
    shape = volumes["T1"].shape  # (z, y, x)
    pairs = []
    for cut, axis, fraction in cuts:
        index = int(fraction * shape[axis])
        planes = {m: np.take(v, index, axis=axis).astype(np.float32) for m, v in volumes.items()}
        if axis != 0:
            planes = {m: np.flipud(p) for m, p in planes.items()}  # superior up
        for a, b in couples:
            image_a, image_b = pad_to(unit(planes[a])), pad_to(unit(planes[b]))
            foreground = pad_to(planes["T1"] > 0) & (image_a > 0.02)
            pairs.append(RealPair(f"stroke/{cut}/{a}->{b}", "stroke", image_a, image_b, foreground))
    return pairs


def brainweb_pairs(folder: Path) -> list[RealPair]:
    """BrainWeb T1 <-> PD (the same slice, two simulated contrasts), both directions."""
    t1 = cv2.imread(str(folder / "BrainT1Slice.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    pd = cv2.imread(str(folder / "BrainProtonDensitySlice.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    t1, pd = pad_to(unit(t1)), pad_to(unit(pd))
    head = ndimage.binary_fill_holes((t1 > 0.05) | (pd > 0.05))
    return [
        RealPair("brainweb/T1->PD", "brainweb", t1, pd, head),
        RealPair("brainweb/PD->T1", "brainweb", pd, t1, head),
    ]


def ctmr_pairs(
    folder: Path, spacing_mm: float = 1.5, fractions: tuple[float, ...] = CTMR_FRACTIONS
) -> list[RealPair]:
    """CT template and another subject's T1, roughly aligned (affine), axial slices, both directions."""
    ct = sitk.Cast(sitk.ReadImage(str(folder / "scct.nii.gz")), sitk.sitkFloat32)
    mr = sitk.Cast(sitk.ReadImage(str(folder / "mr_t1_freesurfer.nii.gz")), sitk.sitkFloat32)
    grey, white = (sitk.ReadImage(str(folder / f"sc{n}.nii.gz"), sitk.sitkFloat32) for n in ("grey", "white"))
    reference = lps_grid(ct, spacing_mm)
    ct_ref = sitk.Resample(ct, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    brain = sitk.Resample(grey + white, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    affine = common.mattes_affine(ct_ref, mr, common.AffineSettings())
    mr_ref = sitk.Resample(mr, reference, affine, sitk.sitkLinear, 0.0)
    ct_arr, mr_arr = sitk.GetArrayFromImage(ct_ref), sitk.GetArrayFromImage(mr_ref)
    brain_arr = sitk.GetArrayFromImage(brain) > 0.5
    depth = ct_arr.shape[0]
    pairs = []
    for fraction in fractions:
        k = int(fraction * depth)
        ct_slice, mr_slice = pad_to(unit(np.flipud(ct_arr[k]))), pad_to(unit(np.flipud(mr_arr[k])))
        mask = pad_to(np.flipud(brain_arr[k]))
        pairs.append(RealPair(f"ctmr/ax{int(fraction * 100)}/CT->MR", "ctmr", ct_slice, mr_slice, mask))
        pairs.append(RealPair(f"ctmr/ax{int(fraction * 100)}/MR->CT", "ctmr", mr_slice, ct_slice, mask))
    return pairs


def lps_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An identity-direction (LPS axes) grid at ``spacing_mm`` covering ``image``'s bounding box."""
    size = np.array(image.GetSize())
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in (size - 1) * np.array(b)])
               for b in np.ndindex(2, 2, 2)]  # fmt: skip
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    grid = sitk.Image([int(n) for n in np.ceil((high - low) / spacing_mm) + 1], sitk.sitkFloat32)
    grid.SetOrigin(low.tolist())
    grid.SetSpacing([spacing_mm] * 3)
    return grid


# --- known motions ------------------------------------------------------------------------------


def motions(
    shape_hw: tuple[int, int],
    shifts: list[tuple[float, float]] = SHIFTS,
    rotations_deg: list[float] = ROTATIONS_DEG,
    smooth_seeds: list[int] = SMOOTH_SEEDS,
) -> list[Motion]:
    """Shifts, rotations about the centre and smooth random fields on an ``(H, W)`` grid."""
    h, w = shape_hw
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    out = [Motion(f"shift({dx:g},{dy:g})", "shift", np.stack([np.full((h, w), dx), np.full((h, w), dy)]))
           for dx, dy in shifts]  # fmt: skip
    cx, cy = w / 2.0, h / 2.0
    for angle in rotations_deg:
        t = np.deg2rad(angle)
        mx = np.cos(t) * (xs - cx) - np.sin(t) * (ys - cy) + cx
        my = np.sin(t) * (xs - cx) + np.cos(t) * (ys - cy) + cy
        out.append(Motion(f"rotation({angle:g})", "rotation", np.stack([mx - xs, my - ys])))
    for seed in smooth_seeds:
        coarse = np.random.default_rng(seed).normal(size=(2, 6, 6))
        field = np.stack([ndimage.zoom(c, (h / 6, w / 6), order=3)[:h, :w] for c in coarse])
        field *= SMOOTH_MAX_PX / np.linalg.norm(field, axis=0).max()
        out.append(Motion(f"smooth(seed {seed})", "smooth", field))
    return out


def moved_pair(pair: RealPair, motion: Motion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """image0 = A(p + f(p)), image1 = B, and the evaluation mask (foreground, target inside image1)."""
    h, w = pair.image_a.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = xs + motion.flow_px[0], ys + motion.flow_px[1]
    image0 = ndimage.map_coordinates(pair.image_a, [ty, tx], order=1, cval=0.0).astype(np.float32)
    fore = ndimage.map_coordinates(pair.foreground_a.astype(np.float32), [ty, tx], order=0, cval=0.0) > 0.5
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return image0, pair.image_b, fore & inside


# --- evaluation ---------------------------------------------------------------------------------


def run_method(
    matcher: Matcher2D, image0: np.ndarray, image1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Flow ``(2, H, W)``, confidence ``(H, W)`` and seconds of one match."""
    start = time.perf_counter()
    result = matcher(torch.from_numpy(image0)[None, None], torch.from_numpy(image1)[None, None])
    seconds = time.perf_counter() - start
    return result.flow_px[0].double().numpy(), result.confidence[0, 0].double().numpy(), seconds


def pooled(method: str, errors: list[np.ndarray], confidences: list[np.ndarray], n_pairs: int) -> dict:
    """Accuracy, EPE and calibration over the pooled pixels (:func:`vmgga.training.evaluate.summarise`)."""
    epe = torch.from_numpy(np.concatenate(errors)).float()
    conf = torch.from_numpy(np.concatenate(confidences)).float()
    result = evaluate.summarise(method, epe, conf, n_pairs, TOLERANCE_PX)
    row = {"method": method, "pairs": n_pairs, "pixels": result.pixels,
           "acc_1px": result.accuracy["1px"], "acc_2px": result.accuracy["2px"], "acc_4px": result.accuracy["4px"],
           "epe_mean": result.epe_mean_px, "epe_median": result.epe_median_px, "ece": result.ece}  # fmt: skip
    return {"row": row, "result": result}


def evaluate_methods(pairs: list[RealPair], matchers: dict[str, Matcher2D]) -> tuple[list[dict], dict]:
    """Per (pair, motion, method): errors and confidences; returns the per-case rows and the pools."""
    rows, pools = [], {}
    for pair in pairs:
        for motion in motions(pair.image_a.shape):
            image0, image1, mask = moved_pair(pair, motion)
            truth = motion.flow_px
            for method, matcher in matchers.items():
                flow, confidence, seconds = run_method(matcher, image0, image1)
                error = np.linalg.norm(flow - truth, axis=0)[mask]
                conf = confidence[mask]
                for key in ("all", pair.dataset, motion.kind, f"{pair.dataset}/{motion.kind}"):
                    pool = pools.setdefault((method, key), {"errors": [], "conf": [], "pairs": 0})
                    pool["errors"].append(error)
                    pool["conf"].append(conf)
                    pool["pairs"] += 1
                rows.append({"pair": pair.name, "motion": motion.name, "kind": motion.kind, "method": method,
                             "epe_median": float(np.median(error)), "epe_mean": float(error.mean()),
                             "acc_2px": float((error < 2).mean()), "time_s": seconds})  # fmt: skip
    return rows, pools


def summaries(pools: dict) -> list[dict]:
    """One pooled row per (method, group)."""
    out = []
    for (method, group), pool in pools.items():
        summary = pooled(method, pool["errors"], pool["conf"], pool["pairs"])
        out.append({**summary["row"], "group": group, "reliability": summary["result"].reliability})
    return out


def shift_targets(rows: list[dict]) -> list[dict]:
    """Per method: pure-shift pairs with median error <= 1 px and with >= 70 % within 2 px."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and r["kind"] == "shift"]
        out.append({"method": method, "shift_pairs": len(mine),
                    "median_le_1px_share": float(np.mean([r["epe_median"] <= 1.0 for r in mine])),
                    "acc2_ge_70pct_share": float(np.mean([r["acc_2px"] >= 0.7 for r in mine])),
                    "median_of_medians": float(np.median([r["epe_median"] for r in mine])),
                    "worst_median": float(np.max([r["epe_median"] for r in mine])),
                    "time_s_mean": float(np.mean([r["time_s"] for r in rows if r["method"] == method]))})  # fmt: skip
    return out


def make_matchers(names: list[str], weights: str | None) -> dict[str, Matcher2D]:
    """The requested methods (:data:`METHODS`)."""
    matchers = {}
    for name in names:
        backend, search, refine, smooth, calibrate = METHODS[name]
        weights_used = weights if backend == "vmgga" else None
        matchers[name] = Matcher2D(backend, weights_used, None, "cpu", search, refine, smooth, calibrate)
    return matchers


def load_pairs(datasets: list[str]) -> list[RealPair]:
    """The real pairs of the requested datasets whose files are present (others are reported)."""
    root, pairs = common.data_root(), []
    needs = {"stroke": (STROKE, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"], stroke_pairs),
             "brainweb": (BRAINWEB, ["BrainT1Slice.png", "BrainProtonDensitySlice.png"], brainweb_pairs),
             "ctmr": (CTMR, ["scct.nii.gz", "mr_t1_freesurfer.nii.gz", "scgrey.nii.gz", "scwhite.nii.gz"], ctmr_pairs)}  # fmt: skip
    for name in datasets:
        folder, files, loader = needs[name]
        if common.missing_files(folder, files):
            print(f"{name}: skipped ({common.missing_files(folder, files)[0]} absent)")
            continue
        pairs += loader(root / folder)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--methods", default="mind,mind-refine-s8,vmgga,vmgga-md16,vmgga-refine,vmgga-refine-s8"
    )
    parser.add_argument("--weights", default=None, help="VMGGA checkpoint (default: the shipped one)")
    parser.add_argument("--datasets", default="stroke,brainweb,ctmr")
    parser.add_argument("--name", default="matcher_2d_real", help="results file name")
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    pairs = load_pairs(args.datasets.split(","))
    if not pairs:
        print("skipped: no real data present")
        return 0
    matchers = make_matchers(args.methods.split(","), args.weights)
    started = time.perf_counter()
    rows, pools = evaluate_methods(pairs, matchers)
    summary = summaries(pools)
    targets = shift_targets(rows)
    cols = ["method", "pairs", "pixels", "acc_1px", "acc_2px", "acc_4px", "epe_mean", "epe_median", "ece"]
    groups = list(dict.fromkeys(s["group"] for s in summary))
    sections = [f"# {args.name}", f"{len(pairs)} real pairs x {len(motions((MIN_SIZE, MIN_SIZE)))} motions; "
                f"weights: {args.weights or 'shipped'}; wall {time.perf_counter() - started:.0f} s; load "
                f"{info['load_average_1_5_15']}", "## Pure shifts: the issue's targets (per pair)",
                common.markdown_table(targets, ["method", "shift_pairs", "median_le_1px_share", "acc2_ge_70pct_share",
                                                "median_of_medians", "worst_median", "time_s_mean"])]  # fmt: skip
    for group in groups:
        sections += [f"## {group}", common.markdown_table([s for s in summary if s["group"] == group], cols)]
    markdown = "\n\n".join(sections)
    print(markdown)
    figures = common.RESULTS_DIR / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for method in matchers:
        pool = pools[(method, "all")]
        result = pooled(method, pool["errors"], pool["conf"], pool["pairs"])["result"]
        evaluate.plot_reliability(result, figures / f"{args.name}_{method}_reliability.png")
    payload = {"summary": summary, "shift_targets": targets, "rows": rows, "machine": info,
               "matchers": {m: x.describe() for m, x in matchers.items()},
               "pairs": [p.name for p in pairs], "motions": [asdict(m) | {"flow_px": None} for m in motions((8, 8))]}  # fmt: skip
    common.write_results(args.name, payload, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
