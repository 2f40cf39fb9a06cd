"""PCA compression of feature pairs keeps squared distances within the kept subspace."""

from __future__ import annotations

import torch

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
