"""MIND-SSC: the modality independent neighbourhood descriptor, self-similarity context.

Heinrich et al., MICCAI 2013. For each voxel and each of the 12 pairs of 6-neighbours
(at ``dilation`` voxels) that lie ``sqrt(2) * dilation`` apart, the patch distance between the two
neighbours is computed; the 12 distances are then normalised by their local variance and mapped
through ``exp(-.)``. Only the *pattern* of local self-similarity is kept, so monotone intensity
changes and different contrasts give similar descriptors.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from vmgga.errors import ConfigError
from vmgga.field.resize import box_smooth

#: Relative clamp of the local variance (against its volume mean), as in the MIND paper.
_VARIANCE_CLAMP = (1e-3, 1e3)


def ssc_offset_pairs(dilation: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The 12 pairs of 6-neighbourhood offsets (dk, dj, di) on different axes, ``sqrt(2) d`` apart."""
    pairs = []
    for axis_a, axis_b in itertools.combinations(range(3), 2):
        for sign_a, sign_b in itertools.product((-1, 1), repeat=2):
            offset_a, offset_b = [0, 0, 0], [0, 0, 0]
            offset_a[axis_a] = sign_a * dilation
            offset_b[axis_b] = sign_b * dilation
            pairs.append((tuple(offset_a), tuple(offset_b)))
    return pairs


def _shifted(padded: torch.Tensor, offset: tuple[int, int, int], pad: int, shape: tuple) -> torch.Tensor:
    """``volume[x + offset]`` for every voxel ``x``, read from a volume padded by ``pad``."""
    (dk, dj, di), (d, h, w) = offset, shape
    return padded[:, :, pad + dk : pad + dk + d, pad + dj : pad + dj + h, pad + di : pad + di + w]


def mind_ssc(volume: torch.Tensor, radius: int = 1, dilation: int = 2) -> torch.Tensor:
    """MIND-SSC descriptor of a ``(1, 1, D, H, W)`` volume -> ``(1, 12, D, H, W)`` in (0, 1]."""
    if volume.ndim != 5 or volume.shape[:2] != (1, 1):
        raise ConfigError(f"MIND-SSC expects a (1, 1, D, H, W) volume; got {tuple(volume.shape)}")
    if radius < 0 or dilation < 1:
        raise ConfigError(f"MIND-SSC needs radius >= 0 and dilation >= 1; got {radius}, {dilation}")
    shape = tuple(volume.shape[2:])
    padded = F.pad(volume, (dilation,) * 6, mode="replicate")
    distances = torch.cat(
        [
            (_shifted(padded, a, dilation, shape) - _shifted(padded, b, dilation, shape)).pow(2)
            for a, b in ssc_offset_pairs(dilation)
        ],
        dim=1,
    )  # (1, 12, D, H, W)
    distances = box_smooth(distances, passes=1, radius=radius) if radius > 0 else distances
    return _normalise(distances)


def _normalise(distances: torch.Tensor) -> torch.Tensor:
    """``exp(-(D - min_c D) / V)`` with ``V`` the clamped local mean of ``D - min_c D``."""
    distances = distances - distances.amin(dim=1, keepdim=True)
    variance = distances.mean(dim=1, keepdim=True)
    reference = float(variance.mean())
    reference = reference if reference > 0 else 1.0
    variance = variance.clamp(reference * _VARIANCE_CLAMP[0], reference * _VARIANCE_CLAMP[1])
    return torch.exp(-distances / variance)


class MindSscExtractor:
    """:class:`~vmgga.features.base.FeatureExtractor` computing MIND-SSC on the working grid."""

    name = "mind"

    def __init__(self, radius: int = 1, dilation: int = 2, device: str | torch.device = "cpu"):
        self.radius = radius
        self.dilation = dilation
        self.device = torch.device(device)

    @torch.no_grad()
    def extract(self, volume: torch.Tensor) -> torch.Tensor:
        """``(1, 1, D, H, W)`` -> ``(1, 12, D, H, W)`` MIND-SSC features on ``self.device``."""
        return mind_ssc(volume.to(self.device, torch.float32), self.radius, self.dilation)
