"""MIND-SSC and the learned features together: ``mind+vmgga``.

The two descriptors are concatenated along channels, the learned ones scaled by the square root of
``dense.features.pixel_weight`` (stride-1 pixel descriptors) or ``dense.features.learned_weight``
(the stride-2 fine ones), so that the squared feature distance the dense stage minimises is

    |f_mind(x) - m_mind(y)|^2 + w * |f_vmgga(x) - m_vmgga(y)|^2.

MIND keeps the precise, training-free local structure; the learned features add what training on
synthetic multi-contrast pairs taught the network. ``w = 0`` is exactly the MIND-only path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vmgga.config import DenseConfig, FeatureBackend
from vmgga.errors import ConfigError
from vmgga.features.mind import MindSscExtractor

#: MIND-SSC's channel count: the first family of ``mind+vmgga`` features.
MIND_CHANNELS = 12


def feature_families(config: DenseConfig, channels: int) -> tuple[int, ...]:
    """Channel counts of the families a ``(1, channels, ...)`` feature volume of ``config`` stacks:
    ``(12, channels - 12)`` for ``mind+vmgga`` (MIND, then learned), else ``(channels,)``."""
    if config.features.backend == FeatureBackend.HYBRID.value and channels > MIND_CHANNELS:
        return (MIND_CHANNELS, channels - MIND_CHANNELS)
    return (channels,)


def weighted_concat(mind: Tensor, learned: Tensor, weight: float) -> Tensor:
    """``(1, Cm, D, H, W)`` and ``(1, Cl, D, H, W)`` -> ``(1, Cm + Cl, D, H, W)``, learned x sqrt(weight)."""
    if weight < 0:
        raise ConfigError(f"dense.features.learned_weight must be >= 0; got {weight}")
    if mind.shape[2:] != learned.shape[2:]:
        raise ConfigError(
            f"MIND {tuple(mind.shape)} and learned {tuple(learned.shape)} features differ in size"
        )
    out = mind.new_empty((mind.shape[0], mind.shape[1] + learned.shape[1], *mind.shape[2:]))
    out[:, : mind.shape[1]] = mind
    torch.mul(learned, math.sqrt(weight), out=out[:, mind.shape[1] :])  # one pass, no scaled copy
    return out


class HybridFeatureExtractor:
    """:class:`vmgga.features.base.FeatureExtractor` of the ``mind+vmgga`` backend."""

    name = "mind+vmgga"

    def __init__(self, config: DenseConfig, device: str | torch.device = "cpu", learned=None) -> None:
        from vmgga.features.learned import LearnedFeatureExtractor

        self.mind = MindSscExtractor(
            radius=config.features.mind_radius_vox, dilation=config.features.mind_dilation_vox, device=device
        )
        self.learned = learned or LearnedFeatureExtractor(config, device)
        pixels = getattr(self.learned, "uses_pixels", False)
        self.weight = float(config.features.pixel_weight if pixels else config.features.learned_weight)

    def extract(self, volume: Tensor) -> Tensor:
        """``(1, 1, D, H, W)`` in ~[0, 1] -> ``(1, 12 + C, D, H, W)`` (see module docstring)."""
        return weighted_concat(self.mind.extract(volume), self.learned.extract(volume), self.weight)
