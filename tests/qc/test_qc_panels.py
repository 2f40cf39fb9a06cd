"""QC panels against values worked out by hand."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vmgga.qc import panels
from vmgga.qc.figures import ColourBar, Panel, render_panels, rgb_png_bytes


def test_checkerboard_alternates_tiles_of_the_two_images():
    fixed, moving = np.zeros((8, 8)), np.ones((8, 8))
    board = panels.checkerboard(fixed, moving, tiles=4)[..., 0]  # tiles of 2 px
    assert board[0, 0] == 0 and board[0, 2] == 1 and board[2, 0] == 1 and board[2, 2] == 0
    assert board.sum() == 32  # half the pixels come from each image


def test_fusion_is_magenta_for_fixed_green_for_moving_grey_when_equal():
    fixed, moving = np.array([[1.0, 0.0, 0.5]]), np.array([[0.0, 1.0, 0.5]])
    rgb = panels.fusion_rgb(fixed, moving)
    np.testing.assert_array_equal(rgb[0, 0], [1, 0, 1])
    np.testing.assert_array_equal(rgb[0, 1], [0, 1, 0])
    np.testing.assert_array_equal(rgb[0, 2], [0.5, 0.5, 0.5])


def test_edges_of_a_square_lie_on_its_border():
    image = np.zeros((40, 40), np.float32)
    image[10:30, 10:30] = 1.0
    edges = panels.edge_mask(image)
    assert edges[10, 20] or edges[9, 20]  # the top border
    assert not edges[20, 20] and not edges[0, 0]  # not inside, not in the background
    overlay = panels.edges_overlay(np.full((40, 40), 0.5, np.float32), image)
    np.testing.assert_allclose(
        overlay[edges], np.broadcast_to(panels.EDGE_RGB, overlay[edges].shape), atol=1e-6
    )


def test_jacobian_colours_and_folding_marker():
    det = np.array([[0.0, 1.0, 2.0, -0.5]], np.float32)
    rgb = panels.jacobian_rgb(det)
    np.testing.assert_allclose(rgb[0, 0], panels.FOLDING_RGB)  # det 0 folds
    np.testing.assert_allclose(rgb[0, 3], panels.FOLDING_RGB)
    assert np.all(rgb[0, 1] > 0.9)  # det 1: white
    assert rgb[0, 2, 0] > rgb[0, 2, 2]  # det 2: red
    assert panels.folding_mask(np.array([np.nan, 1e-6, 0.0])).tolist() == [True, False, True]


def test_deformation_grid_lines_move_by_the_displacement():
    disp = np.zeros((9, 17, 2), np.float32)
    disp[..., 1] = 2.5  # every pixel moves 2.5 px to the right
    lines = panels.deformation_grid_lines(disp, step_px=8)
    assert len(lines) == 2 + 3  # rows 0, 8; columns 0, 8, 16
    np.testing.assert_allclose(lines[0][:, 1], np.arange(17) + 2.5)
    np.testing.assert_allclose(lines[2][:, 1], 2.5)  # the column-0 line sits at 2.5
    np.testing.assert_allclose(lines[2][:, 0], np.arange(9))


def test_render_panels_makes_a_png_of_the_expected_grid():
    panel = Panel(np.zeros((30, 50, 3)), [np.array([[0.0, 0.0], [29.0, 49.0]])], ("R", "L", "A", "P"))
    bar = ColourBar("viridis", panels.jacobian_norm(), "det J", (0, 1, 2))
    png = render_panels([[panel, panel], [panel, panel]], ["a", "b"], ["x", "y"], [None, bar])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 2 * 150 and image.height > 2 * 150
    thumbnail = Image.open(io.BytesIO(rgb_png_bytes(np.ones((12, 20, 3)))))
    assert thumbnail.size == (20, 12)
