"""estimate_dense_field on a small known smooth deformation of a textured volume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vmgga.config import DenseConfig, FittingConfig, InstanceConfig, MatchingConfig, RegionConfig
from vmgga.dense.memory import estimate_dense_memory_bytes
from vmgga.dense.stage import (
    DenseFieldResult,
    estimate_dense_field,
    match_anchor,
    similarity_grid,
    with_physical_control_grid,
)
from vmgga.errors import ConfigError
from vmgga.field.jacobian import jacobian_determinant, jacobian_summary
from vmgga.field.warp import warp

SHAPE = (32, 32, 32)
CONFIG = DenseConfig(
    matching=MatchingConfig(grid_spacing_vox=4, search_radius_steps=2),
    instance=InstanceConfig(grid_spacing_vox=4, sample_fraction=0.25, iterations=30),
)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the CI machines are shared, and OpenMP spinning makes 2 threads slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _texture(seed: int = 0) -> torch.Tensor:
    """Blobby random texture in [0, 1], ``(1, 1, D, H, W)``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 1, *SHAPE), generator=generator)
    for _ in range(2):
        noise = F.avg_pool3d(F.pad(noise, (1,) * 6, mode="replicate"), 3, stride=1)
    return (noise - noise.min()) / (noise.max() - noise.min())


def _smooth_disp_ijk(amplitude: float = 1.5) -> torch.Tensor:
    """A smooth ``(1, 3, D, H, W)`` field (voxels) with a few voxels of displacement."""
    k, j, i = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in SHAPE), indexing="ij")
    return (
        amplitude
        * torch.stack(
            (torch.sin(j / 7.0 + 0.3), torch.cos(k / 8.0) * torch.sin(i / 9.0), torch.sin((i + k) / 10.0))
        )[None]
    )


def _error(disp: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean endpoint error (voxels) away from the border."""
    return float((disp - truth)[..., 4:-4, 4:-4, 4:-4].norm(dim=1).mean())


def test_recovers_a_smooth_deformation_across_an_inverted_contrast():
    source = _texture()
    truth = _smooth_disp_ijk()
    fixed = warp(source, truth)  # fixed(x) = source(x + u(x)): fixed x matches moving x + u(x)
    moving = 1.0 - source  # another "modality"
    stages = []
    result = estimate_dense_field(fixed, moving, CONFIG, progress=lambda *a: stages.append(a))
    assert isinstance(result, DenseFieldResult)
    assert result.disp_ijk.shape == (1, 3, *SHAPE) and result.confidence.shape == (1, 1, *SHAPE)
    assert _error(result.disp_ijk, truth) < 0.35 * _error(torch.zeros_like(truth), truth)
    folding = jacobian_summary(jacobian_determinant(result.disp_ijk))["negative_fraction"]
    assert folding < 1e-3
    assert 0.0 <= float(result.confidence.min()) and float(result.confidence.max()) <= 1.0
    assert set(result.timings_s) == {"features", "matching", "instance", "total"}
    assert stages[0][:2] == ("dense", 0.0) and stages[-1][:2] == ("dense", 1.0)


def test_identical_images_give_a_near_zero_field():
    source = _texture(seed=2)
    result = estimate_dense_field(source, source, CONFIG)
    # the discrete stage returns exactly zero; Adam's first, sign-like steps leave a small drift
    assert float(result.disp_ijk.abs().mean()) < 0.1 and float(result.disp_ijk.abs().max()) < 0.5


def test_rejects_mismatched_grids():
    with pytest.raises(ConfigError, match="fixed_work"):
        estimate_dense_field(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 1, 16, 16, 17), CONFIG)
    with pytest.raises(ConfigError, match="too small"):
        estimate_dense_field(torch.zeros(1, 1, 4, 16, 16), torch.zeros(1, 1, 4, 16, 16), CONFIG)
    with pytest.raises(ConfigError, match="multiple of dense.instance.feature_spacing_vox"):
        estimate_dense_field(
            _texture(),
            _texture(),
            DenseConfig(instance=InstanceConfig(grid_spacing_vox=3, feature_spacing_vox=2)),
        )
    with pytest.raises(ConfigError, match="step sizes must be > 0"):
        estimate_dense_field(
            _texture(), _texture(), DenseConfig(instance=InstanceConfig(final_learning_rate=0.0))
        )


def test_memory_estimate_grows_with_the_grid_and_the_window():
    small = estimate_dense_memory_bytes((64, 64, 64), DenseConfig())
    large = estimate_dense_memory_bytes((128, 128, 128), DenseConfig())
    wider = estimate_dense_memory_bytes(
        (64, 64, 64), DenseConfig(matching=MatchingConfig(search_radius_steps=5))
    )
    assert small >= 3 * 12 * 64**3 * 4  # at least the full-resolution features
    assert 7 * small < large < 9 * small and wider > small


@pytest.mark.parametrize(("spacing_mm", "expected"), [(1.5, 4), (1.0, 6), (3.0, 2), (2.0, 3), (12.0, 1)])
def test_control_grid_keeps_its_physical_spacing(spacing_mm, expected):
    """6 mm control grid -> the nearest voxel count at the working spacing (at least one voxel)."""
    config = with_physical_control_grid(DenseConfig(instance=InstanceConfig(grid_spacing_mm=6.0)), spacing_mm)
    assert config.instance.grid_spacing_vox == expected


def test_control_grid_counts_are_multiples_of_the_feature_spacing():
    config = DenseConfig(instance=InstanceConfig(grid_spacing_mm=6.0, feature_spacing_vox=2))
    assert with_physical_control_grid(config, 1.0).instance.grid_spacing_vox == 6
    assert with_physical_control_grid(config, 3.0).instance.grid_spacing_vox == 2  # 2 voxels, not 0


@pytest.mark.parametrize(
    ("spacing_mm", "feature_spacing", "expected"), [(1.5, 1, 8), (2.0, 1, 6), (1.5, 2, 4), (40.0, 1, 1)]
)
def test_the_body_margin_keeps_its_physical_size(spacing_mm, feature_spacing, expected):
    """12 mm -> the nearest count of similarity-grid voxels (working spacing x feature spacing), at least one."""
    instance = InstanceConfig(tissue_margin_mm=12.0, feature_spacing_vox=feature_spacing)
    assert (
        with_physical_control_grid(DenseConfig(instance=instance), spacing_mm).instance.tissue_margin_vox
        == expected
    )
    in_voxels = DenseConfig(instance=InstanceConfig(tissue_margin_mm=0.0, tissue_margin_vox=3))
    assert with_physical_control_grid(in_voxels, 1.5).instance.tissue_margin_vox == 3


def test_control_grid_in_voxels_when_no_mm_spacing_is_given():
    config = DenseConfig(
        instance=InstanceConfig(grid_spacing_vox=5, grid_spacing_mm=0.0, tissue_margin_mm=0.0)
    )
    assert with_physical_control_grid(config, 3.0) is config


def test_zero_adam_iterations_return_the_fitted_matches():
    """A matcher's constant shift survives fitting, smoothing and integration exactly."""
    from vmgga.dense.stage import refine_field
    from vmgga.matching.base import DenseMatch

    config = DenseConfig(instance=InstanceConfig(iterations=0, grid_spacing_vox=4))
    shift = torch.tensor([1.5, -0.75, 2.0]).view(1, 3, 1, 1, 1)
    match = DenseMatch(
        disp_ijk=shift.expand(1, 3, 10, 12, 14).clone(), confidence=torch.rand(1, 1, 10, 12, 14)
    )
    volume = torch.rand(1, 1, 10, 12, 14)
    disp = refine_field(volume, volume, volume, match, config)
    torch.testing.assert_close(disp, match.disp_ijk, atol=1e-5, rtol=0)


def test_memory_estimate_counts_the_learned_matcher_and_its_attention():
    """The fused matcher adds at least its 13 full-resolution floats per voxel, and the attention
    term makes it grow faster than the volume when slices get wider."""
    shape = (64, 64, 64)
    plain = estimate_dense_memory_bytes(shape, DenseConfig(matching=MatchingConfig(matcher="cost_volume")))
    fused = estimate_dense_memory_bytes(shape, DenseConfig(matching=MatchingConfig(matcher="fused")))
    assert fused - plain >= 13 * 64**3 * 4
    thin, wide = (64, 64, 64), (16, 128, 128)  # same voxel count, 4x larger slices
    extra = [
        estimate_dense_memory_bytes(s, DenseConfig(matching=MatchingConfig(matcher="fused")))
        - estimate_dense_memory_bytes(s, DenseConfig(matching=MatchingConfig(matcher="cost_volume")))
        for s in (thin, wide)
    ]
    assert extra[1] > extra[0]


def test_memory_estimate_counts_the_learned_path_s_descriptors():
    """``--matcher vmgga`` with the default ``auto`` features takes the learned path: MIND plus the
    shipped network's 8 pixel channels per slicing axis (three axes: 24 more channels) in each of
    the three full-resolution feature volumes, and the matcher's 13 floats per voxel on top."""
    shape = (64, 64, 64)
    plain = estimate_dense_memory_bytes(shape, DenseConfig(matching=MatchingConfig(matcher="cost_volume")))
    learned = estimate_dense_memory_bytes(shape, DenseConfig(matching=MatchingConfig(matcher="vmgga")))
    assert learned - plain >= (3 * 8 * 3 + 13) * 64**3 * 4


def test_a_wide_empty_border_is_left_out_and_the_field_carried_across_it():
    """The textured volume inside 20 voxels of air per side: the stage runs on the foreground's
    box (the same result as the stage run on that box by hand), still recovers the deformation;
    outside the box the field continues its edge values and the confidence is 0."""
    source, truth = _texture(), _smooth_disp_ijk()
    border = 20
    pad = lambda v: F.pad(v, (border,) * 6, value=0.0)  # noqa: E731
    fixed, moving = pad(warp(source, truth)), pad(1.0 - source)
    result = estimate_dense_field(fixed, moving, CONFIG)
    box = result.box
    assert box is not None and box.start_dhw == (border - 8,) * 3 and box.stop_dhw == (border + 32 + 8,) * 3
    by_hand = estimate_dense_field(
        box.crop(fixed), box.crop(moving), dataclasses.replace(CONFIG, region=RegionConfig(None))
    )
    assert by_hand.box is None
    torch.testing.assert_close(box.crop(result.disp_ijk), by_hand.disp_ijk)
    torch.testing.assert_close(box.crop(result.confidence), by_hand.confidence)
    inner = (..., *(slice(border, border + 32),) * 3)
    assert _error(result.disp_ijk[inner], truth) < 0.5 * _error(torch.zeros_like(truth), truth)
    assert float(result.confidence[..., : box.start_dhw[0], :, :].abs().max()) == 0.0
    edge = result.disp_ijk[..., box.start_dhw[0], :, :]
    torch.testing.assert_close(result.disp_ijk[..., 0, :, :], edge)


def test_match_anchor_weights_each_control_voxel_by_its_block_confidence():
    """``fitting.smoothing_passes=0``: the weight is the plain block mean of the confidence."""
    generator = torch.Generator().manual_seed(2)
    confidence = torch.rand(1, 1, 8, 4, 12, generator=generator)
    init = torch.randn(1, 3, 2, 1, 3, generator=generator)
    config = DenseConfig(
        fitting=FittingConfig(smoothing_passes=0),
        instance=InstanceConfig(grid_spacing_vox=4, match_weight=0.2),
    )
    anchor = match_anchor(init, confidence, config)
    blocks = confidence[0, 0].numpy().reshape(2, 4, 1, 4, 3, 4).mean(axis=(1, 3, 5))  # (2, 1, 3)
    np.testing.assert_allclose(anchor.weight[0, 0].numpy(), blocks, rtol=1e-6)
    assert anchor.disp_control is init and anchor.spacing == 4
    off = DenseConfig(instance=InstanceConfig(match_weight=0.0))
    assert match_anchor(init, confidence, off) is None
    with pytest.raises(ConfigError, match="dense.instance.match_weight"):
        match_anchor(init, confidence, DenseConfig(instance=InstanceConfig(match_weight=-1.0)))


@pytest.mark.parametrize("compare_air", [True, False])
def test_the_similarity_grid_compares_air_only_when_asked(compare_air):
    """A bright cube in a faint haze: with ``compare_air`` off, the compared voxels are the cube and
    ``tissue_margin_vox`` voxels around it; with it on, every voxel above ~0 and 2 around them."""
    fixed = torch.full((1, 1, 16, 16, 16), 0.02)  # haze everywhere, under a tenth of the tissue
    fixed[..., 6:10, 6:10, 6:10] = 1.0
    instance = InstanceConfig(
        grid_spacing_vox=2, feature_spacing_vox=1, compare_air=compare_air, tissue_margin_vox=1
    )
    grid = similarity_grid(
        fixed, fixed.expand(1, 3, -1, -1, -1), fixed.expand(1, 3, -1, -1, -1), DenseConfig(instance=instance)
    )
    kji = grid.points_ijk.flip(1)
    if compare_air:
        assert len(kji) == 16**3
    else:
        assert len(kji) == 6**3 and kji.min() == 5 and kji.max() == 10
