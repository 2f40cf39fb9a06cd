"""Dense matching interface: a displacement per working voxel plus its confidence.

The matchers implement :class:`Matcher`; :mod:`vmgga.matching.registry` names them and builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


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
