"""Training and held-out pair samplers built from a :class:`TrainConfig` (the split lives here)."""

from __future__ import annotations

from pathlib import Path

from vmgga.synth.contrast import RandomContrast, RandomCorruption
from vmgga.synth.deformation import RandomDeformation
from vmgga.synth.pairs import MixedSampler, PairSampler, RandomPair
from vmgga.synth.sources import (
    SourceKind,
    SourceVolume,
    label_map_path,
    load_cluster_source,
    load_intensity_source,
    load_label_map_source,
)
from vmgga.training.config import TrainConfig

#: Seeds of held-out evaluation pairs start here (training pair seeds are far below).
HELDOUT_SEED_OFFSET = 10**12


def training_sources(config: TrainConfig) -> list[SourceVolume]:
    """Training label maps, clustered scans and real intensity volumes (held-out maps excluded)."""
    root = Path(config.data_root)
    overlap = set(config.train_label_maps) & set(config.heldout_label_maps)
    if overlap:
        from vmgga.errors import ConfigError

        raise ConfigError(f"label maps {sorted(overlap)} are both in training and held out")
    sources = [
        load_label_map_source(label_map_path(root / config.label_maps_dir, i), config.spacing_mm)
        for i in config.train_label_maps
    ]
    sources += [load_cluster_source(root / p, spacing_mm=config.spacing_mm) for p in config.cluster_volumes]
    sources += [load_intensity_source(root / p, config.spacing_mm) for p in config.intensity_volumes]
    return sources


def heldout_sources(config: TrainConfig) -> list[SourceVolume]:
    """The held-out SynthSeg label maps (never used in training)."""
    folder = Path(config.data_root) / config.label_maps_dir
    return [
        load_label_map_source(label_map_path(folder, i), config.spacing_mm) for i in config.heldout_label_maps
    ]


def random_pair(config: TrainConfig, shapes_probability: float | None = None) -> RandomPair:
    """The pair distribution of ``config``."""
    shapes = config.shapes_probability if shapes_probability is None else shapes_probability
    contrast = RandomContrast(
        contrasts=tuple(config.contrasts),
        skull_strip_probability=config.skull_strip_probability,
        corruption=RandomCorruption(remap_probability=config.remap_probability),
    )
    deformation = RandomDeformation(
        max_angle_deg=config.max_angle_deg, max_translation_px=config.max_translation_px
    )
    real = RandomCorruption(
        remap_probability=config.real_remap_probability,
        nonmonotone_probability=config.real_nonmonotone_probability,
    )
    return RandomPair(
        crop_hw=(config.crop_size, config.crop_size),
        shapes_probability=shapes,
        deformation=deformation,
        contrast=contrast,
        same_contrast_probability=config.same_contrast_probability,
        corruption=real,
    )


def stage_samplers(config: TrainConfig, sources: list[SourceVolume]) -> dict[str, PairSampler | MixedSampler]:
    """``pretrain``: every source (two-view and two-contrast pairs); ``finetune``: label sources,
    plus real intensity volumes for ``finetune_real_fraction`` of the pairs (no shapes among those);
    ``pixel`` (the pixel head's stage): the fine-tuning pairs."""
    labels = [s for s in sources if s.kind is SourceKind.LABELS]
    finetune: PairSampler | MixedSampler = PairSampler(labels, random_pair(config))
    real = [s for s in sources if s.kind is SourceKind.INTENSITY]
    fraction = config.finetune_real_fraction
    if fraction > 0 and real:
        real_sampler = PairSampler(real, random_pair(config, shapes_probability=0.0))
        finetune = MixedSampler([finetune, real_sampler], (1.0 - fraction, fraction))
    return {"pretrain": PairSampler(sources, random_pair(config)), "finetune": finetune, "pixel": finetune}


def heldout_sampler(config: TrainConfig, sources: list[SourceVolume] | None = None) -> PairSampler:
    """Cross-modal pairs from the held-out label maps only (no shapes, no training maps)."""
    return PairSampler(sources if sources is not None else heldout_sources(config), random_pair(config, 0.0))


def source_record(sources: list[SourceVolume]) -> list[str]:
    """Names of the sources, for the training record."""
    return [f"{s.kind.value}:{s.name}" for s in sources]
