"""Registration configuration: frozen dataclasses, named presets, plain-keyword constructors.

``RegistrationConfig`` nests one dataclass per pipeline stage. MONAI bundle configs and the CLI
build it with :func:`make_config`, which takes a preset name plus nested or dotted overrides,
e.g. ``make_config("fast", **{"dense.adam_iterations": 40})``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vmgga.device import check_device_name
from vmgga.errors import ConfigError, look_up_option


class Modality(str, Enum):
    """Image modality; ``auto`` detects it from the DICOM header or the intensity range."""

    AUTO = "auto"
    CT = "ct"
    MR = "mr"


class Preset(str, Enum):
    """Named speed/accuracy trade-offs."""

    FAST = "fast"
    ACCURATE = "accurate"
    INTER_PATIENT = "inter_patient"  # fast, with a weaker smoothness penalty for larger deformations


class FeatureBackend(str, Enum):
    """Which features drive the dense stage."""

    MIND = "mind"  # MIND-SSC, training-free
    VMGGA = "vmgga"  # the project's own encoder + gated-attention matcher
    DINOV2 = "dinov2"  # DINOv2 from a local directory
    HYBRID = "mind+vmgga"  # MIND-SSC and the learned VMGGA features, concatenated (weighted)


class MatcherName(str, Enum):
    """``DenseConfig.matcher`` values."""

    AUTO = "auto"  # vmgga features -> vmgga matcher, otherwise the cost volume
    COST_VOLUME = "cost_volume"  # discrete search + coupled convex optimisation (training-free)
    VMGGA = "vmgga"  # the learned gated-attention matcher
    FUSED = "fused"  # both, fused by confidence (vmgga.matching.fused)


@dataclass(frozen=True)
class PreprocessConfig:
    """Working grid and intensity normalisation."""

    working_spacing_mm: float = 1.5  # isotropic spacing of the working grid
    max_working_voxels: int = 192**3  # the spacing grows until the grid fits this bound
    fixed_modality: str = "auto"  # auto | ct | mr
    moving_modality: str = "auto"  # auto | ct | mr
    ct_window_hu: tuple[float, float] = (-1000.0, 1500.0)  # HU window mapped to [0, 1]
    mr_percentiles: tuple[float, float] = (0.5, 99.5)  # robust range mapped to [0, 1]


@dataclass(frozen=True)
class AffineConfig:
    """Multi-resolution Mattes mutual information affine stage (SimpleITK)."""

    enabled: bool = True  # False: keep the initial transform, or identity (images already aligned)
    initialization: str = "moments"  # moments | geometry (centre of the image boxes)
    transform: str = "affine"  # rigid | affine
    shrink_factors: tuple[int, ...] = (2, 1)  # pyramid levels, relative to working_spacing_mm
    # Gaussian sigma per level, about 2 and 1 voxels of the 3 mm affine grid. Sub-voxel sigmas (2, 1)
    # are more precise on same-patient brain pairs (1.1 vs 2.0 mm, refined by the dense stage anyway)
    # but let MI fall into a wrong optimum on inter-patient abdomen MR->CT (affine Dice 0.18 vs 0.32)
    smoothing_sigmas_mm: tuple[float, ...] = (6.0, 3.0)
    iterations: int = 200  # per level, regular-step gradient descent
    learning_rate: float = 2.0  # initial step (scales from physical shift: ~mm)
    histogram_bins: int = 32  # Mattes MI bins
    sampling_fraction: float = 0.2  # random voxel sample for the metric
    working_spacing_mm: float = 3.0  # the affine stage runs on a grid at least this coarse


@dataclass(frozen=True)
class DenseConfig:
    """Dense deformable stage, in four named parts (:data:`DENSE_PARTS`), one per sub-stage.

    The fields stay flat so that dotted overrides (``dense.adam_iterations``), the CLI's ``--set``,
    batch manifests and MONAI ``_target_`` keyword arguments keep their names. Spacing knobs have one
    unit each: ``*_mm`` in millimetres, the others in working-grid voxels (or slices).
    """

    # --- features: what is compared (vmgga.features) -----------------------------------------
    features: str = "mind"  # mind | vmgga (the network's learned features) | dinov2 | mind+vmgga
    matcher_weights: str | None = None  # VMGGA network checkpoint (learned features/matcher); None = shipped
    dinov2_path: str | None = None  # local directory of a DINOv2 model (features=dinov2)
    # mind+vmgga: weight of the learned features' squared distance against MIND's (SSD = MIND + w * learned)
    learned_feature_weight: float = 0.3
    slice_step: int = 4  # vmgga/dinov2 (2.5D): run the 2D network on every n-th slice, interpolate between
    mind_radius: int = 1  # MIND-SSC patch radius (working voxels)
    mind_dilation: int = 2  # MIND-SSC neighbourhood dilation (working voxels)
    # --- matching: dense matches with confidence (vmgga.matching) -------------------------------
    # auto (vmgga features -> vmgga matcher, else cost_volume) | cost_volume | vmgga (the network run
    # slice-wise as the matcher) | fused (both, by confidence)
    matcher: str = "auto"
    grid_spacing: int = 4  # cost volume: coarse grid of the discrete search = its step (working voxels)
    search_radius: int = (
        3  # cost volume: search window half-width, in coarse steps (grid_spacing voxels each)
    )
    convex_iterations: int = 6  # coupled convex steps (couplings grow geometrically)
    convex_coupling_first: float = 0.003  # coupling weight of the first convex step (cost per step^2)
    convex_coupling_last: float = 1.0  # coupling weight of the last convex step (cost per step^2)
    inverse_consistent: bool = False  # symmetrise the coarse field with the backward one (+~20% time)
    confidence_temperature: float = 0.1  # softmin temperature, relative to the mean cost contrast
    # learned matcher (vmgga, fused): largest displacement its coarse search considers (working
    # voxels); 12 = the cost volume's default range (grid_spacing x search_radius), set on its own
    learned_capture_range_vox: float = 12.0
    # --- fitting: matches -> start of the instance optimisation (vmgga.field.fitting) -----------
    # -1 plain block means; >= 0 confidence-weighted block means plus this many box filters on the
    # control grid
    fit_smoothing_passes: int = 0
    # --- instance optimisation: Adam on a control-grid velocity (vmgga.field.instance) ----------
    adam_iterations: int = 40  # steps (0: the fitted matches only, smoothed and integrated)
    adam_learning_rate: float = 0.5  # Adam step size (control-grid voxels) of the first step
    adam_final_learning_rate: float = 0.1  # step size of the last step (geometric decay in between)
    # control grid of the velocity in mm (the knob): register() sets adam_grid_spacing to the nearest
    # voxel count at the working spacing (6 mm = 4 voxels at 1.5 mm, 2 at 3 mm). 0: no conversion,
    # adam_grid_spacing is then the knob (working voxels)
    adam_grid_spacing_mm: float = 6.0
    adam_grid_spacing: int = 4  # control grid in working voxels, as the stage receives it (see above)
    adam_feature_spacing: int = 1  # features block-pooled to this (working voxels) for the similarity
    adam_sample_fraction: float = 0.07  # share of the foreground similarity voxels compared per step
    adam_feature_channels: int = 0  # PCA-compress the features to this many channels (0: all)
    adam_smoothing_passes: int = 3  # box filters (3^3) applied to the control-grid velocity
    regularisation: str = "diffusion"  # diffusion | bending
    regularisation_weight: float = 3.0  # weight of the smoothness penalty
    integration_steps: int = 3  # scaling-and-squaring steps (0: no integration)


#: The named parts of :class:`DenseConfig`: sub-stage -> its fields (each field in exactly one).
DENSE_PARTS: dict[str, tuple[str, ...]] = {
    "features": (
        "features",
        "matcher_weights",
        "dinov2_path",
        "learned_feature_weight",
        "slice_step",
        "mind_radius",
        "mind_dilation",
    ),
    "matching": (
        "matcher",
        "grid_spacing",
        "search_radius",
        "convex_iterations",
        "convex_coupling_first",
        "convex_coupling_last",
        "inverse_consistent",
        "confidence_temperature",
        "learned_capture_range_vox",
    ),
    "fitting": ("fit_smoothing_passes",),
    "instance": (
        "adam_iterations",
        "adam_learning_rate",
        "adam_final_learning_rate",
        "adam_grid_spacing_mm",
        "adam_grid_spacing",
        "adam_feature_spacing",
        "adam_sample_fraction",
        "adam_feature_channels",
        "adam_smoothing_passes",
        "regularisation",
        "regularisation_weight",
        "integration_steps",
    ),
}


def dense_part(config: DenseConfig, part: str) -> dict[str, Any]:
    """The fields of one named part of ``config`` (:data:`DENSE_PARTS`), as a dict."""
    names = DENSE_PARTS[look_up_option(part, tuple(DENSE_PARTS), "dense part")]
    return {name: getattr(config, name) for name in names}


@dataclass(frozen=True)
class RegistrationConfig:
    """Everything :func:`vmgga.register` needs besides the two images."""

    preset: str = "fast"  # fast | accurate | inter_patient (Preset), recorded in the report
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    affine: AffineConfig = field(default_factory=AffineConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    device: str = "cpu"  # cpu | cuda | cuda:N | mps (vmgga.device)
    seed: int = 0  # random seed (affine sampling, optimiser)
    num_threads: int | None = None  # torch/ITK threads; None = all cores
    max_memory_gb: float | None = None  # cap for the dense stage's estimated memory

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (for reports and checkpoints)."""
        return dataclasses.asdict(self)


#: Overrides that define each preset, applied on top of the defaults. Each one must change what a
#: stage receives (tests/test_config.py checks it through register()): no restated defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # `fast` matches with the learned VMGGA matcher and the MIND cost volume fused by confidence
    # (benchmarks/results/stroke_known_deformation_final.md: 0.528 mm vs 0.541 mm for the cost volume
    # alone, 1.2x its time). `accurate` and `inter_patient` keep the training-free cost volume: there
    # the fused matcher tied (0.384 vs 0.382 mm at 1.3x the time; abdomen Dice -0.002 / +0.002).
    # about 0.5 mm TRE on the stroke T1/T2/FLAIR benchmark; dense stage ~5 s of one CPU core
    # (working spacing: the 1.5 mm default)
    Preset.FAST.value: {
        "dense.matcher": "fused",
    },
    # about 0.4 mm TRE on the same benchmark; dense stage ~15 s of one CPU core. The control grid
    # stays 6 mm (adam_grid_spacing_mm), i.e. 6 voxels at 1 mm
    Preset.ACCURATE.value: {
        "preprocess.working_spacing_mm": 1.0,
        "preprocess.max_working_voxels": 256**3,
        "dense.grid_spacing": 6,
        "dense.learned_capture_range_vox": 18.0,  # = its cost volume's range, 6 x 3 (--matcher vmgga|fused)
        "dense.adam_iterations": 60,
        "dense.adam_sample_fraction": 0.05,
    },
    # different patients (e.g. the abdominal CT-MR pair): a third of the smoothness penalty; on that
    # pair mean organ Dice 0.49 vs 0.46 with `fast`, but stroke TRE 0.56 vs 0.51 mm (tuned on one pair)
    Preset.INTER_PATIENT.value: {
        "dense.regularisation_weight": 1.0,
    },
}


def make_config(preset: str = "fast", **overrides: Any) -> RegistrationConfig:
    """Build a :class:`RegistrationConfig` from a preset plus overrides.

    Args:
        preset: ``fast``, ``accurate`` or ``inter_patient`` (:class:`Preset`).
        **overrides: Either dotted keys (``"dense.adam_iterations": 40``), top-level fields
            (``device="cuda"``) or whole sections as dicts (``dense={"features": "vmgga"}``).

    Raises:
        ConfigError: for an unknown preset, section or field.
    """
    preset = look_up_option(preset, Preset, "preset")
    flat = {**PRESETS[preset], **_flatten(overrides)}
    sections: dict[str, dict[str, Any]] = {"preprocess": {}, "affine": {}, "dense": {}}
    top: dict[str, Any] = {"preset": preset}
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        if section:
            sections[_check_field(section, name)][name] = value
        else:
            _check_field("", name)
            top[name] = value
    config = RegistrationConfig(
        preprocess=PreprocessConfig(**_tuples(sections["preprocess"])),
        affine=AffineConfig(**_tuples(sections["affine"])),
        dense=DenseConfig(**sections["dense"]),
        **top,
    )
    check_options(config)
    return config


#: String options and their allowed values (``device``: :func:`vmgga.device.check_device_name`).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "preprocess.fixed_modality": tuple(m.value for m in Modality),
    "preprocess.moving_modality": tuple(m.value for m in Modality),
    "affine.initialization": ("moments", "geometry"),
    "affine.transform": ("rigid", "affine"),
    "dense.features": tuple(f.value for f in FeatureBackend),
    "dense.matcher": tuple(m.value for m in MatcherName),
    "dense.regularisation": ("diffusion", "bending"),
}


def check_options(config: RegistrationConfig) -> None:
    """Raise :class:`ConfigError` for a string option outside its allowed values."""
    for dotted, allowed in _OPTIONS.items():
        section, name = dotted.split(".")
        look_up_option(getattr(getattr(config, section), name), allowed, dotted)
    check_device_name(config.device)
    _check_control_grid_knob(config.dense)


def _check_control_grid_knob(dense: DenseConfig) -> None:
    """Refuse a control grid given in voxels while the one in mm is in force (it would be overwritten)."""
    default = DenseConfig.adam_grid_spacing
    if dense.adam_grid_spacing_mm > 0 and dense.adam_grid_spacing != default:
        raise ConfigError(
            f"dense.adam_grid_spacing={dense.adam_grid_spacing} has no effect: register() sets it from "
            f"dense.adam_grid_spacing_mm={dense.adam_grid_spacing_mm}; set that instead, or set "
            "dense.adam_grid_spacing_mm=0 to give the control grid in working voxels"
        )


_SECTIONS = {"preprocess": PreprocessConfig, "affine": AffineConfig, "dense": DenseConfig}


def _flatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"dense": {"a": 1}}`` -> ``{"dense.a": 1}``; dotted and top-level keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in _SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key in _SECTIONS and dataclasses.is_dataclass(value):
            flat.update({f"{key}.{k}": v for k, v in dataclasses.asdict(value).items()})
        else:
            flat[key] = value
    return flat


def _check_field(section: str, name: str) -> str:
    """Validate ``section.name``; return the section (``""`` for a top-level field)."""
    cls = _SECTIONS.get(section, RegistrationConfig if not section else None)
    if cls is None:
        raise ConfigError(f"unknown config section {section!r}; expected one of {list(_SECTIONS)}")
    names = [f.name for f in dataclasses.fields(cls)]
    if name not in names or (not section and name in _SECTIONS):
        where = section or "RegistrationConfig"
        raise ConfigError(f"unknown config field {name!r} in {where}; expected one of {names}")
    return section


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON gives lists where the dataclasses hold tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
