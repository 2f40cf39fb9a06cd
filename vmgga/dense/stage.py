"""The dense deformable stage: features -> matching -> Adam refinement -> diffeomorphic field."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vmgga.config import DenseConfig
from vmgga.dense import region
from vmgga.errors import ConfigError
from vmgga.features.base import get_feature_extractor, with_resolved_features
from vmgga.features.hybrid import feature_families
from vmgga.field import resize
from vmgga.field.compress import compress_pair
from vmgga.field.fitting import fit_control_field
from vmgga.field.instance import (
    MatchAnchor,
    SimilarityGrid,
    field_from_velocity,
    foreground_indices,
    make_similarity_grid,
    optimise_instance,
    tissue_indices,
)
from vmgga.matching.base import DenseMatch
from vmgga.matching.registry import get_matcher

ProgressCallback = Callable[[str, float, str], None]

_STAGE = "dense"


@dataclass
class DenseFieldResult:
    """Output of :func:`estimate_dense_field`.

    Attributes:
        disp_ijk: ``(1, 3, D, H, W)`` final displacement in working voxels (i, j, k): fixed working
            voxel ``x`` corresponds to moving working voxel ``x + disp_ijk(x)``.
        confidence: ``(1, 1, D, H, W)`` matching confidence in [0, 1].
        timings_s: seconds per sub-stage (``features``, ``matching``, ``instance``, ``total``).
        disp_control_ijk: ``(1, 3, d, h, w)`` the same field on the control grid, in control voxels;
            ``disp_ijk`` is its trilinear block-centred upsampling (:mod:`vmgga.field.resize`).
        control_spacing: working voxels per control voxel.
        box: the region the stage ran on (:mod:`vmgga.dense.region`); ``disp_control_ijk`` covers
            it, ``disp_ijk`` and ``confidence`` the whole working grid.
    """

    disp_ijk: torch.Tensor
    confidence: torch.Tensor
    timings_s: dict[str, float] = field(default_factory=dict)
    disp_control_ijk: torch.Tensor | None = None
    control_spacing: int = 1
    box: region.Box | None = None


def _check_inputs(fixed_work: torch.Tensor, moving_work: torch.Tensor) -> None:
    """Both ``(1, 1, D, H, W)`` on the same grid, at least 8 voxels per side."""
    for name, volume in (("fixed_work", fixed_work), ("moving_work", moving_work)):
        if volume.ndim != 5 or volume.shape[:2] != (1, 1):
            raise ConfigError(f"{name} must be (1, 1, D, H, W); got {tuple(volume.shape)}")
    if fixed_work.shape != moving_work.shape:
        raise ConfigError(f"fixed_work {tuple(fixed_work.shape)} and moving_work {tuple(moving_work.shape)}")
    if min(fixed_work.shape[2:]) < 8:
        raise ConfigError(f"the working grid is too small for the dense stage: {tuple(fixed_work.shape)}")


def with_physical_control_grid(config: DenseConfig, spacing_mm: float) -> DenseConfig:
    """``config`` with ``instance.grid_spacing_vox`` set from ``instance.grid_spacing_mm`` and
    ``instance.tissue_margin_vox`` from ``instance.tissue_margin_mm`` at a working spacing of ``spacing_mm``.

    The control grid's count is the nearest multiple of ``instance.feature_spacing_vox`` (at least
    one), so the control grid keeps its physical size when the working grid is coarser than the
    preset's (3 mm inputs); the margin counts similarity-grid voxels (working voxels x
    ``feature_spacing_vox``), at least one. A size ``<= 0`` in mm leaves its voxel count unchanged.
    """
    instance = config.instance
    if instance.grid_spacing_mm <= 0 and instance.tissue_margin_mm <= 0:
        return config
    if spacing_mm <= 0:
        raise ConfigError(f"spacing_mm must be positive; got {spacing_mm}")
    step = instance.feature_spacing_vox
    changes = {}
    if instance.grid_spacing_mm > 0:
        changes["grid_spacing_vox"] = step * max(1, round(instance.grid_spacing_mm / (spacing_mm * step)))
    if instance.tissue_margin_mm > 0:
        changes["tissue_margin_vox"] = max(1, round(instance.tissue_margin_mm / (spacing_mm * step)))
    return dataclasses.replace(config, instance=dataclasses.replace(instance, **changes))


def for_ct_and_mr(config: DenseConfig) -> DenseConfig:
    """``config`` for a CT against an MR: ``instance.ct_mr_*`` replace the control grid, the penalty
    and the Adam step sizes (each unless 0); air is compared only if ``compare_air`` and
    ``ct_mr_compare_air`` both say so."""
    instance = config.instance
    changes = {
        name: value
        for name, value in (
            ("grid_spacing_mm", instance.ct_mr_grid_spacing_mm),
            ("regularisation_weight", instance.ct_mr_regularisation_weight),
            ("learning_rate", instance.ct_mr_learning_rate),
            ("final_learning_rate", instance.ct_mr_final_learning_rate),
        )
        if value > 0
    }
    changes["compare_air"] = instance.compare_air and instance.ct_mr_compare_air
    return dataclasses.replace(config, instance=dataclasses.replace(instance, **changes))


def similarity_grid(
    fixed_work: torch.Tensor, fixed_feat: torch.Tensor, moving_feat: torch.Tensor, config: DenseConfig
) -> SimilarityGrid:
    """Features pooled (and optionally PCA-compressed, each family of ``mind+vmgga`` apart) for the
    Adam stage, with their foreground.

    All volumes are first padded to a multiple of ``instance.grid_spacing_vox``.
    """
    spacing = config.instance.feature_spacing_vox
    padded = resize.padded_shape(tuple(fixed_feat.shape[2:]), config.instance.grid_spacing_vox)
    fixed, moving = (resize.pool(resize.pad_to(f, padded), spacing) for f in (fixed_feat, moving_feat))
    families = feature_families(config, fixed.shape[1])  # mind+vmgga: each family compressed apart
    fixed, moving = compress_pair(fixed, moving, config.instance.feature_channels, families)
    pooled = resize.pool(resize.pad_to(fixed_work, padded), spacing)
    if config.instance.compare_air:
        foreground = foreground_indices(pooled)
    else:
        foreground = tissue_indices(pooled, config.instance.tissue_margin_vox)
    return make_similarity_grid(fixed, moving, foreground, config.instance.grid_spacing_vox // spacing)


def refine_field(
    fixed_work: torch.Tensor,
    fixed_feat: torch.Tensor,
    moving_feat: torch.Tensor,
    match: DenseMatch,
    config: DenseConfig,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """Fit ``match`` on the control grid, then refine it by Adam; ``(1, 3, D, H, W)`` in working voxels."""
    disp_control = refine_control_field(fixed_work, fixed_feat, moving_feat, match, config, progress)
    return working_from_control(disp_control, config.instance.grid_spacing_vox, tuple(fixed_feat.shape[2:]))


def working_from_control(
    disp_control: torch.Tensor, spacing: int, shape_dhw: tuple[int, int, int]
) -> torch.Tensor:
    """Control-grid displacement (control voxels) -> ``(1, 3, D, H, W)`` working voxels (trilinear)."""
    return resize.crop_to(resize.upsample_disp(disp_control, spacing), shape_dhw).contiguous()


def refine_control_field(
    fixed_work: torch.Tensor,
    fixed_feat: torch.Tensor,
    moving_feat: torch.Tensor,
    match: DenseMatch,
    config: DenseConfig,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """Fit ``match`` on the control grid, then refine it by Adam; ``(1, 3, d, h, w)`` in control voxels.

    ``instance.iterations == 0`` returns the fitted field itself (smoothed and integrated like the
    optimised one), which shows what the matcher alone achieves.
    """
    if (
        config.instance.feature_spacing_vox < 1
        or config.instance.grid_spacing_vox % config.instance.feature_spacing_vox
    ):
        raise ConfigError(
            f"dense.instance.grid_spacing_vox ({config.instance.grid_spacing_vox}) must be a multiple of "
            f"dense.instance.feature_spacing_vox ({config.instance.feature_spacing_vox})"
        )
    spacing = config.instance.grid_spacing_vox
    shape = tuple(fixed_feat.shape[2:])
    padded = resize.padded_shape(shape, spacing)
    disp, confidence = (resize.pad_to(v, padded) for v in (match.disp_ijk, match.confidence))
    if config.fitting.smoothing_passes < 0:
        init = resize.downsample_disp(disp, spacing)
    else:
        init = fit_control_field(disp, confidence, spacing, config.fitting.smoothing_passes)
    if config.instance.iterations == 0:  # the fitted field itself: smoothed and integrated, not optimised
        disp_control = field_from_velocity(init, config)[1]
    else:
        grid = similarity_grid(fixed_work, fixed_feat, moving_feat, config)
        anchor = match_anchor(init, confidence, config)
        disp_control = optimise_instance(grid, init, config, progress, anchor)
    return disp_control


def match_anchor(
    init_control: torch.Tensor, confidence: torch.Tensor, config: DenseConfig
) -> MatchAnchor | None:
    """The fitted matches ``(1, 3, d, h, w)`` (control voxels) with their block confidence, smoothed
    like the fit (``fitting.smoothing_passes``), for ``instance.match_weight``; None when that is 0.

    ``confidence`` is ``(1, 1, D, H, W)`` on the padded working grid.
    """
    if config.instance.match_weight < 0:
        raise ConfigError(f"dense.instance.match_weight must be >= 0; got {config.instance.match_weight}")
    if config.instance.match_weight == 0:
        return None
    spacing = config.instance.grid_spacing_vox
    weight = resize.box_smooth(
        resize.pool(confidence.clamp(0.0, 1.0), spacing), max(0, config.fitting.smoothing_passes)
    )
    return MatchAnchor(init_control, weight, spacing)


def estimate_dense_field(
    fixed_work: torch.Tensor,
    moving_work: torch.Tensor,
    config: DenseConfig,
    *,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
) -> DenseFieldResult:
    """Deformable registration of two working-grid volumes.

    Args:
        fixed_work: ``(1, 1, D, H, W)`` fixed volume, intensities in about [0, 1].
        moving_work: ``(1, 1, D, H, W)`` moving volume, affinely pre-aligned, same grid.
        config: the dense stage's settings.
        device: torch device of the computation; results come back on it.
        progress: optional ``(stage, fraction, message)`` callback.

    The stage runs on the fixed foreground's box grown by ``config.region.foreground_margin_vox`` voxels
    (:mod:`vmgga.dense.region`); outside it the field continues its edge values and the confidence is 0.

    Returns:
        :class:`DenseFieldResult` with the displacement in working voxels and the confidence.
    """
    _check_inputs(fixed_work, moving_work)
    config = with_resolved_features(config)
    shape = tuple(fixed_work.shape[2:])
    margin = config.region.foreground_margin_vox
    box = region.whole_grid(shape) if margin is None else region.foreground_box(fixed_work, margin)
    inner = _dense_in_box(box.crop(fixed_work), box.crop(moving_work), config, device, progress)
    if box.is_whole:
        return inner
    return dataclasses.replace(
        inner,
        disp_ijk=box.paste(inner.disp_ijk, "replicate").contiguous(),
        confidence=box.paste(inner.confidence, "zeros").contiguous(),
        box=box,
    )


def _dense_in_box(
    fixed_work: torch.Tensor,
    moving_work: torch.Tensor,
    config: DenseConfig,
    device: str | torch.device,
    progress: ProgressCallback | None,
) -> DenseFieldResult:
    """:func:`estimate_dense_field` on the volumes as given (no region)."""
    report = progress or (lambda stage, fraction, message: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    fixed_work = fixed_work.to(device, torch.float32)
    moving_work = moving_work.to(device, torch.float32)

    report(_STAGE, 0.0, f"{config.features.backend} features")
    extractor = get_feature_extractor(config, device)
    fixed_feat, moving_feat = extractor.extract(fixed_work), extractor.extract(moving_work)
    timings["features"] = time.perf_counter() - start

    report(_STAGE, 0.15, "dense matching")
    match = get_matcher(config, device).match(fixed_work, moving_work, fixed_feat, moving_feat)
    timings["matching"] = time.perf_counter() - start - timings["features"]

    report(_STAGE, 0.3, "instance optimisation")
    step = lambda fraction: report(_STAGE, 0.3 + 0.7 * fraction, "instance optimisation")  # noqa: E731
    disp_control = refine_control_field(fixed_work, fixed_feat, moving_feat, match, config, step).detach()
    disp_ijk = working_from_control(
        disp_control, config.instance.grid_spacing_vox, tuple(fixed_work.shape[2:])
    )
    timings["instance"] = time.perf_counter() - start - timings["features"] - timings["matching"]
    timings["total"] = time.perf_counter() - start
    report(_STAGE, 1.0, f"dense field in {timings['total']:.1f} s")
    return DenseFieldResult(
        disp_ijk=disp_ijk,
        confidence=match.confidence,
        timings_s=timings,
        disp_control_ijk=disp_control,
        control_spacing=config.instance.grid_spacing_vox,
    )
