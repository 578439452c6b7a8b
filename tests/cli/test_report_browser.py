"""The report page of a real run, opened from disk in a real headless browser (Chromium).

Needs Debian's Chromium (scripts/install_browser.sh) and Playwright for Python (the dev extra);
Playwright's own browser downloads are not used. Skipped where either is missing, except under
CI (CI=true), where a missing browser fails. WAVENET_UPDATE_SCREENSHOT=1 also copies the
screenshot to docs/img/report.png (the README's picture).
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from metrics.test_report import make_run, train_tiny_run
from tools import require

from wavenet.metrics.report import write_comparison, write_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "report.png"

# Resolves with every <audio> element's duration once its metadata has loaded; rejects when a
# source fails or nothing arrives within 10 s.
AUDIO_DURATIONS = """() => Promise.all([...document.querySelectorAll("audio")].map(a =>
  new Promise((resolve, reject) => {
    if (a.error) reject(`${a.src}: error ${a.error.code}`);
    if (a.readyState >= 1) resolve(a.duration);
    a.addEventListener("loadedmetadata", () => resolve(a.duration));
    a.addEventListener("error", () => reject(`${a.src}: error ${a.error && a.error.code}`));
    setTimeout(() => reject(`${a.src}: no metadata after 10 s`), 10000);
  })))"""


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Playwright, or a skip (a failure under CI) saying why."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM.is_file():
        missing = f"no browser at {CHROMIUM} (run scripts/install_browser.sh)"
    require(missing is None, missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def open_page(browser, path: Path):
    """A page showing `path` (file://); returns (page, problems): console errors, page errors
    and failed requests, collected as they happen."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems


def test_real_run_report_plays_in_a_browser(
    browser, tmp_path_factory, speech: Path, tmp_path: Path
):
    run = train_tiny_run(tmp_path_factory.getbasetemp(), speech)
    page, problems = open_page(browser, write_report(run))

    durations = page.evaluate(AUDIO_DURATIONS)
    assert len(durations) == len(list((run / "samples").glob("step_*.wav"))) == 2
    assert all(d > 0 for d in durations), durations
    images = page.evaluate("""() => [...document.querySelectorAll("img")].map(
        i => i.complete && i.naturalWidth)""")
    assert len(images) == len(list((run / "samples").glob("step_*.png")))
    assert all(images), images
    curves = page.evaluate("""() => [...document.querySelectorAll("svg.curves path")].map(
        p => [p.getTotalLength(), p.getAttribute("d").split(/[ML]/).length - 1])""")
    assert curves and all(length > 0 and points >= 2 for length, points in curves), curves
    assert page.locator("svg.curves").bounding_box()["width"] > 300

    page.screenshot(path=tmp_path / "report.png", full_page=True)
    if os.environ.get("WAVENET_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "report.png", SCREENSHOT)
    assert not problems, problems
    page.close()


def test_comparison_table_sorts_on_click(browser, tmp_path: Path):
    runs = [
        make_run(tmp_path / f"run{i}", steps=steps, overrides=[f"train.max_steps={steps}"])
        for i, steps in enumerate((300, 100, 200))
    ]
    page, problems = open_page(browser, write_comparison(runs, tmp_path / "sweep.html"))
    assert all(d > 0 for d in page.evaluate(AUDIO_DURATIONS))

    def column(name: str) -> list[str]:
        index = page.locator("table.sortable th").all_inner_texts().index(name)
        return page.locator(f"table.sortable tbody td:nth-child({index + 1})").all_inner_texts()

    steps = page.locator("table.sortable th", has_text=re.compile("^steps$"))
    assert column("steps") == ["300", "100", "200"]
    steps.click()
    assert column("steps") == ["100", "200", "300"]
    steps.click()
    assert column("steps") == ["300", "200", "100"]
    assert column("run") == ["run0", "run2", "run1"]  # rows move whole
    assert not problems, problems
    page.close()
