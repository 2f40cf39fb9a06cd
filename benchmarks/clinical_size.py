"""Clinical-size inputs: time and peak memory of the whole ``vmgga register`` command against voxel count.

* ``ct``: the phantom CT (``ct-mr-head/phantom_ct_1mm.nii.gz``, HU) resampled to 512x512x320 at
  0.5x0.5x0.8 mm (84 M voxels, a clinical head CT) registered to the 256^3 T1 MRI
  (``mr_t1_freesurfer.nii.gz``) as the moving image; target <= 20 s and <= 4 GB with ``fast``.
* ``curve``: the same CT at 3-4 sizes (voxel count from 2 M to 84 M), same MR, so that one can see
  how time and memory grow; written as a table, JSON and a PNG plot.

The two scans are different objects, so this measures cost only (no accuracy).

    python benchmarks/clinical_size.py --threads 2 --sizes 128 256 384 512
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

from benchmarks import common
from benchmarks.command_timing import load_average, run_register

DATASET = "ct-mr-head"
CT_FILE, MR_FILE = "phantom_ct_1mm.nii.gz", "mr_t1_freesurfer.nii.gz"
#: in-plane size -> (size_ijk, spacing_mm): the slice count keeps the 256 mm x 256 mm x 256 mm field of view
CLINICAL_IN_PLANE = 512
CLINICAL_SLICES = 320


def ct_geometry(in_plane: int) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Grid of a CT with ``in_plane`` x ``in_plane`` pixels over 256 mm and 0.8 mm slices scaled alike."""
    spacing = 256.0 / in_plane
    slices = round(CLINICAL_SLICES * in_plane / CLINICAL_IN_PLANE)
    return (in_plane, in_plane, slices), (spacing, spacing, 0.8 * CLINICAL_IN_PLANE / in_plane)


def resampled_ct(ct: sitk.Image, in_plane: int) -> sitk.Image:
    """``ct`` (HU) on a grid of :func:`ct_geometry` centred on it, int16 like a scanner's output."""
    size, spacing = ct_geometry(in_plane)
    centre = np.asarray(ct.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in ct.GetSize()]))
    reference = sitk.Image(list(size), sitk.sitkInt16)
    reference.SetSpacing(spacing)
    reference.SetDirection(ct.GetDirection())
    half = np.asarray(ct.GetDirection()).reshape(3, 3) @ ((np.asarray(size) - 1) * np.asarray(spacing) / 2)
    reference.SetOrigin(tuple(centre - half))
    return sitk.Resample(ct, reference, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkInt16)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[128, 256, 384, 512], help="CT in-plane sizes"
    )
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="vmgga register --device")
    parser.add_argument("--name", default="clinical_size")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = common.skip_if_missing(DATASET, [CT_FILE, MR_FILE])
    info = common.machine_info(args.threads)
    ct = sitk.ReadImage(str(folder / CT_FILE), sitk.sitkFloat32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vmgga_clinical_") as tmp_name:
        tmp = Path(tmp_name)
        for in_plane in args.sizes:
            fixed_path = tmp / f"ct_{in_plane}.nii.gz"
            fixed = resampled_ct(ct, in_plane)
            sitk.WriteImage(fixed, str(fixed_path))
            load = load_average()
            run = run_register(
                fixed_path,
                folder / MR_FILE,
                tmp / f"out_{in_plane}",
                ["--preset", args.preset, "--threads", str(args.threads), "--device", args.device],
            )
            row = {
                "ct_size": "x".join(map(str, fixed.GetSize())),
                "voxels_m": float(np.prod(fixed.GetSize())) / 1e6,
                "spacing_mm": "x".join(f"{s:.2f}" for s in fixed.GetSpacing()),
                "status": "ok" if run.returncode == 0 else f"failed: {run.stderr_tail[-300:]}",
                "seconds": run.seconds,
                "cpu_s": run.cpu_seconds,
                "peak_rss_gb": run.peak_rss_mb / 1024,
                "outputs_mb": sum(run.output_mb.values()),
                "load_before": load[0],
                "timings_s": run.timings_s,
            }
            rows.append(row)
            print(row, flush=True)
    write_report(args, rows, info)
    return 0


def write_report(args, rows: list[dict], info: dict) -> None:
    """Table + JSON (+ PNG plot) in ``benchmarks/results``."""
    for row in rows:
        timings = row.get("timings_s") or {}
        row["stages"] = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if isinstance(v, float))
    columns = [
        "ct_size",
        "voxels_m",
        "spacing_mm",
        "seconds",
        "cpu_s",
        "peak_rss_gb",
        "outputs_mb",
        "load_before",
        "stages",
    ]
    header = (
        f"Clinical-size CT (phantom CT resampled, int16 HU) -> 256^3 T1 MR, `vmgga register --preset {args.preset} "
        f"--threads {args.threads} --device {args.device}`, whole command. cpu_count {info['cpu_count']}, load at start "
        f"{info['load_average_1_5_15']}, after {[round(x, 2) for x in os.getloadavg()]}."
    )
    failed = [f"Failed at {r['ct_size']}: {r['status']}" for r in rows if r["status"] != "ok"]
    markdown = "\n".join([header, *failed, "", common.markdown_table(rows, columns)])
    print("\n" + markdown)
    payload = {"benchmark": "clinical_size", "args": vars(args), "machine": info, "rows": rows}
    for path in common.write_results(args.name, payload, markdown):
        print(f"wrote {path}")
    _plot([r for r in rows if r["status"] == "ok"], common.RESULTS_DIR / f"{args.name}.png")


def _plot(rows: list[dict], path: Path) -> None:
    """Seconds and peak GB against millions of voxels."""
    if len(rows) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    voxels = [r["voxels_m"] for r in rows]
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=100)
    axis.plot(voxels, [r["seconds"] for r in rows], "o-", color="tab:blue", label="seconds")
    axis.set_xlabel("fixed CT voxels (millions)")
    axis.set_ylabel("seconds (whole command)", color="tab:blue")
    memory = axis.twinx()
    memory.plot(voxels, [r["peak_rss_gb"] for r in rows], "s--", color="tab:red", label="peak RSS")
    memory.set_ylabel("peak RSS (GB)", color="tab:red")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
