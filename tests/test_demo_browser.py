"""End to end in a real browser: Debian's headless chromium driven by playwright against the running demo."""

import os
import shutil
from pathlib import Path

import pytest
from demo_utils import TEACHER_STEPS, demo_server

CHROMIUM = os.environ.get("SOUNDCTM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"chromium not installed at {CHROMIUM} "
                       "(apt-get install chromium; scripts/setup.sh does it); playwright's own browsers are not used"),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page on the demo; every request off the demo's own origin is blocked and recorded."""
    url = demo_server().url.rstrip("/")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.external, page.errors = [], []

    def route(r):
        if r.request.url.startswith(url) or r.request.url.startswith("data:"):
            return r.continue_()
        page.external.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.locator("#prompt textarea").wait_for(timeout=TIMEOUT_MS)
    yield page
    page.close()


def set_slider(page, elem_id: str, value: float) -> None:
    page.locator(f"#{elem_id} input[type=range]").fill(str(value))


def test_generate_with_gamma_slider(page, tmp_path):
    page.locator("#prompt textarea").fill("a loud high beep sounding twice")
    set_slider(page, "steps", 3)
    set_slider(page, "gamma", 0.6)
    assert float(page.locator("#gamma input[type=number]").input_value()) == 0.6  # the slider moved its box
    page.locator("#generate").click()
    page.locator("#audio-0 audio[src]").wait_for(state="attached", timeout=TIMEOUT_MS)  # behind gradio's player
    page.locator("#spectrogram-0 img").wait_for(state="visible", timeout=TIMEOUT_MS)
    timing = page.locator("#timing").inner_text()
    assert "CTM · 3 steps · γ 0.60" in timing and "3 NFE" in timing and "real time" in timing  # γ reached the model
    assert page.locator("#spectrogram-0 img").evaluate("img => img.naturalWidth") > 100  # a decoded picture
    shot = page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SOUNDCTM_DEMO_SCREENSHOT"):  # refresh docs/demo.png on purpose only
        shutil.copy(tmp_path / "demo.png", os.environ["SOUNDCTM_DEMO_SCREENSHOT"])
    assert page.external == [] and page.errors == []  # offline: nothing fetched from elsewhere, no JS errors


def test_example_compare_and_friendly_error(page):
    from playwright.sync_api import expect

    page.get_by_text("Two loud bird chirps").first.click()  # a SynthCaps example fills the prompt
    expect(page.locator("#prompt textarea")).to_have_value("Two loud bird chirps", timeout=TIMEOUT_MS)
    set_slider(page, "steps", 4)
    page.locator("#compare").click()
    for i in range(3):
        page.locator(f"#compare-audio-{i} audio[src]").wait_for(state="attached", timeout=TIMEOUT_MS)
    expect(page.locator("#compare-spectrogram-0 img")).to_be_visible()  # the page switched to the Compare tab
    nfe = [page.locator(f"#compare-timing-{i}").inner_text() for i in range(3)]
    assert "1 NFE" in nfe[0] and "4 NFE" in nfe[1] and f"{(2 * TEACHER_STEPS - 1) * 2} NFE" in nfe[2]
    page.locator("#prompt textarea").fill("   ")
    page.locator("#generate").click()
    toast = page.get_by_text("prompt must be non-empty text")
    toast.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    assert page.external == [] and page.errors == []
