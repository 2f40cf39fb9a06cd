"""The figures of a QC page, each a PNG of three orthogonal views (rows) by variants (columns)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import Normalize

from vmgga.qc import panels
from vmgga.qc.figures import ColourBar, Panel, render_panels, rgb_png_bytes
from vmgga.qc.slices import EDGE_LABELS, View, in_plane_axes, orthogonal_slices
from vmgga.qc.volumes import DisplayVolumes

VIEWS = [v.value for v in View]
ROW_TITLES = [v.capitalize() for v in VIEWS]
#: Number of deformation grid lines along the longer side of a view.
GRID_LINES = 20


@dataclass(frozen=True)
class Section:
    """One figure of the page."""

    key: str  # short identifier (HTML anchor)
    title: str  # heading
    caption: str  # what to look at
    png: bytes  # the figure


def _views(volumes: DisplayVolumes, array: np.ndarray) -> dict[str, np.ndarray]:
    return orthogonal_slices(array, volumes.where)


def _grid(volumes: DisplayVolumes, columns: list[Callable[[str], Panel]]) -> list[list[Panel]]:
    """Rows = views; each column function builds the panel of one view."""
    labels = EDGE_LABELS[volumes.convention]
    rows = []
    for view in VIEWS:
        row = []
        for make_panel in columns:
            panel = make_panel(view)
            panel.edge_labels = labels[view]
            row.append(panel)
        rows.append(row)
    return rows


def images_section(volumes: DisplayVolumes) -> Section:
    """Fixed, moving before (affine only) and moving after (warped)."""
    sources = [volumes.fixed_norm, volumes.before_norm, volumes.after_norm]
    columns = [lambda view, s=s: Panel(panels.grey_rgb(_views(volumes, s)[view])) for s in sources]
    png = render_panels(
        _grid(volumes, columns), ["Fixed", "Moving, affine only", "Moving, warped"], ROW_TITLES
    )
    return Section("images", "Images", "Fixed image, moving image before (affine only) and after.", png)


def _before_after(volumes: DisplayVolumes, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    """Two columns: ``combine(fixed, before)`` and ``combine(fixed, after)`` per view."""
    fixed = _views(volumes, volumes.fixed_norm)
    columns = [
        lambda view, m=moving: Panel(combine(fixed[view], _views(volumes, m)[view]))
        for moving in (volumes.before_norm, volumes.after_norm)
    ]
    return _grid(volumes, columns)


def comparison_sections(volumes: DisplayVolumes) -> list[Section]:
    """Checkerboard, colour fusion and edges, before vs after."""
    titles = ["Before (affine only)", "After (deformable)"]
    specs = [
        ("checkerboard", "Checkerboard", panels.checkerboard,
         "Tiles alternate fixed and moving; edges should continue across tile borders."),
        ("fusion", "Colour fusion", panels.fusion_rgb,
         "Fixed in magenta, moving in green: aligned structures look grey/white."),
        ("edges", "Edges", panels.edges_overlay,
         "Edges of the moving image (green) drawn on the fixed image."),
    ]  # fmt: skip
    return [
        Section(key, title, caption, render_panels(_before_after(volumes, combine), titles, ROW_TITLES))
        for key, title, combine, caption in specs
    ]


def field_section(volumes: DisplayVolumes) -> Section | None:
    """Confidence, Jacobian determinant with folding, and the deformation grid."""
    columns, titles, bars = [], [], []
    if volumes.confidence is not None:
        conf = _views(volumes, volumes.confidence)
        columns.append(lambda view: Panel(panels.confidence_rgb(conf[view])))
        titles.append("Confidence")
        bars.append(ColourBar("viridis", Normalize(0.0, 1.0), "matching confidence"))
    if volumes.jacobian_determinant is not None:
        columns.append(lambda view: _jacobian_panel(volumes, view))
        titles.append("Jacobian determinant")
        bars.append(
            ColourBar(
                "RdBu_r", panels.jacobian_norm(), "det J; yellow: folding (det J <= 0)", (0, 0.5, 1, 1.5, 2)
            )
        )
    if volumes.disp_ijk is not None:
        columns.append(lambda view: _grid_panel(volumes, view))
        titles.append("Deformation grid")
        bars.append(None)
    if not columns:
        return None
    png = render_panels(_grid(volumes, columns), titles, ROW_TITLES, bars)
    caption = (
        "Confidence of the dense matching; Jacobian determinant of the deformable part (blue: "
        "shrinking, red: expanding, yellow: folding); a regular grid on the fixed image moved by "
        "the deformable displacement (true scale)."
    )
    return Section("field", "Confidence, Jacobian, deformation", caption, png)


def _jacobian_panel(volumes: DisplayVolumes, view: str) -> Panel:
    values = _views(volumes, volumes.jacobian_determinant)[view]
    folding = _views(volumes, volumes.folding)[view]
    return Panel(panels.jacobian_rgb(values, folding))


def _grid_panel(volumes: DisplayVolumes, view: str) -> Panel:
    """Fixed image with the grid lines ``x + u(x)``, ``u`` projected onto the view's plane."""
    row_axis, col_axis = in_plane_axes(view)
    disp_dhw3 = np.moveaxis(volumes.disp_ijk, 0, -1)  # (D, H, W, 3), (i, j, k) components
    disp_slice = _views(volumes, disp_dhw3)[view]  # (rows, cols, 3)
    disp_rc_px = disp_slice[..., [row_axis, col_axis]]
    background = panels.grey_rgb(0.6 * _views(volumes, volumes.fixed_norm)[view])
    step_px = max(2, round(max(disp_rc_px.shape[:2]) / GRID_LINES))
    return Panel(background, panels.deformation_grid_lines(disp_rc_px, step_px))


def thumbnail_png(volumes: DisplayVolumes) -> bytes:
    """Small PNG of the axial colour fusion after registration (for the batch index)."""
    axial = View.AXIAL.value
    fused = panels.fusion_rgb(
        _views(volumes, volumes.fixed_norm)[axial], _views(volumes, volumes.after_norm)[axial]
    )
    return rgb_png_bytes(fused)


def all_sections(volumes: DisplayVolumes) -> list[Section]:
    """Every figure of the page, in display order."""
    field = field_section(volumes)
    return [images_section(volumes), *comparison_sections(volumes), *([field] if field else [])]
