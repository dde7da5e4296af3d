"""The HTML report in a real browser: headless Chromium (Debian's chromium + chromium-driver) via selenium.

Checks that the page renders without a console error (the report's Content-Security-Policy
makes any script or external request one), that the findings are visible, that every
embedded figure decodes, and keeps a full-page screenshot (in the test's tmp folder, and
under CI also in .ci/artifacts/).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import IN_CI
from test_report import GENERATED, ROOT, make_analysis

from npanalytics.report import render_report

ARTIFACTS = ROOT / ".ci" / "artifacts"


@pytest.fixture
def browser(need, need_binary):
    chromium = need_binary("chromium")
    driver_path = need_binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "needs selenium (pip install 'npanalytics[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, path: Path) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 16000))
    assert driver.save_screenshot(str(path))
    return path


def test_report_renders_in_chromium(browser, tmp_path, record_property):
    from selenium.webdriver.common.by import By

    analysis = make_analysis()
    paths = render_report(analysis, formats=("html",), out_dir=tmp_path, generated=GENERATED)
    browser.get(paths["html"].resolve().as_uri())
    assert browser.title == "npanalytics report: node-sample"

    # every finding is on the page and visible, under its severity
    shown = [e for e in browser.find_elements(By.CSS_SELECTOR, ".finding .what .text") if e.is_displayed()]
    assert [e.text for e in shown] == list(analysis.findings["what"])
    assert browser.find_element(By.ID, "count-critical").text.split() == ["1", "critical"]
    for severity in ("critical", "warning", "info"):
        assert browser.find_element(By.ID, f"findings-{severity}").is_displayed()

    # figures decoded by the browser itself, each with a size
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == 4 and all(ok and w > 100 and h > 100 for ok, w, h in sizes), sizes

    screenshot = _screenshot(browser, tmp_path / "report.png")
    if IN_CI:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = Path(shutil.copy(screenshot, ARTIFACTS / "report-screenshot.png"))
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_console_check_catches_a_blocked_script(browser, tmp_path):
    """The check above can fail: an injected script is blocked by the CSP and logged as an error."""
    paths = render_report(make_analysis(sections=()), formats=("html",), out_dir=tmp_path, generated=GENERATED)
    page = paths["html"].read_text().replace("</body>", "<script>document.title = 'pwned'</script></body>")
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page)
    browser.get(tampered.resolve().as_uri())
    assert browser.title != "pwned"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert any("Content Security Policy" in e["message"] for e in errors), errors
