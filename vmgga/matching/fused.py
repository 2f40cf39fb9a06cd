"""Two matchers, one field: the learned matcher and the MIND cost volume, fused by confidence.

The two confidences are on different scales (a calibrated match probability against a softmin
contrast), so each is first divided by its own mean over the volume; the fused displacement is the
weighted mean of the two fields, the fused confidence the mean of the two confidences. Where one
matcher is sure and the other is not, the sure one wins; where both are alike, the fields average.
"""

from __future__ import annotations

import torch

from vmgga.config import DenseConfig
from vmgga.errors import ConfigError
from vmgga.matching.base import DenseMatch, Matcher

_EPS = 1e-6


def fuse_matches(matches: list[DenseMatch]) -> DenseMatch:
    """Confidence-weighted mean of ``(1, 3, D, H, W)`` fields, each confidence relative to its mean."""
    if not matches:
        raise ConfigError("fuse_matches needs at least one match")
    shape = matches[0].disp_ijk.shape
    if any(m.disp_ijk.shape != shape for m in matches):
        raise ConfigError(f"matches differ in shape: {[tuple(m.disp_ijk.shape) for m in matches]}")
    weights = [m.confidence / m.confidence.mean().clamp_min(_EPS) for m in matches]
    total = sum(w * m.disp_ijk for w, m in zip(weights, matches, strict=True))
    weight = sum(weights).clamp_min(_EPS)
    confidence = sum(m.confidence for m in matches) / len(matches)
    return DenseMatch(disp_ijk=(total / weight).contiguous(), confidence=confidence.clamp(0, 1).contiguous())


class FusedMatcher:
    """:class:`Matcher` running the cost volume and the matcher network and fusing their fields."""

    def __init__(
        self, config: DenseConfig, device: str | torch.device = "cpu", matchers: list[Matcher] | None = None
    ) -> None:
        if matchers is None:
            from vmgga.matching.cost_volume import CostVolumeMatcher
            from vmgga.matching.learned import LearnedMatcher

            matchers = [CostVolumeMatcher(config, device), LearnedMatcher(config, device)]
        self.matchers = matchers

    def match(
        self,
        fixed_work: torch.Tensor,
        moving_work: torch.Tensor,
        fixed_feat: torch.Tensor,
        moving_feat: torch.Tensor,
    ) -> DenseMatch:
        """Volumes and features as :meth:`Matcher.match` -> the fused :class:`DenseMatch`."""
        return fuse_matches(
            [m.match(fixed_work, moving_work, fixed_feat, moving_feat) for m in self.matchers]
        )
