"""Output files before and after issue 12, on one registration: sizes, CPU seconds to make and write them.

Runs ``vmgga.register`` once (``fast``), then writes its outputs twice:

* ``before``: the former files: the dense field as a float64 ``DisplacementFieldTransform`` on the
  working grid (the spline evaluated at every working voxel), the warped image and the confidence
  as float32 NIfTI (SimpleITK's gzip), both resampled with ``sitk.Resample`` through that transform;
* ``after``: what ``write_outputs`` writes now (B-spline transform, int16/uint8 images with
  ``scl_slope``), the warped image from the torch resampler.

CPU seconds (``time.process_time``) are less sensitive to other jobs than wall seconds on a shared
machine; both are reported with the load average. The written transforms are read back with
SimpleITK and compared at every working voxel.

    python benchmarks/output_size.py FIXED MOVING --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common

COLUMNS = ["outputs", "transform.h5_mb", "warped.nii.gz_mb", "confidence.nii.gz_mb", "total_mb"]
COLUMNS += ["make_wall_s", "make_cpu_s", "write_wall_s", "write_cpu_s"]


def _clock(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def before_files(result, out: Path) -> dict:
    """The former outputs of ``result``: float64 working-grid field, float32 images."""
    field = result.displacement_lps_mm  # working grid, LPS mm
    transform = sitk.CompositeTransform(
        [
            result.transform.GetNthTransform(0),
            sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64)),
        ]
    )
    background = float(np.min(sitk.GetArrayViewFromImage(result.moving)))

    def make():
        warped = sitk.Resample(
            result.moving, result.fixed, transform, sitk.sitkLinear, background, sitk.sitkFloat32
        )
        before = sitk.Resample(
            result.moving,
            result.fixed,
            transform.GetNthTransform(0),
            sitk.sitkLinear,
            background,
            sitk.sitkFloat32,
        )
        return warped, before

    (warped, _), make_wall, make_cpu = _clock(make)

    def write():
        sitk.WriteTransform(transform, str(out / "transform.h5"))
        sitk.WriteImage(warped, str(out / "warped.nii.gz"), True)
        sitk.WriteImage(result.confidence, str(out / "confidence.nii.gz"), True)

    _, write_wall, write_cpu = _clock(write)
    return {
        "make_wall_s": make_wall,
        "make_cpu_s": make_cpu,
        "write_wall_s": write_wall,
        "write_cpu_s": write_cpu,
    }


def after_files(result, out: Path) -> dict:
    from vmgga.export.outputs import write_registration_outputs

    _, write_wall, write_cpu = _clock(write_registration_outputs, result, out)
    # the resampling itself ran inside register(): its "export" stage (wall seconds)
    made = result.report["timings_s"]["export"]
    return {
        "make_wall_s": made,
        "make_cpu_s": float("nan"),
        "write_wall_s": write_wall,
        "write_cpu_s": write_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixed")
    parser.add_argument("moving")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="output_size")
    args = parser.parse_args(argv)
    from vmgga import register
    from vmgga.config import make_config

    common.set_threads(args.threads)
    load = [round(x, 2) for x in os.getloadavg()]
    result = register(args.fixed, args.moving, make_config("fast", num_threads=args.threads), progress=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vmgga_outputs_") as tmp_name:
        for label, writer in (("before", before_files), ("after", after_files)):
            out = Path(tmp_name) / label
            out.mkdir()
            row = {"outputs": label, **writer(result, out)}
            row |= {
                f"{p.name}_mb": p.stat().st_size / 1e6
                for p in sorted(out.glob("*.*"))
                if p.name != "report.json"
            }
            row["total_mb"] = sum(v for k, v in row.items() if k.endswith("_mb"))
            rows.append(row)
        grid = result.displacement_lps_mm
        readback = [
            sitk.ReadTransform(str(Path(tmp_name) / label / "transform.h5")) for label in ("before", "after")
        ]
        disp = [common.displacement_lps_mm(t, grid) for t in readback]
    deviation = np.linalg.norm(disp[1] - disp[0], axis=-1)
    markdown = "\n".join(
        [
            f"Outputs of `vmgga register --preset fast` on {Path(args.fixed).name}: fixed grid {result.fixed.GetSize()}, "
            f"working grid {grid.GetSize()}; load average at start {load}, after {[round(x, 2) for x in os.getloadavg()]}.",
            f"Read back with SimpleITK at every working voxel, the two transform files differ by at most "
            f"{deviation.max():.2e} mm (float32 working-grid copy of the same spline).",
            "",
            common.markdown_table(rows, COLUMNS),
        ]
    )
    print(markdown)
    payload = {
        "benchmark": "output_size",
        "args": vars(args),
        "rows": rows,
        "max_transform_difference_mm": float(deviation.max()),
    }
    for path in common.write_results(args.name, payload, markdown):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
