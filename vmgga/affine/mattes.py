"""Affine initialisation for multimodal pairs: moments or centre alignment, then multi-resolution
Mattes mutual information (SimpleITK).

The returned transform maps **fixed points to moving points** (LPS mm), ITK's resampling direction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from vmgga.config import AffineConfig
from vmgga.errors import ConfigError, RegistrationFailedError
from vmgga.frames import geometry_of
from vmgga.preprocess.grid import resample_to_grid, working_geometry
from vmgga.preprocess.intensity import foreground_threshold

ProgressCallback = Callable[[str, float, str], None]


@dataclass(frozen=True)
class AffineResult:
    """Outcome of the affine stage.

    Attributes:
        transform: 3D affine, fixed -> moving, LPS mm.
        metric_value: Final Mattes MI value (more negative is better).
        overlap_fraction: Fraction of fixed foreground voxels that map inside the moving image.
        seconds: Wall time of the stage.
        start_turn: The half turn the kept run started from (``"none"``, or the fixed axis ``"x"``,
            ``"y"``, ``"z"`` it turned about; see :data:`HALF_TURNS`).
        metric_by_start: Final Mattes MI of each start that ran (only the kept one without the search;
            a turned start whose images do not overlap is left out).
    """

    transform: sitk.AffineTransform
    metric_value: float
    overlap_fraction: float
    seconds: float
    start_turn: str = "none"
    metric_by_start: dict[str, float] | None = None


#: Half turns (180 degrees) about the fixed image's LPS axes, as diagonal rotation matrices: the starts
#: of ``affine.half_turn_search`` (no turn first, so a tie keeps it).
HALF_TURNS: dict[str, tuple[int, int, int]] = {
    "none": (1, 1, 1),
    "x": (1, -1, -1),
    "y": (-1, 1, -1),
    "z": (-1, -1, 1),
}


def half_turned(start: sitk.AffineTransform, turn: tuple[int, int, int]) -> sitk.AffineTransform:
    """``start`` preceded by a half turn about its centre: ``p -> A R (p - c) + c + t`` for
    ``p -> A (p - c) + c + t`` and ``R = diag(turn)`` (fixed -> moving, LPS mm)."""
    matrix = np.asarray(start.GetMatrix()).reshape(3, 3) @ np.diag(np.asarray(turn, dtype=float))
    turned = sitk.AffineTransform(3)
    turned.SetCenter(start.GetCenter())
    turned.SetMatrix(tuple(matrix.ravel()))
    turned.SetTranslation(start.GetTranslation())
    return turned


def estimate_affine(
    fixed_norm: sitk.Image,
    moving_norm: sitk.Image,
    config: AffineConfig,
    *,
    seed: int = 0,
    initial_transform: sitk.Transform | None = None,
    progress: ProgressCallback | None = None,
) -> AffineResult:
    """Estimate the fixed -> moving affine with Mattes MI.

    Args:
        fixed_norm: Fixed image, intensities normalised to ~[0, 1] (float32, LPS geometry).
        moving_norm: Moving image, likewise.
        config: Affine stage settings.
        seed: Seed of the metric's random sampling (same seed -> same result).
        initial_transform: Optional user transform (fixed -> moving) to start from; it replaces
            the moments/centre initialisation.
        progress: Optional ``(stage, fraction, message)`` callback.

    Raises:
        RegistrationFailedError: if the images do not overlap after alignment.
    """
    start = time.perf_counter()
    # smoothing and resampling work voxel by voxel / line by line: all threads, identical results
    fixed_small = _downsampled(fixed_norm, config.working_spacing_mm)
    moving_small = _downsampled(moving_norm, config.working_spacing_mm)
    with _single_threaded_itk():
        if not config.enabled:
            start_transform = (
                sitk.Transform(3, sitk.sitkIdentity) if initial_transform is None else initial_transform
            )
            transform, metric = _as_affine(start_transform), float("nan")
        else:
            initial = _initial_affine(fixed_small, moving_small, config, initial_transform)
            turns = (
                HALF_TURNS if config.half_turn_search and initial_transform is None else {"none": (1, 1, 1)}
            )
            runs = {}
            for index, (name, turn) in enumerate(turns.items()):
                share = _share_of(progress, index, len(turns))
                try:
                    runs[name] = _run_mattes(
                        fixed_small, moving_small, half_turned(initial, turn), config, seed, share
                    )
                except RuntimeError:  # a turned start with no overlap (an elongated box): not a candidate
                    if name == "none":
                        raise
            start_turn = min(runs, key=lambda name: runs[name][1])  # most negative MI; ties keep "none"
            transform, metric = runs[start_turn]
        overlap = overlap_fraction(fixed_small, moving_small, transform)
    if overlap < 0.05:
        raise RegistrationFailedError(
            f"the images do not overlap after affine alignment (only {overlap:.1%} of the fixed "
            "foreground maps inside the moving image); check that fixed and moving show the same anatomy"
        )
    if not config.enabled:
        return AffineResult(transform, metric, overlap, time.perf_counter() - start)
    by_start = {name: float(value) for name, (_, value) in runs.items()}
    return AffineResult(transform, metric, overlap, time.perf_counter() - start, start_turn, by_start)


def _share_of(progress: ProgressCallback | None, index: int, count: int) -> ProgressCallback | None:
    """``progress`` for run ``index`` of ``count``: its fractions mapped into that run's share of 0..1."""
    if progress is None or count == 1:
        return progress
    return lambda stage, fraction, message: progress(stage, (index + fraction) / count, message)


@contextlib.contextmanager
def _single_threaded_itk():
    """Run ITK filters on one thread: float sums in a fixed order give bit-identical results."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _downsampled(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Isotropic copy no finer than ``spacing_mm`` (speed; the pyramid refines from there)."""
    geometry = geometry_of(image)
    spacing = max(spacing_mm, min(geometry.spacing_mm))
    return resample_to_grid(image, working_geometry(geometry, spacing, 128**3))


def _initial_affine(
    fixed: sitk.Image, moving: sitk.Image, config: AffineConfig, initial: sitk.Transform | None
) -> sitk.AffineTransform:
    """Affine from the user's transform, or centred by moments / geometry."""
    if initial is not None:
        return _as_affine(initial)
    if config.initialization not in ("moments", "geometry"):
        raise ConfigError(
            f"affine.initialization={config.initialization!r}; expected 'moments' or 'geometry'"
        )
    mode = (
        sitk.CenteredTransformInitializerFilter.MOMENTS
        if config.initialization == "moments"
        else sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    centred = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)
    return _as_affine(centred)


def _as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Convert a linear ITK transform to an AffineTransform, or refuse a non-linear one."""
    if not transform.IsLinear():
        raise ConfigError("the initial transform must be linear (rigid/affine); got a deformable transform")
    affine = sitk.AffineTransform(3)
    origin = np.zeros(3)
    offset = np.asarray(transform.TransformPoint(tuple(origin)))
    columns = [np.asarray(transform.TransformPoint(tuple(e))) - offset for e in np.eye(3)]
    affine.SetMatrix(tuple(np.stack(columns, axis=1).ravel()))
    affine.SetTranslation(tuple(offset))
    return affine


def _run_mattes(
    fixed: sitk.Image,
    moving: sitk.Image,
    initial: sitk.AffineTransform,
    config: AffineConfig,
    seed: int,
    progress: ProgressCallback | None,
) -> tuple[sitk.AffineTransform, float]:
    """Multi-resolution Mattes MI optimisation of an affine, starting from ``initial``."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # ITK reads seed 0 as "seed from the wall clock": shift so every user seed is reproducible
    method.SetMetricSamplingPercentage(config.sampling_fraction, seed + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.learning_rate,
        minStep=1e-4,
        numberOfIterations=config.iterations,
        relaxationFactor=0.7,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    transform = _optimised_transform(initial, config.transform)
    method.SetInitialTransform(transform, inPlace=True)
    levels = len(config.shrink_factors)
    if progress is not None:
        method.AddCommand(
            sitk.sitkMultiResolutionIterationEvent,
            lambda: progress("affine", (method.GetCurrentLevel() + 1) / levels, "Mattes MI level"),
        )
    method.Execute(fixed, moving)
    return _as_affine(transform), float(method.GetMetricValue())


def _optimised_transform(initial: sitk.AffineTransform, kind: str) -> sitk.Transform:
    """The transform the optimiser moves: an affine, or a rigid one started from ``initial``'s offset."""
    if kind == "affine":
        return sitk.AffineTransform(initial)
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(initial.GetCenter())
    rigid.SetTranslation(initial.GetTranslation())
    with contextlib.suppress(RuntimeError):  # keep a rotation of the start; a non-rigid start keeps none
        rigid.SetMatrix(initial.GetMatrix(), 1e-3)
    return rigid


def _foreground_mask(image: sitk.Image) -> sitk.Image:
    """Voxels above a tenth of the robust maximum: keeps MI off empty background."""
    threshold = foreground_threshold(sitk.GetArrayViewFromImage(image))
    return sitk.Cast(image > threshold, sitk.sitkUInt8)


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Fraction of fixed foreground voxels whose mapped point lies inside the moving image."""
    mask = sitk.GetArrayFromImage(_foreground_mask(fixed)) > 0  # a copy: the mask image is a temporary
    if not mask.any():
        return 0.0
    ones = sitk.Image(moving.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(moving)
    inside = sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor, 0.0)
    return float(np.mean(sitk.GetArrayViewFromImage(inside)[mask] > 0.5))
