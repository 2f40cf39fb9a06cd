"""The learned matcher in the dense stage: the 2D network run slice-wise (2.5D) in 3D.

``LearnedMatcher.match`` implements :class:`vmgga.matching.base.Matcher`: it matches the working
volumes slice by slice along the three axes (:mod:`vmgga.models.slicewise`) and fuses the in-plane
flows into ``disp_ijk`` with their confidences. The coarse search is limited to the dense stage's
capture range (``learned_capture_range_vox`` working voxels), as after the affine stage only
residual motion is left. ``learned_refine_passes`` more passes, each on the moving volume warped by
the field so far with a ``learned_refine_capture_range_vox`` search, and a confidence-weighted
smoothing of each pass (``learned_smooth_sigma_vox``) refine it (:mod:`vmgga.matching.refine`);
with ``learned_pool_factor`` > 1 all of it runs on volumes that many times coarser.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vmgga.config import DenseConfig
from vmgga.errors import ConfigError
from vmgga.matching.base import DenseMatch
from vmgga.matching.refine import match_coarser, multi_pass_match
from vmgga.models.loading import capture_range_vox, load_matcher_model
from vmgga.models.network import MatcherNet
from vmgga.models.slicewise import SlicewiseConfig, match_volume


def network_match_fn(model: MatcherNet, max_displacement_px: float | None = None):
    """A :data:`~vmgga.models.slicewise.SliceMatchFn` running ``model`` (dense or sparse mode)."""

    @torch.no_grad()
    def match_fn(image0: Tensor, image1: Tensor) -> tuple[Tensor, Tensor]:
        if model.config.matching == "sparse":
            from vmgga.matching.sparse import sparse_dense_flow

            return sparse_dense_flow(model, image0, image1, max_displacement_px)
        result = model.match(image0, image1, max_displacement_px=max_displacement_px)
        return result.flow_px, result.confidence

    return match_fn


def check_refinement(config: DenseConfig) -> None:
    """Refuse refinement settings out of range (``dense.matching.learned_refine_*``, ``..._smooth_*``)."""
    matching = config.matching
    if matching.learned_refine_passes < 0:
        raise ConfigError(
            f"dense.matching.learned_refine_passes must be >= 0; got {matching.learned_refine_passes}"
        )
    if matching.learned_refine_capture_range_vox <= 0:
        raise ConfigError(
            "dense.matching.learned_refine_capture_range_vox must be positive; "
            f"got {matching.learned_refine_capture_range_vox}"
        )
    if matching.learned_pool_factor < 1:
        raise ConfigError(
            f"dense.matching.learned_pool_factor must be >= 1; got {matching.learned_pool_factor}"
        )
    if matching.learned_smooth_sigma_vox < 0:
        raise ConfigError(
            f"dense.matching.learned_smooth_sigma_vox must be >= 0; got {matching.learned_smooth_sigma_vox}"
        )


class LearnedMatcher:
    """Dense matcher of the pipeline backed by the matcher network (see module docstring)."""

    def __init__(
        self,
        config: DenseConfig,
        device: str | torch.device = "cpu",
        model: MatcherNet | None = None,
        slicewise: SlicewiseConfig | None = None,
    ) -> None:
        check_refinement(config)
        self.config, self.device = config, torch.device(device)
        self.model = (model or load_matcher_model(config, self.device)).to(self.device).eval()
        self.slicewise = slicewise or SlicewiseConfig(slice_step=config.features.slice_step_vox)

    def _pass(self, capture_range_vox: float):
        """One slice-wise pass with this coarse search: ``(fixed, moving) -> DenseMatch``."""
        match_fn = network_match_fn(self.model, capture_range_vox)

        def run(fixed: Tensor, moving: Tensor) -> DenseMatch:
            disp_ijk, confidence = match_volume(fixed, moving, match_fn, self.slicewise)
            return DenseMatch(disp_ijk=disp_ijk, confidence=confidence.clamp(0.0, 1.0))

        return run

    def match(
        self, fixed_work: Tensor, moving_work: Tensor, fixed_feat: Tensor, moving_feat: Tensor
    ) -> DenseMatch:
        """Volumes ``(1, 1, D, H, W)`` in ~[0, 1] -> :class:`DenseMatch` (features are not used:
        the network computes its own from the volumes)."""
        fixed = fixed_work.to(self.device, torch.float32)
        moving = moving_work.to(self.device, torch.float32)
        matching = self.config.matching
        factor = matching.learned_pool_factor

        def passes(fixed_grid: Tensor, moving_grid: Tensor) -> DenseMatch:  # lengths in its voxels
            return multi_pass_match(
                fixed_grid,
                moving_grid,
                self._pass(capture_range_vox(self.config) / factor),
                self._pass(matching.learned_refine_capture_range_vox / factor),
                matching.learned_refine_passes,
                matching.learned_smooth_sigma_vox / factor,
            )

        return match_coarser(fixed, moving, passes, factor)
