"""The matchers by name: which one a :class:`~vmgga.config.DenseConfig` asks for, and building it.

The interface they implement is :class:`vmgga.matching.base.Matcher`; each matcher lives in its own
module and is imported only when asked for.
"""

from __future__ import annotations

import torch

from vmgga.config import DenseConfig, FeatureBackend, MatcherName
from vmgga.errors import look_up_option
from vmgga.features.base import load_backend
from vmgga.matching.base import Matcher

#: Matcher name -> (module, class), imported only when asked for.
_MATCHERS = {
    MatcherName.COST_VOLUME.value: ("vmgga.matching.cost_volume", "CostVolumeMatcher"),
    MatcherName.LEARNED.value: ("vmgga.matching.learned", "LearnedMatcher"),
    MatcherName.FUSED.value: ("vmgga.matching.fused", "FusedMatcher"),
}


def resolve_matcher_name(config: DenseConfig) -> str:
    """The concrete matcher ``config`` asks for (``auto`` resolved from ``config.features.backend``)."""
    name = look_up_option(config.matching.matcher, MatcherName, "dense.matching.matcher")
    if name != MatcherName.AUTO.value:
        return name
    features = look_up_option(config.features.backend, FeatureBackend, "dense.features.backend")
    learned = features == FeatureBackend.LEARNED.value
    return MatcherName.LEARNED.value if learned else MatcherName.COST_VOLUME.value


def runs_learned_matcher(config: DenseConfig) -> bool:
    """Whether the dense stage runs the learned matcher slice-wise (``vmgga`` or ``fused``)."""
    return resolve_matcher_name(config) in (MatcherName.LEARNED.value, MatcherName.FUSED.value)


def needs_matcher_network(config: DenseConfig) -> bool:
    """Whether ``config`` loads the matcher network (learned matcher or learned features)."""
    learned_features = look_up_option(config.features.backend, FeatureBackend, "dense.features.backend") in (
        FeatureBackend.LEARNED.value,
        FeatureBackend.HYBRID.value,
    )
    return learned_features or runs_learned_matcher(config)


def get_matcher(config: DenseConfig, device: str | torch.device = "cpu") -> Matcher:
    """The matcher for ``config``: the cost volume by default, the learned matcher for learned features.

    Raises:
        ConfigError: for an unknown name or a backend whose module is not available.
    """
    name = resolve_matcher_name(config)
    return load_backend(*_MATCHERS[name], name)(config, device)
