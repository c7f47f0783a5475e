"""Playwright drives Chromium against ``python app.py``: the Training tab starts a diagnose job and
an eval job from their forms (the command shown live), lists them, draws their curves, and still
shows them after a page reload; the eval job's result reaches the Leaderboard. The screenshots go
to ``docs/screenshots/training.png`` and ``leaderboard.png``."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from models.shapes import world
from tests.test_browser import button, open_tab, screenshot
from tests.ui_helpers import RunningApp, launched_chromium, opened_page, running_app

pytestmark = pytest.mark.browser

LONG_MS = 120_000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("training") / "store")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def page(app: RunningApp, browser: Browser) -> Iterator[Page]:
    for opened in opened_page(browser, app.url, "Training"):
        open_tab(opened, "Training")
        yield opened


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
        page.locator(f"#training-{kind}-{flag_name}").locator("textarea, input").first.fill(value)
        flag = shlex.join(["--" + flag_name, value])
        expect(command).to_have_value(re.compile(f"^python -m studio jobs start {kind} .*{re.escape(flag)}"),
                                      timeout=30_000)
    job_box = page.locator("#training-job-id input")
    before = job_box.input_value()  # the job opened before, if any: the new id replaces it
    button(page, "Start job").click()
    expect(job_box).not_to_have_value(re.compile(f"^({re.escape(before)})?$"), timeout=30_000)
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


def test_an_eval_job_started_in_the_training_tab_survives_a_reload_and_reaches_the_leaderboard(app, page):
    job_id = start_job_from_form(page, "eval", {"data": "shapes:t2i:160:seed7", "batch_size": "16"})
    wait_for_status(page, job_id, "running")
    page.reload()  # mid-run: the job is a process of its own, the page only shows its record
    expect(page.get_by_role("tab", name="Training")).to_be_visible(timeout=60_000)
    open_tab(page, "Training")
    job_box = page.locator("#training-job-id input")
    job_box.fill(job_id)
    job_box.press("Enter")
    view = page.locator("#training-job-view")
    expect(view).to_contain_text(f"eval job {job_id}", timeout=30_000)
    wait_for_status(page, job_id, "done")
    lines = page.locator("#training-curves [aria-roledescription='line mark']")
    expect(lines.first).to_be_attached(timeout=30_000)
    expect(page.locator("#training-result")).to_contain_text("accuracy")
    page.get_by_role("tab", name="Leaderboard").click()
    board = page.locator("#training-leaderboard-table")
    expect(board).to_contain_text("shapes-t2i", timeout=30_000)
    expect(board).to_contain_text(job_id)
    expect(board).to_contain_text("published")
    screenshot(page, "leaderboard")


def test_a_parrot_filter_job_shows_its_kept_and_rejected_rationales_beside_their_images(app, page):
    generated = start_job_from_form(page, "parrot-generate", {"count": "24", "flip_rate": "0.3", "draws": "2"})
    wait_for_status(page, generated, "done")
    rationales = app.store / "runs" / generated / "rationales.jsonl"
    filtered = start_job_from_form(page, "parrot-filter", {"rationales": str(rationales)})
    wait_for_status(page, filtered, "done")
    button(page, "Refresh").first.click()  # the open job finished: read its files again
    view = page.locator("#training-rationales-view")
    expect(view).to_contain_text("Kept: 16 rationale(s), page 1 of 2.", timeout=30_000)
    rows = view.locator("tr.rationale-row")
    expect(rows).to_have_count(8)
    first = rows.first
    expect(first).to_contain_text("Label:")
    expect(first).to_contain_text("Re-predicted:")
    expect(first).to_contain_text("Text Faithfulness")
    images = first.locator("img")
    expect(images).to_have_count(2)
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(2))
    expect(first.locator("figure.rationale-chosen")).to_have_count(1)  # the labelled image is framed

    page.locator("#training-rationales-next").click()
    expect(view).to_contain_text("page 2 of 2.", timeout=30_000)
    expect(page.locator("#training-rationales-page input")).to_have_value("2")

    page.locator("#training-rationales-which").get_by_text("rejected").click()
    expect(view).to_contain_text("Rejected: 8 rationale(s), page 1 of 1.", timeout=30_000)
    expect(view).to_contain_text("scores_disagree: its own scores re-predict another preference than the label")
    screenshot(page, "parrot-rationales", page.locator("#training-rationales").first)

    job_box = page.locator("#training-job-id input")  # another kind of job: the section goes away
    job_box.fill(generated)
    job_box.press("Enter")
    expect(page.locator("#training-rationales").first).to_be_hidden(timeout=30_000)
