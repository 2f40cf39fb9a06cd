"""Typed results of the matcher network.

Frames (2D): an image tensor is ``(B, 1, H, W)``; pixel ``(x, y)`` is column ``x`` (along W) and row
``y`` (along H). Flows are in pixels with channels ``(x, y)``. For a 2D slice of a ``(D, H, W)``
working volume at fixed ``k``, ``x`` is the voxel index ``i`` and ``y`` is ``j`` (see
:mod:`vmgga.frames` and :mod:`vmgga.models.slicewise`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class MatchResult:
    """Dense correspondences from image0 to image1.

    Attributes:
        flow_px: ``(B, 2, H, W)`` channels (x, y): the pixel of image1 matched by each pixel of
            image0, minus that pixel's own position, in pixels of the input images.
        confidence: ``(B, 1, H, W)`` in [0, 1]: calibrated probability that the match is right.
        coarse_prob: ``(B, N0, N1)`` dual-softmax matching probabilities between the coarse tokens of
            image0 (``N0 = H0c * W0c``, row-major) and of image1, at ``coarse_stride``.
        coarse_flow_px: ``(B, 2, Hc, Wc)`` channels (x, y): the coarse (token-level) flow, in pixels.
        fine_offset_px: ``(B, 2, Hf, Wf)`` channels (x, y): the sub-pixel correction added to the
            coarse flow at ``fine_stride``, in pixels.
        coarse_stride: Stride (pixels) of the coarse tokens.
        fine_stride: Stride (pixels) of the fine descriptors.
        features0: Visual encoder pyramid of image0 (:meth:`MatcherNet.encode`), one
            ``(B, C_l, Hp / s_l, Wp / s_l)`` map per stride of ``pyramid_strides`` (``Hp, Wp``: H, W
            padded to multiples of ``coarse_stride``). Training-free matching
            (:func:`vmgga.models.matcher2d.training_free_match`) gives ``[fine, coarse]`` descriptors.
        features1: Same for image1.
    """

    flow_px: Tensor
    confidence: Tensor
    coarse_prob: Tensor
    coarse_flow_px: Tensor
    fine_offset_px: Tensor
    coarse_stride: int
    fine_stride: int
    features0: list[Tensor]
    features1: list[Tensor]
