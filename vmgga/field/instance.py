"""Adam instance optimisation of a smooth, diffeomorphic field on a control grid.

The optimised variable is a stationary velocity on a coarse control grid
(``dense.instance.grid_spacing_vox`` working voxels). Each step smooths it with box filters (an
approximate B-spline), integrates it by scaling and squaring, and compares the fixed features with
the moving features sampled through the field at a subset (``dense.instance.sample_fraction``: every
n-th from a random offset) of the foreground voxels of the similarity grid (features block-pooled by
``dense.instance.feature_spacing_vox``), plus a diffusion or bending penalty of the
smoothed velocity. With ``dense.instance.match_weight`` > 0 the loss also pulls the field towards
the fitted matches (:class:`MatchAnchor`), each control voxel by the confidence of its block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.optim.adam import adam

from vmgga.config import DenseConfig
from vmgga.errors import ConfigError
from vmgga.field.integrate import integrate_velocity
from vmgga.field.point_sampling import ChannelsLastVolume, sample_points
from vmgga.field.regularisers import regularisation_energy
from vmgga.field.resize import box_smooth
from vmgga.field.warp import sample_at_ijk
from vmgga.frames import coarse_from_fine, ijk_from_flat
from vmgga.preprocess.intensity import foreground_threshold

#: Voxels whose (pooled) fixed intensity is above this count as foreground.
_FOREGROUND_LEVEL = 1e-3
#: Seed of the random voxel subsets (the result is deterministic).
_SEED = 0


@dataclass
class SimilarityGrid:
    """Fixed and moving features on the similarity grid, and where to compare them.

    Attributes:
        moving: the ``(1, C, d, h, w)`` moving features, stored channels-last for point sampling.
        points_ijk: ``(N, 3)`` positions (i, j, k) of the foreground voxels worth comparing.
        fixed_values: ``(N, C)`` fixed features at those voxels.
        ratio: control-grid spacing / similarity-grid spacing (an integer).
    """

    moving: ChannelsLastVolume
    points_ijk: torch.Tensor
    fixed_values: torch.Tensor
    ratio: int


def make_similarity_grid(
    fixed_feat: torch.Tensor, moving_feat: torch.Tensor, foreground: torch.Tensor, ratio: int
) -> SimilarityGrid:
    """Gather the fixed features and positions of the ``(N,)`` flat ``foreground`` voxels once."""
    _, channels, d, h, w = fixed_feat.shape
    points = ijk_from_flat(foreground, (d, h, w)).to(fixed_feat.dtype)  # (N, 3)
    fixed_values = fixed_feat.reshape(channels, -1)[:, foreground].T.contiguous()
    return SimilarityGrid(ChannelsLastVolume.from_volume(moving_feat), points, fixed_values, ratio)


@dataclass
class MatchAnchor:
    """The fitted matches the field is pulled towards (``dense.instance.match_weight``).

    Attributes:
        disp_control: ``(1, 3, d, h, w)`` fitted match displacement, control-grid voxels.
        weight: ``(1, 1, d, h, w)`` non-negative weight per control voxel (block confidence).
        spacing: working voxels per control voxel (the energy is measured in working voxels).
    """

    disp_control: torch.Tensor
    weight: torch.Tensor
    spacing: int


def anchor_energy(disp_control: torch.Tensor, anchor: MatchAnchor) -> torch.Tensor:
    """Weighted mean of ``|disp - anchor|^2`` in working voxels^2 over the control grid (0 if no weight)."""
    squared = ((disp_control - anchor.disp_control) * anchor.spacing).pow(2).sum(1, keepdim=True)
    return (anchor.weight * squared).sum() / anchor.weight.sum().clamp_min(1e-12)


def foreground_indices(fixed_intensity: torch.Tensor, dilation: int = 2) -> torch.Tensor:
    """Flat indices of voxels of a ``(1, 1, d, h, w)`` volume at or near non-background (all if none)."""
    return _grown_indices(fixed_intensity > _FOREGROUND_LEVEL, dilation)


def tissue_indices(fixed_intensity: torch.Tensor, margin: int) -> torch.Tensor:
    """Flat indices of the voxels of a ``(1, 1, d, h, w)`` volume inside the body, or within ``margin``
    voxels (a cube) of it: the air around it is left out (all voxels if under 1 % remain).

    The body is the affine stage's foreground rule
    (:func:`vmgga.preprocess.intensity.foreground_threshold`) with its enclosed holes filled, so dark
    tissue inside (CSF, ventricles, bowel gas) is kept, and the faint haze outside a head (an average
    template's blur, scanner noise) is not compared with the other image's air.
    """
    values = fixed_intensity[0, 0].detach().cpu().numpy()
    body = ndimage.binary_fill_holes(values > foreground_threshold(values))
    return _grown_indices(torch.from_numpy(body).to(fixed_intensity.device)[None, None], margin)


def _grown_indices(mask: torch.Tensor, dilation: int) -> torch.Tensor:
    """Flat indices of a ``(1, 1, d, h, w)`` boolean mask grown by a ``2 dilation + 1`` cube (all
    voxels if fewer than 1 % are in it)."""
    near = mask.float()
    for axis in range(3):  # a cube's maximum, one axis at a time (15 comparisons a voxel, not 125)
        size, pad = [1, 1, 1], [0, 0, 0]
        size[axis], pad[axis] = 2 * dilation + 1, dilation
        near = F.max_pool3d(near, size, stride=1, padding=pad)
    flat = near.reshape(-1).nonzero().reshape(-1)
    return flat if flat.numel() > 0.01 * near.numel() else torch.arange(near.numel(), device=near.device)


def similarity_loss(disp_control: torch.Tensor, grid: SimilarityGrid, subset: slice) -> torch.Tensor:
    """Feature SSD (sum over channels, mean over the foreground voxels ``subset``) through a field."""
    points = grid.points_ijk[subset]  # (M, 3) similarity-grid voxels
    control_points = coarse_from_fine(points, grid.ratio)  # control voxel c: block centre r c + (r - 1) / 2
    disp = sample_at_ijk(disp_control, control_points).T * grid.ratio  # (M, 3) similarity voxels
    moving = sample_points(grid.moving, points + disp)  # (M, C)
    return (moving - grid.fixed_values[subset]).pow(2).sum(1).mean()


def _subset(count: int, fraction: float, generator: torch.Generator, max_points: int | None = None) -> slice:
    """Every ``1 / fraction``-th of ``count`` foreground voxels from a random offset (all if >= 1),
    thinned further to at most ``max_points`` (about: a whole stride of them)."""
    stride = max(1, round(1.0 / fraction)) if fraction < 1.0 else 1
    if max_points:
        stride = max(stride, -(-count // max_points))
    offset = int(torch.randint(stride, (1,), generator=generator))
    return slice(offset, count, stride)


def field_from_velocity(velocity_ijk: torch.Tensor, config: DenseConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Control-grid velocity ``(1, 3, d, h, w)`` -> (smoothed velocity, integrated displacement)."""
    smooth = box_smooth(velocity_ijk, passes=config.instance.smoothing_passes)
    return smooth, integrate_velocity(smooth, config.instance.integration_steps)


def _decay_per_step(first: float, last: float, iterations: int) -> float:
    """Factor taking the step size from ``first`` to ``last`` in ``iterations`` steps."""
    if first <= 0 or last <= 0:
        raise ConfigError(f"Adam step sizes must be > 0; got {first} and {last}")
    return (last / first) ** (1.0 / max(1, iterations - 1))


@dataclass
class _AdamState:
    """Adam's moment estimates for one parameter, stepped by :func:`torch.optim.adam.adam`.

    The functional form, because constructing ``torch.optim.Adam`` imports ``torch._dynamo``: 2.2 s
    of a 10 s registration (torch 2.13, measured with cProfile). Same update, same defaults.
    """

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: torch.Tensor

    @classmethod
    def zeros_like(cls, parameter: torch.Tensor) -> _AdamState:
        zeros = torch.zeros_like(parameter, memory_format=torch.preserve_format)
        return cls(zeros, zeros.clone(), torch.tensor(0.0))

    @torch.no_grad()
    def step(self, parameter: torch.Tensor, learning_rate: float) -> None:
        """One Adam step (betas 0.9, 0.999; eps 1e-8) of ``parameter`` along its ``.grad``."""
        adam(
            [parameter],
            [parameter.grad],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.steps],
            amsgrad=False,
            beta1=0.9,
            beta2=0.999,
            lr=learning_rate,
            weight_decay=0.0,
            eps=1e-8,
            maximize=False,
        )


def optimise_instance(
    grid: SimilarityGrid,
    init_disp_ijk: torch.Tensor,
    config: DenseConfig,
    progress: Callable[[float], None] | None = None,
    anchor: MatchAnchor | None = None,
) -> torch.Tensor:
    """Refine a displacement field by Adam on the control grid.

    Args:
        grid: features on the similarity grid and the foreground to compare.
        init_disp_ijk: ``(1, 3, d, h, w)`` initial displacement in control-grid voxels (used as the
            initial velocity: for smooth fields ``exp(v) ~ id + v``).
        config: uses its ``instance`` part (:class:`~vmgga.config.InstanceConfig`).
        progress: optional callback with the fraction of iterations done.
        anchor: the fitted matches, pulled towards with ``instance.match_weight`` (ignored if 0 or None).

    Returns:
        ``(1, 3, d, h, w)`` displacement of the integrated field, control-grid voxels, no gradient.
    """
    iterations = config.instance.iterations
    velocity = init_disp_ijk.detach().clone().requires_grad_(True)
    state = _AdamState.zeros_like(velocity)
    generator = torch.Generator().manual_seed(_SEED)
    decay = _decay_per_step(config.instance.learning_rate, config.instance.final_learning_rate, iterations)
    for iteration in range(iterations):
        subset = _subset(
            grid.points_ijk.shape[0],
            config.instance.sample_fraction,
            generator,
            config.instance.max_sample_points,
        )
        velocity.grad = None
        smooth, disp_control = field_from_velocity(velocity, config)
        similarity = similarity_loss(disp_control, grid, subset)
        penalty = regularisation_energy(smooth, config.instance.regularisation)
        loss = similarity + config.instance.regularisation_weight * penalty
        if anchor is not None and config.instance.match_weight > 0:
            loss = loss + config.instance.match_weight * anchor_energy(disp_control, anchor)
        loss.backward()
        state.step(velocity, config.instance.learning_rate * decay**iteration)
        if progress is not None:
            progress((iteration + 1) / iterations)
    with torch.no_grad():
        return field_from_velocity(velocity, config)[1]
