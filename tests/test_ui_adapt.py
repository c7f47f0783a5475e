"""The UI's conversions (``studio.ui.adapt``) and error boundary (``studio.ui.errors``), without a
browser: what a user reads in the status line, the timeline, the tables and the error pop-ups."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from models.errors import InvalidInputError
from studio.config import LoopSettings
from studio.loop import RefineRequest, refine
from studio.ui import adapt
from studio.ui.errors import to_gradio_error, ui_errors
from tests.studio_fakes import ScriptedCritic, good, make_services, poor


@pytest.fixture
def finished(tmp_path):
    """A two-round session (round 2 best) and its services."""
    services = make_services(tmp_path, ScriptedCritic([poor(2.0), good(3.8)]))
    events = list(refine(RefineRequest("t2i", "a red square"), services, LoopSettings(max_rounds=3)))
    return services, events


def test_event_status_tells_the_story_of_a_session(finished):
    _, events = finished
    lines = [adapt.event_status(e) for e in events]
    assert lines[0].startswith("Session `") and lines[0].endswith("started.")
    assert "Round 1: generating" in lines[1]
    assert any("image 1 scored 0.33" in line for line in lines)
    assert lines[-1].startswith("**Stopped — Every chosen dimension reached its threshold.**")
    assert "Best: 0.93 (round 2)" in lines[-1]


def test_event_progress_rises_to_one(finished):
    _, events = finished
    shares = [adapt.event_progress(e, 3) for e in events]
    assert shares == sorted(shares) and shares[-1] == 1.0


def test_timeline_marks_the_best_round_and_shows_the_prompt_diff(finished):
    services, events = finished
    html = adapt.timeline_html(services.store, services.store.session_timeline(events[0].session_id))
    assert html.count("class='rr-round'") == 2 and html.count("★ best so far") == 1
    assert html.index("Round 2") < html.index("★ best so far") < html.index("Round 1")  # newest first
    assert "<ins>v1</ins>" in html  # round 2's prompt is the critic's "a red square v1"
    assert "data:image/png;base64," in html and str(services.store.image_dir) not in html


def test_score_frame_has_each_dimension_per_round(finished):
    services, events = finished
    frame = adapt.score_frame(services.store.session_timeline(events[0].session_id))
    assert sorted(set(frame["round"])) == ["1", "2"]
    assert set(frame["dimension"]) == {"Text Faithfulness", "Physical and Visual Quality"}  # text rendering was N/A


def test_session_view_sends_no_plot_until_a_round_is_scored(tmp_path):
    # a LinePlot first given an empty frame draws every later line without a colour
    services = make_services(tmp_path, ScriptedCritic([poor(2.0), good(3.8)]))
    events = refine(RefineRequest("t2i", "a red square"), services, LoopSettings(max_rounds=3))
    session_id = next(events).session_id
    assert adapt.session_view(services.store, session_id)[2] is None
    list(events)
    frame = adapt.session_view(services.store, session_id)[2]
    assert frame is not None and len(frame) == 4


def test_prompt_diff_marks_removed_and_added_words():
    html = adapt.prompt_diff_html("a red square", "a large red circle")
    assert html == "a <ins>large</ins> red <del>square</del> <ins>circle</ins>"


def test_prompt_diff_escapes_html():
    assert "&lt;b&gt;" in adapt.prompt_diff_html("x", "<b>")


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday"])
def test_parse_date_refuses_what_is_not_a_date(text):
    with pytest.raises(InvalidInputError, match="write it like 2026-11-26"):
        adapt.parse_date(text, "From date")


def test_parse_date_reads_a_day_as_utc():
    assert adapt.parse_date("2026-11-26", "From date").isoformat() == "2026-11-26T00:00:00+00:00"
    assert adapt.parse_date("  ", "From date") is None


def test_missing_upload_says_what_to_upload():
    with pytest.raises(InvalidInputError, match="No image A was uploaded"):
        adapt.open_upload(None, "image A")
    assert adapt.source_upload("t2i", None) is None
    with pytest.raises(InvalidInputError, match="No source image"):
        adapt.source_upload("edit", None)


def test_studio_error_becomes_its_message():
    error = to_gradio_error(InvalidInputError("The prompt is empty."))
    assert isinstance(error, gr.Error) and error.message == "The prompt is empty."


def test_unexpected_error_is_logged_with_an_id_and_shown_without_details(caplog):
    with caplog.at_level(logging.ERROR):
        error = to_gradio_error(KeyError("secret internals"))
    log_id = caplog.records[0].getMessage().split("log id ")[1].rstrip("]")
    assert f"log id {log_id}" in error.message and "secret" not in error.message
    assert caplog.records[0].exc_info is not None  # the traceback is in the log


def test_ui_errors_wraps_streaming_handlers():
    @ui_errors
    def handler():
        yield 1
        raise InvalidInputError("No session chosen.")

    stream = handler()
    assert next(stream) == 1
    with pytest.raises(gr.Error, match="No session chosen."):
        next(stream)


def test_history_frame_shows_a_thumbnail_short_model_names_and_three_decimals(finished):
    services, events = finished
    (row,) = services.store.search_sessions()
    row.update(generator_name="diffusers:/srv/models/shapes-t2i", best_score=0.9833333333333334)
    frame = adapt.history_frame(services.store, [row])
    assert frame["generator"][0] == "shapes-t2i" and frame["best score"][0] == 0.983
    assert frame["image"][0].startswith("![best image](data:image/png;base64,")
    assert frame["created"][0] == row["created"][:19].replace("T", " ")
    assert "/srv/" not in frame.to_csv()


def test_stored_status_says_what_stopped_a_session_and_what_to_do(finished):
    services, events = finished
    sid = events[0].session_id
    assert adapt.session_status(services.store.get_session(sid)).startswith("**Finished**")
    services.store.update_session(sid, status="failed", message="The critic server at http://x could not be reached.")
    line = adapt.session_status(services.store.get_session(sid))
    assert line.startswith("**Failed** — The critic server at http://x could not be reached.")
    assert "Best: 0.93 (round 2)" in line and "**Resume**" in line


def test_a_round_left_running_by_a_stopped_session_shows_as_interrupted(finished):
    services, events = finished
    sid = events[0].session_id
    services.store.start_round(sid, 3, "a red square", seed=0)  # the app died mid-round
    services.store.update_session(sid, status="interrupted", message="The app stopped while this session ran.")
    html = adapt.session_view(services.store, sid)[3]
    assert "Round 3</b> · interrupted" in html and "running" not in html

def test_stop_requests_reach_the_run_of_their_browser_session_only():
    from studio.ui.stopping import StopRequests

    stops = StopRequests()
    key, first = stops.start("tab-1")
    _, other = stops.start("tab-2")
    assert stops.stop("tab-1") and first.is_set() and not other.is_set()
    _, second = stops.start("tab-1")  # a new run of the same tab replaces the first...
    stops.finish(key, first)  # ...so the first one finishing does not forget the second
    assert stops.stop("tab-1") and second.is_set()
    stops.finish(key, second)
    assert not stops.stop("tab-1") and not stops.stop(None)
    anonymous, flag = stops.start(None)  # an API caller without a browser session
    assert anonymous.startswith("anonymous-") and not flag.is_set()


def test_last_status_lines_are_kept_per_browser_session_once_and_bounded():
    from studio.ui.stopping import LastLines

    lines = LastLines(limit=2)
    lines.keep("tab-1", "Round 1: generating")
    lines.keep("tab-1", "**Stopped — Stopped on request.**")
    lines.keep("tab-2", "Round 3 done")
    assert lines.take("tab-1") == "**Stopped — Stopped on request.**" and lines.take("tab-1") is None
    lines.keep("tab-3", "a")
    lines.keep("tab-4", "b")  # API callers never take theirs: the oldest goes first
    assert lines.take("tab-2") is None and lines.take("tab-4") == "b" and lines.take(None) is None


def test_session_record_is_plain_json_without_paths_or_pictures(finished):
    import json

    services, events = finished
    sid = events[0].session_id
    services.store.update_session(sid, generator_name="diffusers:/srv/models/shapes-t2i")
    record = adapt.session_record(services.store.session_timeline(sid))
    assert (record["id"], record["status"], record["best"]["round"]) == (sid, "finished", 2)
    assert [r["round"] for r in record["rounds"]] == [1, 2] and record["rounds"][1]["status"] == "done"
    best = record["rounds"][1]["candidates"][0]
    assert best["image_id"] == record["best"]["image_id"] and best["scores"]["text_faithfulness"] == 3.8
    text = json.dumps(record)
    assert "base64" not in text and str(services.store.image_dir) not in text
    assert adapt.session_record(services.store.session_timeline(sid), public=True)["generator"] == "shapes-t2i"


def test_critique_markdown_shows_a_missing_dimension_as_missing_not_na():
    from models.critic import parse_critique

    truncated = parse_critique(
        "# Detailed Judgement\n1. Text Faithfulness:\n## Justification: ok\n## Score: 3.75\n"
        "2. Physical and Visual Quality:\n## Justification: The edges are", "t2i")
    text = adapt.critique_markdown(truncated)
    assert "**Physical and Visual Quality:** missing" in text
    assert "Parser notes:" in text and "no score was written" in text
    na = parse_critique(truncated.raw + " fine.\n## Score: 3\n3. Text Rendering:\n## Justification: none\n## Score: N/A", "t2i")
    assert "**Text Rendering:** N/A" in adapt.critique_markdown(na)


def test_an_upload_gradio_could_not_open_is_refused_by_the_handler_with_its_message():
    from studio.ui.image_upload import UnreadableUpload

    with pytest.raises(InvalidInputError, match="Image A: the uploaded file is not an image we can read"):
        adapt.open_upload(UnreadableUpload("Image A: the uploaded file is not an image we can read."), "image A")
