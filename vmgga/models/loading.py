"""The matcher network as the dense stage loads it: weights from the config, search limited to its
capture range. Shared by the learned matcher (:mod:`vmgga.matching.learned`) and the learned
features (:mod:`vmgga.features.learned`), which sit in different layers above ``models``.
"""

from __future__ import annotations

import torch

from vmgga.config import DenseConfig
from vmgga.models.checkpoint import resolve_weights
from vmgga.models.network import MatcherNet


def capture_range_vox(config: DenseConfig) -> float:
    """Largest displacement (working voxels) the learned matcher's coarse search considers:
    ``config.matching.learned_capture_range_vox``, set on its own (not derived from the cost volume's knobs)."""
    return float(config.matching.learned_capture_range_vox)


def load_matcher_model(config: DenseConfig, device: str | torch.device = "cpu") -> MatcherNet:
    """The network of ``config.features.weights`` (or the shipped weights), in eval mode on ``device``.

    Raises:
        InputError: if no weights are given and none are shipped.
    """
    path = resolve_weights(config.features.weights)
    overrides = {"max_displacement_px": capture_range_vox(config)}
    if config.features.dinov2_path is not None:
        overrides["dinov2_path"] = config.features.dinov2_path
    return MatcherNet.from_checkpoint(path, map_location=device, **overrides)
