"""Training of the matcher network: losses, hard example mining, two-stage loop, evaluation.

``run_training(config)`` is the entry point of ``vmgga train`` and of the MONAI bundle.
"""

from __future__ import annotations

from vmgga.training.config import TrainConfig, load_train_config
from vmgga.training.run import run_training

__all__ = ["TrainConfig", "load_train_config", "run_training"]
