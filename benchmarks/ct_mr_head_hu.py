"""CT <-> MR head across subjects with a CT in HU: head and brain Dice of ours and the peers, both directions.

Why: the other CT <-> MR head pair (``ct_mr_head.py``) uses an average CT template that is not in
HU (smooth, air 0). This pair's CT has a scanner's HU scale, grid and noise, so that our CT handling
(the HU window, auto-detection of the modality, MIND features) is measured on values like a real
head CT's.

Honesty first: the CT here is **synthetic**, made from an MR, not a scanner's CT. Subject A
(``head-mr-with-skull-masks``: ``MR.nii.gz``, a T1-like head MR, with ``Brain.nrrd`` and ``Skull.nrrd``;
MIT licence) is turned into HU by tissue: air -1000 outside the head; skull +700 (bright marrow in
T1) to +1500 HU (cortical bone, dark in T1); brain by a non-monotone map of the T1 (CSF ~8, grey
matter ~37, white matter ~27 HU, while the T1 orders white > grey > CSF); scalp and muscle ~40 HU,
fat (bright in T1) ~-100 HU, dark extra-cranial voxels (sinuses, ear canals) air. It is then blurred
slightly, resampled onto a clinical head-CT grid (256 x 256 x 108 at 0.96 x 0.96 x 1.5 mm, axial),
given Gaussian noise (sigma 5 HU) and stored as int16. What it lacks: beam hardening, streaks, the
facial and skull-base bones outside the ``Skull`` mask (dark in T1, they become air or soft tissue),
a real CT's partial-volume profile. The masks' headers (not their voxel order) place them on the MR:
they are resampled onto it in physical space.

Subject B: ``ct-mr-head/mr_t1_freesurfer.nii.gz`` (256^3, 1 mm) with its FreeSurfer brain mask.
Head masks: B's T1 above Otsu, A's CT above -500 HU (holes filled, largest component).

Directions: ``ct2mr`` (fixed B's T1, moving A's CT) and ``mr2ct``. The moving masks are warped onto
the fixed grid through each method's fixed -> moving transform (nearest neighbour) and compared with
the fixed masks: head Dice, brain Dice (A's ``Brain`` vs B's FreeSurfer mask), seconds. Ours is not
told which image is the CT: the report's detected modalities are listed per run (``modalities``).
Methods and their settings are those of ``ct_mr_head.py``.

    python benchmarks/ct_mr_head_hu.py --threads 1 \\
        --methods identity,vmgga-fast,vmgga-accurate,elastix,ants,convexadam --name ct_mr_head_hu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from benchmarks import common, peers
from benchmarks.ct_mr_head import DIRECTIONS, largest_filled, run_methods, write_rows

DATASET_A = "head-mr-with-skull-masks"
FILES_A = ["MR.nii.gz", "Brain.nrrd", "Skull.nrrd"]
DATASET_B = "ct-mr-head"
FILES_B = ["mr_t1_freesurfer.nii.gz", "mr_t1_freesurfer_brainmask.nii.gz"]
DEFAULT_METHODS = "identity,vmgga-fast,vmgga-accurate,elastix,ants,convexadam"

# --- HU of the tissues (typical non-contrast head CT values) ----------------------------------
AIR_HU = -1000.0  # outside the head, sinuses
CSF_HU = 8.0  # ventricles and sulci
GREY_HU = 37.0  # grey matter: denser than white matter in CT (the reverse of T1's order)
WHITE_HU = 27.0  # white matter
MUSCLE_HU = 40.0  # scalp, muscle
FAT_HU = -100.0  # subcutaneous fat (bright in T1)
CORTICAL_BONE_HU = 1500.0  # compact bone (no signal in T1)
MARROW_HU = 700.0  # diploe / marrow (fatty, brighter in T1)
#: Voxels of the head outside brain and skull darker than this fraction of the white-matter T1
#: level hold no tissue signal: air (sinuses, ear canals); above it they ramp up to soft tissue.
AIR_T1_FRACTION = 0.1
#: Head voxels within this many voxels (6-connected steps, not through the skull) of the brain mask
#: are intracranial (CSF, dura: dark in T1): they take the brain's map, not the soft tissue's.
INTRACRANIAL_STEPS = 6
#: Head voxels outside the intracranial region, darker in T1 than the CSF level and within this many
#: voxels of the skull mask are bone too: the ``Skull`` mask is approximate and misses parts of the
#: vault and skull base, which T1 shows as dark (frontal sinus and mastoid air there become bone).
BONE_REACH_STEPS = 8
#: Fat's T1 level as a multiple of white matter's (subcutaneous fat is brighter than WM in T1).
FAT_T1_OVER_WHITE = 1.3

# --- the scanner-like finish -------------------------------------------------------------------
BLUR_SIGMA_MM = 0.6  # a soft reconstruction kernel: slight Gaussian blur before resampling
NOISE_SD_HU = 5.0  # quantum noise, Gaussian, per CT voxel
CT_SIZE = (256, 256, 108)  # i, j, k (axial slices)
CT_SPACING_MM = (0.96, 0.96, 1.5)
HEAD_LEVEL_HU = -500.0  # head mask of the CT: above this, holes filled, largest component
NOISE_SEED = 7


def tissue_levels(t1_brain: np.ndarray, iterations: int = 30) -> tuple[float, float, float]:
    """T1 levels ``(csf, grey, white)`` of the brain: 1D 3-means of the T1 values inside the brain.

    Started at the 10th, 50th and 90th percentiles; returned in increasing order (T1: CSF < GM < WM).
    """
    values = np.asarray(t1_brain, dtype=np.float64).ravel()
    centres = np.percentile(values, [10.0, 50.0, 90.0])
    for _ in range(iterations):
        nearest = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        centres = np.array(
            [values[nearest == c].mean() if np.any(nearest == c) else centres[c] for c in range(3)]
        )
    csf, grey, white = np.sort(centres)
    return float(csf), float(grey), float(white)


def brain_hu(t1: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    """HU of brain voxels: piecewise linear through (CSF, 8), (GM, 37), (WM, 27) in T1, flat beyond.

    Non-monotone: GM is the densest in CT while WM is the brightest in T1.
    """
    return np.interp(t1, levels, (CSF_HU, GREY_HU, WHITE_HU))


def skull_hu(t1: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    """HU of skull voxels: cortical bone (T1 at or below the CSF level) 1500, falling linearly to
    marrow (T1 at or above the WM level) 700."""
    csf, _, white = levels
    return np.interp(t1, (csf, white), (CORTICAL_BONE_HU, MARROW_HU))


def soft_tissue_hu(t1: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    """HU of head voxels outside brain and skull: air when darker than ``AIR_T1_FRACTION`` of WM,
    rising to muscle (40) at the CSF level, muscle up to the GM level, then down to fat (-100) at
    ``FAT_T1_OVER_WHITE`` times the WM level."""
    csf, grey, white = levels
    points = (AIR_T1_FRACTION * white, csf, grey, FAT_T1_OVER_WHITE * white)
    return np.interp(t1, points, (AIR_HU, MUSCLE_HU, MUSCLE_HU, FAT_HU))


def intracranial(brain: np.ndarray, skull: np.ndarray, steps: int = INTRACRANIAL_STEPS) -> np.ndarray:
    """The brain mask grown by ``steps`` 6-connected steps that never enter the skull, minus the skull:
    the brain with the CSF and dura around it (which the brain masks often leave out)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    return ndimage.binary_dilation(brain & ~skull, cross, iterations=steps, mask=~skull)


def bone(t1: np.ndarray, head: np.ndarray, inner: np.ndarray, skull: np.ndarray, csf_t1: float) -> np.ndarray:
    """The skull mask plus the dark (T1 below ``csf_t1``) head voxels outside ``inner`` within
    ``BONE_REACH_STEPS`` voxels of it."""
    from scipy import ndimage

    near = ndimage.binary_dilation(
        skull, ndimage.generate_binary_structure(3, 3), iterations=BONE_REACH_STEPS
    )
    return skull | (near & head & ~inner & (t1 < csf_t1))


def synthetic_hu(t1: np.ndarray, head: np.ndarray, brain: np.ndarray, skull: np.ndarray) -> np.ndarray:
    """HU (float32) on the T1's grid from the T1 and boolean head, brain and skull masks.

    Air outside ``head``; the brain's map in :func:`intracranial`; the skull's in :func:`bone` (it wins
    where the skull and brain masks overlap: the bone ring stays closed); soft tissue elsewhere in the
    head. The tissue levels are those of the T1 inside the brain (:func:`tissue_levels`).
    """
    t1 = np.asarray(t1, dtype=np.float64)
    levels = tissue_levels(t1[brain & ~skull])
    hu = np.full(t1.shape, AIR_HU)
    inner = intracranial(brain, skull) & head
    bony = bone(t1, head, inner, skull, levels[0])
    soft = head & ~inner & ~bony
    hu[soft] = soft_tissue_hu(t1[soft], levels)
    hu[inner] = brain_hu(t1[inner], levels)
    hu[bony] = skull_hu(t1[bony], levels)
    return hu.astype(np.float32)


def clinical_grid(reference: sitk.Image) -> sitk.Image:
    """An empty axial head-CT grid (``CT_SIZE`` at ``CT_SPACING_MM``, identity direction) centred on
    ``reference``'s physical centre."""
    centre = np.array(
        reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in reference.GetSize()])
    )
    extent = (np.array(CT_SIZE) - 1) * np.array(CT_SPACING_MM)
    grid = sitk.Image(list(CT_SIZE), sitk.sitkInt16)
    grid.SetSpacing(CT_SPACING_MM)
    grid.SetOrigin((centre - extent / 2.0).tolist())
    return grid


def scanner_finish(hu: sitk.Image, grid: sitk.Image, seed: int = NOISE_SEED) -> sitk.Image:
    """``hu`` blurred (``BLUR_SIGMA_MM``), resampled onto ``grid`` (linear, air outside), with Gaussian
    noise (``NOISE_SD_HU``), rounded to int16 within the 12-bit CT range [-1024, 3071]."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(hu, sitk.sitkFloat32), BLUR_SIGMA_MM)
    resampled = sitk.Resample(smooth, grid, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(resampled)
    values += np.random.default_rng(seed).normal(0.0, NOISE_SD_HU, values.shape).astype(np.float32)
    out = sitk.GetImageFromArray(np.clip(np.rint(values), -1024, 3071).astype(np.int16))
    out.CopyInformation(grid)
    return out


def synthetic_ct_case(folder: Path) -> dict[str, sitk.Image]:
    """Subject A as a CT: ``{"image": int16 HU on the clinical grid, "head", "brain"}`` (masks on that grid)."""
    mr = sitk.ReadImage(str(folder / "MR.nii.gz"), sitk.sitkFloat32)

    def on_mr(name: str) -> sitk.Image:  # the masks' headers place them on the MR (flipped voxel order)
        mask = sitk.ReadImage(str(folder / name), sitk.sitkUInt8)
        return sitk.Resample(mask, mr, sitk.Transform(), sitk.sitkNearestNeighbor, 0)

    brain, skull = on_mr("Brain.nrrd"), on_mr("Skull.nrrd")
    head = largest_filled(sitk.Cast(sitk.OtsuThreshold(mr, 0, 1) | brain | skull, sitk.sitkUInt8))
    arrays = [sitk.GetArrayViewFromImage(m) > 0 for m in (head, brain, skull)]
    hu = sitk.GetImageFromArray(synthetic_hu(sitk.GetArrayViewFromImage(mr), *arrays))
    hu.CopyInformation(mr)
    ct = scanner_finish(hu, clinical_grid(mr))
    return {
        "image": ct,
        "head": largest_filled(ct > HEAD_LEVEL_HU),
        "brain": sitk.Resample(brain, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0),
    }


def mr_case(folder: Path) -> dict[str, sitk.Image]:
    """Subject B: ``{"image": T1, "head": Otsu head mask, "brain": FreeSurfer brain mask}``."""
    mr = sitk.ReadImage(str(folder / "mr_t1_freesurfer.nii.gz"))
    brain = sitk.ReadImage(str(folder / "mr_t1_freesurfer_brainmask.nii.gz")) > 0
    return {
        "image": mr,
        "head": largest_filled(sitk.OtsuThreshold(mr, 0, 1)),
        "brain": sitk.Cast(brain, sitk.sitkUInt8),
    }


def detected_modalities(out: Path) -> str | None:
    """``fixed/moving`` modalities from ours' ``report.json`` under ``out`` (None if there is none)."""
    reports = sorted(out.rglob("report.json"))
    if not reports:
        return None
    inputs = json.loads(reports[0].read_text())["inputs"]
    return f"{inputs['fixed']['modality']}/{inputs['moving']['modality']}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=DIRECTIONS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="ct_mr_head_hu")
    parser.add_argument("--set", action="append", default=[], help="dotted override of the vmgga-* methods")
    parser.add_argument("--save-ct", type=Path, help="also write the synthetic CT (int16 HU) to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder_a = common.skip_if_missing(DATASET_A, FILES_A)
    folder_b = common.skip_if_missing(DATASET_B, FILES_B)
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    case = {"ct": synthetic_ct_case(folder_a), "mr": mr_case(folder_b)}
    if args.save_ct:
        sitk.WriteImage(case["ct"]["image"], str(args.save_ct))
    overrides = peers.parse_overrides(args.set)
    with tempfile.TemporaryDirectory(prefix="vmgga_cthu_") as tmp_name:
        tmp = Path(tmp_name)
        paths = {"ct": tmp / "synthetic_ct_hu.nii.gz", "mr": folder_b / "mr_t1_freesurfer.nii.gz"}
        sitk.WriteImage(case["ct"]["image"], str(paths["ct"]))
        rows = run_methods(
            case,
            paths,
            args,
            tmp,
            lambda direction: overrides,
            lambda out: {"modalities": detected_modalities(out)},
        )
    write_report(args, rows, info)
    return 0


def write_report(args, rows: list[dict], info: dict) -> None:
    columns = ["direction", "method", "head_dice", "brain_dice", "seconds", "modalities", "load_before"]
    header = (
        f"CT <-> MR head across subjects (synthetic HU CT of head-mr-with-skull-masks vs FreeSurfer T1), "
        f"threads {args.threads}, cpu_count {info['cpu_count']}, load at start {info['load_average_1_5_15']}, "
        f"after {[round(x, 2) for x in os.getloadavg()]}. Dice of moving masks warped onto the fixed grid. "
        f"Overrides of ours: {args.set or 'none'}. Modalities: ours' detected fixed/moving."
    )
    write_rows("ct_mr_head_hu", args, rows, info, header, columns)


if __name__ == "__main__":
    sys.exit(main())
