"""The page follows the stored state (Playwright, Debian's Chromium, ``python app.py``): Stop ends
on the stored "cancelled" session without error badges, Resume continues a session from the Studio
tab and from History, History lists sessions as soon as it opens, and small images are shown large
with nearest-neighbour resampling."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Callable, Iterator

import pytest
from gradio_client import Client
from playwright.sync_api import Browser, Page, expect

from studio import grammar
from tests.test_browser import LONG_MS, browser, button, field, open_tab  # noqa: F401 (browser: a fixture)
from tests.ui_helpers import RunningApp, opened_page, running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("browser-state") / "store")


@pytest.fixture
def page(app: RunningApp, browser: Browser) -> Iterator[Page]:  # noqa: F811
    yield from opened_page(browser, app.url, "Studio")


def stored(app: RunningApp, sql: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(f"file:{app.store / 'studio.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = LONG_MS / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def set_slider(page: Page, label: str, value: float) -> None:
    number = page.get_by_label(f"number input for {label}").filter(visible=True).first
    number.fill(str(value))
    number.press("Enter")


def shown_large_and_sharp(page: Page, selector: str) -> None:
    """The first image under ``selector`` is drawn at least 256 px wide, nearest-neighbour."""
    image = page.locator(f"{selector} img").first
    expect(image).to_have_class(re.compile(r"\brr-small\b"), timeout=30_000)
    box = image.bounding_box()
    assert box is not None and box["width"] >= 256, box
    assert image.evaluate("img => getComputedStyle(img).objectFit") == "contain"
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"


def test_stop_shows_the_stored_cancelled_session_and_resume_continues_it(app, page):
    page.get_by_text("Loop settings").click()
    set_slider(page, "Max rounds", 10)
    set_slider(page, "Images per round (best of N)", 8)  # slow enough to press Stop mid-session
    set_slider(page, "Stop after rounds without gain (0: off)", 0)
    for heading in ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering"):
        set_slider(page, f"Stop when {heading} ≥", 4)
    field(page, "Prompt").fill("two yellow triangles and a green star")
    button(page, "Run").click()
    timeline = page.locator("#studio-timeline")
    expect(timeline).to_contain_text("Round 2", timeout=LONG_MS)
    button(page, "Stop").click()
    status = page.locator("#studio-status")
    expect(status).to_contain_text("Stopped on request", timeout=LONG_MS)  # the current step ends first
    session_id = page.locator("#studio-session textarea, #studio-session input").first.input_value()
    assert stored(app, "select status from sessions where id = ?", session_id) == [("cancelled",)]
    assert stored(app, "select count(*) from rounds where session_id = ? and status = 'running'", session_id) == [(0,)]
    expect(timeline).to_contain_text("status cancelled")
    expect(timeline).not_to_contain_text("critiquing…")
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    shown_large_and_sharp(page, "#studio-latest")
    shown_large_and_sharp(page, "#studio-compare")
    rounds_before = stored(app, "select count(*) from rounds where session_id = ?", session_id)[0][0]

    button(page, "Resume").click()
    expect(timeline).to_contain_text(f"Round {rounds_before + 1}", timeout=LONG_MS)
    button(page, "Stop").click()
    wait_until(lambda: stored(app, "select status from sessions where id = ?", session_id) == [("cancelled",)])
    heads = timeline.locator(".rr-round-head")
    expect(heads.filter(has_text="running")).to_have_count(0, timeout=30_000)  # the stream's last update is shown
    expect(heads.filter(has_text=f"Round {rounds_before}")).not_to_have_count(0)  # the stopped round's card...
    assert "cancelled" in heads.filter(has_text=f"Round {rounds_before}").last.inner_text()  # ...still says so
    assert stored(app, "select count(*) from rounds where session_id = ? and status = 'running'", session_id) == [(0,)]
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def test_history_lists_sessions_on_open_and_resumes_one_in_the_studio(app, page):
    prompt = "three purple stars and two yellow diamonds"
    first = Client(app.url, verbose=False).predict("t2i", prompt, None, 3, 1, 0, "fixed", "human", 4, 4, 4, 4, 0,
                                                   False, api_name="/refine")
    session_id = first[0]
    open_tab(page, "History")
    results = page.locator("#history-results")
    expect(results).to_contain_text(prompt, timeout=30_000)  # no Search pressed
    expect(results.locator("img").filter(visible=True).first).to_be_visible()  # the best image's thumbnail
    score = stored(app, "select best_score from sessions where id = ?", session_id)[0][0]
    expect(results).to_contain_text(f"{round(score, 3):g}")
    results.get_by_text(prompt).filter(visible=True).first.click()
    expect(page.locator("#history-status")).to_contain_text("Waiting for you", timeout=30_000)
    shown_large_and_sharp(page, "#history-best")
    button(page, "Resume in Studio").click()
    expect(page.get_by_role("tab", name="Studio")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#studio-timeline")).to_contain_text("Round 2", timeout=LONG_MS)
    expect(page.locator("#studio-status")).to_contain_text("Waiting for you", timeout=LONG_MS)
    assert stored(app, "select count(*) from rounds where session_id = ? and status = 'done'", session_id) == [(2,)]


def test_examples_fill_the_request_and_an_unreadable_prompt_is_refused_before_generating(app, page):
    expect(page.locator("#studio-vocabulary")).to_contain_text("What this world understands")
    examples = page.locator("#studio-examples")
    prompt = grammar.example_prompts()[1]
    examples.get_by_text(prompt[:30]).first.click()
    expect(field(page, "Prompt")).to_have_value(prompt)
    _, instruction = grammar.example_edits()[1]
    examples.get_by_text(instruction).first.click()
    expect(field(page, "Prompt")).to_have_value(instruction)
    expect(page.get_by_label("Image editing")).to_be_checked()
    shown_large_and_sharp(page, "#studio-source")  # the example's source scene, readable

    page.get_by_label("Text to image").check()
    field(page, "Prompt").fill("a cat playing the piano")
    sessions = stored(app, "select count(*) from sessions")
    button(page, "Run").click()
    expect(page.get_by_text("The shapes world cannot read this prompt").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("critic_failed")).to_have_count(0)
    assert stored(app, "select count(*) from sessions") == sessions


def test_an_empty_batch_table_shows_its_headers(page):
    open_tab(page, "Diagnose")
    page.get_by_text("Batch", exact=True).click()
    table = page.locator("#diagnose-table")
    expect(table).to_contain_text("score", timeout=30_000)
    expect(table).to_contain_text("failure")
