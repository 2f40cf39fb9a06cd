"""Principal-component compression of a pair of feature volumes (cheaper warps in the Adam loop)."""

from __future__ import annotations

import torch

from vmgga.errors import ConfigError

#: At most this many voxels (evenly strided) estimate the covariance.
_MAX_SAMPLES = 200_000


def pca_basis(fixed_feat: torch.Tensor, moving_feat: torch.Tensor, channels: int) -> torch.Tensor:
    """Top ``channels`` principal directions of the pooled channel vectors of both volumes.

    Args:
        fixed_feat: ``(1, C, D, H, W)`` features.
        moving_feat: ``(1, C, D, H, W)`` features (any grid).
        channels: number of components kept.

    Returns:
        ``(channels, C)`` orthonormal rows, largest variance first.
    """
    samples = torch.cat([f[0].reshape(f.shape[1], -1) for f in (fixed_feat, moving_feat)], dim=1)
    samples = samples[:, :: max(1, samples.shape[1] // _MAX_SAMPLES)]  # (C, N)
    centred = samples - samples.mean(1, keepdim=True)
    covariance = centred @ centred.T / centred.shape[1]  # (C, C)
    _, vectors = torch.linalg.eigh(covariance.double())  # ascending eigenvalues
    return vectors.flip(1)[:, :channels].T.to(fixed_feat.dtype)


def project(features: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(1, C, D, H, W)`` -> ``(1, K, D, H, W)`` coordinates in the ``(K, C)`` basis."""
    return torch.einsum("kc,bcdhw->bkdhw", basis, features).contiguous()


def compress_pair(
    fixed_feat: torch.Tensor,
    moving_feat: torch.Tensor,
    channels: int,
    families: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both volumes in their joint top-``channels`` PCA basis (unchanged if ``channels`` is 0 or >= C).

    Squared distances between projected vectors approximate those between the originals, so the
    SSD similarity keeps its scale. ``families`` (channel counts in order, summing to C) compresses
    each family of channels on its own to at most ``channels``: one joint basis would keep only the
    family of the larger variance (MIND's, against the learned features of ``mind+vmgga``), so the
    other's share of the SSD would silently drop out.
    """
    if families is not None and len(families) > 1:
        if sum(families) != fixed_feat.shape[1] or min(families) < 1:
            raise ConfigError(f"feature families {families} do not split {fixed_feat.shape[1]} channels")
        parts = [
            compress_pair(f, m, channels)
            for f, m in zip(fixed_feat.split(families, 1), moving_feat.split(families, 1), strict=True)
        ]
        return torch.cat([f for f, _ in parts], 1), torch.cat([m for _, m in parts], 1)
    if channels <= 0 or channels >= fixed_feat.shape[1]:
        return fixed_feat, moving_feat
    basis = pca_basis(fixed_feat, moving_feat, channels)
    return project(fixed_feat, basis), project(moving_feat, basis)
