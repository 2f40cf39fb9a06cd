"""PCA compression of feature pairs keeps squared distances within the kept subspace."""

from __future__ import annotations

import pytest
import torch

from vmgga.errors import ConfigError
from vmgga.field.compress import compress_pair, pca_basis


def test_distances_are_kept_when_the_features_live_in_a_low_dimensional_subspace():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, 3, generator=generator, dtype=torch.float64)  # 3-dim subspace of 6 channels
    fixed = torch.einsum("ck,bkdhw->bcdhw", mixing, torch.randn(1, 3, 4, 5, 6, generator=generator).double())
    moving = torch.einsum("ck,bkdhw->bcdhw", mixing, torch.randn(1, 3, 4, 5, 6, generator=generator).double())
    small_fixed, small_moving = compress_pair(fixed, moving, 3)
    assert small_fixed.shape == (1, 3, 4, 5, 6)
    original = (fixed - moving).pow(2).sum(1)
    assert torch.allclose((small_fixed - small_moving).pow(2).sum(1), original)


def test_basis_is_orthonormal_and_zero_channels_means_unchanged():
    fixed, moving = torch.rand(1, 5, 3, 3, 3), torch.rand(1, 5, 3, 3, 3)
    basis = pca_basis(fixed, moving, 2)
    assert torch.allclose(basis @ basis.T, torch.eye(2), atol=1e-5)
    assert compress_pair(fixed, moving, 0)[0] is fixed


def _low_rank_pair(channels: int, rank: int, scale: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Two ``(1, channels, 4, 5, 6)`` volumes in one ``rank``-dimensional subspace, times ``scale``."""
    mixing = torch.randn(channels, rank, generator=generator, dtype=torch.float64)
    return [
        scale
        * torch.einsum("ck,bkdhw->bcdhw", mixing, torch.randn(1, rank, 4, 5, 6, generator=generator).double())
        for _ in range(2)
    ]


def test_each_family_is_compressed_apart_and_keeps_its_share_of_the_distance():
    """A strong 6-channel family (rank 3) and a weak 3-channel one (rank 2, 1 % of the amplitude):
    one joint 3-channel basis drops the weak family's squared distance; per family both are kept."""
    generator = torch.Generator().manual_seed(1)
    strong, weak = _low_rank_pair(6, 3, 1.0, generator), _low_rank_pair(3, 2, 0.01, generator)
    fixed, moving = torch.cat((strong[0], weak[0]), 1), torch.cat((strong[1], weak[1]), 1)
    joint = pca_basis(fixed, moving, 3)  # (3, 9)
    weak_projected = torch.einsum("kc,bcdhw->bkdhw", joint[:, 6:], weak[0] - weak[1]).pow(2).sum(1)
    assert float(weak_projected.mean()) < 1e-3 * float((weak[0] - weak[1]).pow(2).sum(1).mean())  # gone
    small_fixed, small_moving = compress_pair(fixed, moving, 3, families=(6, 3))
    assert small_fixed.shape == (1, 3 + 3, 4, 5, 6)  # 3 of the strong family, the weak one whole
    torch.testing.assert_close(small_fixed[:, 3:], weak[0])  # no more channels than asked: unchanged
    torch.testing.assert_close((small_fixed - small_moving).pow(2).sum(1), (fixed - moving).pow(2).sum(1))


def test_families_must_split_the_channels():
    fixed = torch.rand(1, 5, 3, 3, 3)
    with pytest.raises(ConfigError, match="feature families"):
        compress_pair(fixed, fixed, 2, families=(3, 3))
