"""Public mode in the browser (Playwright, Debian's Chromium, ``python app.py --public``): two
visitors in two browsers each find only their own sessions in History, a reload keeps a visitor's
sessions, and a request over the image limit is refused on the page with the limit's setting."""

from __future__ import annotations

from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from studio.ui.tabs.studio import DIMENSIONS
from tests.test_browser import LONG_MS, browser, button, field, open_tab  # noqa: F401 (browser: a fixture)
from tests.test_browser_state import set_slider
from tests.ui_helpers import RunningApp, opened_page, running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("browser-public") / "store", "--public")


@pytest.fixture
def alice(app: RunningApp, browser: Browser) -> Iterator[Page]:  # noqa: F811
    yield from opened_page(browser, app.url, "Studio")


@pytest.fixture
def bob(app: RunningApp, browser: Browser) -> Iterator[Page]:  # noqa: F811
    yield from opened_page(browser, app.url, "Studio")  # a browser context of its own: another visitor


def run(page: Page, prompt: str) -> None:
    field(page, "Prompt").fill(prompt)
    button(page, "Run").click()
    expect(page.locator("#studio-status")).to_contain_text("Stopped", timeout=LONG_MS)


def test_a_visitor_does_not_see_another_visitors_sessions_and_keeps_their_own_after_a_reload(alice, bob):
    run(alice, "a green triangle")
    run(bob, "a blue circle")
    open_tab(bob, "History")
    results = bob.locator("#history-results")
    expect(results).to_contain_text("a blue circle", timeout=30_000)
    expect(results).not_to_contain_text("a green triangle")
    alice.reload()
    expect(alice.get_by_role("tab", name="History")).to_be_visible(timeout=60_000)
    open_tab(alice, "History")
    results = alice.locator("#history-results")
    expect(results).to_contain_text("a green triangle", timeout=30_000)
    expect(results).not_to_contain_text("a blue circle")


def test_a_session_over_the_image_limit_is_refused_on_the_page(alice):
    alice.get_by_text("Loop settings").click()
    set_slider(alice, "Max rounds", 10)
    set_slider(alice, "Images per round (best of N)", 8)
    field(alice, "Prompt").fill("a red circle")
    button(alice, "Run").click()
    expect(alice.get_by_text("at most 12 images per session").first).to_be_visible(timeout=30_000)
    expect(alice.get_by_text("--max-session-images").first).to_be_visible()
    expect(alice.locator("#studio-timeline")).not_to_contain_text("Round 1")


def test_a_waiting_visitor_sees_the_requests_ahead_and_a_wait_estimate(alice, bob):
    run(alice, "a red circle")  # a round on record to estimate from
    alice.get_by_text("Loop settings").click()
    set_slider(alice, "Max rounds", 6)
    set_slider(alice, "Images per round (best of N)", 2)
    set_slider(alice, "Stop after rounds without gain (0: off)", 0)
    for heading in DIMENSIONS.values():  # thresholds out of reach: all six rounds run
        set_slider(alice, f"Stop when {heading} ≥", 4)
    field(alice, "Prompt").fill("three purple stars and two yellow diamonds")
    button(alice, "Run").click()
    expect(alice.locator("#studio-status")).to_contain_text("Round 1", timeout=LONG_MS)
    field(bob, "Prompt").fill("a blue circle")
    button(bob, "Run").click()
    notice = bob.get_by_text("Waiting for the model: 1 request(s) ahead of yours (1 running)").first
    expect(notice).to_be_visible(timeout=30_000)  # a toast, beside Gradio's place in the queue on the status
    expect(notice).to_contain_text("median of the last")
    expect(bob.locator("#studio-status")).to_contain_text("queue", timeout=30_000)
    expect(bob.locator("#studio-status")).to_contain_text("Stopped", timeout=LONG_MS)  # then served in turn
