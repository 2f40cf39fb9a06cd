"""The QC page: self-contained, every figure a valid PNG, numbers and displacement shown correctly."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from vmgga.frames import array_from_image
from vmgga.qc.index import case_flags, robust_confidence_floor, write_index
from vmgga.qc.report import QC_PAGE_NAME, THUMBNAIL_NAME, key_numbers, write_qc_page
from vmgga.qc.volumes import display_volumes


def embedded_pngs(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    return [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources]


def test_qc_page_is_self_contained_with_every_section(stroke_result, tmp_path):
    path = write_qc_page(stroke_result, tmp_path, title="QC: <case & 1>")
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / QC_PAGE_NAME and (tmp_path / THUMBNAIL_NAME).is_file()
    assert "QC: &lt;case &amp; 1&gt;" in page  # escaped
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing external: works offline
    assert "<script" not in page
    images = embedded_pngs(page)
    assert len(images) == 5  # images, checkerboard, fusion, edges, confidence/Jacobian/grid
    for image in images:
        image.load()
        assert image.format == "PNG" and image.width > 300
    for heading in ("Checkerboard", "Colour fusion", "Edges", "Confidence, Jacobian, deformation"):
        assert heading in page
    assert "radiological convention" in page
    assert not list(tmp_path.glob(".*partial*"))  # atomic writes left no temporary file
    assert path.stat().st_size < 3_000_000


def test_key_numbers_come_from_the_report_and_the_jacobian(stroke_result):
    rows = dict(key_numbers(stroke_result.report, stroke_result))
    assert rows["jacobian.sd_log_j"] == "0.01"
    assert rows["config.dense.features.backend"] == "mind"
    det = array_from_image(stroke_result.jacobian_determinant)
    folding = int(np.count_nonzero(det <= 0))
    assert rows["folding voxels (det J <= 0, working grid)"].startswith(f"{folding} of {det.size}")


def test_displayed_displacement_matches_the_known_field(stroke_result):
    """The bump moves points towards the patient's left (+L): in the radiological display grid
    (i runs towards L) its i component is positive, in display voxels, and the others ~0."""
    volumes = display_volumes(stroke_result, "radiological")
    peak_mm = 6.0  # amplitude of the bump in conftest.make_result
    disp = volumes.disp_ijk  # (3, D, H, W)
    assert disp[0].max() * volumes.spacing_mm > 0.8 * peak_mm
    assert disp[0].max() * volumes.spacing_mm <= peak_mm * 1.01
    assert np.abs(disp[1:]).max() < 0.2 * np.abs(disp[0]).max()  # the oblique frame mixes a little
    neurological = display_volumes(stroke_result, "neurological")
    assert neurological.disp_ijk[0].min() < -0.8 * peak_mm / neurological.spacing_mm  # i runs towards R


def test_index_flags_outliers_and_links_cases(tmp_path, stroke_result):
    write_qc_page(stroke_result, tmp_path / "good")
    rows = [
        {"case_id": "good", "status": "done", "run_time_s": 3.0, "metrics": {"confidence_mean": 0.2}},
        {
            "case_id": "folded",
            "status": "done",
            "metrics": {"confidence_mean": 0.2, "jacobian_negative_fraction": 0.01},
        },
        {"case_id": "dim", "status": "skipped", "metrics": {"confidence_mean": 0.01}},
        {"case_id": "bad", "status": "failed", "error": "InputError: <broken>", "metrics": {}},
    ]
    page = write_index(tmp_path, rows).read_text(encoding="utf-8")
    assert case_flags(rows[0]) == [] and case_flags(rows[1]) == ["folding"]
    assert case_flags(rows[2]) == ["low confidence"] and case_flags(rows[3]) == ["failed"]
    assert '<a href="good/qc.html">' in page and 'href="bad/' not in page
    assert "InputError: &lt;broken&gt;" in page
    assert len(embedded_pngs(page)) == 1  # the thumbnail of the one case with a QC page


def test_robust_outlier_floor():
    rows = [{"metrics": {"confidence_mean": v}} for v in (0.20, 0.21, 0.19, 0.20, 0.22, 0.08)]
    floor = robust_confidence_floor(rows)
    assert 0.08 < floor < 0.19
    assert case_flags({"status": "done", "metrics": {"confidence_mean": 0.08}}, floor) == ["low confidence"]
    assert robust_confidence_floor(rows[:3]) is None
