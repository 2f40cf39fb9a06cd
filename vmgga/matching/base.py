"""Dense matching interface: a displacement per working voxel plus its confidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from vmgga.config import DenseConfig, FeatureBackend, MatcherName
from vmgga.errors import look_up_option
from vmgga.features.base import load_backend


@dataclass
class DenseMatch:
    """Result of a :class:`Matcher`.

    Attributes:
        disp_ijk: ``(1, 3, D, H, W)`` displacement in working-grid voxels, channels (i, j, k), at full
            working resolution: fixed voxel ``x`` matches moving voxel ``x + disp_ijk(x)``.
        confidence: ``(1, 1, D, H, W)`` confidence of the match in [0, 1].
    """

    disp_ijk: torch.Tensor
    confidence: torch.Tensor


@runtime_checkable
class Matcher(Protocol):
    """Dense matcher of two working-grid volumes and their features."""

    def match(
        self,
        fixed_work: torch.Tensor,
        moving_work: torch.Tensor,
        fixed_feat: torch.Tensor,
        moving_feat: torch.Tensor,
    ) -> DenseMatch:
        """Volumes ``(1, 1, D, H, W)``, features ``(1, C, D, H, W)`` -> :class:`DenseMatch`."""
        ...


def resolve_matcher_name(config: DenseConfig) -> str:
    """The concrete matcher ``config`` asks for (``auto`` resolved from ``config.features``)."""
    name = look_up_option(config.matcher, MatcherName, "dense.matcher")
    if name != MatcherName.AUTO.value:
        return name
    features = look_up_option(config.features, FeatureBackend, "dense.features")
    vmgga = features == FeatureBackend.VMGGA.value
    return MatcherName.VMGGA.value if vmgga else MatcherName.COST_VOLUME.value


def runs_learned_matcher(config: DenseConfig) -> bool:
    """Whether the dense stage runs the slice-wise VMGGA matcher (``vmgga`` or ``fused``)."""
    return resolve_matcher_name(config) in (MatcherName.VMGGA.value, MatcherName.FUSED.value)


def needs_matcher_network(config: DenseConfig) -> bool:
    """Whether ``config`` loads the VMGGA network (learned matcher or learned features)."""
    learned_features = look_up_option(config.features, FeatureBackend, "dense.features") in (
        FeatureBackend.VMGGA.value,
        FeatureBackend.HYBRID.value,
    )
    return learned_features or runs_learned_matcher(config)


def get_matcher(config: DenseConfig, device: str | torch.device = "cpu") -> Matcher:
    """The matcher for ``config``: the cost volume by default, the VMGGA matcher for vmgga features.

    Raises:
        ConfigError: for an unknown name or a backend whose module is not available.
    """
    name = resolve_matcher_name(config)
    if name == MatcherName.COST_VOLUME.value:
        from vmgga.matching.cost_volume import CostVolumeMatcher

        return CostVolumeMatcher(config, device)
    if name == MatcherName.FUSED.value:
        return load_backend("vmgga.matching.fused", "FusedMatcher", name)(config, device)
    return load_backend("vmgga.matching.vmgga_matcher", "VmggaMatcher", name)(config, device)
