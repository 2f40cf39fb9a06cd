"""End to end: ``vmgga train`` on a tiny data folder writes curves, evaluation and loadable weights."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.training.conftest import TINY_RUN
from vmgga.cli.main import main
from vmgga.models.network import MatcherNet


@pytest.mark.slow
def test_cli_train_writes_weights_with_record_and_curves(data_root, tmp_path):
    config = {**TINY_RUN, "data_root": str(data_root), "finetune_steps": 2, "eval_pairs": 2}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--output", str(out), "--quiet", "--seed", "3"]) == 0

    model = MatcherNet.from_checkpoint(out / "vmgga_matcher.pt")
    record = model.record
    assert record["seed"] == 3 and record["steps_done"] == 3
    assert record["split"] == {"train_label_maps": [1, 2], "heldout_label_maps": [3]}
    assert any("training_seg_01" in name for name in record["data"])
    assert not any("training_seg_03" in name for name in record["data"])  # held out
    assert set(record["heldout_eval"]["accuracy"]) == {"1px", "2px", "4px"}
    history = json.loads((out / "curves.json").read_text())
    assert [row["stage"] for row in history] == ["pretrain", "finetune", "finetune"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "reliability.png").stat().st_size > 0
    flow = model.match(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).flow_px
    assert flow.shape == (1, 2, 32, 32)
