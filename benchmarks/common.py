"""Benchmark harness: data location, known deformations, TRE / Dice / folding, results files.

Conventions (see ``docs/ARCHITECTURE.md``): physical space is LPS mm, and every transform that a
method returns maps **fixed points to moving points** (ITK's resampling direction). Displacement
arrays are ``(D, H, W, 3)`` = ``(k, j, i, xyz)`` with LPS mm vectors in the last axis
(``*_lps_mm``), sampled on the fixed image's grid.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from vmgga import frames
from vmgga.metrics import dice_per_label  # noqa: F401  (the one Dice: NaN for a label absent from both maps)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DATA_ENV_VAR = "VMGGA_DATA"

#: Per-component std of the random B-spline control-point displacements (LPS mm). Calibrated on
#: the stroke T1 so that the mean displacement over the brain is about 2 mm (the issue's identity
#: TRE is 1.94 mm); control points then move about 5.5 mm on average (|d|), 3.5 mm per axis (RMS).
DEFAULT_COEFFICIENT_STD_MM = 3.5
#: Target spacing of the B-spline control points (mm); the mesh size is rounded from it.
DEFAULT_CONTROL_SPACING_MM = 40.0


# --- data location and skipping ---------------------------------------------------------------


def data_root() -> Path:
    """Folder of the shared data sets: ``$VMGGA_DATA`` or ``../shared/data`` next to the repo."""
    override = os.environ.get(DATA_ENV_VAR)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def missing_files(folder: str, names: list[str]) -> list[Path]:
    """Those of ``data_root()/folder/names`` that do not exist (empty list: all present)."""
    base = data_root() / folder
    return [base / name for name in names if not (base / name).is_file()]


def skip_if_missing(folder: str, names: list[str]) -> Path:
    """Return ``data_root()/folder``; print ``skipped: ... absent`` and exit 0 if a file is missing."""
    absent = missing_files(folder, names)
    if absent:
        print(f"skipped: {absent[0]} absent (set {DATA_ENV_VAR} or provide ../shared/data)")
        sys.exit(0)
    return data_root() / folder


# --- known smooth deformation -----------------------------------------------------------------


@dataclass(frozen=True)
class BSplineDeformationSpec:
    """Parameters of a random smooth deformation (sampled once, applied deterministically)."""

    seed: int  # numpy Generator seed of the control-point displacements
    control_spacing_mm: float = DEFAULT_CONTROL_SPACING_MM  # target control-point spacing
    coefficient_std_mm: float = DEFAULT_COEFFICIENT_STD_MM  # std per LPS component of each control point


def mesh_size_for(reference: sitk.Image, control_spacing_mm: float) -> list[int]:
    """B-spline mesh size (cells per axis i, j, k) giving about ``control_spacing_mm`` per cell."""
    extent_mm = [n * s for n, s in zip(reference.GetSize(), reference.GetSpacing(), strict=True)]
    return [max(1, round(e / control_spacing_mm)) for e in extent_mm]


def sample_coefficients_lps_mm(spec: BSplineDeformationSpec, n_parameters: int) -> np.ndarray:
    """The random part: ``n_parameters`` Gaussian control-point displacements (LPS mm)."""
    rng = np.random.default_rng(spec.seed)
    return rng.normal(0.0, spec.coefficient_std_mm, size=n_parameters)


def bspline_deformation(reference: sitk.Image, spec: BSplineDeformationSpec) -> sitk.BSplineTransform:
    """Cubic B-spline transform over ``reference``'s domain, seeded by ``spec``.

    The transform maps a point ``x`` of the deformed (fixed) image to ``phi(x)`` in the original
    image: ``fixed(x) = original(phi(x))``.
    """
    mesh = mesh_size_for(reference, spec.control_spacing_mm)
    transform = sitk.BSplineTransformInitializer(reference, mesh, 3)
    coefficients = sample_coefficients_lps_mm(spec, len(transform.GetParameters()))
    transform.SetParameters(coefficients.tolist())
    return transform


def resample(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform, labels=False) -> sitk.Image:
    """``image`` sampled at ``transform(x)`` for every voxel ``x`` of ``reference`` (0 outside)."""
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(image, reference, transform, interpolator, 0.0)


# --- transforms as displacement fields --------------------------------------------------------


def displacement_lps_mm(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """``transform(x) - x`` at every voxel of ``reference``, shape ``(D, H, W, 3)``, LPS mm."""
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetReferenceImage(reference)
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    return sitk.GetArrayFromImage(converter.Execute(transform))


def displacement_transform(disp_lps_mm: np.ndarray, reference: sitk.Image) -> sitk.Transform:
    """Fixed->moving ``DisplacementFieldTransform`` from ``(D, H, W, 3)`` LPS mm on ``reference``."""
    field = frames.image_from_array(
        np.asarray(disp_lps_mm, dtype=np.float64), frames.geometry_of(reference), is_vector=True
    )
    return sitk.DisplacementFieldTransform(field)


def jacobian_determinant(disp_lps_mm: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Jacobian determinant of ``x -> x + u(x)`` on ``reference``'s grid, shape ``(D, H, W)``.

    The LPS vectors are first expressed in voxels of the grid (``frames.disp_ijk_from_lps``) so
    that ``sitk.DisplacementFieldJacobianDeterminant`` is exact for oblique and anisotropic grids:
    ``det(I + d u_ijk / d ijk)`` is similar to ``det(I + d u_lps / d x_lps)``.
    """
    geometry = frames.geometry_of(reference)
    disp_ijk = np.moveaxis(frames.disp_ijk_from_lps(disp_lps_mm, geometry), 0, -1)  # (D, H, W, 3)
    field = sitk.GetImageFromArray(np.ascontiguousarray(disp_ijk, dtype=np.float64), isVector=True)
    return sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreStats:
    """Target registration error over a mask (mm)."""

    mean_mm: float  # mean |T_est(x) - T_true(x)|
    p95_mm: float  # 95th percentile
    max_mm: float  # maximum
    n_points: int  # voxels in the mask


def tre_stats(est_disp_lps_mm: np.ndarray, true_disp_lps_mm: np.ndarray, mask: np.ndarray) -> TreStats:
    """TRE between two ``(D, H, W, 3)`` fields (same grid) over the boolean ``mask`` ``(D, H, W)``."""
    errors_mm = np.linalg.norm(est_disp_lps_mm - true_disp_lps_mm, axis=-1)[mask]
    return TreStats(
        mean_mm=float(errors_mm.mean()),
        p95_mm=float(np.percentile(errors_mm, 95)),
        max_mm=float(errors_mm.max()),
        n_points=int(errors_mm.size),
    )


def folding_fraction(jacobian: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of voxels (in ``mask`` if given) whose Jacobian determinant is <= 0."""
    values = jacobian if mask is None else jacobian[mask]
    return float(np.mean(values <= 0.0))


# --- results ----------------------------------------------------------------------------------


def machine_info(threads: int) -> dict[str, Any]:
    """Cores, threads, load average, library versions and git commit, for interpreting timings."""
    import torch

    packages = ["torch", "SimpleITK", "itk", "antspyx", "itk-elastix", "convexAdam", "numpy", "vmgga"]
    return {
        "cpu_count": os.cpu_count(),
        "threads_requested": threads,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in packages},
        "git_commit": _git_commit(),
        "vmgga_uncommitted_files": _git_dirty("vmgga"),
    }


def set_threads(threads: int) -> None:
    """Limit torch, SimpleITK, ITK/ANTs (environment) and OpenMP to ``threads`` threads."""
    import torch

    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub markdown table of ``rows`` (floats with 3 decimals, missing values as ``-``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``benchmarks/results/<name>.json`` and ``<name>.md``; return both paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    md_path.write_text(markdown + "\n")
    return json_path, md_path


def ratio_lines(summary: dict[str, dict[str, float]], ours: list[str], keys: list[str]) -> list[str]:
    """``ours / peer`` ratios of each summary key (e.g. time, mean TRE), one line per pair of methods."""
    lines = []
    for mine in (m for m in ours if m in summary):
        for peer in (p for p in summary if p not in ours and p != "identity"):
            parts = [f"{k} x{_ratio(summary[mine].get(k), summary[peer].get(k))}" for k in keys]
            lines.append(f"{mine} / {peer}: " + ", ".join(parts))
    return lines


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return "-"
    return f"{a / b:.3f}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not np.isfinite(value) else f"{value:.3f}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_dirty(path: str) -> list[str] | None:
    """Files under ``path`` that differ from the commit (the code measured may not be committed)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", path], cwd=REPO_ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return [line[3:] for line in out.stdout.splitlines()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


# --- a shared affine start for inter-patient pairs ----------------------------------------------


@dataclass(frozen=True)
class AffineSettings:
    """Mattes-MI affine used by the harness to pre-align inter-patient pairs for the peers."""

    histogram_bins: int = 32  # Mattes MI bins
    sampling_fraction: float = 0.2  # random voxel fraction per iteration
    iterations: int = 200  # per level
    shrink_factors: tuple[int, ...] = (2, 1)  # pyramid levels
    smoothing_sigmas_voxels: tuple[float, ...] = (2.0, 1.0)  # per level
    seed: int = 0  # sampling seed


def mattes_affine(fixed: sitk.Image, moving: sitk.Image, settings: AffineSettings) -> sitk.Transform:
    """Affine ``fixed -> moving`` (LPS mm): moments initialisation, then multi-level Mattes MI."""
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_fraction, seed=settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, settings.iterations)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas_voxels))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def then_apply(first: sitk.Transform, second: sitk.Transform) -> sitk.CompositeTransform:
    """The map ``x -> second(first(x))`` (SimpleITK applies a composite's last-added transform first)."""
    return sitk.CompositeTransform([second, first])
