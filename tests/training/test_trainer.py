"""Training loop: loss goes down on a fixed batch; resuming continues exactly; config parsing."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import TINY_MATCHER, tiny_train_config
from vmgga.errors import ConfigError
from vmgga.models.config import matcher_config_from_dict
from vmgga.models.network import MatcherNet
from vmgga.training.config import load_train_config
from vmgga.training.data import stage_samplers
from vmgga.training.mining import HardExampleBuffer
from vmgga.training.steps import finetune_step
from vmgga.training.trainer import Trainer

torch.set_num_threads(1)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(label_sources):
    config = tiny_train_config()
    batch = stage_samplers(config, label_sources)["finetune"].batch([1, 2])
    torch.manual_seed(0)
    model = MatcherNet(matcher_config_from_dict(TINY_MATCHER))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    values = []
    for _ in range(12):
        output = finetune_step(model, batch, config, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        values.append(output.loss.item())
    assert sum(values[-3:]) / 3 < 0.8 * sum(values[:3]) / 3


def test_resume_continues_identically(label_sources, tmp_path):
    config = tiny_train_config()
    straight = Trainer(config, stage_samplers(config, label_sources))
    for _ in range(config.total_steps):
        straight.train_step()

    first = Trainer(config, stage_samplers(config, label_sources))
    for _ in range(4):  # through the stage change, with hard examples remembered
        first.train_step()
    first.save(tmp_path / "checkpoint.pt")
    resumed = Trainer(config, stage_samplers(config, label_sources))
    resumed.load(tmp_path / "checkpoint.pt")
    while resumed.step < config.total_steps:
        resumed.train_step()

    expected = [(row["stage"], row["loss"]) for row in straight.history]
    assert [(row["stage"], row["loss"]) for row in resumed.history] == expected
    assert resumed.hard.entries == straight.hard.entries
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_hard_example_buffer_keeps_the_hardest_and_pops_them():
    buffer = HardExampleBuffer(capacity=3)
    buffer.update([0.5, 2.0, 1.0, 0.1], [10, 11, 12, 13])
    assert buffer.entries == [(2.0, 11), (1.0, 12), (0.5, 10)]
    buffer.update([0.2], [11])  # seen again: its new, lower loss replaces the old one
    assert [seed for _, seed in buffer.entries] == [12, 10, 11]
    assert buffer.pop_hardest(2) == [12, 10] and buffer.entries == [(0.2, 11)]


def test_config_from_yaml_and_unknown_field(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("seed: 7\nbatch_size: 3\ntrain_label_maps: [1, 2]\nmatcher:\n  coarse_dim: 32\n")
    config = load_train_config(path, output_dir="runs/x")
    assert (config.seed, config.batch_size, config.train_label_maps) == (7, 3, (1, 2))
    assert config.matcher == {"coarse_dim": 32} and config.output_dir == "runs/x"
    with pytest.raises(ConfigError, match="unknown training config fields \\['batchsize'\\]"):
        load_train_config({"batchsize": 3})


def test_init_weights_start_from_a_checkpoint(label_sources, tmp_path):
    from vmgga.models.checkpoint import save_checkpoint

    torch.manual_seed(5)
    source = MatcherNet(matcher_config_from_dict(TINY_MATCHER))
    path = save_checkpoint(source, tmp_path / "start.pt", {"note": "test"})
    config = tiny_train_config(init_weights=str(path), seed=1)
    trainer = Trainer(config, stage_samplers(config, label_sources))
    for key, value in source.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[key]), key
    assert trainer.model.training


def test_no_visual_guidance_refuses_pretraining_and_fine_tunes(label_sources):
    """The MIND-only encoder has no parameters: stage 1 is refused clearly; stage 2 still learns."""
    matcher = {**TINY_MATCHER, "use_visual_guidance": False}
    samplers = stage_samplers(tiny_train_config(), label_sources)
    with pytest.raises(ConfigError, match="set pretrain_steps: 0"):
        Trainer(tiny_train_config(matcher=matcher), samplers)
    trainer = Trainer(tiny_train_config(matcher=matcher, pretrain_steps=0), samplers)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    row = trainer.train_step()
    assert row["stage"] == "finetune"
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters(), strict=True))
