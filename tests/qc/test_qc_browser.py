"""The QC pages in a real headless Chromium: they render, every image loads, no console errors.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromedriver``) and the ``selenium``
package; skipped with the reason when one is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmgga.qc.index import write_index
from vmgga.qc.report import write_qc_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium/chromium-driver not installed (apt-get install -y chromium chromium-driver)",
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)

#: For every <img>: did it finish loading, and its decoded width.
IMAGE_STATE_JS = "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1200,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def open_and_check(browser, page: Path, screenshot: Path) -> list[list]:
    """Load a page from disk, check it rendered, return the image states; save a full screenshot."""
    browser.get_log("browser")  # drop messages of earlier pages
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.find_element("tag name", "h1").text
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(max(height, 600), 8000))
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    return browser.execute_script(IMAGE_STATE_JS)


def test_qc_page_renders_with_every_image_in_chromium(browser, stroke_result, tmp_path):
    page = write_qc_page(stroke_result, tmp_path / "case1", title="QC: case1")
    images = open_and_check(browser, page, tmp_path / "qc_screenshot.png")
    assert len(images) == 5
    assert all(complete and width > 300 for complete, width, _ in images), images
    assert browser.execute_script("return document.body.scrollWidth") <= 1200  # no sideways scrolling


def test_index_page_renders_and_links_to_the_case_page(browser, stroke_result, tmp_path):
    write_qc_page(stroke_result, tmp_path / "case1")
    rows = [
        {"case_id": "case1", "status": "done", "run_time_s": 2.0, "metrics": {"confidence_mean": 0.2}},
        {"case_id": "broken", "status": "failed", "error": "InputError: truncated", "metrics": {}},
    ]
    index = write_index(tmp_path, rows)
    images = open_and_check(browser, index, tmp_path / "index_screenshot.png")
    assert len(images) == 1 and images[0][0] and images[0][1] > 0
    browser.find_element("link text", "case1").click()
    assert browser.current_url.endswith("case1/qc.html")
    assert all(complete and width > 0 for complete, width, _ in browser.execute_script(IMAGE_STATE_JS))
