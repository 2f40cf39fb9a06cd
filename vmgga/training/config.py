"""Training configuration: a frozen dataclass read from YAML/JSON, a dict or keyword arguments.

``load_train_config`` accepts a :class:`TrainConfig`, a dict (MONAI bundle ``_target_`` style) or
a path to a ``.yaml``/``.json`` file. Unknown keys are errors that name the allowed ones.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmgga.errors import ConfigError
from vmgga.extras import import_optional
from vmgga.synth.sources import HELDOUT_LABEL_MAP_IDS, TRAIN_LABEL_MAP_IDS


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Steps are optimiser steps of ``batch_size`` pairs."""

    # --- run ---
    seed: int = 0  # decides every pair, every sampled point and the initial weights
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    output_dir: str = "runs/vmgga"  # checkpoints, curves, final weights
    max_wall_minutes: float | None = None  # stop (with a checkpoint) after this long; None: no limit
    checkpoint_every: int = 50  # steps between resumable checkpoints
    data_workers: int = 0  # processes building pairs ahead of the steps (0: in the training process)
    prefetch_steps: int = 4  # data_workers > 0: steps whose pairs are requested ahead
    # --- data ---
    data_root: str = "../shared/data"  # folder of the shared datasets
    label_maps_dir: str = "brain-label-maps-synthseg"  # SynthSeg label maps under data_root
    train_label_maps: tuple[int, ...] = TRAIN_LABEL_MAP_IDS  # map numbers used for training
    heldout_label_maps: tuple[int, ...] = HELDOUT_LABEL_MAP_IDS  # never trained on; evaluation only
    cluster_volumes: tuple[str, ...] = (  # real scans turned into label maps by intensity quantiles
        "head-mr-with-skull-masks/MR.nii.gz",
        "brain-t1-with-seg/test_vol.nii.gz",
    )
    intensity_volumes: tuple[str, ...] = (  # real scans for the self-supervised two-view pairs
        "head-mr-with-skull-masks/MR.nii.gz",
        "brain-t1-with-seg/test_vol.nii.gz",
    )
    spacing_mm: float = 1.5  # working spacing of the pipeline
    crop_size: int = 96  # training images are crop_size x crop_size pixels
    shapes_probability: float = 0.2  # share of pairs from random "shapes" label maps
    contrasts: tuple[str, ...] = (
        "ct",
        "t1",
        "t2",
        "pd",
        "flair",
        "random",
    )  # drawn uniformly (repeat = weight)
    skull_strip_probability: float = 0.25  # brain label maps: extra-cerebral labels set to air
    remap_probability: float = 0.3  # chance of a random monotone intensity remap per synthetic image
    max_translation_px: float = 6.0  # image-0 vs image-1 translation ~ U(-max, max) per axis
    max_angle_deg: float = 12.0  # rotation ~ U(-max, max)
    same_contrast_probability: float = 0.0  # share of label pairs with one contrast (curriculum)
    finetune_real_fraction: float = 0.0  # share of fine-tuning pairs from the real intensity volumes
    real_remap_probability: float = 0.5  # real-volume pairs: chance of a monotone remap per image
    real_nonmonotone_probability: float = 0.0  # ... of a non-monotone remap (a scanner-like contrast)
    # --- optimisation ---
    batch_size: int = 4  # pairs per step
    pretrain_steps: int = 100  # stage 1: encoder-only dense InfoNCE
    finetune_steps: int = 400  # stage 2: full matcher, all losses
    # stage 3: the stride-1 pixel head alone, the rest frozen (needs matcher.pixel_dim > 0)
    pixel_steps: int = 0
    learning_rate: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 20  # linear warm-up, then cosine decay to 10 %
    grad_clip: float = 1.0  # gradient norm clip
    # --- losses ---
    temperature: float = 0.1  # InfoNCE temperature
    contrastive_points: int = 192  # anchor points per pair and pyramid level
    hardest_negatives: int | None = 32  # keep the k most similar negatives (None: all)
    exclusion_radius_px: float = 3.0  # negatives closer than this to the positive are ignored
    exclusion_stride_factor: float = 2.0  # ... and closer than this many cells of the level's stride
    match_weight: float = 1.0  # coarse dual-softmax NLL
    fine_weight: float = 0.1  # Charbonnier end-point error of the final flow
    contrastive_weight: float = 0.5  # InfoNCE on the fused pyramid during fine-tuning
    cycle_weight: float = 0.05  # forward-backward cycle error (0: no backward pass)
    smoothness_weight: float = 0.02  # diffusion regulariser of the flow
    confidence_weight: float = 0.2  # BCE of the confidence against "within tolerance"
    tolerance_px: float = 2.0  # a match is right when its end-point error is below this
    pixel_points: int = 256  # stage 3: anchors per pair
    pixel_window_px: int = 4  # stage 3: each anchor competes with the pixels within this of its match
    pixel_temperature: float = 0.05  # stage 3: softmax temperature on cosines
    # --- hard example mining ---
    hard_fraction: float = 0.25  # share of each fine-tuning batch re-drawn from the hardest pairs
    hard_buffer_size: int = 64  # hardest pairs remembered (by matching loss)
    # --- evaluation ---
    eval_pairs: int = 48  # held-out synthetic pairs for the final report
    # --- model ---
    matcher: dict[str, Any] = field(default_factory=dict)  # MatcherConfig overrides
    # start from this matcher checkpoint (its config wins over `matcher`, except that `matcher` may
    # add a pixel head, pixel_dim / pixel_width, to a checkpoint without one)
    init_weights: str | None = None

    @property
    def total_steps(self) -> int:
        """Pre-training, fine-tuning and pixel-head steps."""
        return self.pretrain_steps + self.finetune_steps + self.pixel_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def load_train_config(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a config, a dict or a YAML/JSON file, plus keyword overrides.

    Raises:
        ConfigError: for a missing file or an unknown field.
    """
    if isinstance(config, TrainConfig):
        values = dataclasses.asdict(config)
    elif isinstance(config, dict):
        values = dict(config)
    elif config is None:
        values = {}
    else:
        values = _read_file(Path(config))
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown training config fields {unknown}; expected some of {names}")
    return TrainConfig(**{k: _tuple(v) if k != "matcher" else dict(v) for k, v in values.items()})


def _read_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON file into a dict."""
    if not path.is_file():
        raise ConfigError(f"training config {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        values = json.loads(text)
    else:
        yaml = import_optional("yaml", extra="train", feature=f"the YAML training config {path}")
        values = yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ConfigError(
            f"training config {path} must hold a mapping of fields, got {type(values).__name__}"
        )
    return values


def _tuple(value: Any) -> Any:
    """YAML/JSON lists become tuples (the dataclass is frozen and hashable-ish)."""
    return tuple(value) if isinstance(value, list) else value
