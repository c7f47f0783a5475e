"""Playwright drives Chromium against ``python app.py``: the Training tab starts a diagnose job
from its form (the command shown live), lists it, draws its curve, and still shows it after a
page reload. The screenshot goes to ``docs/screenshots/training.png``.

``start_job_from_form`` and ``wait_for_status`` are written to be reused for the eval kind."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from models.shapes import world
from tests.test_browser import button, open_tab, screenshot
from tests.ui_helpers import CHROMIUM, CHROMIUM_ARGS, RunningApp, running_app

pytestmark = pytest.mark.browser

LONG_MS = 120_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("training") / "store")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(app: RunningApp, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.goto(app.url)
    expect(opened.get_by_role("tab", name="Training")).to_be_visible(timeout=60_000)
    open_tab(opened, "Training")
    yield opened
    context.close()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A folder of four rendered scenes of one prompt."""
    folder = tmp_path_factory.mktemp("scenes")
    scene = world.random_scene(random.Random(3), word_prob=0)
    for i in range(4):
        world.render(scene).save(folder / f"scene{i}.png")
    return world.short_prompt(scene), folder


def start_job_from_form(page: Page, kind: str, values: dict[str, str]) -> str:
    """Pick ``kind``, fill the form's text fields (config field -> value), check that the command
    box shows them as flags, press Start; return the new job's id."""
    kind_box = page.locator("#training-kind input")
    kind_box.fill(kind)
    kind_box.press("Enter")
    command = page.locator("#training-command textarea")
    for name, value in values.items():
        flag_name = name.replace("_", "-")
        page.locator(f"#training-{kind}-{flag_name} textarea").fill(value)
        flag = shlex.join(["--" + flag_name, value])
        expect(command).to_have_value(re.compile(f"^python -m studio jobs start {kind} .*{re.escape(flag)}"),
                                      timeout=30_000)
    button(page, "Start job").click()
    job_box = page.locator("#training-job-id input")
    expect(job_box).not_to_have_value("", timeout=30_000)
    return job_box.input_value()


def wait_for_status(page: Page, job_id: str, status: str) -> None:
    """Wait until the job list (refreshed by the timer) shows ``job_id`` with ``status``."""
    row = page.locator("#training-jobs-table tr", has_text=job_id)
    expect(row).to_contain_text(status, timeout=LONG_MS)


def test_training_tab_starts_a_diagnose_job_and_shows_it_after_a_reload(app, page, scenes):
    prompt, folder = scenes
    job_id = start_job_from_form(page, "diagnose", {"inputs": str(folder), "prompt": prompt})
    view = page.locator("#training-job-view")
    expect(view).to_contain_text(f"diagnose job {job_id}", timeout=30_000)
    expect(view).to_contain_text("-m studio.jobs.kinds.diagnose --config")
    wait_for_status(page, job_id, "done")

    page.reload()
    expect(page.get_by_role("tab", name="Training")).to_be_visible(timeout=60_000)
    open_tab(page, "Training")
    wait_for_status(page, job_id, "done")
    job_box = page.locator("#training-job-id input")
    job_box.fill(job_id)
    job_box.press("Enter")
    expect(view).to_contain_text(f"diagnose job {job_id}", timeout=30_000)
    lines = page.locator("#training-curves [aria-roledescription='line mark']")
    expect(lines.first).to_be_attached(timeout=30_000)
    expect(page.locator("#training-result")).to_contain_text("mean_score")
    screenshot(page, "training")
