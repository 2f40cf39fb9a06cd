"""The pull of the instance optimisation towards the fitted matches (``dense.instance.match_weight``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.field.test_instance import blob
from vmgga.config import DenseConfig, InstanceConfig
from vmgga.field.instance import (
    MatchAnchor,
    anchor_energy,
    foreground_indices,
    make_similarity_grid,
    optimise_instance,
)


def test_energy_is_the_weighted_mean_squared_distance_in_working_voxels():
    generator = torch.Generator().manual_seed(3)
    disp = torch.randn(1, 3, 2, 3, 4, generator=generator)
    target = torch.randn(1, 3, 2, 3, 4, generator=generator)
    weight = torch.rand(1, 1, 2, 3, 4, generator=generator)
    spacing = 4
    d, t, w = (x[0].double().numpy() for x in (disp, target, weight))
    squared = (((d - t) * spacing) ** 2).sum(axis=0)  # (2, 3, 4) working voxels^2
    expected = float((w[0] * squared).sum() / w[0].sum())
    assert float(anchor_energy(disp, MatchAnchor(target, weight, spacing))) == pytest.approx(
        expected, rel=1e-5
    )


def test_with_a_flat_similarity_the_field_goes_to_the_anchor():
    """Constant features give no similarity gradient and no penalty is set: only the pull acts."""
    shape = (6, 6, 6)
    features = torch.ones(1, 2, *shape)
    grid = make_similarity_grid(features, features, torch.arange(6**3), ratio=1)
    target = torch.zeros(1, 3, *shape)
    target[:, 0], target[:, 2] = 0.5, -0.3
    config = DenseConfig(
        instance=InstanceConfig(
            iterations=60,
            learning_rate=0.1,
            final_learning_rate=0.01,
            regularisation_weight=0.0,
            match_weight=1.0,
        )
    )
    anchor = MatchAnchor(target, torch.ones(1, 1, *shape), spacing=1)
    disp = optimise_instance(grid, torch.zeros(1, 3, *shape), config, anchor=anchor)
    np.testing.assert_allclose(disp[0, :, 3, 3, 3].numpy(), [0.5, 0.0, -0.3], atol=0.02)


@pytest.mark.parametrize(("match_weight", "expected_i"), [(0.0, 1.5), (100.0, 0.0)])
def test_the_pull_competes_with_the_similarity_by_its_weight(match_weight, expected_i):
    """A blob truly moved by 1.5 voxels along i, an anchor at 0: without the pull Adam finds the
    shift, with a strong pull it stays at the anchor."""
    shape = (16, 16, 16)
    fixed, moving = blob(shape, (7.0, 8.0, 8.0)), blob(shape, (8.5, 8.0, 8.0))
    config = DenseConfig(
        instance=InstanceConfig(
            iterations=80,
            sample_fraction=1.0,
            learning_rate=0.2,
            regularisation_weight=0.01,
            match_weight=match_weight,
        )
    )
    grid = make_similarity_grid(fixed, moving, foreground_indices(fixed), ratio=1)
    anchor = MatchAnchor(torch.zeros(1, 3, *shape), torch.ones(1, 1, *shape), spacing=1)
    disp = optimise_instance(grid, torch.zeros(1, 3, *shape), config, anchor=anchor)
    assert float(disp[0, 0, 8, 8, 7]) == pytest.approx(expected_i, abs=0.15)
