"""Render grids of QC panels to PNG bytes with matplotlib (Agg, no display needed)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (headless rendering; must precede pyplot)
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

#: Figure resolution of the QC PNGs (dots per inch); panels are about 2 inches wide.
DPI = 80
#: Colour of the deformation grid lines.
GRID_LINE_COLOUR = "#ffb000"


@dataclass
class Panel:
    """One image cell of a figure: an RGB image plus optional lines and edge labels."""

    rgb: np.ndarray  # (H, W, 3) float in [0, 1], display orientation
    lines_rc: list[np.ndarray] = field(default_factory=list)  # polylines (N, 2) of (row, col) pixels
    edge_labels: tuple[str, str, str, str] | None = None  # anatomical (left, right, top, bottom)


@dataclass(frozen=True)
class ColourBar:
    """A colour bar under one column of a figure."""

    cmap: str  # matplotlib colour map name
    norm: Normalize  # value -> [0, 1] scale of that map
    label: str  # what the colours mean, with units


def render_panels(
    panels: list[list[Panel]],
    column_titles: list[str],
    row_titles: list[str],
    colour_bars: list[ColourBar | None] | None = None,
) -> bytes:
    """PNG bytes of a ``rows x columns`` grid of panels (rows: views, columns: variants)."""
    n_rows, n_cols = len(panels), len(panels[0])
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(2.3 * n_cols, 2.3 * n_rows + 0.4), squeeze=False)
    for row, (row_panels, row_title) in enumerate(zip(panels, row_titles, strict=True)):
        for col, panel in enumerate(row_panels):
            _draw_panel(axes[row][col], panel)
            if row == 0:
                axes[row][col].set_title(column_titles[col], fontsize=9)
        axes[row][0].set_ylabel(row_title, fontsize=9)
    for col, bar in enumerate(colour_bars or []):
        if bar is not None:
            _add_colour_bar(figure, axes[-1][col], bar)
    figure.tight_layout(pad=0.4)
    return _png_bytes(figure)


def _draw_panel(axis, panel: Panel) -> None:
    """Show one panel without ticks, with its grid lines and anatomical edge letters."""
    axis.imshow(np.clip(panel.rgb, 0.0, 1.0), interpolation="nearest", origin="upper")
    height, width = panel.rgb.shape[:2]
    for line in panel.lines_rc:
        axis.plot(line[:, 1], line[:, 0], color=GRID_LINE_COLOUR, linewidth=0.6)
    axis.set_xlim(-0.5, width - 0.5)
    axis.set_ylim(height - 0.5, -0.5)
    axis.set_xticks([])
    axis.set_yticks([])
    if panel.edge_labels:
        _draw_edge_labels(axis, panel.edge_labels)


def _draw_edge_labels(axis, labels: tuple[str, str, str, str]) -> None:
    """Write the anatomical direction of each screen edge (left, right, top, bottom) inside it."""
    style = {"transform": axis.transAxes, "color": "#ffff66", "fontsize": 7, "fontweight": "bold"}
    left, right, top, bottom = labels
    axis.text(0.02, 0.5, left, ha="left", va="center", **style)
    axis.text(0.98, 0.5, right, ha="right", va="center", **style)
    axis.text(0.5, 0.98, top, ha="center", va="top", **style)
    axis.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _add_colour_bar(figure, axis, bar: ColourBar) -> None:
    """A horizontal colour bar below ``axis``."""
    mappable = ScalarMappable(norm=bar.norm, cmap=bar.cmap)
    colour_bar = figure.colorbar(mappable, ax=axis, orientation="horizontal", fraction=0.06, pad=0.04)
    colour_bar.set_label(bar.label, fontsize=8)
    colour_bar.ax.tick_params(labelsize=7)


def _png_bytes(figure) -> bytes:
    """Encode a figure as PNG and release it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def rgb_png_bytes(rgb: np.ndarray) -> bytes:
    """PNG bytes of a bare RGB image (thumbnails), ``(H, W, 3)`` in [0, 1]."""
    from PIL import Image

    pixels = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
