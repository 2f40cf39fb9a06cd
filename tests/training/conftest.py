"""Tiny models, sources and data folders for the training tests (no ../shared needed)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vmgga.synth.sources import SourceKind, SourceVolume

#: A matcher small enough for CPU unit tests.
TINY_MATCHER = {
    "encoder_channels": [8, 12, 16],
    "coarse_dim": 16,
    "fine_dim": 8,
    "attention_layers": 1,
    "attention_heads": 2,
    "confidence_hidden": 4,
    "fine_window": 5,
}


#: A training run on :func:`make_tiny_data_root`'s folder, small enough for a CPU test.
TINY_RUN = {
    "num_threads": 1,
    "train_label_maps": [1, 2],
    "heldout_label_maps": [3],
    "cluster_volumes": ["scan/scan.nii.gz"],
    "intensity_volumes": ["scan/scan.nii.gz"],
    "crop_size": 32,
    "batch_size": 2,
    "pretrain_steps": 1,
    "finetune_steps": 1,
    "contrastive_points": 16,
    "hardest_negatives": 4,
    "eval_pairs": 0,
    "matcher": TINY_MATCHER,
}


def tiny_train_config(**overrides):
    """A :class:`TrainConfig` small enough for in-process trainer tests (2 + 4 steps of 2 crops of
    32 px on :data:`TINY_MATCHER`), with ``overrides``."""
    from vmgga.training.config import TrainConfig

    values = dict(
        batch_size=2,
        crop_size=32,
        pretrain_steps=2,
        finetune_steps=4,
        contrastive_points=32,
        hardest_negatives=8,
        hard_fraction=0.5,
        hard_buffer_size=4,
        warmup_steps=1,
        checkpoint_every=100,
        matcher=TINY_MATCHER,
        eval_pairs=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def blob_labels(seed: int, shape=(24, 32, 32), n_labels: int = 6) -> np.ndarray:
    """Smooth random label volume with ``n_labels`` labels (0 = background)."""
    noise = np.random.default_rng(seed).normal(size=(n_labels, *shape))
    return ndimage.gaussian_filter(noise, (0, 2, 2, 2)).argmax(0).astype(np.int16)


@pytest.fixture
def label_sources() -> list[SourceVolume]:
    return [SourceVolume(f"blobs{i}", SourceKind.LABELS, blob_labels(i)) for i in range(2)]


def make_tiny_data_root(folder):
    """Fill ``folder`` like ../shared/data: SynthSeg-style label maps 1-3 and one intensity scan."""
    maps = folder / "brain-label-maps-synthseg"
    maps.mkdir(parents=True)
    for i in (1, 2, 3):
        labels = blob_labels(i, (30, 30, 30)).astype(np.int16) * 2  # even FreeSurfer-like values
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(maps / f"training_seg_{i:02d}.nii.gz"))
    scan = ndimage.gaussian_filter(np.random.default_rng(9).random((30, 30, 30)), 2).astype(np.float32)
    (folder / "scan").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(scan * 100), str(folder / "scan" / "scan.nii.gz"))
    return folder


@pytest.fixture
def data_root(tmp_path):
    """A folder shaped like ../shared/data: label maps 1-3 and one intensity scan."""
    return make_tiny_data_root(tmp_path)
