"""Tune/benchmark the dense stage alone on known B-spline deformations of the stroke T1.

For each seed, a random B-spline (control points ~40 mm apart, per-axis std 3.5 mm, giving a mean
displacement of about 2 mm over the brain) warps T1 into the fixed image; T2 and FLAIR (co-registered
with T1) are the moving images, so the true fixed->moving map is the B-spline itself. Both images are
resampled to the preset's isotropic working grid (fixed image's frame), scaled to [0, 1] by robust
percentiles and handed to :func:`vmgga.dense.stage.estimate_dense_field`. The estimated field is
taken back to the fixed grid (LPS mm) and compared with the truth over the brain (warped T1 > 0).

    python benchmarks/tune_dense.py --threads 2 --presets fast accurate --seeds 0 1

Prints a table and writes ``benchmarks/results/tune_dense.json``. Skips cleanly without the data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from vmgga import frames
from vmgga.config import make_config
from vmgga.dense.stage import estimate_dense_field
from vmgga.field.jacobian import jacobian_determinant, jacobian_summary

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mr-stroke-t1-t2-flair"
RESULTS = Path(__file__).resolve().parent / "results" / "tune_dense.json"
CONTROL_SPACING_MM = 40.0  # B-spline control-point spacing
COEFFICIENT_STD_MM = 3.5  # per-axis std of the control-point displacements
PERCENTILES = (0.5, 99.5)  # robust intensity range mapped to [0, 1]


def random_bspline(reference: sitk.Image, seed: int) -> sitk.BSplineTransform:
    """Cubic B-spline over ``reference`` with random control-point displacements (LPS mm)."""
    extent = np.asarray(reference.GetSize()) * np.asarray(reference.GetSpacing())
    mesh = [max(1, round(e / CONTROL_SPACING_MM)) for e in extent]
    transform = sitk.BSplineTransformInitializer(reference, mesh, 3)
    rng = np.random.default_rng(seed)
    transform.SetParameters(rng.normal(0.0, COEFFICIENT_STD_MM, transform.GetNumberOfParameters()).tolist())
    return transform


def displacement_lps_mm(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """``(D, H, W, 3)`` LPS mm displacement of ``transform`` at ``reference``'s voxels."""
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        reference.GetSize(),
        reference.GetOrigin(),
        reference.GetSpacing(),
        reference.GetDirection(),
    )
    return sitk.GetArrayFromImage(field)


def working_reference(fixed: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Isotropic grid in ``fixed``'s frame covering its extent, centred on it."""
    geometry = frames.geometry_of(fixed)
    extent = np.asarray(geometry.size_ijk) * np.asarray(geometry.spacing_mm)
    size = [max(8, math.ceil(e / spacing_mm - 1e-6)) for e in extent]
    centre_ijk = (np.asarray(geometry.size_ijk) - 1.0) / 2.0
    centre = frames.lps_from_ijk(centre_ijk[None], geometry)[0]
    half = geometry.direction_matrix @ (spacing_mm * (np.asarray(size) - 1.0) / 2.0)
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([spacing_mm] * 3)
    reference.SetDirection(fixed.GetDirection())
    reference.SetOrigin((centre - half).tolist())
    return reference


def to_work_tensor(image: sitk.Image, reference: sitk.Image) -> torch.Tensor:
    """Resample onto the working grid, scale robustly to [0, 1]; ``(1, 1, D, H, W)`` float32."""
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled)
    low, high = np.percentile(array, PERCENTILES)
    array = np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0)
    return torch.from_numpy(array.astype(np.float32))[None, None]


def estimate_on_fixed_grid(disp_ijk: torch.Tensor, reference: sitk.Image, fixed: sitk.Image) -> np.ndarray:
    """Working-grid ``disp_ijk`` -> ``(D, H, W, 3)`` LPS mm on the fixed grid (linear)."""
    geometry = frames.geometry_of(reference)
    vectors = frames.disp_lps_from_ijk(disp_ijk[0].numpy(), geometry)
    field = frames.image_from_array(vectors.astype(np.float64), geometry, is_vector=True)
    resampled = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    return sitk.GetArrayFromImage(resampled)


def tre_mm(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean and 95th percentile of ``|estimate - truth|`` over ``mask``."""
    errors = np.linalg.norm(estimate - truth, axis=-1)[mask]
    return float(errors.mean()), float(np.percentile(errors, 95))


def run_case(preset: str, overrides: dict, seed: int, contrast: str, images: dict) -> dict:
    """One registration of ``contrast`` to the seed's warped T1; TRE, folding and seconds."""
    t1 = images["T1"]
    transform = random_bspline(t1, seed)
    fixed = sitk.Resample(t1, t1, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    truth = displacement_lps_mm(transform, fixed)
    mask = sitk.GetArrayFromImage(fixed) > 0
    config = make_config(preset, **overrides)
    reference = working_reference(fixed, config.preprocess.working_spacing_mm)
    fixed_work, moving_work = to_work_tensor(fixed, reference), to_work_tensor(images[contrast], reference)
    start, start_cpu = time.perf_counter(), time.process_time()
    result = estimate_dense_field(fixed_work, moving_work, config.dense)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    estimate = estimate_on_fixed_grid(result.disp_ijk, reference, fixed)
    mean, p95 = tre_mm(estimate, truth, mask)
    identity_mean, _ = tre_mm(np.zeros_like(truth), truth, mask)
    jacobian = jacobian_summary(jacobian_determinant(result.disp_ijk))
    return {
        "preset": preset,
        "seed": seed,
        "moving": contrast,
        "working_shape_dhw": list(fixed_work.shape[2:]),
        "identity_tre_mean_mm": identity_mean,
        "tre_mean_mm": mean,
        "tre_p95_mm": p95,
        "negative_jacobian_fraction": jacobian["negative_fraction"],
        "sd_log_j": jacobian["sd_log_j"],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "timings_s": result.timings_s,
        "confidence_mean": float(result.confidence.mean()),
    }


def parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs (values parsed as JSON where possible) -> dict of config overrides."""
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def summarise(rows: list[dict]) -> list[dict]:
    """Mean over cases, per preset."""
    summary = []
    for preset in dict.fromkeys(row["preset"] for row in rows):
        group = [row for row in rows if row["preset"] == preset]
        keys = [
            "identity_tre_mean_mm",
            "tre_mean_mm",
            "tre_p95_mm",
            "negative_jacobian_fraction",
            "seconds",
            "cpu_seconds",
        ]
        summary.append(
            {
                "preset": preset,
                "cases": len(group),
                **{k: float(np.mean([r[k] for r in group])) for k in keys},
            }
        )
    return summary


def print_table(rows: list[dict]) -> None:
    """One line per row: preset, case, TRE, folding, seconds."""
    print(
        f"{'preset':10} {'case':12} {'id TRE':>7} {'TRE':>6} {'p95':>6} {'neg J %':>8} {'sec':>6} {'cpu s':>6}"
    )
    for row in rows:
        case = f"s{row['seed']}-{row['moving']}" if "moving" in row else f"mean of {row['cases']}"
        print(
            f"{row['preset']:10} {case:12} {row['identity_tre_mean_mm']:7.3f} {row['tre_mean_mm']:6.3f} "
            f"{row['tre_p95_mm']:6.3f} {100 * row['negative_jacobian_fraction']:8.4f} {row['seconds']:6.2f} {row['cpu_seconds']:6.2f}"
        )


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast", "accurate"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--moving", nargs="+", default=["T2", "FLAIR"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set", nargs="*", default=[], help="config overrides, e.g. dense.instance.iterations=40"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not all((DATA / f"{name}.nii.gz").exists() for name in ["T1", *args.moving]):
        print(f"skipped: data not found in {DATA}")
        return 0
    torch.set_num_threads(args.threads)
    images = {n: sitk.ReadImage(str(DATA / f"{n}.nii.gz"), sitk.sitkFloat32) for n in ["T1", *args.moving]}
    overrides = parse_overrides(args.set)
    rows = []
    for preset in args.presets:
        for seed in args.seeds:
            for contrast in args.moving:
                rows.append(run_case(preset, overrides, seed, contrast, images))
                print_table(rows[-1:])
    summary = summarise(rows)
    print_table(rows + summary)
    payload = {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
        "note": "cpu_seconds = process time of estimate_dense_field; wall seconds are inflated "
        "when other jobs share the cores",
        "torch": torch.__version__,
        "overrides": overrides,
        "summary": summary,
        "cases": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"threads={torch.get_num_threads()}  wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
