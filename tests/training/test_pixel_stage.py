"""The pixel head's stage: a head added to a checkpoint, trained alone, the rest left exactly as it was."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.conftest import TINY_MATCHER, tiny_train_config
from vmgga.errors import ConfigError
from vmgga.models.checkpoint import save_checkpoint
from vmgga.models.config import matcher_config_from_dict
from vmgga.models.network import MatcherNet
from vmgga.training.config import TrainConfig
from vmgga.training.data import stage_samplers
from vmgga.training.trainer import Trainer, lr_factor, stage_at

torch.set_num_threads(1)


def _config(**kw) -> TrainConfig:
    """The trainer tests' tiny config, the pixel head's stage alone."""
    return tiny_train_config(
        **{"pretrain_steps": 0, "finetune_steps": 0, "pixel_steps": 3, "pixel_points": 32, **kw}
    )


def _checkpoint(tmp_path, **matcher):
    torch.manual_seed(5)
    source = MatcherNet(matcher_config_from_dict({**TINY_MATCHER, **matcher}))
    return source, save_checkpoint(source, tmp_path / "start.pt", {"note": "v-test"})


def test_a_head_is_added_to_a_checkpoint_and_only_it_learns(label_sources, tmp_path):
    source, path = _checkpoint(tmp_path)
    config = _config(init_weights=str(path), matcher={"pixel_dim": 4, "pixel_width": 6})
    trainer = Trainer(config, stage_samplers(config, label_sources))
    assert trainer.model.has_pixel_head and trainer.model.config.pixel_dim == 4
    head_before = {k: v.clone() for k, v in trainer.model.pixel_head.state_dict().items()}
    for _ in range(config.total_steps):
        row = trainer.train_step()
    assert row["stage"] == "pixel" and 0.0 <= row["pixel_top1"] <= 1.0
    state = trainer.model.state_dict()
    for key, value in source.state_dict().items():  # every weight and batch-norm statistic
        assert torch.equal(value, state[key]), key
    assert any(not torch.equal(v, trainer.model.pixel_head.state_dict()[k]) for k, v in head_before.items())


def test_the_pixel_stage_needs_a_head_and_keeps_an_existing_one(label_sources, tmp_path):
    _, path = _checkpoint(tmp_path)
    samplers = stage_samplers(_config(), label_sources)
    with pytest.raises(ConfigError, match="matcher.pixel_dim > 0"):
        Trainer(_config(init_weights=str(path), matcher={}), samplers)
    source, with_head = _checkpoint(tmp_path / "h", pixel_dim=3)
    trainer = Trainer(_config(init_weights=str(with_head), matcher={"pixel_dim": 5}), samplers)
    assert trainer.model.config.pixel_dim == 3  # the checkpoint's head wins, as its config does
    torch.testing.assert_close(trainer.model.pixel_head.state_dict(), source.pixel_head.state_dict())


def test_three_stages_in_order_each_with_its_own_schedule():
    config = TrainConfig(pretrain_steps=2, finetune_steps=3, pixel_steps=4, warmup_steps=1)
    assert config.total_steps == 9
    assert [stage_at(s, config) for s in range(9)] == ["pretrain"] * 2 + ["finetune"] * 3 + ["pixel"] * 4
    # each stage restarts its warm-up: the first step of every stage has the same factor
    assert lr_factor(0, config) == lr_factor(2, config) == lr_factor(5, config) == 1.0
    # then cosine from 1 towards 10 % over the rest of the stage: pixel step 3 of 4 is 2/3 of the way
    assert lr_factor(8, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 2 / 3)))
