"""The dense stage's region: the fixed foreground's box plus a margin, and the field carried outside it."""

from __future__ import annotations

import torch

from vmgga.dense.region import Box, foreground_box, whole_grid


def _volume_with_cube(shape_dhw=(40, 50, 60), lo=(10, 20, 5), hi=(20, 31, 25)) -> torch.Tensor:
    volume = torch.zeros(1, 1, *shape_dhw)
    volume[0, 0, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1.0
    return volume


def test_box_is_the_foreground_grown_by_the_margin_and_clipped_to_the_grid():
    box = foreground_box(_volume_with_cube(), margin_vox=8)
    # D: 10..20 -> 2..28; H: 20..31 -> 12..39; W: 5..25 -> 0 (clipped)..33
    assert box.start_dhw == (2, 12, 0) and box.stop_dhw == (28, 39, 33)
    assert box.size_dhw == (26, 27, 33) and not box.is_whole
    assert box.crop(torch.zeros(1, 3, 40, 50, 60)).shape == (1, 3, 26, 27, 33)


def test_a_small_foreground_gets_the_minimum_width_and_an_empty_one_the_whole_grid():
    box = foreground_box(_volume_with_cube(lo=(18, 24, 30), hi=(20, 26, 32)), margin_vox=2, min_size_vox=16)
    assert box.size_dhw == (16, 16, 16)
    assert box.start_dhw[0] <= 16 and box.stop_dhw[0] >= 22  # still around the foreground (16..22)
    empty = foreground_box(torch.zeros(1, 1, 20, 20, 20), margin_vox=4)
    assert empty == whole_grid((20, 20, 20)) and empty.is_whole


def test_paste_replicates_the_edges_outward_or_fills_zeros():
    box = Box((2, 3, 1), (5, 7, 4), (8, 9, 6))
    inner = torch.arange(3 * 4 * 3, dtype=torch.float32).reshape(1, 1, 3, 4, 3)
    out = box.paste(inner, "replicate")
    assert out.shape == (1, 1, 8, 9, 6)
    torch.testing.assert_close(box.crop(out), inner)
    # a voxel outside takes the value of the nearest voxel of the box (clamped index)
    for k, j, i in [(0, 0, 0), (7, 8, 5), (3, 0, 5), (6, 4, 2)]:
        nearest = inner[0, 0, min(max(k - 2, 0), 2), min(max(j - 3, 0), 3), min(max(i - 1, 0), 2)]
        assert out[0, 0, k, j, i] == nearest
    zeros = box.paste(inner, "zeros")
    torch.testing.assert_close(box.crop(zeros), inner)
    assert float(zeros.sum()) == float(inner.sum())
