"""The HTML report in a real browser: headless Chromium (Debian's chromium + chromium-driver) via selenium.

Checks that the page renders without a console error (the report's Content-Security-Policy
makes any script or external request one), that the findings are visible, that every
embedded figure decodes, and keeps a full-page screenshot (in the test's tmp folder, and
under CI also in .ci/artifacts/).
"""

from __future__ import annotations

import json
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


def _check_page(browser, html: Path, findings: list[tuple[str, str]], images: int | None) -> None:
    """The page loads without console errors, shows every (severity, what) finding and decodes every figure."""
    from selenium.webdriver.common.by import By

    browser.get(html.resolve().as_uri())
    assert browser.title.startswith("npanalytics report: ")
    shown = [e for e in browser.find_elements(By.CSS_SELECTOR, ".finding .what .text") if e.is_displayed()]
    assert [e.text for e in shown] == [what for _, what in findings]
    for level in ("critical", "warning", "info"):
        count = browser.find_element(By.ID, f"count-{level}")
        expected = sum(1 for severity, _ in findings if severity == level)
        assert count.is_displayed() and count.text.split() == [str(expected), level]
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes and all(ok and w > 100 and h > 100 for ok, w, h in sizes), sizes
    if images is not None:
        assert len(sizes) == images
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def _keep(browser, tmp_path: Path, name: str, record_property) -> Path:
    screenshot = _screenshot(browser, tmp_path / name)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if IN_CI:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = Path(shutil.copy(screenshot, ARTIFACTS / name))
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")
    return screenshot


def test_report_renders_in_chromium(browser, tmp_path, record_property):
    from selenium.webdriver.common.by import By

    analysis = make_analysis()
    paths = render_report(analysis, formats=("html",), out_dir=tmp_path, generated=GENERATED)
    expected = list(zip(analysis.findings["severity"].astype("str"), analysis.findings["what"]))
    _check_page(browser, paths["html"], expected, images=4)
    assert browser.title == "npanalytics report: node-sample"
    for severity in ("critical", "warning", "info"):
        assert browser.find_element(By.ID, f"findings-{severity}").is_displayed()
    _keep(browser, tmp_path, "report-screenshot.png", record_property)


def test_a_real_report_renders_in_chromium(browser, tmp_path, record_property):
    """The report the command writes for a bundled dataset with findings."""
    from npanalytics.cli import main

    main(["report", "--dataset", str(ROOT / "datasets" / "etp-local-uneven"), "--out", str(tmp_path),
          "--format", "html,json"])
    findings = json.loads((tmp_path / "report.json").read_text())["findings"]
    order = {"critical": 0, "warning": 1, "info": 2}
    expected = [(f["severity"], f["what"]) for f in sorted(findings, key=lambda f: order[f["severity"]])]
    assert expected, "etp-local-uneven is expected to give findings"
    _check_page(browser, tmp_path / "report.html", expected, images=None)
    _keep(browser, tmp_path, "report-etp-local-uneven.png", record_property)


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
