"""The dense stage's region: the fixed image's foreground box plus a margin, on the working grid.

A head CT or an uncropped MR carries a wide border of air around the anatomy. The dense stage
(features, matching, instance optimisation) runs on the box around the fixed foreground, grown by
a margin; its field is carried to the rest of the working grid by edge replication (the field is
continuous, constant outward from the box), its confidence is 0 there (nothing was compared).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vmgga.preprocess.intensity import foreground_threshold


@dataclass(frozen=True)
class Box:
    """Voxels ``start <= index < stop`` per axis (D, H, W) of a working grid of ``shape_dhw``."""

    start_dhw: tuple[int, int, int]
    stop_dhw: tuple[int, int, int]
    shape_dhw: tuple[int, int, int]

    @property
    def size_dhw(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start_dhw, self.stop_dhw, strict=True))

    @property
    def is_whole(self) -> bool:
        return self.start_dhw == (0, 0, 0) and self.stop_dhw == self.shape_dhw

    def crop(self, volume: torch.Tensor) -> torch.Tensor:
        """``(N, C, D, H, W)`` -> ``(N, C, d, h, w)`` (a view)."""
        return volume[(..., *(slice(a, b) for a, b in zip(self.start_dhw, self.stop_dhw, strict=True)))]

    def paste(self, inner: torch.Tensor, mode: str) -> torch.Tensor:
        """``(N, C, d, h, w)`` inside the box -> ``(N, C, D, H, W)``: ``"replicate"`` continues the
        edge values outward, ``"zeros"`` fills 0."""
        pads: list[int] = []
        for start, stop, size in reversed(
            list(zip(self.start_dhw, self.stop_dhw, self.shape_dhw, strict=True))
        ):
            pads += [start, size - stop]  # F.pad: last axis first
        if not any(pads):
            return inner
        if mode == "zeros":
            return F.pad(inner, pads, mode="constant", value=0.0)
        return F.pad(inner, pads, mode="replicate")


def whole_grid(shape_dhw: tuple[int, int, int]) -> Box:
    return Box((0, 0, 0), tuple(shape_dhw), tuple(shape_dhw))


def foreground_box(fixed_work: torch.Tensor, margin_vox: int, min_size_vox: int = 16) -> Box:
    """Box around the voxels of ``fixed_work`` ``(1, 1, D, H, W)`` above the foreground threshold
    (:func:`vmgga.preprocess.intensity.foreground_threshold`), grown by ``margin_vox`` on each side,
    clipped to the grid and at least ``min_size_vox`` wide (or the whole axis). The whole grid if
    there is no foreground.
    """
    values = fixed_work[0, 0].detach().cpu().numpy()
    shape = tuple(int(n) for n in values.shape)
    mask = values > foreground_threshold(values)
    if not mask.any():
        return whole_grid(shape)
    starts, stops = [], []
    for axis, size in enumerate(shape):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        start, stop = max(0, int(present[0]) - margin_vox), min(size, int(present[-1]) + 1 + margin_vox)
        start, stop = _widened(start, stop, size, min_size_vox)
        starts.append(start)
        stops.append(stop)
    return Box(tuple(starts), tuple(stops), shape)


def _widened(start: int, stop: int, size: int, width: int) -> tuple[int, int]:
    """``[start, stop)`` grown about its centre to ``width`` voxels, kept inside ``[0, size)``."""
    if stop - start >= width or size <= width:
        return (start, stop) if size > width else (0, size)
    start = max(0, min(size - width, (start + stop - width) // 2))
    return start, start + width
