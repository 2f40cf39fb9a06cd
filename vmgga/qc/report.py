"""``qc.html``: one self-contained QC page per registration (images embedded, no scripts, offline).

``write_qc_page(result, output_dir)`` is what ``vmgga.write_outputs(..., qc=True)``,
``vmgga register --qc`` and ``vmgga batch`` call.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from vmgga.frames import array_from_image
from vmgga.io.atomic import atomic_write, write_text_atomic
from vmgga.qc.sections import Section, all_sections, thumbnail_png
from vmgga.qc.slices import DisplayConvention
from vmgga.qc.volumes import DisplayVolumes, display_volumes

QC_PAGE_NAME = "qc.html"
THUMBNAIL_NAME = "qc_thumbnail.png"

#: Report sections whose top-level scalar entries are listed in the key-numbers table.
NUMBER_SECTIONS = ("jacobian", "confidence", "dice", "timings_s")
#: Timings shown (seconds); the report has more.
TIMING_KEYS = ("affine", "dense", "total")
#: Selected configuration entries (dotted paths into ``report["config"]``).
CONFIG_KEYS = ("preset", "dense.features.backend", "device", "seed", "preprocess.working_spacing_mm")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.05em;margin:.2em 0;border-bottom:1px solid #ccc}
.sections{display:flex;flex-wrap:wrap;gap:18px 28px;align-items:flex-start}section{max-width:100%}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
td.v{font-family:ui-monospace,monospace;text-align:right}.note{color:#555;font-size:.85em;max-width:62em}
section .note{max-width:30em}img{max-width:100%;height:auto;display:block}
.suspect{background:#fde8e8;border:2px solid #b00;color:#600;padding:.5em 1em;margin:.4em 0 .8em;max-width:62em}
"""


def write_qc_page(
    result, output_dir: str | os.PathLike, *, title: str | None = None, convention: str = "radiological"
) -> Path:
    """Write ``output_dir/qc.html`` (atomically) and a small ``qc_thumbnail.png`` for batch indexes.

    Args:
        result: a :class:`vmgga.result.RegistrationResult`.
        output_dir: existing or new folder.
        title: page heading (default: "Registration QC").
        convention: ``radiological`` (patient's left on the screen's right) or ``neurological``.

    Returns:
        The path of ``qc.html``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    volumes = display_volumes(result, convention)
    page = build_qc_html(result, volumes, title or "Registration QC")
    write_thumbnail(volumes, output_dir / THUMBNAIL_NAME)
    return write_text_atomic(page, output_dir / QC_PAGE_NAME)


def write_thumbnail(volumes: DisplayVolumes, path: Path) -> Path:
    """The axial colour-fusion thumbnail, written atomically."""
    data = thumbnail_png(volumes)
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def build_qc_html(result, volumes: DisplayVolumes, title: str) -> str:
    """The whole page as a string."""
    report = getattr(result, "report", None) or {}
    sections = all_sections(volumes)
    numbers = (
        f'<section id="numbers"><h2>Key numbers</h2>{_numbers_table(key_numbers(report, result))}</section>'
    )
    body = [
        suspect_banner_html(report),
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="inputs">{html.escape(inputs_line(report))}</p>',
        f'<p class="note">{html.escape(_orientation_note(volumes))}</p>',
        '<div class="sections">',
        numbers,
        *[_section_html(s) for s in sections],
        "</div>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def inputs_line(report: dict) -> str:
    """``Fixed: T2.nii.gz · Moving: T1.nii.gz``: the inputs by file or folder name only (no folder
    path, no DICOM patient tags), so the page says which pair it shows."""
    inputs = report.get("inputs") or {}
    parts = [f"{role.capitalize()}: {input_name(inputs.get(role) or {})}" for role in ("fixed", "moving")]
    return " \u00b7 ".join(parts)


def input_name(description: dict) -> str:
    """One input's file name (a DICOM folder's name, with its series number and slice count)."""
    path = description.get("path")
    if not path:
        return "(in memory)" if description.get("source") == "memory" else "(unknown)"
    name = Path(path).name
    dicom = description.get("dicom") or {}
    if description.get("source") == "dicom":
        number = dicom.get("series_number")
        series = f"series {number}, " if number is not None else ""
        return f"{name} (DICOM folder, {series}{dicom.get('num_slices', '?')} slices)"
    return name


def _orientation_note(volumes: DisplayVolumes) -> str:
    side = "right" if volumes.convention == DisplayConvention.RADIOLOGICAL.value else "left"
    return (
        f"Display: {volumes.convention} convention (the patient's left is on the screen's {side}); "
        "letters at the panel edges give the anatomical directions (R/L, A/P, S/I). Slices pass "
        f"through the centre of mass of the fixed image; display spacing {volumes.spacing_mm:.2f} mm. "
        "'Before' is the moving image through the affine stage only; 'after' through the full transform."
    )


def _section_html(section: Section) -> str:
    data = base64.b64encode(section.png).decode("ascii")
    return (
        f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>'
        f'<p class="note">{html.escape(section.caption)}</p>'
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(section.title)}"></section>'
    )


def _numbers_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f'<tr><th>{html.escape(k)}</th><td class="v">{html.escape(v)}</td></tr>' for k, v in rows)
    return f"<table>{cells}</table>"


def key_numbers(report: dict, result=None) -> list[tuple[str, str]]:
    """(name, formatted value) rows: report statistics, folding count, selected config and sizes."""
    rows = []
    for section in NUMBER_SECTIONS:
        for key, value in _scalars(report.get(section)):
            if section != "timings_s" or key in TIMING_KEYS:
                rows.append((f"{section}.{key}", _format(value)))
    if result is not None and getattr(result, "jacobian_determinant", None) is not None:
        rows.append(("folding voxels (det J <= 0, working grid)", _folding_text(result.jacobian_determinant)))
    config = report.get("config") or {}
    for dotted in CONFIG_KEYS:
        value = _dotted(config, dotted)
        if value is not None:
            rows.append((f"config.{dotted}", _format(value)))
    if result is not None:
        rows += _size_rows(result)
    return rows


def _scalars(section) -> list[tuple[str, object]]:
    """Scalar (number, bool, string) entries of a dict (nested dicts are left out)."""
    if not isinstance(section, dict):
        return []
    return [(str(key), value) for key, value in section.items() if _is_scalar(value)]


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool, np.floating, np.integer)) or value is None


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _dotted(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _folding_text(jacobian) -> str:
    values = array_from_image(jacobian)
    folding = int(np.count_nonzero(~(values > 0)))
    return f"{folding} of {values.size} ({100.0 * folding / max(values.size, 1):.3g}%)"


def _size_rows(result) -> list[tuple[str, str]]:
    rows = []
    for role in ("fixed", "moving"):
        image = getattr(result, role, None)
        if image is not None:
            size = "x".join(str(s) for s in image.GetSize())
            spacing = "x".join(f"{s:.3g}" for s in image.GetSpacing())
            rows.append((f"{role} size (voxels) / spacing (mm)", f"{size} / {spacing}"))
    return rows


def suspect_banner_html(report: dict) -> str:
    """A warning banner for a result whose ``report["status"]`` is ``"suspect"`` (else ``""``)."""
    if report.get("status") != "suspect":
        return ""
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in report.get("suspect_reasons") or [])
    return (
        '<div class="suspect" role="alert"><strong>Suspect result: check it before use.</strong> '
        "The registration finished, but its numbers look like a failed or implausible alignment "
        f"(for example images without shared anatomy):<ul>{reasons}</ul></div>"
    )
