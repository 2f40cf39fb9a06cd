"""Compose grids of QC panels into PNG bytes with Pillow (fast, headless, no display needed).

A figure is ``rows x columns`` square cells of :data:`CELL_PX` pixels; each panel is scaled to fit
its cell (aspect kept: the display grid is isotropic), deformation-grid lines are drawn on top,
anatomical letters sit inside the four edges, and an optional colour bar goes under a column.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from PIL import Image, ImageDraw, ImageFont

#: Side of one square panel cell, in output pixels.
CELL_PX = 200
#: Gap between cells and around the figure.
GAP_PX = 4
#: Room for column titles (top), row titles (left) and colour bars (bottom).
TITLE_PX, ROW_TITLE_PX, BAR_PX = 20, 20, 44
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)
EDGE_LETTER_COLOUR = (255, 255, 102)
GRID_LINE_COLOUR = (255, 176, 0)


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
    ticks: tuple[float, ...] = (0.0, 0.5, 1.0)  # values written under the bar


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def render_panels(
    panels: list[list[Panel]],
    column_titles: list[str],
    row_titles: list[str],
    colour_bars: list[ColourBar | None] | None = None,
) -> bytes:
    """PNG bytes of a ``rows x columns`` grid of panels (rows: views, columns: variants)."""
    n_rows, n_cols = len(panels), len(panels[0])
    bar_height = BAR_PX if any(colour_bars or []) else 0
    width = ROW_TITLE_PX + n_cols * (CELL_PX + GAP_PX) + GAP_PX
    height = TITLE_PX + n_rows * (CELL_PX + GAP_PX) + GAP_PX + bar_height
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(column_titles):
        _centred_text(draw, _cell_left(col) + CELL_PX // 2, TITLE_PX // 2, title, 13)
    for row, title in enumerate(row_titles):
        _row_title(canvas, title, _cell_top(row))
        for col, panel in enumerate(panels[row]):
            canvas.paste(_panel_image(panel), (_cell_left(col), _cell_top(row)))
    for col, bar in enumerate(colour_bars or []):
        if bar is not None:
            _draw_colour_bar(canvas, bar, _cell_left(col), _cell_top(n_rows))
    return png_bytes(canvas)


def _cell_left(col: int) -> int:
    return ROW_TITLE_PX + GAP_PX + col * (CELL_PX + GAP_PX)


def _cell_top(row: int) -> int:
    return TITLE_PX + GAP_PX + row * (CELL_PX + GAP_PX)


def _panel_image(panel: Panel) -> Image.Image:
    """The panel scaled into a black square cell, with its lines and edge letters."""
    height, width = panel.rgb.shape[:2]
    scale = CELL_PX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    offset = ((CELL_PX - size[0]) // 2, (CELL_PX - size[1]) // 2)
    cell = Image.new("RGB", (CELL_PX, CELL_PX), (0, 0, 0))
    cell.paste(_to_pil(panel.rgb).resize(size, Image.Resampling.BILINEAR), offset)
    draw = ImageDraw.Draw(cell)
    for line in panel.lines_rc:
        points = [(offset[0] + (c + 0.5) * scale, offset[1] + (r + 0.5) * scale) for r, c in line]
        draw.line(points, fill=GRID_LINE_COLOUR, width=1)
    if panel.edge_labels:
        _edge_letters(draw, panel.edge_labels)
    return cell


def _edge_letters(draw: ImageDraw.ImageDraw, labels: tuple[str, str, str, str]) -> None:
    """Anatomical direction of each screen edge (left, right, top, bottom), inside the cell."""
    left, right, top, bottom = labels
    font, half = _font(12), CELL_PX // 2
    draw.text((3, half), left, fill=EDGE_LETTER_COLOUR, font=font, anchor="lm")
    draw.text((CELL_PX - 3, half), right, fill=EDGE_LETTER_COLOUR, font=font, anchor="rm")
    draw.text((half, 2), top, fill=EDGE_LETTER_COLOUR, font=font, anchor="mt")
    draw.text((half, CELL_PX - 2), bottom, fill=EDGE_LETTER_COLOUR, font=font, anchor="mb")


def _centred_text(draw: ImageDraw.ImageDraw, x: int, y: int, text: str, size: int) -> None:
    draw.text((x, y), text, fill=TEXT_COLOUR, font=_font(size), anchor="mm")


def _row_title(canvas: Image.Image, title: str, top: int) -> None:
    """A row title written bottom-to-top left of the row."""
    strip = Image.new("RGB", (CELL_PX, ROW_TITLE_PX), BACKGROUND)
    _centred_text(ImageDraw.Draw(strip), CELL_PX // 2, ROW_TITLE_PX // 2, title, 13)
    canvas.paste(strip.rotate(90, expand=True), (0, top))


def _draw_colour_bar(canvas: Image.Image, bar: ColourBar, left: int, top: int) -> None:
    """A horizontal colour gradient with tick values and a label, under one column."""
    values = np.linspace(bar.norm.vmin, bar.norm.vmax, CELL_PX - 20)
    colours = colormaps[bar.cmap](np.asarray(bar.norm(values)))[:, :3]
    strip = np.repeat(colours[None], 10, axis=0)  # (10, W, 3)
    canvas.paste(_to_pil(strip), (left + 10, top))
    draw = ImageDraw.Draw(canvas)
    for tick in bar.ticks:
        x = left + 10 + (tick - bar.norm.vmin) / (bar.norm.vmax - bar.norm.vmin) * (CELL_PX - 21)
        draw.line([(x, top + 10), (x, top + 13)], fill=TEXT_COLOUR)
        _centred_text(draw, int(x), top + 19, f"{tick:g}", 10)
    _centred_text(draw, left + CELL_PX // 2, top + 33, bar.label, 11)


def _to_pil(rgb: np.ndarray) -> Image.Image:
    """Pillow image of an RGB float array in [0, 1]."""
    return Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def png_bytes(image: Image.Image, palette: bool = True) -> bytes:
    """PNG encoding of a Pillow image; by default with a 256-colour palette (a third of the size)."""
    if palette and image.mode == "RGB":
        image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def rgb_png_bytes(rgb: np.ndarray) -> bytes:
    """PNG bytes of a bare RGB image (thumbnails), ``(H, W, 3)`` in [0, 1]."""
    return png_bytes(_to_pil(rgb))
