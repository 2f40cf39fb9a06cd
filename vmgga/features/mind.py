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


def _crop(volume: torch.Tensor, start: tuple[int, int, int], size: tuple[int, int, int]) -> torch.Tensor:
    """``volume[..., start : start + size]`` on the last three axes (k, j, i)."""
    (k, j, i), (d, h, w) = start, size
    return volume[..., k : k + d, j : j + h, i : i + w]


def _unique_differences(dilation: int) -> list[tuple[int, int, int]]:
    """The 6 offsets ``b - a`` of the SSC pairs, one of each ``+-`` couple."""
    unique: list[tuple[int, int, int]] = []
    for a, b in ssc_offset_pairs(dilation):
        v = tuple(y - x for x, y in zip(a, b, strict=True))
        if v not in unique and tuple(-c for c in v) not in unique:
            unique.append(v)
    return unique


def mind_ssc(volume: torch.Tensor, radius: int = 1, dilation: int = 2) -> torch.Tensor:
    """MIND-SSC descriptor of a ``(1, 1, D, H, W)`` volume -> ``(1, 12, D, H, W)`` in (0, 1].

    The patch distance of pair ``(a, b)`` at ``x`` is ``B[(I(y) - I(y + v))^2]`` at ``y = x + a``,
    ``v = b - a``, with ``B`` the box filter; a pair and the pair with ``-v`` read the same map at
    shifted places, so only 6 squared-difference maps are filtered.
    """
    if volume.ndim != 5 or volume.shape[:2] != (1, 1):
        raise ConfigError(f"MIND-SSC expects a (1, 1, D, H, W) volume; got {tuple(volume.shape)}")
    if radius < 0 or dilation < 1:
        raise ConfigError(f"MIND-SSC needs radius >= 0 and dilation >= 1; got {radius}, {dilation}")
    shape = tuple(volume.shape[2:])
    padded = F.pad(volume, (2 * dilation,) * 6, mode="replicate")  # grid +- 2 d
    grown = tuple(n + 2 * dilation for n in shape)  # grid +- d, where y = x + a lives
    unique = _unique_differences(dilation)
    base = (dilation,) * 3
    maps = torch.cat(
        [
            (_crop(padded, base, grown) - _crop(padded, tuple(dilation + c for c in v), grown)).pow(2)
            for v in unique
        ],
        dim=1,
    )  # (1, 6, D + 2d, H + 2d, W + 2d)
    maps = box_smooth(maps, passes=1, radius=radius) if radius > 0 else maps
    channels = []
    for a, b in ssc_offset_pairs(dilation):
        v = tuple(y - x for x, y in zip(a, b, strict=True))
        index, at = (unique.index(v), a) if v in unique else (unique.index(tuple(-c for c in v)), b)
        channels.append(_crop(maps[:, index : index + 1], tuple(dilation + c for c in at), shape))
    return _normalise(torch.cat(channels, dim=1))


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
