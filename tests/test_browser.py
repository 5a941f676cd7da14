"""The web app in a real headless Chromium: compose the 30 s clip (with the user's chords,
sections, end and way of playing), see the shot timeline, the audio player and the engraved
sheet music, then take part in a listening study and rate an item.

Needs /usr/bin/chromium (driven by Playwright from pip; never `playwright install`) and the
tiny test checkpoint. Screenshots go to test-artifacts/ (git-ignored) for a human look.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app_server import REPO, running_app, tiny_model_missing_reason
from webapp import media

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
COMPOSE_TIMEOUT_MS = 600_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(
        tiny_model_missing_reason() is not None, reason=str(tiny_model_missing_reason())
    ),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_app(tmp_path_factory.mktemp("browser-app")) as running:
        yield running


@pytest.fixture()
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1100})
        finally:
            browser.close()


def fill_and_keep(page: Any, selector: str, text: str, tries: int = 5) -> None:
    """Type `text` into a textbox and make sure it stays: a box just shown by an opening
    accordion may be mounted again right after, which empties it (seen once in CI)."""
    field = page.locator(selector).first
    for _ in range(tries):
        field.wait_for(state="visible")
        field.fill(text)
        field.press("Tab")  # Gradio takes a textbox's value on input and on blur
        page.wait_for_timeout(500)
        if field.input_value() == text:
            return
    raise AssertionError(f"{selector} did not keep {text!r}")


def test_compose_then_rate_in_a_study(app: Any, page: Any, bbb_video: Path) -> None:
    from gradio_client import Client
    from playwright.sync_api import expect

    page.goto(app.url)
    expect(page.get_by_text("Diff-BGM · piano background music")).to_be_visible()
    # the user's own chords, a section start and where the music ends, typed into the form
    # (and checked again after the upload, just before composing)
    page.get_by_text("Where the music plays, your chords and sections").click()
    typed = (("#chords", "Am F C G"), ("#sections", "0:20"), ("#music-end", "0:27"))
    for box, text in typed:
        fill_and_keep(page, f"{box} textarea, {box} input", text)
    page.locator("#video-in input[type=file]").set_input_files(str(bbb_video))
    expect(page.locator("#video-in video")).to_be_attached(timeout=60_000)
    for box, text in typed:
        fill_and_keep(page, f"{box} textarea, {box} input", text)
    page.locator("#playing label", has_text="wide").click()  # expressive dynamics
    page.locator("#compose-btn").click()
    gallery_images = page.locator("#shots img")
    expect(gallery_images.first).to_be_visible(timeout=COMPOSE_TIMEOUT_MS)
    expect(page.locator("#result-summary")).to_contain_text("BPM")
    expect(page.locator("#result-summary")).to_contain_text("your chords (4 bars")
    expect(page.locator("#result-summary")).to_contain_text(
        "your sections besides the shot cuts: 20 s at"
    )
    expect(page.locator("#result-summary")).to_contain_text("music from 0:00.00 to 0:2")
    expect(page.locator("#result-summary")).to_contain_text("wide dynamics")
    assert gallery_images.count() >= 2  # the clip has several shots
    expect(page.get_by_text("Shot 1 ·").first).to_be_attached()
    assert page.locator("#audio-out audio").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "browser-compose.png"), full_page=True)
    # the engraved sheet (verovio SVG): staves and notes drawn, with a size on the page
    sheet = page.locator("#sheet-view .sheet-view svg").first
    expect(sheet).to_be_visible()
    assert page.locator("#sheet-view g.staff").count() >= 1
    assert page.locator("#sheet-view g.note").count() >= 10
    box = sheet.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    sheet.scroll_into_view_if_needed()
    page.locator("#sheet-view").screenshot(path=str(ARTIFACTS / "browser-sheet.png"))

    results = media.list_result_dirs(app.data_dir / "outputs")
    assert len(results) == 1
    _, code = Client(app.url, verbose=False).predict(
        app.admin_token, "Browser study", "likert", results, "full", api_name="/create_study"
    )

    page.goto(f"{app.url}?study={code}")
    page.get_by_role("tab", name="Listening study").click()
    expect(page.locator("#study-code textarea, #study-code input").first).to_have_value(code)
    page.locator("#join-btn").click()
    expect(page.locator("#trial-status")).to_contain_text("Item 1 of 1", timeout=30_000)
    for scale in ("musicality", "fit", "overall"):
        page.locator(f"#rate-{scale} label", has_text="4").click()
    page.screenshot(path=str(ARTIFACTS / "browser-study.png"), full_page=True)
    page.locator("#rate-btn").click()
    expect(page.locator("#trial-status")).to_contain_text("thank you", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "browser-study-done.png"), full_page=True)
