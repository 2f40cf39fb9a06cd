"""Matcher checkpoints: ``{"config": asdict(MatcherConfig), "state_dict": ..., "record": {...}}``.

A checkpoint rebuilds its own model (the config travels with the weights) and is read with
``torch.load(..., weights_only=True)``, so it holds plain tensors, numbers, strings, lists and dicts only.
Frozen third-party backbones (the DINOv2 model of ``backend="dinov2"``) are not stored: they are
loaded again from ``MatcherConfig.dinov2_path``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vmgga.errors import InputError
from vmgga.models.config import MatcherConfig, matcher_config_from_dict

#: State-dict key prefix of frozen backbones that are not saved in checkpoints.
FROZEN_PREFIX = "encoder.backbone."

#: Where the shipped weights live inside the package (written by ``vmgga train``).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "vmgga_matcher.pt"


def save_checkpoint(model: torch.nn.Module, path: str | Path, record: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :class:`~vmgga.models.network.MatcherNet`) atomically to ``path``.

    Args:
        model: The network; its ``config`` attribute is stored with the weights.
        path: Output file (``.pt``).
        record: JSON-like provenance (command, seed, data, steps, git commit, metrics...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith(FROZEN_PREFIX)}
    payload = {"config": model.config.to_dict(), "state_dict": state, "record": dict(record or {})}
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file into its dict (weights only, no pickled code).

    Raises:
        InputError: if the file is missing or is not a matcher checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"matcher weights {path} do not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise InputError(
            f"matcher weights {path} cannot be read: not a PyTorch checkpoint, or damaged ({type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or not {"config", "state_dict"} <= set(payload):
        raise InputError(f"{path} is not a VMGGA matcher checkpoint (needs 'config' and 'state_dict')")
    return payload


def config_from_checkpoint(payload: dict[str, Any], **overrides: Any) -> MatcherConfig:
    """The :class:`MatcherConfig` stored in a checkpoint dict, with optional field overrides."""
    return matcher_config_from_dict({**payload["config"], **overrides})


def checkpoint_has_pixel_head(path: str | Path | None) -> bool:
    """Whether the checkpoint at ``path`` (None: the shipped one) has a stride-1 pixel head."""
    payload = load_checkpoint_dict(resolve_weights(path))
    return int(payload["config"].get("pixel_dim", 0)) > 0


def resolve_weights(path: str | Path | None) -> Path:
    """The checkpoint to load: ``path`` if given, else the shipped weights.

    Raises:
        InputError: if ``path`` does not exist, or none is given and no weights are shipped yet.
    """
    if path is not None:
        if not Path(path).is_file():
            raise InputError(f"matcher weights {path} do not exist")
        return Path(path)
    if SHIPPED_WEIGHTS.is_file():
        return SHIPPED_WEIGHTS
    raise InputError(
        f"no trained VMGGA matcher weights are shipped yet ({SHIPPED_WEIGHTS} is absent): "
        "train them with `vmgga train` or pass a checkpoint path (--weights / dense.features.weights)"
    )
