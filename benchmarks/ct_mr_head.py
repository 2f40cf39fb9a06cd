"""CT <-> MR head across subjects: head and brain Dice of ours, elastix and ANTs, both directions, one run.

Data (``ct-mr-head``): ``scct.nii.gz``, an average head CT (2 mm, not HU: air 0, bone up to ~3800),
with its brain mask = ``scgrey + scwhite > 0.5``; ``mr_t1_freesurfer.nii.gz``, one subject's T1
(256^3, 1 mm) with its FreeSurfer brain mask. Head masks: the image above a threshold (CT > 500,
MR > Otsu), holes filled, largest component.

Two brain definitions: ``brain`` compares the template's grey + white matter with FreeSurfer's
``brainmask`` (skull-stripped: it includes the CSF around the brain, 1318 ml against 934 ml of grey and
white matter in this subject's ``aseg``), so a field that shrinks the template's brain to the subject's
tissue loses ``brain`` Dice. ``tissue`` compares the same template mask with the subject's ``aseg``
labels less the ventricles, CSF and choroid plexus (:data:`ASEG_NOT_TISSUE`): grey and white matter on
both sides. Each also gets the volume ratio warped moving / fixed (1 when the sizes agree).

Directions: ``ct2mr`` (fixed MR, moving CT) and ``mr2ct`` (fixed CT, moving MR). The moving masks are
warped onto the fixed grid through each method's fixed -> moving transform (nearest neighbour) and
compared with the fixed masks.

Methods: ``vmgga-<preset>`` (``vmgga.register`` from the files), ``elastix`` (centre of gravity +
affine + B-spline, Mattes MI, elastix's default maps), ``ants`` (``SyN``: rigid + affine + SyN,
Mattes MI, centre-of-mass start), ``convexadam`` (ConvexAdam MIND-SSC after our affine stage:
it has none of its own), ``identity``; each ``vmgga-<preset>`` run also gives the row of its
affine stage alone (``vmgga-<preset> affine``).

    python benchmarks/ct_mr_head.py --threads 2 --methods identity,vmgga-fast,vmgga-accurate,elastix,ants
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common, peers

DATASET = "ct-mr-head"
FILES = [
    "scct.nii.gz",
    "scgrey.nii.gz",
    "scwhite.nii.gz",
    "mr_t1_freesurfer.nii.gz",
    "mr_t1_freesurfer_brainmask.nii.gz",
    "mr_t1_freesurfer_aseg.nii.gz",
]
DIRECTIONS = ("ct2mr", "mr2ct")
DEFAULT_METHODS = "identity,vmgga-fast,vmgga-accurate,vmgga-inter_patient,elastix,ants"
CT_HEAD_LEVEL = 500.0
#: The template's own units from air (0) to its densest bone, used as its "HU window" with --declare-ct.
TEMPLATE_WINDOW = (0.0, 3800.0)
#: FreeSurfer ``aseg`` labels that are not grey or white matter: lateral, inferior lateral, 3rd and
#: 4th ventricles, CSF, choroid plexus (left and right).
ASEG_NOT_TISSUE = (4, 5, 14, 15, 24, 31, 43, 44, 63)
#: The masks compared, each as Dice and volume ratio.
MASKS = ("head", "brain", "tissue")


def largest_filled(mask: sitk.Image) -> sitk.Image:
    """The largest connected component of a binary mask, holes filled slice by slice and in 3D."""
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    largest = sitk.Cast(components == 1, sitk.sitkUInt8)
    return sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(largest, [3, 3, 3]))


def tissue_mask(aseg: sitk.Image) -> sitk.Image:
    """Grey and white matter of a FreeSurfer ``aseg`` label map: labelled, less :data:`ASEG_NOT_TISSUE`."""
    labels = sitk.GetArrayViewFromImage(aseg)
    mask = sitk.GetImageFromArray(((labels > 0) & ~np.isin(labels, ASEG_NOT_TISSUE)).astype(np.uint8))
    mask.CopyInformation(aseg)
    return mask


def load_case(folder: Path) -> dict[str, dict[str, sitk.Image]]:
    """``{"ct": {"image", "head", "brain", "tissue"}, "mr": {...}}`` (the template's tissue is its brain)."""
    ct = sitk.ReadImage(str(folder / "scct.nii.gz"), sitk.sitkFloat32)
    tissue = sitk.ReadImage(str(folder / "scgrey.nii.gz"), sitk.sitkFloat32) + sitk.ReadImage(
        str(folder / "scwhite.nii.gz"), sitk.sitkFloat32
    )
    mr = sitk.ReadImage(str(folder / "mr_t1_freesurfer.nii.gz"))
    mr_brain = sitk.ReadImage(str(folder / "mr_t1_freesurfer_brainmask.nii.gz")) > 0
    mr_head = largest_filled(sitk.OtsuThreshold(mr, 0, 1))
    ct_brain = sitk.Cast(tissue > 0.5, sitk.sitkUInt8)
    mr_tissue = tissue_mask(sitk.ReadImage(str(folder / "mr_t1_freesurfer_aseg.nii.gz")))
    return {
        "ct": {
            "image": ct,
            "head": largest_filled(ct > CT_HEAD_LEVEL),
            "brain": ct_brain,
            "tissue": ct_brain,
        },
        "mr": {
            "image": mr,
            "head": mr_head,
            "brain": sitk.Cast(mr_brain, sitk.sitkUInt8),
            "tissue": mr_tissue,
        },
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays."""
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")


def evaluate(transform: sitk.Transform, fixed: dict, moving: dict) -> dict[str, float]:
    """Dice and volume ratio (warped / fixed) of each of :data:`MASKS` that both sides have, the
    moving mask warped onto the fixed grid."""
    out = {}
    for name in (name for name in MASKS if name in fixed and name in moving):
        warped = sitk.Resample(moving[name], fixed["image"], transform, sitk.sitkNearestNeighbor, 0)
        warped_mask = sitk.GetArrayViewFromImage(warped) > 0
        fixed_mask = sitk.GetArrayViewFromImage(fixed[name]) > 0
        out[f"{name}_dice"] = dice(warped_mask, fixed_mask)
        out[f"{name}_volume_ratio"] = float(warped_mask.sum() / max(1, fixed_mask.sum()))
    return out


def run_vmgga(
    preset: str, fixed_path: Path, moving_path: Path, out: Path, threads: int, overrides: tuple = ()
) -> tuple[sitk.Transform, float, dict]:
    """Ours from the files (the written transform); the report's timings carry the affine too."""
    from vmgga import register, write_outputs
    from vmgga.config import make_config

    start = time.perf_counter()
    config = make_config(preset, num_threads=threads, **dict(overrides))
    result = register(str(fixed_path), str(moving_path), config, progress=False)
    paths = write_outputs(result, out)
    seconds = time.perf_counter() - start
    timings = {**result.report["timings_s"], "affine_transform": result.transform.GetNthTransform(0)}
    return sitk.ReadTransform(str(paths["transform"])), seconds, timings


def run_elastix(
    fixed_path: Path, moving_path: Path, out: Path, threads: int
) -> tuple[sitk.Transform, float, dict]:
    """elastix: centre of gravity, then affine, then B-spline (default maps, Mattes MI)."""
    import itk

    start = time.perf_counter()
    fixed, moving = itk.imread(str(fixed_path), itk.F), itk.imread(str(moving_path), itk.F)
    parameters = itk.ParameterObject.New()
    affine = parameters.GetDefaultParameterMap("affine")
    affine["AutomaticTransformInitialization"] = ["true"]
    affine["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
    parameters.AddParameterMap(affine)
    parameters.AddParameterMap(parameters.GetDefaultParameterMap("bspline"))
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
    method = itk.ElastixRegistrationMethod.New(fixed, moving)
    method.SetParameterObject(parameters)
    method.SetLogToConsole(False)
    method.UpdateLargestPossibleRegion()
    field = itk.transformix_deformation_field(moving, method.GetTransformParameterObject())
    path = out / "elastix_displacement_lps_mm.nii.gz"
    out.mkdir(parents=True, exist_ok=True)
    itk.imwrite(field, str(path))
    seconds = time.perf_counter() - start
    disp = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(disp), seconds, {}


def run_ants(
    fixed_path: Path, moving_path: Path, out: Path, threads: int
) -> tuple[sitk.Transform, float, dict]:
    """ANTs ``SyN`` (rigid + affine + SyN, Mattes MI for the linear stages and SyN), centre-of-mass start."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    out.mkdir(parents=True, exist_ok=True)
    transform, seconds, _ = peers.ants_registration(fixed_path, moving_path, out / "ants_", "SyN")
    return transform, seconds, {}


def run_convexadam_after_our_affine(
    fixed_path: Path, moving_path: Path, out: Path, threads: int, overrides: tuple = ()
) -> tuple[sitk.Transform, float, dict]:
    """ConvexAdam (MIND-SSC, default settings) as the deformable stage after our affine stage.

    ConvexAdam has no affine stage and needs both images on one grid: the moving image is resampled
    onto the fixed grid through the affine of ``vmgga-fast`` (its own run, with the same overrides;
    its time is not counted). The result is ``affine(p + u(p))``.
    """
    affine = run_vmgga("fast", fixed_path, moving_path, out / "affine", threads, overrides)[2][
        "affine_transform"
    ]
    fixed = sitk.ReadImage(str(fixed_path), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(moving_path), sitk.sitkFloat32)
    background = float(np.min(sitk.GetArrayViewFromImage(moving)))
    out.mkdir(parents=True, exist_ok=True)
    fixed_file, moving_file = out / "fixed.nii.gz", out / "moving_affine.nii.gz"
    sitk.WriteImage(fixed, str(fixed_file))
    sitk.WriteImage(sitk.Resample(moving, fixed, affine, sitk.sitkLinear, background), str(moving_file))
    result = peers.run_convexadam(fixed_file, moving_file, out, peers.PeerOptions(threads=threads))
    return sitk.CompositeTransform([affine, result.transform]), result.seconds, {}


def run(method: str, fixed_path: Path, moving_path: Path, out: Path, threads: int, overrides: tuple = ()):
    if method == "identity":
        return sitk.Transform(3, sitk.sitkIdentity), 0.0, {}
    if method == "convexadam":
        return run_convexadam_after_our_affine(fixed_path, moving_path, out, threads, overrides)
    if method.startswith("vmgga-"):
        return run_vmgga(method.removeprefix("vmgga-"), fixed_path, moving_path, out, threads, overrides)
    return {"elastix": run_elastix, "ants": run_ants}[method](fixed_path, moving_path, out, threads)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=DIRECTIONS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="ct_mr_head")
    parser.add_argument("--set", action="append", default=[], help="dotted override of the vmgga-* methods")
    parser.add_argument(
        "--declare-ct",
        action="store_true",
        help="tell ours that the template is a CT (modality ct, its own units 0..3800 as the CT window), "
        "as a user with a non-HU CT would; without it the template (no air below 0) is detected as MR",
    )
    return parser.parse_args(argv)


def declared_ct(direction: str) -> list[tuple[str, object]]:
    """Overrides that declare the template a CT in ``direction`` (``ct2mr``: moving; ``mr2ct``: fixed)."""
    role = "moving" if direction.startswith("ct") else "fixed"
    return [(f"preprocess.{role}_modality", "ct"), ("preprocess.ct_window_hu", TEMPLATE_WINDOW)]


def run_methods(
    case: dict,
    paths: dict[str, Path],
    args: argparse.Namespace,
    work: Path,
    overrides_for: Callable[[str], list],
    describe: Callable[[Path], dict] | None = None,
) -> list[dict]:
    """Every method of ``args.methods`` in every direction of ``args.directions``: one row each with
    :func:`evaluate`'s measures, plus the row of ours' affine stage alone; a failing method does not
    stop the others. ``overrides_for(direction)`` gives the overrides of ours; ``describe(out)`` adds
    fields read from a method's output folder."""
    rows = []
    for direction in args.directions:
        moving_key, fixed_key = direction.split("2")
        for method in args.methods.split(","):
            row = {"direction": direction, "method": method, "load_before": round(os.getloadavg()[0], 2)}
            out = work / direction / method
            affine = None
            try:
                transform, seconds, timings = run(
                    method, paths[fixed_key], paths[moving_key], out, args.threads, overrides_for(direction)
                )
                affine = timings.pop("affine_transform", None)
                row |= {"status": "ok", "seconds": seconds, "timings_s": timings}
                row |= describe(out) if describe else {}
                row |= evaluate(transform, case[fixed_key], case[moving_key])
            except Exception as error:  # one failing method must not stop the others
                row |= {"status": f"failed: {error!r}"[:300]}
            rows.append(row)
            print(row, flush=True)
            if affine is not None:
                dice_affine = evaluate(affine, case[fixed_key], case[moving_key])
                rows.append(
                    {"direction": direction, "method": f"{method} affine", "status": "ok", **dice_affine}
                )
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = common.skip_if_missing(DATASET, FILES)
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    case = load_case(folder)
    paths = {"ct": folder / "scct.nii.gz", "mr": folder / "mr_t1_freesurfer.nii.gz"}
    overrides = peers.parse_overrides(args.set)
    with tempfile.TemporaryDirectory(prefix="vmgga_ctmr_") as tmp_name:
        rows = run_methods(
            case,
            paths,
            args,
            Path(tmp_name),
            lambda direction: [*overrides, *(declared_ct(direction) if args.declare_ct else [])],
        )
    write_report(args, rows, info)
    return 0


def write_report(args, rows: list[dict], info: dict) -> None:
    columns = [
        "direction",
        "method",
        "head_dice",
        "brain_dice",
        "tissue_dice",
        "brain_volume_ratio",
        "tissue_volume_ratio",
        "seconds",
        "load_before",
    ]
    header = (
        f"CT <-> MR head across subjects (scct template vs FreeSurfer T1), threads {args.threads}, "
        f"cpu_count {info['cpu_count']}, load at start {info['load_average_1_5_15']}, after "
        f"{[round(x, 2) for x in os.getloadavg()]}. Dice of moving masks warped onto the fixed grid "
        "(brain: template grey + white vs FreeSurfer brainmask, CSF included; tissue: vs aseg grey + "
        "white; volume ratio: warped / fixed). "
        f"Template declared a CT to ours (--declare-ct): {args.declare_ct}."
    )
    write_rows("ct_mr_head", args, rows, info, header, columns)


def write_rows(benchmark: str, args, rows: list[dict], info: dict, header: str, columns: list[str]) -> None:
    """The rows as a table under ``header`` (failed ones listed above it), printed and written to
    ``results/<args.name>.{md,json}``."""
    failed = [f"Failed {r['method']} {r['direction']}: {r['status']}" for r in rows if r["status"] != "ok"]
    table = common.markdown_table([r for r in rows if r["status"] == "ok"], columns)
    markdown = "\n".join([header, *failed, "", table])
    print("\n" + markdown)
    payload = {"benchmark": benchmark, "args": vars(args), "machine": info, "rows": rows}
    for path in common.write_results(args.name, payload, markdown):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
