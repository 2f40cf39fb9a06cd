"""Harder dev benchmark at full size: 240x240x155 at 1 mm, z-scored, lesions, larger smoother known fields.

Built from the shared stroke patient (T1, T2, FLAIR, co-registered, brain-extracted), with contrast
pairs other than the hidden FLAIR-vs-T1 set: fixed T2 / moving T1 and fixed FLAIR / moving T2.

* Size: each contrast is upsampled by 1.1 (linear) and centred in a 240x240x155 grid at 1 mm
  (8.9 M voxels), as a BraTS-like volume.
* Lesions: two ellipsoids (8-16 mm radii) per seed inside the brain, bright in T2/FLAIR (+2 std)
  and dark in T1 (-1.5 std), drawn in the source space (so the true map is unchanged).
* Intensities: z-scored over the brain; the background becomes negative (``-mean / std``).
* Known field: a cubic B-spline with control points about 60 mm apart and 4 mm std per LPS
  component (:func:`benchmarks.common.bspline_deformation`): ``fixed(x) = A(phi(x))``, moving = B,
  so the true fixed -> moving map is ``phi``. TRE is measured over the brain.

    python benchmarks/fullsize_brain.py --threads 2 --seeds 0 1 \\
        --methods identity,vmgga-fused,vmgga-mind,ants,elastix,convexadam [--preset accurate]
    python benchmarks/fullsize_brain.py --command-only --presets fast accurate   # whole-command timing

Writes ``benchmarks/results/<name>.json`` and ``.md``; exits 0 with ``skipped: ...`` without the data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common, peers
from benchmarks import stroke_known_deformation as stroke
from benchmarks.command_timing import load_average, run_register

DATASET = "mr-stroke-t1-t2-flair"
SIZE_IJK = (240, 240, 155)
UPSAMPLE = 1.1
CONTROL_SPACING_MM = 60.0
COEFFICIENT_STD_MM = 4.0
#: (fixed contrast, moving contrast)
CONTRAST_PAIRS = (("T2", "T1"), ("FLAIR", "T2"))
#: lesion contrast in brain standard deviations
LESION_SHIFT = {"T1": -1.5, "T2": 2.0, "FLAIR": 2.0}


def full_size(image: sitk.Image) -> sitk.Image:
    """``image`` upsampled by :data:`UPSAMPLE` and centred in a :data:`SIZE_IJK` grid at 1 mm."""
    reference = sitk.Image(list(SIZE_IJK), sitk.sitkFloat32)
    reference.SetSpacing((1.0, 1.0, 1.0))
    centre_in = np.asarray(
        image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    )
    reference.SetOrigin(tuple(centre_in - (np.asarray(SIZE_IJK) - 1) / 2.0))
    scale = sitk.ScaleTransform(3, (1.0 / UPSAMPLE,) * 3)
    scale.SetCenter(centre_in.tolist())
    return sitk.Resample(image, reference, scale, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def lesion_mask(reference: sitk.Image, brain: np.ndarray, seed: int) -> np.ndarray:
    """Two soft-edged ellipsoids (0..1) centred on random brain voxels, ``(D, H, W)``."""
    rng = np.random.default_rng(1000 + seed)
    zyx = np.argwhere(brain)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in brain.shape], indexing="ij")
    mask = np.zeros(brain.shape, np.float32)
    for _ in range(2):
        centre = zyx[rng.integers(len(zyx))]
        radii = rng.uniform(8.0, 16.0, 3)
        r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
        mask = np.maximum(mask, np.clip(1.5 - r2, 0.0, 1.0))
    return mask * brain


def zscored(array: np.ndarray, brain: np.ndarray, lesion: np.ndarray, shift: float) -> np.ndarray:
    """Brain z-score, lesion shifted by ``shift`` std; background ``-mean/std`` (negative)."""
    mean, std = float(array[brain].mean()), float(array[brain].std())
    out = (array - mean) / std + shift * lesion
    return np.where(brain, out, -mean / std).astype(np.float32)


def make_pairs(folder: Path, seeds: list[int], tmp: Path) -> list[stroke.Pair]:
    """Write fixed and moving files for every seed x contrast pair; return them with the truth."""
    sources = {
        n: full_size(sitk.ReadImage(str(folder / f"{n}.nii.gz"), sitk.sitkFloat32)) for n in LESION_SHIFT
    }
    reference = sources["T1"]
    brain = sitk.GetArrayFromImage(sources["T1"]) > 1.0
    pairs = []
    for seed in seeds:
        lesion = lesion_mask(reference, brain, seed)
        spec = common.BSplineDeformationSpec(seed, CONTROL_SPACING_MM, COEFFICIENT_STD_MM)
        phi = common.bspline_deformation(reference, spec)
        true_disp = common.displacement_lps_mm(phi, reference)
        fixed_brain = sitk.GetArrayFromImage(common.resample(sources["T1"], reference, phi)) > 1.0
        for fixed_name, moving_name in CONTRAST_PAIRS:
            images = {}
            for name in (fixed_name, moving_name):
                values = zscored(sitk.GetArrayFromImage(sources[name]), brain, lesion, LESION_SHIFT[name])
                image = sitk.GetImageFromArray(values)
                image.CopyInformation(reference)
                images[name] = image
            background = float(sitk.GetArrayViewFromImage(images[fixed_name]).min())
            fixed = sitk.Resample(images[fixed_name], reference, phi, sitk.sitkLinear, background)
            name = f"seed{seed}-{fixed_name}-{moving_name}"
            fixed_path, moving_path = tmp / f"{name}_fixed.nii.gz", tmp / f"{name}_moving.nii.gz"
            sitk.WriteImage(fixed, str(fixed_path))
            sitk.WriteImage(images[moving_name], str(moving_path))
            pairs.append(
                stroke.Pair(name, seed, moving_name, fixed_path, moving_path, true_disp, fixed_brain)
            )
    return pairs


def command_rows(
    pairs: list[stroke.Pair], presets: list[str], threads: int, tmp: Path, device: str = "cpu"
) -> list[dict]:
    """Whole ``vmgga register`` command per preset and pair: time, peak RSS, outputs, TRE.

    A preset may name a matcher too, ``PRESET:MATCHER`` (``fast:vmgga`` runs ``--preset fast
    --matcher vmgga``, the learned path)."""
    rows = []
    for pair in pairs:
        for spec in presets:
            preset, _, matcher = spec.partition(":")
            out = tmp / "cmd" / pair.name / spec.replace(":", "-")
            load = load_average()
            extra = ["--matcher", matcher] if matcher else []
            run = run_register(
                pair.fixed_path,
                pair.moving_path,
                out,
                ["--preset", preset, "--threads", str(threads), "--device", device, *extra],
            )
            label = f"{preset} --matcher {matcher}" if matcher else preset
            row = {"method": f"vmgga {label} (command)", "pair": pair.name, "load_before": load[0]}
            if run.returncode != 0:
                rows.append({**row, "status": f"failed: {run.stderr_tail[-300:]}"})
                continue
            transform = sitk.ReadTransform(str(out / "transform.h5"))
            fixed = sitk.ReadImage(str(pair.fixed_path))
            est = common.displacement_lps_mm(transform, fixed)
            tre = common.tre_stats(est, pair.true_disp_lps_mm, pair.brain_mask)
            jacobian = common.jacobian_determinant(est, fixed)
            rows.append(
                {
                    **row,
                    "status": "ok",
                    "seconds": run.seconds,
                    "cpu_s": run.cpu_seconds,
                    "peak_rss_gb": run.peak_rss_mb / 1024,
                    "outputs_mb": sum(run.output_mb.values()),
                    "files_mb": run.output_mb,
                    "tre_mean_mm": tre.mean_mm,
                    "tre_p95_mm": tre.p95_mm,
                    "fold_pct_grid": 100.0 * common.folding_fraction(jacobian),
                    "timings_s": run.timings_s,
                }
            )
            print(f"{pair.name} {spec}: {_short(rows[-1])}", flush=True)
    return rows


def _short(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    stages = {k: v for k, v in row["timings_s"].items() if k != "dense_detail"}
    return (
        f"{row['seconds']:.1f} s (load {row['load_before']}), RSS {row['peak_rss_gb']:.2f} GB, "
        f"outputs {row['outputs_mb']:.1f} MB, TRE {row['tre_mean_mm']:.3f} mm, fold {row['fold_pct_grid']:.4f} %, "
        f"stages {stages}, dense {row['timings_s'].get('dense_detail')}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="identity,vmgga-fused,ants,elastix,convexadam")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pairs", type=int, default=None, help="use only the first N pairs")
    parser.add_argument("--preset", default="fast", help="our preset for --methods (fast | accurate)")
    parser.add_argument(
        "--presets",
        nargs="*",
        default=["fast", "accurate"],
        help="presets timed as a command; PRESET:MATCHER adds --matcher (fast:vmgga: the learned path)",
    )
    parser.add_argument("--command-only", action="store_true", help="only the whole-command runs of ours")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="dotted override of the vmgga-* methods, e.g. dense.features.pixel_weight=1 (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="vmgga register --device (whole-command rows)")
    parser.add_argument("--name", default="fullsize_brain")
    parser.add_argument(
        "--workdir", default=None, help="keep the pairs and outputs here (default: a temp folder)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = common.skip_if_missing(DATASET, [f"{n}.nii.gz" for n in LESION_SHIFT])
    common.set_threads(args.threads)
    methods = [] if args.command_only else peers.parse_methods(args.methods)
    options = peers.PeerOptions(
        threads=args.threads, preset=args.preset, vmgga_overrides=peers.parse_overrides(args.set)
    )
    unavailable = peers.preload(methods, options)
    methods = [m for m in methods if m not in unavailable]
    info = common.machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="vmgga_fullsize_") as tmp_name:
        tmp = Path(args.workdir or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        pairs = make_pairs(folder, args.seeds, tmp)[: args.pairs]
        rows = command_rows(pairs, args.presets, args.threads, tmp, args.device)
        rows += stroke.run_all(methods, pairs, options, tmp) if methods else []
    write_report(args, rows, methods, unavailable, info)
    return 0


def write_report(args, rows: list[dict], methods: list[str], unavailable: dict, info: dict) -> None:
    """Summary table (mean over pairs) + per-pair rows, JSON and markdown in ``benchmarks/results``."""
    keys = ["seconds", "cpu_s", "peak_rss_gb", "outputs_mb", "tre_mean_mm", "tre_p95_mm", "fold_pct_grid"]
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        if ok:
            summary[method] = {"pairs": len(ok)} | {
                k: float(np.mean([r[k] for r in ok])) for k in keys if k in ok[0]
            }
    columns = ["method", "pairs", *keys]
    table = common.markdown_table([{"method": m, **s} for m, s in summary.items()], columns)
    info = {**info, "load_average_after": list(os.getloadavg())}
    header = (
        f"Full-size brain dev benchmark: {len({r['pair'] for r in rows})} pairs "
        f"({', '.join('/'.join(p) for p in CONTRAST_PAIRS)} x seeds {args.seeds}), {SIZE_IJK} at 1 mm, "
        f"threads {args.threads}, load at start {info['load_average_1_5_15']}, after "
        f"{[round(x, 2) for x in info['load_average_after']]}. Peers ran with preset {args.preset} for ours."
    )
    failed = [f"Failed {r['method']} on {r['pair']}: {r['status']}" for r in rows if r["status"] != "ok"]
    per_pair = common.markdown_table([r for r in rows if r["status"] == "ok"], ["pair", *columns[:1], *keys])
    markdown = "\n".join([header, *failed, "", table, "", "Per pair:", "", per_pair])
    print("\n" + markdown)
    payload = {"benchmark": "fullsize_brain", "args": vars(args), "machine": info, "summary": summary}
    payload |= {"skipped_methods": unavailable, "rows": rows}
    for path in common.write_results(args.name, payload, markdown):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
