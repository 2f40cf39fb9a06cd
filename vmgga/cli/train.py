"""``vmgga train --config CONFIG [--resume] [--output DIR]``: train the VMGGA matcher."""

from __future__ import annotations

import argparse

HELP = "train the VMGGA matcher on synthetic multimodal pairs (see configs/train_cpu.yaml)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vmgga train``."""
    parser.add_argument(
        "--config", required=True, help="training config (.yaml or .json, fields of TrainConfig)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt if present")
    parser.add_argument("--output", default=None, help="output folder (overrides the config's output_dir)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (overrides the config)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train; print the path of the final weights. Returns the exit status."""
    from vmgga.training import load_train_config, run_training

    config = load_train_config(
        args.config,
        output_dir=args.output,
        device=args.device,
        seed=args.seed,
        max_wall_minutes=args.max_minutes,
    )
    weights = run_training(config, resume=args.resume, progress=not args.quiet)
    print(f"weights: {weights}")
    return 0
