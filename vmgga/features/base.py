"""Feature extractors of the dense stage, behind one interface."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Protocol, runtime_checkable

import torch

from vmgga.config import DenseConfig, FeatureBackend
from vmgga.errors import ConfigError, look_up_option


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a working-grid volume to a dense feature volume on the same grid."""

    name: str

    def extract(self, volume: torch.Tensor) -> torch.Tensor:
        """``(1, 1, D, H, W)`` intensities in about [0, 1] -> ``(1, C, D, H, W)`` features."""
        ...


#: Backends written in other modules, loaded only when asked for: name -> (module, class).
_LAZY_BACKENDS = {
    FeatureBackend.LEARNED.value: ("vmgga.features.learned", "LearnedFeatureExtractor"),
    FeatureBackend.DINOV2.value: ("vmgga.features.dinov2", "Dinov2FeatureExtractor"),
    FeatureBackend.HYBRID.value: ("vmgga.features.hybrid", "HybridFeatureExtractor"),
}


def resolve_feature_backend(config: DenseConfig) -> str:
    """The concrete backend of ``config``: ``auto`` is the learned path's ``mind+vmgga`` when the
    matcher is the learned one (``vmgga`` or ``fused``) and its network has a stride-1 pixel head,
    else ``mind`` (the stride-2 descriptors did not help the Adam stage, docs/training_report.md)."""
    name = look_up_option(config.features.backend, FeatureBackend, "dense.features.backend")
    if name != FeatureBackend.AUTO.value:
        return name
    from vmgga.config import MatcherName
    from vmgga.models.checkpoint import checkpoint_has_pixel_head

    learned = config.matching.matcher in (MatcherName.LEARNED.value, MatcherName.FUSED.value)
    if learned and checkpoint_has_pixel_head(config.features.weights):
        return FeatureBackend.HYBRID.value
    return FeatureBackend.MIND.value


def with_resolved_features(config: DenseConfig) -> DenseConfig:
    """``config`` with ``features.backend`` concrete (:func:`resolve_feature_backend`)."""
    backend = resolve_feature_backend(config)
    if backend == config.features.backend:
        return config
    return dataclasses.replace(config, features=dataclasses.replace(config.features, backend=backend))


def get_feature_extractor(config: DenseConfig, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The extractor named by ``config.features.backend`` (``mind``, ``vmgga``, ``dinov2`` or
    ``mind+vmgga``; ``auto`` resolved by :func:`resolve_feature_backend`).

    Raises:
        ConfigError: for an unknown name or a backend whose module is not available.
    """
    name = resolve_feature_backend(config)
    if name == FeatureBackend.MIND.value:
        from vmgga.features.mind import MindSscExtractor

        return MindSscExtractor(
            radius=config.features.mind_radius_vox, dilation=config.features.mind_dilation_vox, device=device
        )
    return load_backend(*_LAZY_BACKENDS[name], name)(config, device)


def load_backend(module_name: str, class_name: str, option: str):
    """Import ``module_name.class_name``; a :class:`ConfigError` that names the option if missing."""
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"the {option!r} backend needs {module_name}.{class_name}, which is not available: {error}"
        ) from error
