"""The training loop: two stages, resumable checkpoints, deterministic from the seed.

Step ``s`` draws the pairs ``pair_seeds(seed, s, B)`` (some replaced by the hardest remembered
pairs during fine-tuning) and samples its contrastive points with a generator seeded by
``(seed, s)``. A checkpoint stores the model, optimiser, scheduler, torch RNG, step, hard-example
buffer and history, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vmgga.device import resolve_device
from vmgga.errors import ConfigError
from vmgga.models.config import matcher_config_from_dict
from vmgga.models.network import MatcherNet
from vmgga.synth.pairs import PairSampler, SyntheticPair, collate
from vmgga.training.config import TrainConfig
from vmgga.training.curves import write_history
from vmgga.training.mining import HardExampleBuffer
from vmgga.training.steps import StepOutput, finetune_step, pixel_step, pretrain_step

CHECKPOINT_NAME = "checkpoint.pt"


def select_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu (:func:`vmgga.device.resolve_device`)."""
    return torch.device(resolve_device(name))


def pair_seeds(seed: int, step: int, count: int) -> list[int]:
    """The fresh pair seeds of a step (uint32, distinct streams per (seed, step))."""
    return [int(s) for s in np.random.SeedSequence([seed, step]).generate_state(count)]


#: Matcher fields that ``TrainConfig.matcher`` may add to an ``init_weights`` checkpoint (a new head).
PIXEL_HEAD_FIELDS = ("pixel_dim", "pixel_width")


def build_model(config: TrainConfig) -> MatcherNet:
    """The matcher to train: ``config.init_weights`` if given, else fresh weights from ``config.seed``.

    A checkpoint without a pixel head gets a fresh one when ``config.matcher`` asks for it
    (``pixel_dim`` > 0); every other weight is the checkpoint's.

    Raises:
        ConfigError: if ``config.matcher`` changes any other field of an ``init_weights`` checkpoint's
            architecture, or a pixel head that the checkpoint already has.
    """
    torch.manual_seed(config.seed)
    if not config.init_weights:
        return MatcherNet(matcher_config_from_dict(dict(config.matcher)))
    model = MatcherNet.from_checkpoint(config.init_weights)
    added = {k: v for k, v in config.matcher.items() if k in PIXEL_HEAD_FIELDS}
    if not added.get("pixel_dim") or model.has_pixel_head:
        return model.train()
    grown = MatcherNet(dataclasses.replace(model.config, **added))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pixel_head.") for k in missing):
        raise ConfigError(
            f"{config.init_weights} does not fit a pixel head: missing {missing}, unexpected {unexpected}"
        )
    grown.record = model.record
    return grown.train()


def stage_bounds(config: TrainConfig) -> list[tuple[str, int, int]]:
    """``(stage, first step, length)`` of pre-training, fine-tuning and the pixel head, in order."""
    lengths = (
        ("pretrain", config.pretrain_steps),
        ("finetune", config.finetune_steps),
        ("pixel", config.pixel_steps),
    )
    bounds, first = [], 0
    for name, length in lengths:
        bounds.append((name, first, length))
        first += length
    return bounds


def stage_at(step: int, config: TrainConfig) -> str:
    """The stage that step ``step`` belongs to (the last one beyond the end)."""
    for name, first, length in stage_bounds(config):
        if step < first + length:
            return name
    return "pixel" if config.pixel_steps else "finetune"


def lr_factor(step: int, config: TrainConfig) -> float:
    """Per-stage linear warm-up then cosine decay to 10 % of the peak learning rate."""
    name = stage_at(step, config)
    _, first, length = next(b for b in stage_bounds(config) if b[0] == name)
    local = step - first
    warmup = max(1, min(config.warmup_steps, length // 4))
    if local < warmup:
        return (local + 1) / warmup
    progress = (local - warmup) / max(1, length - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))


def check_pretraining_has_parameters(model: MatcherNet, config: TrainConfig) -> None:
    """Stage 1 trains the encoder only: refuse it for an encoder without trainable parameters.

    Raises:
        ConfigError: ``pretrain_steps > 0`` with a parameter-free encoder (``use_visual_guidance:
            false`` or ``backend: mind``), which would have nothing to learn.
    """
    trainable = any(p.requires_grad for p in model.encoder.parameters())
    if config.pretrain_steps > 0 and not trainable:
        raise ConfigError(
            f"pretrain_steps={config.pretrain_steps}, but this encoder ({type(model.encoder).__name__}: "
            "use_visual_guidance false or backend mind) has no trainable parameters; set pretrain_steps: 0"
        )


#: The samplers of the running :class:`PairPrefetcher`, inherited by its forked worker processes.
_WORKER_SAMPLERS: dict = {}


def _build_pair(stage: str, seed: int) -> SyntheticPair:
    """Worker side of :class:`PairPrefetcher`: pair ``seed`` of ``stage``'s sampler."""
    return _WORKER_SAMPLERS[stage].pair(seed)


class PairPrefetcher:
    """Builds training pairs in ``workers`` forked processes, ahead of the steps that need them.

    Pairs are pure functions of (stage, seed), so a prefetched batch is identical to one built in
    the training process: only the wall time changes (the pair synthesis runs on the CPU cores while
    the accelerator trains). Linux only (``fork``: workers share the loaded sources).
    """

    def __init__(self, samplers: dict, workers: int) -> None:
        _WORKER_SAMPLERS.clear()
        _WORKER_SAMPLERS.update(samplers)
        self.pool = multiprocessing.get_context("fork").Pool(workers)
        self.pending: dict[tuple[str, int], multiprocessing.pool.AsyncResult] = {}

    def request(self, stage: str, seeds: list[int]) -> None:
        """Start building these pairs (no-op for those already under way)."""
        for seed in seeds:
            if (stage, seed) not in self.pending:
                self.pending[(stage, seed)] = self.pool.apply_async(_build_pair, (stage, int(seed)))

    def batch(self, stage: str, seeds: list[int]) -> dict:
        """The collated batch of these pairs (built now if not requested before)."""
        self.request(stage, seeds)
        return collate([self.pending.pop((stage, int(s))).get() for s in seeds])

    def close(self) -> None:
        self.pool.terminate()
        self.pending.clear()


@dataclass
class Trainer:
    """Holds everything that changes during training; :meth:`step` advances it by one step."""

    config: TrainConfig
    samplers: dict[str, PairSampler]  # "pretrain" and "finetune"
    model: MatcherNet | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    step: int = 0
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        workers = self.config.data_workers
        self.prefetcher = PairPrefetcher(self.samplers, workers) if workers > 0 else None
        self.model = (self.model or build_model(self.config)).to(self.device)
        check_pretraining_has_parameters(self.model, self.config)
        if self.config.pixel_steps > 0 and not self.model.has_pixel_head:
            raise ConfigError(
                f"pixel_steps={self.config.pixel_steps} needs a pixel head: set matcher.pixel_dim > 0"
            )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.config)
        )
        self.hard = HardExampleBuffer(self.config.hard_buffer_size)

    @property
    def stage(self) -> str:
        return stage_at(self.step, self.config)

    def stage_of(self, step: int) -> str:
        return stage_at(step, self.config)

    def fresh_seeds(self, step: int) -> list[int]:
        """The fresh (not hard-example) pair seeds of ``step`` when the hard buffer is full enough."""
        batch = self.config.batch_size
        n_hard = int(round(self.config.hard_fraction * batch)) if self.stage_of(step) == "finetune" else 0
        return pair_seeds(self.config.seed, step, batch)[: batch - n_hard]

    def batch_seeds(self) -> list[int]:
        """Fresh seeds, the last ``hard_fraction`` of them replaced by remembered hard pairs."""
        batch = self.config.batch_size
        seeds = pair_seeds(self.config.seed, self.step, batch)
        n_hard = int(round(self.config.hard_fraction * batch)) if self.stage == "finetune" else 0
        if n_hard and len(self.hard.entries) >= n_hard:
            seeds = seeds[: batch - n_hard] + self.hard.pop_hardest(n_hard)
        return seeds

    def _batch(self, stage: str, seeds: list[int]) -> dict:
        """The step's batch: from the prefetching workers (asking for the next steps' pairs too), or built here."""
        if self.prefetcher is None:
            return self.samplers[stage].batch(seeds)
        ahead = range(self.step + 1, min(self.step + 1 + self.config.prefetch_steps, self.config.total_steps))
        for step in ahead:
            self.prefetcher.request(self.stage_of(step), self.fresh_seeds(step))
        return self.prefetcher.batch(stage, seeds)

    def train_step(self) -> dict:
        """One optimiser step; returns the logged row."""
        started = time.perf_counter()
        stage, seeds = self.stage, self.batch_seeds()
        batch = {k: v.to(self.device) for k, v in self._batch(stage, seeds).items()}
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed * 1_000_003 + self.step)
        self.model.train()
        run = {"pretrain": pretrain_step, "finetune": finetune_step, "pixel": pixel_step}[stage]
        learning_rate = self.optimizer.param_groups[0]["lr"]
        output: StepOutput = run(self.model, batch, self.config, generator)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if output.pair_losses:
            self.hard.update(output.pair_losses, seeds)
        row = {"step": self.step, "stage": stage, "lr": learning_rate, **output.parts}
        row["seconds"] = time.perf_counter() - started
        self.history.append(row)
        self.step += 1
        return row

    # --- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume (tensors, numbers, strings, lists, dicts only)."""
        return {
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "hard": self.hard.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.hard.load_state_dict(state["hard"])
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])

    def save(self, path: str | Path) -> Path:
        """Atomically write a resumable checkpoint."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save`."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def run(
        self, output_dir: Path | None = None, progress: bool = True, deadline: float | None = None
    ) -> None:
        """Train until ``total_steps`` or ``deadline`` (``time.monotonic()``); checkpoint regularly."""
        from tqdm import tqdm

        total = self.config.total_steps
        bar = tqdm(total=total, initial=self.step, disable=not progress, desc="vmgga train", mininterval=5)
        while self.step < total:
            row = self.train_step()
            bar.update(1)
            bar.set_postfix(stage=row["stage"], loss=f"{row['loss']:.3f}")
            done = self.step == total or (deadline is not None and time.monotonic() > deadline)
            if output_dir is not None and (done or self.step % self.config.checkpoint_every == 0):
                self.save(output_dir / CHECKPOINT_NAME)
                write_history(self.history, output_dir)
            if done:
                break
        bar.close()
        if self.prefetcher is not None:
            self.prefetcher.close()
