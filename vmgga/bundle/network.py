"""The bundle's network: its checkpoint, ``network_def`` and the ``train.json`` entry point."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from vmgga.io.atomic import atomic_write

logger = logging.getLogger("vmgga.bundle")


def bundle_checkpoint(bundle_root: str | os.PathLike) -> str | None:
    """``<bundle_root>/models/model.pt`` if the bundle ships it, else None (training-free mode)."""
    path = Path(bundle_root) / "models" / "model.pt"
    return str(path) if path.is_file() else None


def load_network(checkpoint: str | os.PathLike | None = None, config: dict[str, Any] | None = None):
    """The bundle's ``network_def``: a :class:`~vmgga.models.network.MatcherNet`.

    Args:
        checkpoint: A matcher checkpoint (it rebuilds its own config and weights); None builds an
            untrained network from ``config``.
        config: :class:`~vmgga.models.config.MatcherConfig` fields, used when ``checkpoint`` is None.
    """
    from vmgga.models.config import matcher_config_from_dict
    from vmgga.models.network import MatcherNet

    if checkpoint is not None:
        return MatcherNet.from_checkpoint(checkpoint)
    return MatcherNet(matcher_config_from_dict(dict(config or {})))


def train_matcher(
    config: Any,
    resume: bool = False,
    model_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """``train.json``: :func:`vmgga.training.run_training`, then optionally install the weights.

    Args:
        config: A :class:`~vmgga.training.config.TrainConfig` (or what ``load_train_config`` takes).
        resume: Continue from the run folder's checkpoint when it exists.
        model_path: If set (e.g. ``<bundle_root>/models/model.pt``), the final weights are copied
            there atomically; None leaves the bundle's weights untouched.
        progress: Show a progress bar.

    Returns:
        The installed weights file, or the run's own weights file when ``model_path`` is None.
    """
    from vmgga.training import run_training

    weights = Path(run_training(config, resume=resume, progress=progress))
    logger.info("training finished: %s", weights)
    if model_path is None:
        return weights
    target = Path(model_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda temporary: shutil.copyfile(weights, temporary))
    logger.info("weights installed as %s", target)
    return target
