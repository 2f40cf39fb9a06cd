"""``register()``: the one entry point that the CLI, batch, the MONAI bundle and Slicer call.

``read (LPS) -> preprocess -> affine -> dense field -> ITK composite transform``. The transform
maps **fixed points to moving points** in LPS mm (ITK's resampling direction).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

import vmgga
from vmgga.affine.mattes import estimate_affine
from vmgga.config import DenseConfig, Modality, RegistrationConfig, make_config
from vmgga.dense.memory import estimate_dense_memory_bytes
from vmgga.dense.stage import estimate_dense_field, for_ct_and_mr, with_physical_control_grid
from vmgga.errors import ConfigError
from vmgga.export.itk_transform import bspline_transform, composite_transform
from vmgga.features.base import with_resolved_features
from vmgga.field.bspline import displacement_on, spline_fitted_to_field
from vmgga.field.jacobian import jacobian_determinant, jacobian_summary
from vmgga.field.resample import resample_moving
from vmgga.field.warp import warp
from vmgga.frames import (
    Geometry,
    array_from_image,
    array_view_from_image,
    disp_ijk_from_lps,
    geometry_of,
    image_from_array,
)
from vmgga.io.images import LoadedImage, read_image
from vmgga.io.validate import check_ct_values
from vmgga.preprocess.grid import resample_to_grid, working_geometry
from vmgga.preprocess.intensity import detect_modality, foreground_threshold, normalise_intensity
from vmgga.progress import ProgressCallback, as_callback
from vmgga.result import RegistrationResult
from vmgga.threads import beside

ImageSource = str | os.PathLike | sitk.Image


def _features_note(config: DenseConfig) -> str:
    """The report's note on what ``dense.features.backend=auto`` resolved to (the learned path)."""
    features = config.features
    return (
        f"dense.features.backend auto -> {features.backend}: the learned network's stride-1 pixel "
        f"descriptors (slicing axes {list(features.pixel_axes)}) join MIND-SSC in the Adam loss, weight "
        f"{features.pixel_weight:g} (dense.features.pixel_weight)"
    )


def register(
    fixed: ImageSource,
    moving: ImageSource,
    config: RegistrationConfig | None = None,
    *,
    initial_transform: sitk.Transform | str | os.PathLike | None = None,
    progress: ProgressCallback | bool = True,
    fixed_series: str | None = None,
    moving_series: str | None = None,
    volume_index: int | None = None,
    include_phi: bool = False,
    fixed_volume_index: int | None = None,
    moving_volume_index: int | None = None,
) -> RegistrationResult:
    """Deformably register ``moving`` to ``fixed``.

    Args:
        fixed: fixed image: a NIfTI/NRRD/MHA path, a DICOM series folder, or a 3D ``sitk.Image``.
        moving: moving image, likewise.
        config: settings; ``None`` uses the ``fast`` preset.
        initial_transform: optional linear fixed -> moving transform (or its file) to start from.
        progress: ``True`` for a progress bar, ``False`` for none, or a
            ``(stage, fraction, message)`` callback.
        fixed_series, moving_series: DICOM SeriesInstanceUID to pick in a multi-series folder.
        volume_index: deprecated: the volume to take from each input that is 4D (3D inputs ignore it).
        fixed_volume_index, moving_volume_index: the volume to take from a 4D fixed / moving image
            (they take precedence over ``volume_index``).
        include_phi: keep DICOM patient identifiers in the report (off by default).

    Raises:
        vmgga.errors.VmggaError: a subclass naming the input and the problem.
    """
    config = config or make_config()
    report = as_callback(progress)
    timings: dict[str, float] = {}
    with _thread_limit(config.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        clock = time.perf_counter()
        report("read", 0.0, "reading images")
        fixed_in = read_image(
            fixed,
            role="fixed",
            dicom_series=fixed_series,
            volume_index=_volume_index_for(fixed, fixed_volume_index, volume_index),
            include_phi=include_phi,
        )
        moving_in = read_image(
            moving,
            role="moving",
            dicom_series=moving_series,
            volume_index=_volume_index_for(moving, moving_volume_index, volume_index),
            include_phi=include_phi,
        )
        timings["read"] = _lap(clock)

        report("preprocess", 0.0, "normalising intensities")
        modalities = (
            _modality(fixed_in, config.preprocess.fixed_modality),
            _modality(moving_in, config.preprocess.moving_modality),
        )
        _check_ct_range(fixed_in, modalities[0], "fixed")
        _check_ct_range(moving_in, modalities[1], "moving")
        fixed_norm = _normalised(fixed_in.image, modalities[0], config)
        moving_norm = _normalised(moving_in.image, modalities[1], config)
        timings["preprocess"] = _lap(clock, timings)

        grid, grid_notes = _working_grid(geometry_of(fixed_in.image), config)
        if config.affine.half_turn_search and initial_transform is not None:
            grid_notes.append(
                "affine.half_turn_search: not run, the affine stage starts from the initial transform"
            )
        with beside(torch.get_num_threads()) as side:
            # the fixed image on the working grid does not depend on the affine: with two or more
            # threads it is resampled on a second core while Mattes MI runs single-threaded
            fixed_work = side(lambda: _tensor(resample_to_grid(fixed_norm, grid)))
            affine = estimate_affine(
                fixed_norm,
                moving_norm,
                config.affine,
                seed=config.seed,
                initial_transform=_initial(initial_transform),
                progress=report,
            )
            timings["affine"] = _lap(clock, timings)
        moving_work = _tensor(resample_to_grid(moving_norm, grid, affine.transform))
        fixed_work = fixed_work()
        timings["resample"] = _lap(clock, timings)
        dense_config = config.dense
        if set(modalities) == {Modality.CT, Modality.MR}:
            dense_config = for_ct_and_mr(dense_config)
            instance = dense_config.instance
            grid_notes.append(
                f"CT against MR: control grid {instance.grid_spacing_mm:g} mm, penalty weight "
                f"{instance.regularisation_weight:g}, Adam steps {instance.learning_rate:g} -> "
                f"{instance.final_learning_rate:g} (dense.instance.ct_mr_*)"
            )
        dense_config = with_physical_control_grid(dense_config, min(grid.spacing_mm))
        resolved = with_resolved_features(dense_config)
        if resolved.features.backend not in (dense_config.features.backend, "mind"):
            grid_notes.append(_features_note(resolved))
        dense_config = resolved
        if not dense_config.instance.compare_air:
            grid_notes.append(
                f"air compared only within {dense_config.instance.tissue_margin_vox} similarity voxels "
                f"({dense_config.instance.tissue_margin_mm:g} mm) of the body (dense.instance.compare_air)"
            )
        if dense_config.instance.grid_spacing_vox != config.dense.instance.grid_spacing_vox:
            grid_notes.append(
                f"dense.instance.grid_spacing_vox: {dense_config.instance.grid_spacing_vox} working voxels"
            )
        dense = estimate_dense_field(
            fixed_work, moving_work, dense_config, device=config.device, progress=report
        )
        timings["dense"] = _lap(clock, timings)

        report("export", 0.0, "building the ITK transform")
        dense_ijk = dense.disp_ijk.detach().cpu()[0].double().numpy()  # (3, D, H, W) working voxels
        coefficients, coefficient_grid = spline_fitted_to_field(dense_ijk, grid, dense.control_spacing)
        transform = composite_transform(affine.transform, bspline_transform(coefficients, coefficient_grid))
        disp_lps = displacement_on(coefficients, coefficient_grid, grid)  # (D, H, W, 3) the written field
        disp_ijk = torch.from_numpy(disp_ijk_from_lps(disp_lps, grid)).float()[None]
        timings["transform"] = _lap(clock, timings)
        outputs = _resampled_outputs(
            fixed_in.image, moving_in.image, affine.transform, coefficients, coefficient_grid
        )
        confidence = _on_fixed_grid(dense.confidence.detach().cpu()[0, 0].numpy(), grid, fixed_in.image)
        det = jacobian_determinant(disp_ijk)
        timings["export"] = _lap(clock, timings)
        timings["total"] = time.perf_counter() - clock
        report("export", 1.0, f"done in {timings['total']:.1f} s")
        measures = _plausibility_measures(fixed_work, moving_work, disp_ijk)

    result_report = _report(
        fixed_in, moving_in, modalities, grid, grid_notes, affine, det, dense, timings, config
    )
    result_report = _with_verdict(result_report, measures)
    return RegistrationResult(
        transform=transform,
        fixed=fixed_in.image,
        moving=moving_in.image,
        warped=outputs[0],
        moving_affine=outputs[1],
        confidence=confidence,
        jacobian_determinant=image_from_array(det[0, 0].numpy().astype(np.float32), grid),
        displacement_lps_mm=image_from_array(disp_lps.astype(np.float32), grid, is_vector=True),
        report=result_report,
    )


def write_outputs(
    result: RegistrationResult, output_dir: str | os.PathLike, *, qc: bool = False
) -> dict[str, Path]:
    """Write ``transform.h5``, ``warped.nii.gz``, ``confidence.nii.gz``, ``report.json`` (+ ``qc.html``).

    Each file is written atomically; ``report.json`` is written last, so its presence means the
    set is complete.
    """
    from vmgga.export.outputs import write_registration_outputs

    return write_registration_outputs(result, Path(output_dir), qc=qc)


# --- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _thread_limit(num_threads: int | None):
    """Limit torch and ITK threads inside the block (``None``: leave as is)."""
    if not num_threads:
        yield
        return
    torch_before, itk_before = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(num_threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_before)


def _volume_index_for(source: ImageSource, own_index: int | None, shared_index: int | None) -> int | None:
    """The volume index to read ``source`` with: its own, else the shared one if ``source`` is 4D."""
    if own_index is not None or shared_index is None:
        return own_index
    return shared_index if _is_4d(source) else None


def _is_4d(source: ImageSource) -> bool:
    """Whether an in-memory image or an image file (header only) has 4 dimensions; folders are 3D."""
    if isinstance(source, sitk.Image):
        return source.GetDimension() == 4
    path = Path(source)
    if not path.is_file():
        return False
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False  # unreadable: read_image reports it
    return reader.GetDimension() == 4


def _lap(start: float, timings: dict[str, float] | None = None) -> float:
    """Seconds since ``start`` minus what ``timings`` already accounts for."""
    return time.perf_counter() - start - sum((timings or {}).values())


def _modality(loaded: LoadedImage, requested: str) -> Modality:
    """The modality of a loaded image (request > DICOM tag > intensity range)."""
    array = array_view_from_image(loaded.image)
    return detect_modality(array, requested, loaded.modality_hint)


def _check_ct_range(loaded: LoadedImage, modality: Modality, role: str) -> None:
    """CT values outside the plausible HU range (overflow, wrong rescale) are an error, whatever the format."""
    if modality == Modality.CT:
        name = f"{role} image '{loaded.path}'" if loaded.path else f"{role} image (in memory)"
        loaded.messages.extend(check_ct_values(array_view_from_image(loaded.image), name))


def _normalised(image: sitk.Image, modality: Modality, config: RegistrationConfig) -> sitk.Image:
    """A float32 copy of ``image`` with intensities mapped to about [0, 1]."""
    array = normalise_intensity(array_view_from_image(image), modality, config.preprocess)
    return image_from_array(array, geometry_of(image))


def _initial(initial: sitk.Transform | str | os.PathLike | None) -> sitk.Transform | None:
    """Read an initial transform given as a path."""
    if initial is None or isinstance(initial, sitk.Transform):
        return initial
    from vmgga.export.itk_transform import read_transform

    return read_transform(initial)


def _working_grid(fixed: Geometry, config: RegistrationConfig) -> tuple[Geometry, list[str]]:
    """The working grid, coarsened until the dense stage's memory estimate fits the cap."""
    pre = config.preprocess
    spacing = max(pre.working_spacing_mm, min(fixed.spacing_mm))  # never finer than the fixed image
    grid = working_geometry(fixed, spacing, pre.max_working_voxels)
    cap = _memory_cap_bytes(config)
    dense = with_resolved_features(config.dense)  # auto may read the checkpoint: once, not per estimate
    notes: list[str] = []
    while estimate_dense_memory_bytes(grid.shape_dhw, dense) > cap:
        coarser = grid.spacing_mm[0] * 1.25
        if coarser > 8.0:
            raise ConfigError(
                f"the dense stage needs more memory than the cap of {cap / 2**30:.2f} GB even at 8 mm; "
                "raise --max-memory"
            )
        grid = working_geometry(fixed, coarser, pre.max_working_voxels)
        notes.append(
            f"working spacing raised to {coarser:.2f} mm to fit the memory cap of {cap / 2**30:.2f} GB"
        )
    return grid, notes


def _memory_cap_bytes(config: RegistrationConfig) -> float:
    """The user's ``max_memory_gb``, else 60% of the machine's total memory.

    The default depends on the machine only, not on its load at the moment, so reruns and parallel
    runs choose the same working grid.
    """
    if config.max_memory_gb is not None:
        if config.max_memory_gb <= 0:
            raise ConfigError(f"max_memory_gb must be > 0, got {config.max_memory_gb}")
        return config.max_memory_gb * 2**30
    try:
        import psutil

        return 0.6 * psutil.virtual_memory().total
    except ImportError:  # pragma: no cover - psutil comes with dask
        return float("inf")


def _tensor(image: sitk.Image) -> torch.Tensor:
    """``(1, 1, D, H, W)`` float32 tensor of a scalar image."""
    return torch.from_numpy(array_from_image(image).astype(np.float32))[None, None]


def _resampled_outputs(
    fixed: sitk.Image,
    moving: sitk.Image,
    affine: sitk.Transform,
    coefficients: np.ndarray,
    coefficient_grid: Geometry,
) -> tuple[sitk.Image, Callable[[], sitk.Image]]:
    """``moving`` on the fixed grid through the full transform, and a function giving it through the
    affine only (most callers never need that one: it costs as much as the first).

    The same mapping as ``sitk.Resample`` through the composite transform (tested), in torch.
    """
    background = float(np.min(array_view_from_image(moving)))
    fixed_grid = geometry_of(fixed)
    warped = resample_moving(
        moving, fixed_grid, affine, coefficients, coefficient_grid, background=background
    )
    before = functools.partial(resample_moving, moving, fixed_grid, affine, background=background)
    return warped, before


def _on_fixed_grid(values_dhw: np.ndarray, grid: Geometry, fixed: sitk.Image) -> sitk.Image:
    """A working-grid scalar map resampled (linear) onto the fixed grid."""
    image = image_from_array(values_dhw.astype(np.float32), grid)
    return sitk.Resample(
        image, fixed, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )


def _report(fixed_in, moving_in, modalities, grid, grid_notes, affine, det, dense, timings, config):
    """The JSON-serialisable report of one registration; the confidence is summarised over the
    working-grid voxels the dense stage compared (its region, ``dense.box``)."""
    confidence = dense.confidence.detach().cpu()
    values = (dense.box.crop(confidence) if dense.box else confidence)[0, 0].numpy()
    region = {}
    if dense.box is not None:  # the box of working voxels the dense stage ran on
        region = {
            "dense_region": {"start_dhw": list(dense.box.start_dhw), "stop_dhw": list(dense.box.stop_dhw)}
        }
    return {
        "vmgga_version": vmgga.__version__,
        "inputs": {
            "fixed": {**fixed_in.description, "modality": modalities[0].value, "messages": fixed_in.messages},
            "moving": {
                **moving_in.description,
                "modality": modalities[1].value,
                "messages": moving_in.messages,
            },
        },
        "working_grid": {**grid.to_dict(), "notes": grid_notes, **region},
        "affine": {
            "matrix": list(affine.transform.GetMatrix()),
            "translation_mm": list(affine.transform.GetTranslation()),
            "center_lps_mm": list(affine.transform.GetCenter()),
            "determinant": float(np.linalg.det(np.reshape(affine.transform.GetMatrix(), (3, 3)))),
            "principal_scales": _principal_scales(affine.transform.GetMatrix()),
            "mattes_mi": affine.metric_value,
            "overlap_fraction": affine.overlap_fraction,
            "start_half_turn": affine.start_turn,
            "mattes_mi_by_start": affine.metric_by_start,
        },
        "jacobian": jacobian_summary(det),
        "confidence": {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "p05": float(np.percentile(values, 5)),
            "fraction_above_0_5": float(np.mean(values > 0.5)),
        },
        "timings_s": {
            **{k: round(v, 4) for k, v in timings.items()},
            "dense_detail": {k: round(v, 4) for k, v in dense.timings_s.items()},
        },
        "transform_direction": "fixed -> moving (ITK resampling direction), LPS mm",
        "config": config.to_dict(),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "SimpleITK": sitk.Version_VersionString(),
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "device": config.device,
        },
    }


def _plausibility_measures(
    fixed_work: torch.Tensor, moving_affine_work: torch.Tensor, disp_ijk: torch.Tensor
) -> dict:
    """Foreground Dice/overlap after the affine and NMI before/after the dense stage (working grid).

    ``fixed_work``, ``moving_affine_work``: ``(1, 1, D, H, W)`` normalised intensities (moving through
    the affine only); ``disp_ijk``: ``(1, 3, D, H, W)`` the written deformable displacement in working
    voxels, through which ``moving_affine_work`` is warped (the transform is ``affine(p + u(p))``).
    The NMI is taken over the union of both foregrounds after the affine, the same voxels before
    and after.
    """
    from vmgga.qc.plausibility import foreground_dice, foreground_overlap, normalised_mutual_information

    fixed = fixed_work[0, 0].numpy()
    before = moving_affine_work[0, 0].numpy()
    after = warp(moving_affine_work, disp_ijk)[0, 0].numpy()
    fixed_mask, moving_mask = _foreground(fixed), _foreground(before)
    union = fixed_mask | moving_mask
    nmi_affine = normalised_mutual_information(fixed[union], before[union])
    nmi_final = normalised_mutual_information(fixed[union], after[union])
    return {
        "foreground_dice": round(foreground_dice(fixed_mask, moving_mask), 4),
        "foreground_overlap": round(foreground_overlap(fixed_mask, moving_mask), 4),
        "nmi_affine": round(nmi_affine, 5),
        "nmi_final": round(nmi_final, 5),
        "nmi_gain": round(nmi_final - nmi_affine, 5),
    }


def _foreground(values_norm: np.ndarray) -> np.ndarray:
    """Voxels above a tenth of the robust maximum (the affine stage's mask rule)."""
    return values_norm > foreground_threshold(values_norm)


def _principal_scales(matrix: tuple[float, ...]) -> list[float]:
    """Singular values of the affine's 3x3 matrix, largest first (see :mod:`vmgga.qc.plausibility`)."""
    from vmgga.qc.plausibility import affine_principal_scales

    return [round(float(v), 5) for v in affine_principal_scales(np.reshape(matrix, (3, 3)))]


def _with_verdict(report: dict, measures: dict) -> dict:
    """``report`` with the plausibility measures and, first, ``status`` and ``suspect_reasons``."""
    from vmgga.qc.plausibility import assess_report

    report["affine"].update({k: measures[k] for k in ("foreground_dice", "foreground_overlap")})
    report["similarity"] = {k: measures[k] for k in ("nmi_affine", "nmi_final", "nmi_gain")}
    return {**assess_report(report).as_report_entries(), **report}
