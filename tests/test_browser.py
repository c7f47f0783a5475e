"""Playwright drives Debian's Chromium against ``python app.py`` (the shapes world): a full Studio
loop, a Judge vote, a Diagnose run and a History search, each checked on screen. A screenshot
of each tab goes to ``docs/screenshots/<tab>.png`` for the README."""

from __future__ import annotations

import io
import random
import re
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect

from models.shapes import world
from tests.openai_stub import OpenAIStub
from tests.ui_helpers import ROOT, RunningApp, launched_chromium, opened_page, running_app

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "docs" / "screenshots"
LONG_MS = 180_000  # a first Run loads the models; the machine may be busy
PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("browser") / "store")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def page(app: RunningApp, browser: Browser) -> Iterator[Page]:
    yield from opened_page(browser, app.url, "Studio")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    """Two rendered shapes-world scenes with their prompts."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = random.Random(7)
    rendered = []
    for i in range(2):
        scene = world.random_scene(rng, word_prob=0)
        world.render(scene).save(folder / f"scene{i}.png")
        rendered.append((world.short_prompt(scene), folder / f"scene{i}.png"))
    return rendered


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def field(page: Page, label: str):
    """The visible text box labelled ``label`` (tabs repeat labels such as "Prompt")."""
    return page.get_by_label(label, exact=True).filter(visible=True).first


def button(page: Page, name: str):
    return page.get_by_role("button", name=name, exact=True).filter(visible=True).first


def screenshot(page: Page, tab: str, element: Locator | None = None) -> None:
    """Save a small PNG of the page's top 1400 px, or of ``element`` (scaled to 960 px wide, 256 colours)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(element.screenshot() if element is not None else page.screenshot(full_page=True)))
    shot = shot.crop((0, 0, shot.width, min(shot.height, 1400)))
    shot = shot.resize((960, round(shot.height * 960 / shot.width)), Image.Resampling.LANCZOS)
    shot.convert("RGB").quantize(256).save(SCREENSHOTS / f"{tab}.png", optimize=True)


def test_studio_runs_a_full_loop_and_refuses_an_empty_prompt(page):
    button(page, "Run").click()
    expect(page.get_by_text("the prompt is empty").first).to_be_visible(timeout=30_000)
    page.locator(".toast-close").first.click()
    expect(page.get_by_text("the prompt is empty")).to_have_count(0)
    # the error shows once: one badge, on the status line, not one on every output
    expect(page.get_by_text("Error", exact=True)).to_have_count(1)
    expect(page.locator("#studio-status").get_by_text("Error", exact=True)).to_have_count(1)
    field(page, "Prompt").fill(PROMPT)
    button(page, "Run").click()
    status = page.locator("#studio-status")
    expect(status).to_contain_text("Stopped", timeout=LONG_MS)
    timeline = page.locator("#studio-timeline")
    expect(timeline).to_contain_text("Round 1")
    expect(timeline).to_contain_text("best so far")
    expect(timeline.locator("img").first).to_be_visible()
    # the score plot draws one line per dimension with a score (Vega labels each mark)
    lines = page.locator("#studio-plot [aria-roledescription='line mark']")
    expect(lines.first).to_be_attached(timeout=30_000)
    labels = [lines.nth(i).get_attribute("aria-label") or "" for i in range(lines.count())]
    assert any("Text Faithfulness" in label for label in labels), labels
    screenshot(page, "studio")


def test_judge_verdict_and_vote(app, page, scenes):
    open_tab(page, "Judge")
    table = page.locator("#judge-table")
    expect(table).to_contain_text("winner")  # an empty table shows its headers, not "1 2 3"
    (prompt, image_a), (_, image_b) = scenes
    field(page, "Prompt").fill(prompt)
    page.locator("#judge-image-a input[type=file]").set_input_files(str(image_a))
    page.locator("#judge-image-b input[type=file]").set_input_files(str(image_b))
    for side in ("a", "b"):  # 64 px scenes drawn large enough to compare, pixels kept sharp
        image = page.locator(f"#judge-image-{side} img").first
        expect(image).to_have_class(re.compile(r"\brr-small\b"), timeout=30_000)
        assert image.bounding_box()["width"] >= 256
    button(page, "Judge").click()
    verdict = page.locator("#judge-verdict")
    expect(verdict).to_contain_text("Verdict", timeout=LONG_MS)
    expect(verdict).to_contain_text("Position-consistent")
    status = page.locator("#judge-vote-status")
    page.get_by_label("A is better").check()
    button(page, "Record vote").click()
    expect(status).to_contain_text(re.compile(r"Vote #\d+ recorded at \d\d:\d\d:\d\d UTC: A is better"), timeout=30_000)
    page.get_by_label("B is better").check()
    button(page, "Record vote").click()
    expect(status).to_contain_text("It replaces your earlier vote on this judgement (A is better)", timeout=30_000)
    judgement = int(page.locator("#judge-judgement input, #judge-judgement textarea").first.input_value())
    with sqlite3.connect(f"file:{app.store / 'studio.db'}?mode=ro", uri=True) as db:
        assert db.execute("select vote from votes where judgement_id = ?", [judgement]).fetchall() == [("B",)]
    screenshot(page, "judge")
    page.locator("#judge-image-b").get_by_label("Remove Image").first.click()
    page.locator("#judge-image-b input[type=file]").set_input_files(str(image_a))
    expect(verdict).to_contain_text("then press Judge", timeout=30_000)  # the old verdict is gone...
    expect(status).to_have_text("")  # ...and so is the note of the vote on it
    expect(table).not_to_contain_text("Text Faithfulness")


def test_diagnose_shows_the_critique_and_refuses_a_corrupt_upload(page, scenes, tmp_path):
    open_tab(page, "Diagnose")
    (prompt, _), (_, image) = scenes  # another scene's image: the critique has mistakes to point at
    field(page, "Prompt").fill(prompt)
    image_input = page.locator("#diagnose-image input[type=file]")
    image_input.set_input_files(str(image))
    button(page, "Diagnose").click()
    report = page.locator("#diagnose-report")
    expect(report).to_contain_text("Score:", timeout=LONG_MS)
    expect(report).to_contain_text("Text Faithfulness")
    screenshot(page, "diagnose")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 50)
    page.locator("#diagnose-image").get_by_label("Remove Image").first.click()
    image_input.set_input_files(str(corrupt))
    button(page, "Diagnose").click()
    expect(page.get_by_text("not an image we can read").first).to_be_visible(timeout=30_000)


def test_history_finds_and_opens_a_session(app, page):
    prompt = "a green triangle"
    Client(app.url, verbose=False).predict("t2i", prompt, None, 1, 1, 0, "fixed", "critic", 3.5, 3.5, 3.5, 3.5, 1,
                                           False, api_name="/refine")
    open_tab(page, "History")
    field(page, "Prompt contains").fill("green")
    button(page, "Search").click()
    results = page.locator("#history-results")
    expect(results).to_contain_text(prompt, timeout=30_000)
    results.get_by_text(prompt).filter(visible=True).first.click()
    expect(page.locator("#history-timeline")).to_contain_text("Round 1", timeout=30_000)
    screenshot(page, "history")


# -- the critic behind an endpoint that writes garbage, then goes away ------------------------------


@pytest.fixture(scope="module")
def garbage_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=lambda body: "What a lovely picture!") as stub:
        yield stub


@pytest.fixture(scope="module")
def endpoint_app(tmp_path_factory: pytest.TempPathFactory, garbage_stub: OpenAIStub) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("browser-endpoint") / "store", "--critic-url", garbage_stub.url,
                           "--t2i", "none", "--edit", "none")


def test_diagnose_shows_what_went_wrong_with_the_critic_or_the_upload(endpoint_app, browser, garbage_stub, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(endpoint_app.url)
    open_tab(page, "Diagnose")
    field(page, "Prompt").fill(PROMPT)
    image_input = page.locator("#diagnose-image input[type=file]")
    remove = page.locator("#diagnose-image").get_by_label("Remove Image").first
    huge = tmp_path / "huge.png"
    Image.new("RGB", (7100, 7100), (30, 90, 200)).save(huge)  # 50 megapixels
    image_input.set_input_files(str(huge))
    button(page, "Diagnose").click()
    expect(page.get_by_text("megapixels").first).to_be_visible(timeout=60_000)
    page.locator(".toast-close").first.click()
    remove.click()
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64), (215, 40, 40)).save(small)
    image_input.set_input_files(str(small))
    button(page, "Diagnose").click()
    report = page.locator("#diagnose-report")
    expect(report).to_contain_text("The critique failed", timeout=60_000)
    expect(report).to_contain_text("did not parse")
    garbage_stub.stop()
    button(page, "Diagnose").click()
    expect(report).to_contain_text(garbage_stub.url.rsplit("/", 1)[0], timeout=60_000)
    context.close()
    assert "Traceback" not in endpoint_app.log_text()
