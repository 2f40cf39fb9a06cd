"""``train.json`` runs ``vmgga.training.run_training`` and installs the weights as ``models/model.pt``."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from bundle_helpers import BUNDLE, CONFIGS
from scipy import ndimage

from vmgga.models.network import VMGGANet

#: A matcher and a run small enough for a CPU test.
TINY_SETTINGS = {
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
    "matcher": {
        "encoder_channels": [8, 12, 16],
        "coarse_dim": 16,
        "fine_dim": 8,
        "attention_layers": 1,
        "attention_heads": 2,
        "confidence_hidden": 4,
        "fine_window": 5,
    },
}


def _blob_labels(seed: int, shape=(30, 30, 30), n_labels: int = 6) -> np.ndarray:
    """Smooth random label volume (0 = background)."""
    noise = np.random.default_rng(seed).normal(size=(n_labels, *shape))
    return ndimage.gaussian_filter(noise, (0, 2, 2, 2)).argmax(0).astype(np.int16)


@pytest.fixture
def data_root(tmp_path):
    """A folder shaped like ``../shared/data``: SynthSeg-style label maps 1-3 and one scan."""
    maps = tmp_path / "data" / "brain-label-maps-synthseg"
    maps.mkdir(parents=True)
    for i in (1, 2, 3):
        sitk.WriteImage(
            sitk.GetImageFromArray(_blob_labels(i) * 2), str(maps / f"training_seg_{i:02d}.nii.gz")
        )
    scan = ndimage.gaussian_filter(np.random.default_rng(9).random((30, 30, 30)), 2).astype(np.float32)
    (tmp_path / "data" / "scan").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(scan * 100), str(tmp_path / "data" / "scan" / "scan.nii.gz"))
    return tmp_path / "data"


@pytest.mark.slow  # two training steps of a tiny matcher: ~20 s of CPU
def test_train_config_trains_and_installs_weights(data_root, tmp_path):
    from monai.bundle import run

    model_path = tmp_path / "bundle_models" / "model.pt"
    run(
        config_file=str(CONFIGS / "train.json"), bundle_root=str(BUNDLE), data_root=str(data_root),
        output_dir=str(tmp_path / "run"), device="cpu", seed=3, train_settings=TINY_SETTINGS,
        model_path=str(model_path),
    )  # fmt: skip
    model = VMGGANet.from_checkpoint(model_path)
    assert model.config.coarse_dim == 16  # the tiny architecture of train_settings
    assert model.record["seed"] == 3 and model.record["steps_done"] == 2
    assert (tmp_path / "run" / "vmgga_matcher.pt").is_file()
    flow = model.match(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).flow_px
    assert flow.shape == (1, 2, 32, 32)
