"""Registration configuration: frozen dataclasses, named presets, plain-keyword constructors.

``RegistrationConfig`` nests one dataclass per pipeline stage. MONAI bundle configs and the CLI
build it with :func:`make_config`, which takes a preset name plus nested or dotted overrides,
e.g. ``make_config("fast", **{"dense.instance.iterations": 40})``. The dense stage's settings come
in four parts, one per sub-stage: ``dense.features``, ``dense.matching``, ``dense.fitting`` and
``dense.instance``.
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
    INTER_PATIENT = "inter_patient"  # different patients: a finer control grid, a weaker smoothness penalty


class FeatureBackend(str, Enum):
    """Which features drive the dense stage."""

    AUTO = "auto"  # mind+vmgga for the learned matcher (vmgga, fused) when its network has a pixel head, else mind
    MIND = "mind"  # MIND-SSC, training-free
    LEARNED = "vmgga"  # the matcher network's learned features (encoder + gated attention)
    DINOV2 = "dinov2"  # DINOv2 from a local directory
    HYBRID = "mind+vmgga"  # MIND-SSC and the learned features, concatenated (weighted)


class MatcherName(str, Enum):
    """``dense.matching.matcher`` values."""

    AUTO = "auto"  # learned features -> the learned matcher, otherwise the cost volume
    COST_VOLUME = "cost_volume"  # discrete search + coupled convex optimisation (training-free)
    LEARNED = "vmgga"  # the matcher network, run slice-wise as the dense matcher
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
    # also start from the three half turns about the fixed image's axes through the centred start, run
    # Mattes from each and keep the best final MI (4x the stage's time): for an object scanned upside
    # down or turned round, which a centre-of-mass start cannot reach (benchmarks/README.md, session 8)
    half_turn_search: bool = False


@dataclass(frozen=True)
class RegionConfig:
    """``dense.region``: where on the working grid the dense stage runs (:mod:`vmgga.dense.region`)."""

    # the fixed foreground's box grown by this many working voxels (the air around a head is not
    # compared); None: the whole working grid
    foreground_margin_vox: int | None = 8


@dataclass(frozen=True)
class FeatureConfig:
    """``dense.features``: what the dense stage compares (:mod:`vmgga.features`).

    Sizes in working-grid voxels carry ``_vox`` in their names.
    """

    # auto (the learned path: mind+vmgga when the matcher is vmgga or fused and its network has a
    # stride-1 pixel head; else mind) | mind | vmgga (the network's learned features) | dinov2 | mind+vmgga
    backend: str = "auto"
    # checkpoint of the learned network (learned features and the learned matcher); None = shipped
    weights: str | None = None
    dinov2_path: str | None = None  # local directory of a DINOv2 model (backend dinov2)
    # which learned descriptors: auto (the stride-1 pixel head's when the network has one, else the
    # stride-2 fine ones) | pixel | fine
    learned_descriptors: str = "auto"
    # mind+vmgga: weight of the learned features' squared distance against MIND's (SSD = MIND + w * learned):
    # for the stride-2 fine descriptors (0.3), and for the stride-1 pixel descriptors (3: stroke dense
    # stage 0.424 -> 0.379 mm; 1: 0.393, 10: 0.376 but worse on one pair; docs/training_report.md "Session 9")
    learned_weight: float = 0.3
    pixel_weight: float = 3.0
    # pixel descriptors: the slicing axes (0 = D/k, 1 = H/j, 2 = W/i), every slice (no interpolation,
    # which would break their shift-equivariance across slices); several axes are concatenated. All
    # three: one axis alone misleads MIND on FLAIR -> T2 (full-size dev pairs, 3 seeds: learned path
    # -3.8 % with (0,), -6.0 % with (0, 1, 2); dense stage (0, 1) -5.0 %, (0, 2) -5.3 %, averaged
    # axes -3.2 %; docs/training_report.md "Session 10")
    pixel_axes: tuple[int, ...] = (0, 1, 2)
    # 2.5D networks (learned features and matcher, DINOv2): run the 2D network on every n-th slice,
    # interpolate between
    slice_step_vox: int = 4
    mind_radius_vox: int = 1  # MIND-SSC patch radius
    mind_dilation_vox: int = 2  # MIND-SSC neighbourhood dilation


@dataclass(frozen=True)
class MatchingConfig:
    """``dense.matching``: dense matches with a confidence (:mod:`vmgga.matching`).

    The cost volume searches ``grid_spacing_vox * search_radius_steps`` working voxels each way; the
    learned matcher's search reach is its own knob, ``learned_capture_range_vox``.
    """

    # auto (learned features -> learned matcher, else cost_volume) | cost_volume | vmgga (the network
    # run slice-wise as the matcher) | fused (both, by confidence)
    matcher: str = "auto"
    grid_spacing_vox: int = 4  # cost volume: coarse grid of the discrete search = its step
    search_radius_steps: int = 3  # cost volume: search window half-width, in coarse steps
    convex_iterations: int = 6  # coupled convex steps (couplings grow geometrically)
    convex_coupling_first: float = 0.003  # coupling weight of the first convex step (cost per step^2)
    convex_coupling_last: float = 1.0  # coupling weight of the last convex step (cost per step^2)
    inverse_consistent: bool = False  # symmetrise the coarse field with the backward one (+~20% time)
    confidence_temperature: float = 0.1  # softmin temperature, relative to the mean cost contrast
    # learned matcher (vmgga, fused): largest displacement its coarse search considers (working
    # voxels); 12 = the cost volume's default range (4 x 3), set on its own
    learned_capture_range_vox: float = 12.0
    # learned matcher: extra slice-wise passes, each on the moving volume warped by the field so far,
    # composed with it (vmgga.matching.refine); 0 = one pass
    learned_refine_passes: int = 0
    learned_refine_capture_range_vox: float = 4.0  # coarse search of those extra passes (working voxels)
    # confidence-weighted Gaussian smoothing (sigma, working voxels) of each pass's field; 0 = none
    learned_smooth_sigma_vox: float = 0.0
    learned_pool_factor: int = 1  # learned matcher runs on volumes block-averaged by this (2: half size)


@dataclass(frozen=True)
class FittingConfig:
    """``dense.fitting``: matches -> start of the instance optimisation (:mod:`vmgga.field.fitting`)."""

    # -1 plain block means; >= 0 confidence-weighted block means plus this many box filters on the
    # control grid
    smoothing_passes: int = 0


@dataclass(frozen=True)
class InstanceConfig:
    """``dense.instance``: Adam on a control-grid velocity, regularised, integrated (:mod:`vmgga.field.instance`)."""

    iterations: int = 40  # Adam steps (0: the fitted matches only, smoothed and integrated)
    learning_rate: float = 0.5  # Adam step size (control-grid voxels) of the first step
    final_learning_rate: float = 0.1  # step size of the last step (geometric decay in between)
    # control grid of the velocity in mm (the knob): register() sets grid_spacing_vox to the nearest
    # voxel count at the working spacing (6 mm = 4 voxels at 1.5 mm, 2 at 3 mm). 0: no conversion,
    # grid_spacing_vox is then the knob
    grid_spacing_mm: float = 6.0
    grid_spacing_vox: int = 4  # control grid in working voxels, as the stage receives it (see above)
    feature_spacing_vox: int = 1  # features block-pooled to this for the similarity
    # compare every fixed voxel above ~0 and 2 voxels around them (True), or only the body (the affine
    # stage's foreground rule, enclosed holes filled) and the air within tissue_margin_mm of it (False):
    # the air farther out is then not compared (vmgga.field.instance.tissue_indices)
    compare_air: bool = True
    # the body's margin in mm (the knob): register() sets tissue_margin_vox to the nearest count of
    # similarity-grid voxels (8 at 1.5 mm); 0: tissue_margin_vox is the knob
    tissue_margin_mm: float = 12.0
    tissue_margin_vox: int = 8
    sample_fraction: float = 0.07  # share of the foreground similarity voxels compared per step
    # at most this many voxels per step: the gradient's noise depends on the count, not the share
    max_sample_points: int = 80_000
    feature_channels: int = 0  # PCA-compress the features to this many channels (0: all)
    # pull of the field towards the fitted matches in the Adam loss: this x the block-confidence-weighted
    # mean of |u - u_matches|^2 (working voxels^2) on the control grid; 0 = none
    match_weight: float = 0.0
    smoothing_passes: int = 3  # box filters (3^3) applied to the control-grid velocity
    regularisation: str = "diffusion"  # diffusion | bending
    regularisation_weight: float = 3.0  # weight of the smoothness penalty
    integration_steps: int = 3  # scaling-and-squaring steps (0: no integration)
    # a CT against an MR: this control grid and penalty instead (0: keep the preset's). Both CT-MR dev
    # pairs (abdomen, head; both across subjects) gain organ and brain Dice from the finer, softer
    # field of the inter-patient preset (benchmarks/README.md, session 5)
    ct_mr_grid_spacing_mm: float = 6.0
    ct_mr_regularisation_weight: float = 1.0
    # and these Adam step sizes (0: keep the two above): the larger steps of the inter-patient preset
    ct_mr_learning_rate: float = 0.5
    ct_mr_final_learning_rate: float = 0.1
    # and compare air only if this and compare_air are both True. An average CT template's haze and
    # an MR's noisy air pulled air onto tissue: on the CT-MR head dev pairs leaving air out raises head
    # Dice by 0.02-0.05 and brain Dice by 0.01 (benchmarks/README.md, session 8); skull-stripped MR
    # pairs gain nothing from it, so it stays on there
    ct_mr_compare_air: bool = False


@dataclass(frozen=True)
class DenseConfig:
    """Dense deformable stage: one part per sub-stage, in the order they run.

    Dotted overrides name the part: ``dense.instance.iterations=60``. ``dense.features="vmgga"`` (a
    text for the whole part) is short for ``dense.features.backend="vmgga"``.
    """

    region: RegionConfig = field(default_factory=RegionConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    fitting: FittingConfig = field(default_factory=FittingConfig)
    instance: InstanceConfig = field(default_factory=InstanceConfig)


#: The flat names of the dense settings before they were split into parts -> their new spelling.
#: An old name in an override is refused with a :class:`ConfigError` that names the new one.
RENAMED: dict[str, str] = {
    "dense.matcher_weights": "dense.features.weights",
    "dense.dinov2_path": "dense.features.dinov2_path",
    "dense.learned_feature_weight": "dense.features.learned_weight",
    "dense.slice_step": "dense.features.slice_step_vox",
    "dense.mind_radius": "dense.features.mind_radius_vox",
    "dense.mind_dilation": "dense.features.mind_dilation_vox",
    "dense.matcher": "dense.matching.matcher",
    "dense.grid_spacing": "dense.matching.grid_spacing_vox",
    "dense.search_radius": "dense.matching.search_radius_steps",
    "dense.convex_iterations": "dense.matching.convex_iterations",
    "dense.convex_coupling_first": "dense.matching.convex_coupling_first",
    "dense.convex_coupling_last": "dense.matching.convex_coupling_last",
    "dense.inverse_consistent": "dense.matching.inverse_consistent",
    "dense.confidence_temperature": "dense.matching.confidence_temperature",
    "dense.learned_capture_range_vox": "dense.matching.learned_capture_range_vox",
    "dense.fit_smoothing_passes": "dense.fitting.smoothing_passes",
    "dense.adam_iterations": "dense.instance.iterations",
    "dense.adam_learning_rate": "dense.instance.learning_rate",
    "dense.adam_final_learning_rate": "dense.instance.final_learning_rate",
    "dense.adam_grid_spacing_mm": "dense.instance.grid_spacing_mm",
    "dense.adam_grid_spacing": "dense.instance.grid_spacing_vox",
    "dense.adam_feature_spacing": "dense.instance.feature_spacing_vox",
    "dense.adam_sample_fraction": "dense.instance.sample_fraction",
    "dense.adam_feature_channels": "dense.instance.feature_channels",
    "dense.adam_smoothing_passes": "dense.instance.smoothing_passes",
    "dense.regularisation": "dense.instance.regularisation",
    "dense.regularisation_weight": "dense.instance.regularisation_weight",
    "dense.integration_steps": "dense.instance.integration_steps",
}

#: A part given as one text stands for this field of it (``dense.features="vmgga"``).
PART_SHORTHANDS: dict[str, str] = {"dense.features": "dense.features.backend"}


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
    # Same patient (follow-ups, multi-contrast): the MIND cost volume, then 40 Adam steps on a 12 mm
    # control grid comparing 5 % of the foreground per step. Chosen on the full-size dev pairs and the
    # stroke set together (benchmarks/results/tune_fs_*.md, stroke_tune_*.md): against the former 6 mm
    # grid, 7 % and the fused learned matcher, TRE 0.614 -> ~0.50 mm (full size) and 0.528 -> 0.484 mm
    # (stroke) at about half the dense time. The fused learned matcher no longer wins here (stroke
    # 0.509 vs 0.504 mm on a 9 mm grid) and costs 4 s at full size, so `fast` leaves it out.
    # 30 steps lose on the stroke set (0.570 mm).
    # Adam steps of 0.1 -> 0.03 control voxels (was 0.5 -> 0.1): the cost volume's start is already
    # within about 1 mm, and the large first steps (6 mm on this grid) threw it away. Full-size dev
    # pairs 0.496 -> 0.441 mm, stroke 0.477 -> 0.458 mm (s5_tune_fs_step.md, s5_stroke_step01.md).
    Preset.FAST.value: {
        # --matcher vmgga|fused: the learned matches on half-size volumes. With the pixel descriptors in
        # the Adam loss the start matters little: stroke 0.405 vs 0.403 mm at 3.3 vs 4.9 s a pair
        # (benchmarks/results/s9_stroke_learned_path*.md)
        "dense.matching.learned_pool_factor": 2,
        "dense.instance.grid_spacing_mm": 12.0,
        "dense.instance.sample_fraction": 0.05,
        "dense.instance.learning_rate": 0.1,
        "dense.instance.final_learning_rate": 0.03,
    },
    # The same at a 1.25 mm working grid with 60 steps: 0.385 mm on the full-size dev pairs in about
    # half the time of the former 1 mm grid with a 6 mm control grid (0.419 mm). Adam steps as in fast:
    # stroke 0.383 -> 0.362 mm, full size 0.378 -> 0.376 mm (s5_stroke_acc_learned_s6*.md, s5_tune_fs_accurate_step.md).
    Preset.ACCURATE.value: {
        "preprocess.working_spacing_mm": 1.25,
        "preprocess.max_working_voxels": 256**3,
        "dense.matching.grid_spacing_vox": 6,
        "dense.matching.learned_capture_range_vox": 18.0,  # = its cost volume's range, 6 x 3 (--matcher vmgga|fused)
        # --matcher vmgga|fused on half-size volumes, as in fast: stroke 0.319 mm (learned path) vs 0.362
        # (cost volume) at 7.5 vs 4.8 s; at full size 0.324 mm at 1.9x (s9_stroke_accurate_learned_path*.md)
        "dense.matching.learned_pool_factor": 2,
        "dense.instance.grid_spacing_mm": 12.0,
        "dense.instance.iterations": 60,
        "dense.instance.sample_fraction": 0.05,
        "dense.instance.learning_rate": 0.1,
        "dense.instance.final_learning_rate": 0.03,
    },
    # Different patients (e.g. the abdominal CT-MR pair): the finer 6 mm control grid with a third of
    # the smoothness penalty. On the abdomen pair the 12 mm grid of `fast` loses organ Dice (mr2ct
    # 0.447 -> 0.426, ct2mr 0.470 -> 0.452 with fast's penalty; 0.489 -> 0.454 with this one).
    Preset.INTER_PATIENT.value: {
        "dense.instance.regularisation_weight": 1.0,
    },
}

#: Every settings dataclass by its dotted path (``""``: the root).
NODES: dict[str, type] = {
    "": RegistrationConfig,
    "preprocess": PreprocessConfig,
    "affine": AffineConfig,
    "dense": DenseConfig,
    "dense.region": RegionConfig,
    "dense.features": FeatureConfig,
    "dense.matching": MatchingConfig,
    "dense.fitting": FittingConfig,
    "dense.instance": InstanceConfig,
}


def make_config(preset: str = "fast", **overrides: Any) -> RegistrationConfig:
    """Build a :class:`RegistrationConfig` from a preset plus overrides.

    Args:
        preset: ``fast``, ``accurate`` or ``inter_patient`` (:class:`Preset`).
        **overrides: Either dotted keys (``"dense.instance.iterations": 40``), top-level fields
            (``device="cuda"``) or whole sections and parts as dicts or dataclasses
            (``dense={"features": {"backend": "vmgga"}}``, ``dense=DenseConfig(...)``).

    Raises:
        ConfigError: for an unknown preset, section or field, or a renamed field (naming its new
            spelling, :data:`RENAMED`).
    """
    preset = look_up_option(preset, Preset, "preset")
    flat = {**PRESETS[preset], **flatten_overrides(overrides)}
    leaves: dict[str, dict[str, Any]] = {path: {} for path in NODES}
    for key, value in flat.items():
        parent, name = _check_field(key)
        leaves[parent][name] = value
    leaves[""]["preset"] = preset
    config = _build("", leaves)
    check_options(config)
    return config


def config_value(config: Any, dotted: str) -> Any:
    """``config.dense.instance.iterations`` for ``"dense.instance.iterations"``."""
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def flatten_overrides(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Overrides in every accepted form -> dotted leaf keys.

    ``{"dense": {"instance": {"iterations": 1}}}`` and ``{"dense.instance": {"iterations": 1}}`` ->
    ``{"dense.instance.iterations": 1}``; a section or part given as a dataclass sets all its fields;
    ``dense.features="vmgga"`` -> ``dense.features.backend="vmgga"`` (:data:`PART_SHORTHANDS`).
    """
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if dotted in NODES and dotted and dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if dotted in NODES and dotted and isinstance(value, dict):
            flat.update(flatten_overrides(value, f"{dotted}."))
        elif dotted in PART_SHORTHANDS and isinstance(value, str):
            flat[PART_SHORTHANDS[dotted]] = value
        else:
            flat[dotted] = value
    return flat


def _check_field(dotted: str) -> tuple[str, str]:
    """Validate a dotted leaf key; return ``(parent path, field name)`` (``""``: top level)."""
    if dotted in RENAMED:
        raise ConfigError(f"{dotted} was renamed: use {RENAMED[dotted]} (see vmgga.config.RENAMED)")
    parent, _, name = dotted.rpartition(".")
    if parent not in NODES:
        sections = [path for path in NODES if path and "." not in path]
        known = sections if "." not in parent else [path for path in NODES if path.count(".") == 1]
        raise ConfigError(f"unknown config section {parent!r}; expected one of {known}")
    names = [f.name for f in dataclasses.fields(NODES[parent])]
    if dotted in NODES:
        first = dataclasses.fields(NODES[dotted])[0].name
        raise ConfigError(f"{dotted} is a group of settings: set its fields, e.g. {dotted}.{first}")
    if name not in names:
        where = parent or "RegistrationConfig"
        raise ConfigError(f"unknown config field {name!r} in {where}; expected one of {names}")
    return parent, name


def _build(path: str, leaves: dict[str, dict[str, Any]]) -> Any:
    """The dataclass at ``path`` from its leaf values and its child dataclasses, built recursively."""
    children = {
        child.rpartition(".")[2]: _build(child, leaves)
        for child in NODES
        if child and child.rpartition(".")[0] == path
    }
    return NODES[path](**_tuples(leaves[path]), **children)


#: String options and their allowed values (``device``: :func:`vmgga.device.check_device_name`).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "preprocess.fixed_modality": tuple(m.value for m in Modality),
    "preprocess.moving_modality": tuple(m.value for m in Modality),
    "affine.initialization": ("moments", "geometry"),
    "affine.transform": ("rigid", "affine"),
    "dense.features.backend": tuple(f.value for f in FeatureBackend),
    "dense.features.learned_descriptors": ("auto", "pixel", "fine"),
    "dense.matching.matcher": tuple(m.value for m in MatcherName),
    "dense.instance.regularisation": ("diffusion", "bending"),
}


def check_options(config: RegistrationConfig) -> None:
    """Raise :class:`ConfigError` for a string option outside its allowed values."""
    for dotted, allowed in _OPTIONS.items():
        look_up_option(config_value(config, dotted), allowed, dotted)
    check_device_name(config.device)
    _check_control_grid_knob(config.dense.instance)
    _check_switches(config)
    _check_pixel_axes(config.dense.features.pixel_axes)


def _check_pixel_axes(axes: tuple[int, ...]) -> None:
    """``dense.features.pixel_axes``: one to three different axes among 0, 1, 2."""
    if not axes or len(set(axes)) != len(axes) or not set(axes) <= {0, 1, 2}:
        raise ConfigError(f"dense.features.pixel_axes={axes!r} must be 1-3 different axes among 0, 1, 2")


def _check_switches(config: RegistrationConfig) -> None:
    """Refuse a yes/no setting that is not ``True`` or ``False``: the text ``"false"`` would read as on."""
    for path, node in NODES.items():
        for f in dataclasses.fields(node):
            value = config_value(config, f"{path}.{f.name}" if path else f.name)
            if f.type == "bool" and not isinstance(value, bool):
                name = f"{path}.{f.name}" if path else f.name
                raise ConfigError(f"{name}={value!r} must be true or false")


def _check_control_grid_knob(instance: InstanceConfig) -> None:
    """Refuse a size given in voxels while the one in mm is in force (it would be overwritten): the
    control grid and the body's margin."""
    for name in ("grid_spacing", "tissue_margin"):
        default = getattr(InstanceConfig, f"{name}_vox")
        if getattr(instance, f"{name}_mm") > 0 and getattr(instance, f"{name}_vox") != default:
            raise ConfigError(
                f"dense.instance.{name}_vox={getattr(instance, f'{name}_vox')} has no effect: register() "
                f"sets it from dense.instance.{name}_mm={getattr(instance, f'{name}_mm')}; set that "
                f"instead, or set dense.instance.{name}_mm=0 to give it in voxels"
            )


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON gives lists where the dataclasses hold tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
