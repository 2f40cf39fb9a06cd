"""2D MIND-SSC (modality independent neighbourhood descriptor, self-similarity context) on a slice.

The 2D analogue of the pipeline's 3D MIND-SSC: the four neighbours at distance ``dilation`` (up, right,
down, left) form four pairs at distance ``sqrt(2) * dilation`` (up-right, right-down, down-left,
left-up); each channel is the patch distance between the two points of one pair, mapped through
``exp(-D / V)`` with ``V`` the local mean distance, then divided by its per-pixel maximum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Neighbour offsets (dx, dy) in units of ``dilation``: up, right, down, left.
_NEIGHBOURS = ((0, -1), (1, 0), (0, 1), (-1, 0))

#: Self-similarity pairs (indices into _NEIGHBOURS), each at distance sqrt(2) * dilation.
_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 0))

#: Number of 2D MIND-SSC channels.
MIND2D_CHANNELS = len(_PAIRS)


def shift_2d(image: Tensor, dx: int, dy: int) -> Tensor:
    """``out[..., y, x] = image[..., y + dy, x + dx]`` with edge replication; ``(B, C, H, W)``."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return image
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    h, w = image.shape[-2:]
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def box_filter_2d(image: Tensor, radius: int) -> Tensor:
    """Mean over a ``(2r+1)^2`` square with edge replication; ``(B, C, H, W)`` -> same shape."""
    if radius == 0:
        return image
    padded = F.pad(image, (radius,) * 4, mode="replicate")
    return F.avg_pool2d(padded, kernel_size=2 * radius + 1, stride=1)


def mind_ssc_2d(image: Tensor, radius: int = 1, dilation: int = 2) -> Tensor:
    """2D MIND-SSC of ``image (B, 1, H, W)`` -> ``(B, 4, H, W)`` in (0, 1].

    Args:
        image: Intensities (any range; the descriptor is contrast invariant).
        radius: Patch radius (px) of the patch distance.
        dilation: Distance (px) of the neighbours from the centre.
    """
    shifted = [shift_2d(image, dx * dilation, dy * dilation) for dx, dy in _NEIGHBOURS]
    distances = torch.cat([(shifted[a] - shifted[b]) ** 2 for a, b in _PAIRS], dim=1)
    distances = box_filter_2d(distances, radius)  # (B, 4, H, W) patch SSD
    variance = distances.mean(dim=1, keepdim=True)
    mean_variance = variance.mean(dim=(2, 3), keepdim=True)
    variance = torch.minimum(torch.maximum(variance, mean_variance * 1e-3), mean_variance * 1e3)
    descriptor = torch.exp(-distances / (variance + 1e-8))
    return descriptor / descriptor.amax(dim=1, keepdim=True).clamp_min(1e-8)
