"""Real scans in fine-tuning: the mixed sampler's share and determinism, and the scanner-like
non-monotone look-up of real-scan pairs."""

from __future__ import annotations

import numpy as np
import torch

from tests.training.conftest import TINY_MATCHER, blob_labels
from vmgga.synth.contrast import RandomCorruption, apply_corruption
from vmgga.synth.pairs import MixedSampler
from vmgga.synth.sources import SourceKind, SourceVolume
from vmgga.training.config import TrainConfig
from vmgga.training.data import stage_samplers
from vmgga.training.steps import finetune_step

torch.set_num_threads(1)


def _sources() -> list[SourceVolume]:
    labels = [SourceVolume(f"blobs{i}", SourceKind.LABELS, blob_labels(i)) for i in range(2)]
    scan = np.random.default_rng(3).random((24, 32, 32)).astype(np.float32)
    return [*labels, SourceVolume("scan", SourceKind.INTENSITY, scan)]


def _config(**kw) -> TrainConfig:
    values = dict(batch_size=2, crop_size=32, matcher=TINY_MATCHER, eval_pairs=0, shapes_probability=0.0)
    return TrainConfig(**{**values, **kw})


def test_finetune_draws_real_pairs_at_the_configured_share_and_by_seed():
    sampler = stage_samplers(_config(finetune_real_fraction=0.3), _sources())["finetune"]
    assert isinstance(sampler, MixedSampler)
    picks = [sampler.which(seed) for seed in range(2000)]
    share = np.mean(picks)  # index 1 is the real-scan sampler
    assert abs(share - 0.3) < 0.04
    real_seed = picks.index(1)
    pair = sampler.pair(real_seed)
    assert pair.labels0 is None  # a real-scan (two-view) pair has no labels
    again = sampler.pair(real_seed)
    np.testing.assert_array_equal(pair.image0, again.image0)
    label_seed = picks.index(0)
    assert sampler.pair(label_seed).labels0 is not None


def test_without_a_real_share_finetuning_uses_label_sources_only():
    sampler = stage_samplers(_config(), _sources())["finetune"]
    assert not isinstance(sampler, MixedSampler)
    assert all(s.kind is SourceKind.LABELS for s in sampler.sources)


def test_nonmonotone_lookup_keeps_background_dark_and_can_swap_tissue_order():
    corruption = RandomCorruption(remap_probability=0.0, nonmonotone_probability=1.0, max_noise_std=0.0,
                                  max_log_bias=0.0, log_gamma_std=0.0, max_blur_sigma_px=0.0,
                                  max_resolution_factor=1.0)  # fmt: skip
    image = np.zeros((16, 16), np.float32)
    image[4:12, 4:8], image[4:12, 8:12] = 0.4, 0.9  # two "tissues" on a black background
    swapped = 0
    for seed in range(40):
        params = corruption(np.random.default_rng(seed))
        assert params.remap_knots[0] == 0.0
        out = apply_corruption(image, params)
        assert out[0, 0] <= out[4:12, 4:12].min() + 1e-6  # background stays the darkest
        swapped += out[6, 5] > out[6, 10]
    assert 0 < swapped < 40  # the order of the two tissues changes for some draws, not all


def test_a_finetuning_step_runs_on_a_real_scan_pair():
    from vmgga.models.config import matcher_config_from_dict
    from vmgga.models.network import MatcherNet

    config = _config(finetune_real_fraction=1.0, real_nonmonotone_probability=1.0)
    sampler = stage_samplers(config, _sources())["finetune"]
    batch = sampler.batch([0, 1])
    model = MatcherNet(matcher_config_from_dict(dict(TINY_MATCHER)))
    output = finetune_step(model, batch, config, torch.Generator().manual_seed(0))
    assert torch.isfinite(output.loss)
    assert set(output.parts) >= {"match", "fine", "confidence"}


def test_prefetching_workers_give_the_same_training_as_building_pairs_in_process():
    from vmgga.training.trainer import Trainer

    histories = []
    for workers in (0, 2):
        config = _config(
            data_workers=workers, pretrain_steps=1, finetune_steps=2, contrastive_points=16,
            hardest_negatives=4, hard_fraction=0.5, hard_buffer_size=2, warmup_steps=1, seed=3,
            finetune_real_fraction=0.5,
        )  # fmt: skip
        trainer = Trainer(config, stage_samplers(config, _sources()))
        trainer.run(progress=False)
        histories.append([(row["stage"], round(row["loss"], 6)) for row in trainer.history])
    assert len(histories[0]) == 3
    assert histories[0] == histories[1]
