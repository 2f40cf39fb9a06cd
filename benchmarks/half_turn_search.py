"""The affine stage's half-turn search (``affine.half_turn_search``) on every shared pair: the start it
keeps and the final Mattes MI of each start.

A pair scanned upright must keep the unturned start; the MRI-DIR phantom, scanned turned 180 degrees
about the anterior-posterior axis between its CT and its MR (judged on the QC page, `README.md`,
session 8), must keep the half turn about y. Pairs: the phantom (both ways), the CT template against
the FreeSurfer T1 (declared a CT, its units 0..3800 as the window), the abdominal CT and MR, the
stroke T2 and FLAIR against T1. The images are normalised as ``register()`` does and the affine stage
runs alone, on one thread.

    python benchmarks/half_turn_search.py --name half_turn_search
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import SimpleITK as sitk

from benchmarks import common

#: (name, fixed (folder, file), moving (folder, file), declared CT window of the fixed / moving or None)
PAIRS = [
    ("phantom, fixed MR", ("ct-mr-head", "phantom_mr_t2.nii.gz"), ("ct-mr-head", "phantom_ct_1mm.nii.gz"), None, None),
    ("phantom, fixed CT", ("ct-mr-head", "phantom_ct_1mm.nii.gz"), ("ct-mr-head", "phantom_mr_t2.nii.gz"), None, None),
    ("CT template -> T1", ("ct-mr-head", "mr_t1_freesurfer.nii.gz"), ("ct-mr-head", "scct.nii.gz"), None, (0.0, 3800.0)),
    ("T1 -> CT template", ("ct-mr-head", "scct.nii.gz"), ("ct-mr-head", "mr_t1_freesurfer.nii.gz"), (0.0, 3800.0), None),
    ("abdomen MR -> CT", ("abdomen-ct-mr-totalseg", "example_ct_sm.nii.gz"), ("abdomen-ct-mr-totalseg", "example_mr_sm.nii.gz"), None, None),
    ("abdomen CT -> MR", ("abdomen-ct-mr-totalseg", "example_mr_sm.nii.gz"), ("abdomen-ct-mr-totalseg", "example_ct_sm.nii.gz"), None, None),
    ("stroke T2 -> T1", ("mr-stroke-t1-t2-flair", "T1.nii.gz"), ("mr-stroke-t1-t2-flair", "T2.nii.gz"), None, None),
    ("stroke FLAIR -> T1", ("mr-stroke-t1-t2-flair", "T1.nii.gz"), ("mr-stroke-t1-t2-flair", "FLAIR.nii.gz"), None, None),
]  # fmt: skip
COLUMNS = ["pair", "start_kept", "mi_none", "mi_x", "mi_y", "mi_z", "seconds"]


def normalised(path: Path, ct_window: tuple[float, float] | None) -> sitk.Image:
    """``path`` scaled to 0..1 as ``register()`` does: a declared CT with its window, else detected."""
    from vmgga.config import PreprocessConfig
    from vmgga.preprocess.intensity import detect_modality, normalise_intensity

    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(image)
    config = PreprocessConfig() if ct_window is None else PreprocessConfig(ct_window_hu=ct_window)
    modality = detect_modality(values, "ct" if ct_window is not None else "auto")
    out = sitk.GetImageFromArray(normalise_intensity(values, modality, config))
    out.CopyInformation(image)
    return out


def run_pair(fixed: sitk.Image, moving: sitk.Image) -> dict:
    """The search on one pair: the start kept, each start's final MI (None: no overlap), seconds."""
    from vmgga.affine.mattes import HALF_TURNS, estimate_affine
    from vmgga.config import AffineConfig

    start = time.perf_counter()
    result = estimate_affine(fixed, moving, dataclasses.replace(AffineConfig(), half_turn_search=True))
    row = {"start_kept": result.start_turn, "seconds": time.perf_counter() - start}
    return row | {f"mi_{name}": result.metric_by_start.get(name) for name in HALF_TURNS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="half_turn_search", help="results file name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed: dict[str, list[str]] = {}
    for _, fixed, moving, _, _ in PAIRS:
        for folder, name in (fixed, moving):
            needed.setdefault(folder, []).append(name)
    for folder, names in needed.items():
        common.skip_if_missing(folder, names)
    common.set_threads(1)
    info = common.machine_info(1)
    rows = []
    for label, fixed, moving, fixed_window, moving_window in PAIRS:
        images = [
            normalised(common.data_root() / f / n, w)
            for (f, n), w in ((fixed, fixed_window), (moving, moving_window))
        ]
        rows.append({"pair": label, **run_pair(*images)})
        print(rows[-1], flush=True)
    header = (
        f"Half-turn search of the affine stage (final Mattes MI per start; '-': the turned images stopped "
        f"overlapping), one thread, load at start {info['load_average_1_5_15'][0]:.2f}."
    )
    markdown = header + "\n\n" + common.markdown_table(rows, COLUMNS)
    print(markdown)
    for path in common.write_results(args.name, {"machine": info, "rows": rows}, markdown):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
