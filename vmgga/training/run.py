"""``run_training``: the one entry point of the CLI and of the MONAI bundle's ``configs/train.json``.

It loads the data (split: :mod:`vmgga.training.data`), trains (:class:`Trainer`), writes curves,
evaluates on held-out pairs and saves the final matcher with a provenance record::

    <output_dir>/checkpoint.pt        resumable training state
    <output_dir>/curves.{csv,json,png}
    <output_dir>/vmgga_matcher.pt     final weights (config + state_dict + record)
    <output_dir>/heldout_eval.{json,md}, reliability.png
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vmgga.models.checkpoint import save_checkpoint
from vmgga.training import evaluate
from vmgga.training.config import TrainConfig, load_train_config
from vmgga.training.data import heldout_sampler, source_record, stage_samplers, training_sources
from vmgga.training.trainer import CHECKPOINT_NAME, Trainer, select_device

WEIGHTS_NAME = "vmgga_matcher.pt"


def git_commit() -> str:
    """Commit of the working tree (``unknown`` outside git), ``+dirty`` when ``vmgga/`` has changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "vmgga"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return commit + ("+dirty" if status.stdout.strip() else "")


def make_record(
    config: TrainConfig, trainer: Trainer, sources, seconds: float, device, commit: str
) -> dict[str, Any]:
    """Provenance stored in the weights: command, seed, data + split, steps, commit, time, device."""
    return {
        "command": " ".join(sys.argv),
        "seed": config.seed,
        "steps_done": trainer.step,
        "steps_planned": config.total_steps,
        "pretrain_steps": config.pretrain_steps,
        "finetune_steps": config.finetune_steps,
        "pixel_steps": config.pixel_steps,
        "batch_size": config.batch_size,
        "crop_size": config.crop_size,
        "data": source_record(sources),
        "split": {
            "train_label_maps": list(config.train_label_maps),
            "heldout_label_maps": list(config.heldout_label_maps),
        },
        "git_commit": commit,  # at the start of the run (the code that was imported)
        "wall_seconds": round(seconds, 1),
        "device": str(device),
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "train_config": config.to_dict(),
        # the record of the checkpoint this run started from (None for a run from scratch)
        "init_record": getattr(trainer.model, "record", None) if config.init_weights else None,
    }


def run_training(
    config: TrainConfig | dict | str | Path,
    resume: bool = False,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train (or resume) and return the path of the final weights file.

    Args:
        config: A :class:`TrainConfig`, a dict of its fields, or a YAML/JSON file.
        resume: Continue from ``<output_dir>/checkpoint.pt`` when it exists.
        output_dir: Overrides ``config.output_dir``.
        progress: Show a progress bar.
    """
    config = load_train_config(config, output_dir=str(output_dir) if output_dir else None)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started, out, commit = time.monotonic(), Path(config.output_dir), git_commit()
    device = select_device(config.device)
    sources = training_sources(config)
    trainer = Trainer(config, stage_samplers(config, sources), device=device)
    if resume and (out / CHECKPOINT_NAME).exists():
        trainer.load(out / CHECKPOINT_NAME)
    deadline = None if config.max_wall_minutes is None else started + 60 * config.max_wall_minutes
    trainer.run(out, progress, deadline)
    record = make_record(config, trainer, sources, time.monotonic() - started, device, commit)
    if config.eval_pairs > 0:
        record["heldout_eval"] = heldout_report(trainer.model, config, out)
    return save_checkpoint(trainer.model.cpu(), out / WEIGHTS_NAME, record)


def heldout_report(model, config: TrainConfig, out: Path) -> dict:
    """Evaluate on held-out pairs, write ``heldout_eval.{json,md}`` and ``reliability.png``."""
    sampler = heldout_sampler(config)
    results = evaluate.evaluate_all(model, sampler, config.eval_pairs, config.tolerance_px)
    trained = results[0]
    evaluate.write_results(results, out / "heldout_eval.json")
    (out / "heldout_eval.md").write_text(evaluate.markdown_table(results) + "\n")
    evaluate.plot_reliability(trained, out / "reliability.png")
    evaluate.plot_examples(model, sampler, out / "heldout_examples.png")
    return {
        "accuracy": trained.accuracy,
        "epe_mean_px": trained.epe_mean_px,
        "ece": trained.ece,
        "pairs": trained.pairs,
        "mind_only_accuracy": results[-1].accuracy,
    }
