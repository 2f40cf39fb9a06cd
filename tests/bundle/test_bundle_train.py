"""``train.json`` runs ``vmgga.training.run_training`` and installs the weights as ``models/model.pt``."""

from __future__ import annotations

import pytest
import torch
from bundle_helpers import BUNDLE, CONFIGS

from tests.training.conftest import TINY_RUN, make_tiny_data_root
from vmgga.models.network import MatcherNet


@pytest.fixture
def data_root(tmp_path):
    """A folder shaped like ``../shared/data``: SynthSeg-style label maps 1-3 and one scan."""
    return make_tiny_data_root(tmp_path / "data")


@pytest.mark.slow  # two training steps of a tiny matcher: ~20 s of CPU
def test_train_config_trains_and_installs_weights(data_root, tmp_path):
    from monai.bundle import run

    model_path = tmp_path / "bundle_models" / "model.pt"
    run(
        config_file=str(CONFIGS / "train.json"), bundle_root=str(BUNDLE), data_root=str(data_root),
        output_dir=str(tmp_path / "run"), device="cpu", seed=3, train_settings=TINY_RUN,
        model_path=str(model_path),
    )  # fmt: skip
    model = MatcherNet.from_checkpoint(model_path)
    assert model.config.coarse_dim == 16  # the tiny architecture of train_settings
    assert model.record["seed"] == 3 and model.record["steps_done"] == 2
    assert (tmp_path / "run" / "vmgga_matcher.pt").is_file()
    flow = model.match(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).flow_px
    assert flow.shape == (1, 2, 32, 32)
