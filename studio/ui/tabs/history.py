"""The History tab: search stored sessions, open one's timeline, export a session or the votes."""

from __future__ import annotations

import logging
import shutil
from typing import Any

import gradio as gr

from studio.services import Services
from studio.ui import adapt
from studio.ui.errors import ui_errors
from studio.ui.limits import STORE_ONLY
from studio.ui.redact import redact_paths
from studio.ui.scratch import scratch_folder
from studio.ui.visitors import Visitors
from studio.ui.widgets import score_plot

logger = logging.getLogger(__name__)

STATUSES = ["", "running", "awaiting", "finished", "interrupted", "cancelled", "failed"]


def create_history_tab(services: Services, *, public: bool = False, tab: gr.Tab | None = None,
                       tabs: gr.Tabs | None = None, studio: dict[str, Any] | None = None,
                       visitors: Visitors | None = None) -> dict[str, gr.components.Component]:
    """Build the History tab's widgets and listeners; return its components by name.

    In ``public`` mode exports leave out the backend settings, server paths and who made what,
    and each visitor (``visitors``) finds, opens and exports only their own sessions and votes
    (everyone's with a shared gallery); a session of someone else is not found.
    With ``tab``, selecting the tab lists the latest sessions (no need to press Search); with
    ``tabs`` and the Studio tab's parts (``studio``), **Resume** continues the chosen session in
    the Studio tab.
    """
    store = services.store
    visitors = visitors or Visitors()
    shown = redact_paths if public else str  # a status line as shown: no server paths in public mode
    with gr.Row():
        text = gr.Textbox(label="Prompt contains")
        model = gr.Textbox(label="Model name contains")
        status = gr.Dropdown(STATUSES, value="", label="Status")
    with gr.Row():
        since = gr.Textbox(label="From date (YYYY-MM-DD)")
        until = gr.Textbox(label="Until date (YYYY-MM-DD, exclusive)")
        scores = gr.Textbox(label="Score conditions", placeholder="text_rendering < 2; physical_quality >= 3")
    search = gr.Button("Search", variant="primary")
    results = gr.Dataframe(label="Sessions (click a row to open it)", interactive=False, elem_id="history-results",
                           headers=list(adapt.HISTORY_COLUMNS), datatype=adapt.HISTORY_DATATYPES,
                           column_widths=adapt.HISTORY_WIDTHS, wrap=True, max_height=420)
    with gr.Row():
        session_id = gr.Textbox(label="Session", max_lines=1)
        open_button = gr.Button("Open")
        resume_button = gr.Button("Resume in Studio", visible=studio is not None)
        export_button = gr.Button("Export session")
        votes_format = gr.Radio(["jsonl", "parquet"], value="jsonl", label="Votes format")
        votes_button = gr.Button("Export votes")
    download = gr.File(label="Export", interactive=False, height=90)
    with gr.Row():
        best = gr.Image(label="Best image", interactive=False, height=300, elem_id="history-best",
                        elem_classes="rr-image")
        compare = gr.ImageSlider(label="Before / after", type="filepath", interactive=False, height=300,
                                 elem_id="history-compare", elem_classes="rr-slider")
        plot = score_plot("history-plot")
    session_status = gr.Markdown(elem_id="history-status")
    timeline = gr.HTML(elem_id="history-timeline")
    with gr.Accordion("Session as JSON", open=False):
        record = gr.JSON(show_label=False, elem_id="history-json")

    @ui_errors
    def history_search(text: str | None = None, model: str | None = None, status: str | None = None,
                       since: str | None = None, until: str | None = None, scores: str | None = None,
                       request: gr.Request | None = None) -> Any:
        """Stored sessions, newest first, matching every condition given (the newest 200).

        Args:
            text: words the prompt contains.
            model: part of the generator or critic name.
            status: running, awaiting, finished, interrupted, cancelled or failed (empty: any).
            since: sessions from this date (YYYY-MM-DD).
            until: sessions before this date (YYYY-MM-DD).
            scores: conditions on the best critique, e.g. "text_rendering < 2; physical_quality >= 3".
        """
        rows = adapt.search_sessions(store, text, model, status, since, until, scores,
                                     visitor=visitors.of(request).reads)
        return adapt.history_frame(store, rows)

    @ui_errors
    def results_title(text: str | None, model: str | None, status: str | None, since: str | None, until: str | None,
                      scores: str | None, request: gr.Request | None = None) -> Any:
        """The results table's title: how many sessions match (one row is enough to count them)."""
        matched = adapt.search_sessions(store, text, model, status, since, until, scores, limit=1,
                                        visitor=visitors.of(request).reads)
        return gr.Dataframe(label=adapt.history_label(matched[0]["matched"] if matched else 0))

    @ui_errors
    def history_open(session_id: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        """A stored session: best image, before/after, scores per round and its timeline.

        Args:
            session_id: the session to open.
        """
        return adapt.session_view(store, adapt.session_id_from(session_id), visitor=visitors.of(request).reads,
                                  public=public)

    @ui_errors
    def opened_status(session_id: str, request: gr.Request | None = None) -> str:
        return shown(adapt.session_status(store.get_session(adapt.session_id_from(session_id),
                                                            visitor=visitors.of(request).reads)))

    @ui_errors
    def session_json(session_id: str, request: gr.Request | None = None) -> dict[str, Any]:
        """A stored session as JSON: status, best result, settings, and each round's prompt and
        candidates with their scores (images by id; no file paths or pictures).

        Args:
            session_id: the session to read.
        """
        timeline = store.session_timeline(adapt.session_id_from(session_id), visitor=visitors.of(request).reads)
        return adapt.session_record(timeline, public=public)

    @ui_errors
    def export_session(session_id: str, request: gr.Request | None = None) -> str:
        """A session as a zip of its images and session.json.

        Args:
            session_id: the session to export.
        """
        sid = adapt.session_id_from(session_id)
        folder = scratch_folder("export-") / f"session-{sid}"
        exported = store.export_session(sid, folder, visitor=visitors.of(request).reads)
        if public:
            adapt.public_session_export(exported)
        return shutil.make_archive(str(folder), "zip", folder)

    @ui_errors
    def export_votes(format: str, request: gr.Request | None = None) -> str:
        """Every vote as a preference dataset (GenAI-Bench columns) with its images, zipped.

        Args:
            format: "jsonl" or "parquet".
        """
        folder = scratch_folder("votes-") / "votes"
        store.export_votes(folder, format=format, visitor=visitors.of(request).reads,  # type: ignore[arg-type]
                           model_name=adapt.model_label if public else None)
        return shutil.make_archive(str(folder), "zip", folder)

    def selected(frame: Any, event: gr.SelectData) -> str:
        return str(frame.iloc[event.index[0]]["id"])

    filters = [text, model, status, since, until, scores]
    # store-only actions skip the model queue: refines waiting for the model never hold them up or fill it
    search.click(history_search, filters, results, api_name="history_search", **STORE_ONLY).success(
        results_title, filters, results, api_visibility="private", queue=False)
    if tab is not None:
        tab.select(history_search, filters, results, api_visibility="private", queue=False).success(
            results_title, filters, results, api_visibility="private", queue=False)
    opened = [best, compare, plot, timeline]
    open_button.click(history_open, session_id, opened, api_name="history_open", **STORE_ONLY).then(
        opened_status, session_id, session_status, api_visibility="private", queue=False).then(
        session_json, session_id, record, api_name="session_json", **STORE_ONLY)
    results.select(selected, results, session_id, api_visibility="private", queue=False).then(
        history_open, session_id, opened, api_name="history_open_selected", api_visibility="private",
        queue=False).then(opened_status, session_id, session_status, api_visibility="private", queue=False).then(
        session_json, session_id, record, api_visibility="private", queue=False)
    if studio is not None and tabs is not None:
        _link_resume(resume_button, session_id, tabs, studio)
    export_button.click(export_session, session_id, download, api_name="export_session", **STORE_ONLY)
    votes_button.click(export_votes, votes_format, download, api_name="export_votes", **STORE_ONLY)
    return {"text": text, "model": model, "status": status, "since": since, "until": until, "scores": scores,
            "search": search, "results": results, "session_id": session_id, "open": open_button,
            "resume": resume_button, "session_status": session_status,
            "export": export_button, "export_votes": votes_button, "download": download, "best": best,
            "timeline": timeline}


def _link_resume(button: gr.Button, session_id: gr.Textbox, tabs: gr.Tabs, studio: dict[str, Any]) -> None:
    """**Resume in Studio**: switch to the Studio tab with the chosen session, then continue it
    there (on the shared model slot, with the proposed prompt stored in the session)."""

    @ui_errors
    def to_studio(chosen: str) -> tuple[Any, str, str]:
        return gr.Tabs(selected="studio"), adapt.session_id_from(chosen), ""

    button.click(to_studio, session_id, [tabs, studio["session_id"], studio["proposed"]], queue=False,
                 api_visibility="private").success(
        studio["resume_handler"], [studio["session_id"], studio["proposed"]], studio["outputs"],
        api_visibility="private", **studio["streaming"]).then(
        studio["last_status"], None, studio["status"], queue=False, api_visibility="private")
