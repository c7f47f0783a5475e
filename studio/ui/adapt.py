"""Turns widget values into engine arguments and engine results into what the widgets show.

Gradio-free on purpose: every function takes and returns plain values (strings, paths, pandas
frames), so the tabs stay ~10-line handlers and these conversions are testable on their own.
Images are always read from the store's files.
"""

from __future__ import annotations

import base64
import difflib
import functools
import html
import io
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from models.errors import InvalidInputError
from models.images import prepare_image
from models.types import Critique, CritiqueResult, task_dimensions
from studio.config import MAX_SEED, LoopSettings
from studio.diagnose import CSV_COLUMNS, DiagnosisRow
from studio.judge import PairVerdict
from studio.loop import (
    AwaitingPrompt,
    CritiqueReady,
    ImageReady,
    LoopEvent,
    PromptProposed,
    RoundFinished,
    RoundStarted,
    SessionStarted,
    Stopped,
)
from studio.services import Lazy, Services
from studio.store import ScoreFilter, SessionStore
from studio.ui.image_upload import UnreadableUpload
from studio.ui.redact import redact

logger = logging.getLogger(__name__)

THUMBNAIL_PX = 160
#: Side of the History table's thumbnails (small: a search returns up to 200 of them).
TABLE_THUMBNAIL_PX = 64
SCORE_COLUMNS = ("round", "dimension", "score")


# -- widget values -> engine arguments ---------------------------------------------------------


def loop_settings(
    max_rounds: float, candidates: float, seed: float, seed_policy: str, rewriter: str,
    thresholds: dict[str, float], plateau_rounds: float, stop_on_regression: bool,
    on_repeat: str = LoopSettings.on_repeat, max_tries_per_prompt: float = LoopSettings.max_tries_per_prompt,
    first_prompt: str = LoopSettings.first_prompt, judge_against: str = LoopSettings.judge_against,
) -> LoopSettings:
    """``LoopSettings`` from the Studio tab's widgets (sliders and numbers arrive as floats)."""
    return LoopSettings(
        max_rounds=int(max_rounds), candidates=int(candidates), seed=seed_value(seed, "Seed"),
        seed_policy=seed_policy,  # type: ignore[arg-type]
        rewriter=rewriter, thresholds=dict(thresholds), plateau_rounds=int(plateau_rounds),  # type: ignore[arg-type]
        stop_on_regression=bool(stop_on_regression), on_repeat=on_repeat,  # type: ignore[arg-type]
        max_tries_per_prompt=int(max_tries_per_prompt), first_prompt=first_prompt,  # type: ignore[arg-type]
        judge_against=judge_against,  # type: ignore[arg-type]
    )


def seed_value(value: float | None, what: str) -> int:
    """A seed typed into a number box, as an int. Raises ``InvalidInputError`` when it is empty,
    not a whole number, or outside 0..``MAX_SEED``."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{what}: type a whole number from 0 to {MAX_SEED}.")
    if not 0 <= value <= MAX_SEED or int(value) != value:
        raise InvalidInputError(f"{what}: {value:g} is not a seed; use a whole number from 0 to {MAX_SEED}.")
    return int(value)


def open_upload(path: str | None, what: str, *, required: bool = True) -> Image.Image | None:
    """The uploaded image at ``path``, decoded and checked (``None`` when optional and absent).

    Raises ``InvalidInputError`` when a required upload is missing or the file is unusable
    (not an image, truncated, or too many pixels).
    """
    if isinstance(path, UnreadableUpload):
        raise InvalidInputError(str(path))
    if not path:
        if required:
            raise InvalidInputError(f"No {what} was uploaded. Upload an image file (PNG, JPEG, WebP).")
        return None
    return prepare_image(path, what=what)


def source_upload(task: str, path: str | None) -> Image.Image | None:
    """The edit's source image (required for "edit"); ``None`` for text to image."""
    return open_upload(path, "source image") if task == "edit" else None


# -- loop events -> status -----------------------------------------------------------------------


def event_status(event: LoopEvent) -> str:
    """One line of Markdown saying what the loop just did."""
    if isinstance(event, SessionStarted):
        verb = f"resumed at round {event.first_round}" if event.resumed else "started"
        return f"Session `{event.session_id}` {verb}."
    if isinstance(event, RoundStarted):
        return f"Round {event.round}: generating (seed {event.seed})…"
    if isinstance(event, ImageReady):
        return f"Round {event.round}: image {event.candidate + 1} ready; critiquing…"
    if isinstance(event, CritiqueReady):
        if not event.critique.ok:
            return f"Round {event.round}: the critique of image {event.candidate + 1} failed: {event.critique.reason}"  # type: ignore[union-attr]
        return f"Round {event.round}: image {event.candidate + 1} scored {_fmt(event.score)}."
    if isinstance(event, RoundFinished):
        return (f"Round {event.round} done: best {_fmt(event.best_score)}; "
                f"best so far {_fmt(event.session_best_score)} (round {event.session_best_round}).")
    if isinstance(event, PromptProposed):
        return f"Next prompt (from {event.source}) proposed."
    if isinstance(event, AwaitingPrompt):
        return "Waiting for you: edit or approve the next prompt below, then press **Continue**."
    if isinstance(event, Stopped):
        best = f" Best: {_fmt(event.best.score)} (round {event.best.round})." if event.best else ""
        failed = f" Critique failures: {event.failures}." if event.failures else ""
        return f"**Stopped — {event.message}**{best} Rounds: {event.rounds_done}.{failed}"
    raise TypeError(f"unknown loop event {type(event).__name__}")


_STATUS_HINTS = {
    "interrupted": "Press **Resume** to continue from the last finished round.",
    "cancelled": "Press **Resume** to continue from the last finished round.",
    "failed": "Fix the cause, then press **Resume** to retry the round.",
    "awaiting": "Edit or approve the next prompt below, then press **Continue**.",
}


def session_status(session: dict[str, Any]) -> str:
    """One line of Markdown with a stored session's status, what stopped it and what to do next."""
    status, message = session["status"], (session.get("message") or "").strip()
    head = {"running": "Running", "awaiting": "Waiting for you", "finished": "Finished",
            "interrupted": "Interrupted", "cancelled": "Cancelled", "failed": "Failed"}.get(status, status)
    best = (f" Best: {_fmt(session['best_score'])} (round {session['best_round']})."
            if session.get("best_score") is not None else "")
    detail = f" — {message.rstrip('.')}." if message else "."
    hint = f" {_STATUS_HINTS[status]}" if status in _STATUS_HINTS else ""
    return f"**{head}**{detail}{best}{hint}"


def event_progress(event: LoopEvent, max_rounds: int) -> float:
    """The share of the session done at ``event`` (for ``gr.Progress``)."""
    if isinstance(event, Stopped):
        return 1.0
    round_no = getattr(event, "round", 0) or 0
    if isinstance(event, (RoundFinished, PromptProposed, AwaitingPrompt)):
        done = float(round_no)
    else:
        done = max(0, round_no - 1) + (0.5 if isinstance(event, (ImageReady, CritiqueReady)) else 0.0)
    return min(1.0, done / max_rounds)


def next_prompt(event: LoopEvent) -> str | None:
    """The prompt to offer for edit-and-continue after ``event`` (``None``: unchanged)."""
    if isinstance(event, (PromptProposed, AwaitingPrompt)):
        return event.prompt if isinstance(event, PromptProposed) else event.proposed_prompt
    if isinstance(event, Stopped) and event.best is not None and event.best.critique.refined_request:
        return event.best.critique.refined_request
    return None


# -- a session's timeline ----------------------------------------------------------------------


def session_view(store: SessionStore, session_id: str, *, visitor: str | None = None, public: bool = False,
                 ) -> tuple[str | None, tuple[str, str] | None, pd.DataFrame | None, str]:
    """(best image file, before/after files, score frame, timeline HTML) of a stored session; the
    frame is ``None`` until a round has scores, because a ``gr.LinePlot`` first given an empty
    frame draws every later line without a colour. Raises ``NotFoundError`` for an unknown id
    (or, with ``visitor``, someone else's session). In ``public`` mode the texts shown (the
    session's message, failure reasons) carry no server paths."""
    timeline = store.session_timeline(session_id, visitor=visitor)
    if public:
        timeline = redact(timeline)
    frame = score_frame(timeline)
    return (best_image_path(store, timeline), before_after(store, timeline), None if frame.empty else frame,
            timeline_html(store, timeline))


def best_image_path(store: SessionStore, timeline: dict[str, Any]) -> str | None:
    """The file of the session's best image so far (``None`` before any round is scored)."""
    best = timeline["session"]["best_image_id"]
    return str(store.image_path(best)) if best is not None else None


def before_after(store: SessionStore, timeline: dict[str, Any]) -> tuple[str, str] | None:
    """(before, after) files for the slider: the edit's source (or round 1's best) and the best."""
    session = timeline["session"]
    done = [r for r in timeline["rounds"] if r["best_image_id"] is not None]
    if session["best_image_id"] is None or not done:
        return None
    before = session["source_image_id"] if session["source_image_id"] is not None else done[0]["best_image_id"]
    return str(store.image_path(before)), str(store.image_path(session["best_image_id"]))


def score_frame(timeline: dict[str, Any]) -> pd.DataFrame:
    """Per-dimension scores (1-4) of each finished round's best candidate, long format."""
    rows = []
    dimensions = task_dimensions(timeline["session"]["task"])
    for rnd in timeline["rounds"]:
        best = next((c for c in rnd["candidates"] if c["id"] == rnd["best_image_id"]), None)
        critique = best and best["critique"]
        if not critique:
            continue
        rows += [{"round": str(rnd["idx"]), "dimension": d.heading, "score": critique[d.key]}
                 for d in dimensions if critique[d.key] is not None]
    # Rounds are categories (one axis tick each, in the plot's sort order); scores must be numeric.
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).astype({"round": "str", "score": "float64"})


def timeline_html(store: SessionStore, timeline: dict[str, Any]) -> str:
    """The session as HTML cards, one per round: prompt (with its diff to the round before),
    each candidate's thumbnail, score bars and justifications; the best so far is marked."""
    session = timeline["session"]
    head = (f"<div class='rr-session'><b>Session</b> <code>{_e(session['id'])}</code> · {_e(session['task'])} · "
            f"status <b>{_e(session['status'])}</b>"
            + (f" — {_e(session['message'])}" if session.get("message") else "") + "</div>")
    cards, previous = [], None
    for rnd in timeline["rounds"]:
        cards.append(_round_card(store, session, rnd, previous))
        previous = rnd["prompt"]
    return f"<div class='rr-timeline'>{head}{''.join(reversed(cards)) or '<p>No round yet.</p>'}</div>"


def _round_card(store: SessionStore, session: dict[str, Any], rnd: dict[str, Any], previous: str | None) -> str:
    prompt = prompt_diff_html(previous, rnd["prompt"]) if previous is not None else _e(rnd["prompt"])
    candidates = "".join(_candidate_html(store, session, c) for c in rnd["candidates"])
    source = f" · next prompt from {_e(rnd['prompt_source'])}" if rnd.get("prompt_source") else ""
    return (f"<div class='rr-round'><div class='rr-round-head'><b>Round {rnd['idx']}</b> · "
            f"{_e(round_status(session, rnd))} · "
            f"seed {rnd['seed']}{source}</div><div class='rr-prompt'>{prompt}</div>"
            f"<div class='rr-candidates'>{candidates}</div></div>")


def round_status(session: dict[str, Any], rnd: dict[str, Any]) -> str:
    """A round's status as shown: a round left "running" by a session that no longer runs (it
    failed, was stopped or the app died mid-round) shows as "interrupted", which it is."""
    if rnd["status"] == "running" and session["status"] != "running":
        return "interrupted"
    return str(rnd["status"])


def _candidate_html(store: SessionStore, session: dict[str, Any], candidate: dict[str, Any]) -> str:
    is_best = candidate["id"] == session["best_image_id"]
    badge = "<div class='rr-best'>★ best so far</div>" if is_best else ""
    image = f"<img alt='round image' src='{thumbnail_uri(store.image_path(candidate['id']))}'>"
    critique = candidate["critique"]
    if critique is None and session["status"] != "running":
        body = "<div class='rr-pending'>not critiqued</div>"
    elif critique is None:
        body = "<div class='rr-pending'>critiquing…</div>"
    elif not critique["ok"]:
        body = f"<div class='rr-failure'>Critique failed: {_e(critique['failure_reason'])}</div>"
    else:
        body = _scores_html(session["task"], critique)
    return (f"<div class='rr-candidate{' rr-is-best' if is_best else ''}'>{badge}"
            f"<div class='rr-candidate-body'>{image}<div class='rr-scores'>{body}</div></div></div>")


def _scores_html(task: str, critique: dict[str, Any]) -> str:
    justifications = json.loads(critique["justifications"] or "{}")
    missing = json.loads(critique.get("missing") or "[]")
    rows = []
    for dim in task_dimensions(task):
        value = critique[dim.key]
        width = 0 if value is None else int((value - 1) / 3 * 100)
        note = justifications.get(dim.key) or ""
        rows.append(
            f"<div class='rr-dim'><span class='rr-dim-name'>{_e(dim.heading)}</span>"
            f"<span class='rr-bar'><span style='width:{width}%'></span></span>"
            f"<span class='rr-dim-score'>{_score_text(value, dim.key in missing)}</span></div>"
            + (f"<details><summary>why</summary>{_e(note)}</details>" if note else "")
        )
    summary = f"<div class='rr-summary'>{_e(critique['summary'])}</div>" if critique.get("summary") else ""
    return f"<div class='rr-score'>score {_fmt(critique['score'])}</div>{''.join(rows)}{summary}"


def _score_text(value: float | None, missing: bool) -> str:
    """A dimension score as shown: two decimals, "missing" (the critic did not write it), or N/A."""
    if value is not None:
        return f"{value:.2f}"
    return "missing" if missing else "N/A"


def prompt_diff_html(before: str, after: str) -> str:
    """Word-level diff: removed words struck through, added words highlighted."""
    old, new = before.split(), after.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append(f"<del>{_e(' '.join(old[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{_e(' '.join(new[j1:j2]))}</ins>")
        if op == "equal":
            parts.append(_e(" ".join(old[i1:i2])))
    return " ".join(parts)


@functools.lru_cache(maxsize=1024)
def thumbnail_uri(path: Path, px: int = THUMBNAIL_PX) -> str:
    """A PNG data URI of the image at ``path`` at most ``px`` a side (keeps file paths out of the
    page). Cached: store files are named by their content, so a path always holds the same image."""
    with Image.open(path) as image:
        image.thumbnail((px, px))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# -- critiques (Diagnose) ----------------------------------------------------------------------


def critique_frame(critique: Critique) -> pd.DataFrame:
    """The critique's dimension scores (N/A left out) for a bar plot."""
    rows = [{"dimension": d.heading, "score": critique.scores.get(d.key)} for d in task_dimensions(critique.task)]
    return pd.DataFrame([r for r in rows if r["score"] is not None], columns=["dimension", "score"])


def critique_markdown(result: CritiqueResult) -> str:
    """The full critique as Markdown (or the failure, with the critic's raw text kept visible)."""
    if not result.ok:
        return f"**The critique failed:** {result.reason}"  # type: ignore[union-attr]
    assert isinstance(result, Critique)
    lines = [f"**Score:** {_fmt(result.overall)}"]
    for dim in task_dimensions(result.task):
        value = result.scores.get(dim.key)
        lines.append(f"- **{dim.heading}:** {_score_text(value, result.is_missing(dim.key))} — "
                     f"{result.justifications.get(dim.key) or ''}")
    if result.summary:
        lines.append(f"\n**Summary:** {result.summary}")
    if result.refinement_comments:
        lines.append(f"\n**Refinement comments:** {result.refinement_comments}")
    if result.warnings:
        lines.append(f"\n_Parser notes: {'; '.join(result.warnings)}_")
    return "\n".join(lines)


#: The batch table's columns (before columns empty for every image are dropped).
BATCH_COLUMNS = tuple(c for c in CSV_COLUMNS if c not in ("prompt", "refined_request"))


def batch_frame(rows: list[DiagnosisRow]) -> pd.DataFrame:
    """The batch table: one row per image with its score, dimension scores and failure."""
    frame = pd.DataFrame([row.to_dict() for row in rows], columns=list(CSV_COLUMNS))
    return frame[list(BATCH_COLUMNS)].dropna(axis=1, how="all")


# -- judge -------------------------------------------------------------------------------------

WINNER_TEXT = {"A": "A is better", "B": "B is better", "tie": "a tie"}


def verdict_markdown(verdict: PairVerdict) -> str:
    """The verdict in words: winner, position consistency, failures."""
    if verdict.winner is None:
        return "**No verdict:** the critic could not judge this pair. " + " ".join(verdict.failures)
    lines = [f"**Verdict: {WINNER_TEXT[verdict.winner]}.**"]
    if verdict.consistent is not None:
        orders = f"A/B said {WINNER_TEXT[verdict.winner_ab]}, B/A said {WINNER_TEXT[verdict.winner_ba]}"  # type: ignore[index]
        lines.append(f"Position-consistent: {'yes' if verdict.consistent else 'no'} ({orders}).")
    if verdict.failures:
        lines.append("Failed: " + "; ".join(verdict.failures))
    if verdict.summary:
        lines.append(f"\n{verdict.summary}")
    return "\n".join(lines)


VERDICT_COLUMNS = ("dimension", "A", "B", "winner")


def verdict_frame(verdict: PairVerdict) -> pd.DataFrame:
    """Per-dimension scores of A and B and the winner, in protocol order."""
    headings = {d.key: d.heading for d in task_dimensions("edit")}
    rows = [[headings.get(key, key), _fmt(v.score_a), _fmt(v.score_b), v.winner or "—"]
            for key, v in verdict.dimensions.items()]
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def judgement_id_from(text: str | None) -> int | None:
    """The judgement id in the Judgement box (``None`` when empty: the vote is on the images).
    Raises ``InvalidInputError`` when it is not a whole number."""
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInputError(f"Judgement {text!r} is not a judgement id; press Judge first, or leave it empty "
                                "to vote on the images as they are.")
    return int(text)


def vote_markdown(vote: dict[str, Any], labels: dict[str, str], earlier: dict[str, Any] | None) -> str:
    """The confirmation of a recorded vote: its id, its time (UTC) and, when it replaced an
    earlier vote on the same judgement, what that vote was."""
    when = (vote["created"] or "")[11:19]
    replaced = (f" It replaces your earlier vote on this judgement ({labels[earlier['vote']]})."
                if earlier is not None else "")
    return f"Vote #{vote['id']} recorded at {when} UTC: **{labels[vote['vote']]}**.{replaced}"


def recent_images(store: SessionStore, limit: int = 30, *, visitor: str | None = None) -> list[tuple[str, str]]:
    """(label, image id) of the best image of recent sessions (with ``visitor``: that visitor's),
    newest first, for pickers."""
    return [
        (f"{row['prompt'][:50]} · {_fmt(row['best_score'])} · {row['id'][:6]}", str(row["best_image_id"]))
        for row in store.search_sessions(limit=limit, visitor=visitor) if row["best_image_id"] is not None
    ]


# -- history -----------------------------------------------------------------------------------

HISTORY_COLUMNS = ("image", "id", "created", "status", "task", "prompt", "generator", "critic", "best score")
#: Column types and widths of the History table (the image column holds a Markdown thumbnail).
HISTORY_DATATYPES = ["markdown", "str", "str", "str", "str", "str", "str", "str", "number"]
HISTORY_WIDTHS = ["64px", "150px", "150px", "90px", "50px", "30%", "110px", "110px", "80px"]


def model_label(name: str | None) -> str | None:
    """A backend name short enough for a table column: a name holding a path or an id
    (``diffusers:/models/flux``) is cut to its last part (``flux``)."""
    return name.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] if name else name


#: Most sessions a History search shows.
SEARCH_LIMIT = 200


def search_sessions(store: SessionStore, text: str | None = None, model: str | None = None,
                    status: str | None = None, since: str | None = None, until: str | None = None,
                    scores: str | None = None, *, limit: int = SEARCH_LIMIT,
                    visitor: str | None = None) -> list[dict[str, Any]]:
    """``store.search_sessions`` for the History filters as typed (blank: no condition; dates as
    YYYY-MM-DD; score conditions separated by ";"): the newest ``limit`` (of ``visitor``'s
    sessions when given), each row with ``matched``. Raises ``InvalidInputError`` for a bad date
    or score condition."""
    return store.search_sessions(
        text=(text or "").strip() or None, model=(model or "").strip() or None, status=status or None,
        scores=[ScoreFilter.parse(part) for part in (scores or "").split(";") if part.strip()],
        since=parse_date(since or "", "From date"), until=parse_date(until or "", "Until date"), limit=limit,
        visitor=visitor,
    )


def history_frame(store: SessionStore, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Search results as a table, newest first: a thumbnail of the best image, model names cut
    to their last part (the full name is searchable), the best score to three decimals."""
    def thumbnail(image_id: int | None) -> str:
        if image_id is None:
            return ""
        return f"![best image]({thumbnail_uri(store.image_path(image_id), TABLE_THUMBNAIL_PX)})"

    return pd.DataFrame(
        [[thumbnail(r["best_image_id"]), r["id"], (r["created"] or "")[:19].replace("T", " "), r["status"], r["task"],
          r["prompt"], model_label(r["generator_name"]), model_label(r["critic_name"]),
          None if r["best_score"] is None else round(r["best_score"], 3)] for r in rows],
        columns=list(HISTORY_COLUMNS),
    )


def history_label(matched: int, limit: int = SEARCH_LIMIT) -> str:
    """The results table's title: how many sessions match, and when a search shows only the
    newest ``limit`` of them, "the newest 200 of 1,234"."""
    if not matched:
        return "Sessions: none match"
    if matched > limit:
        return (f"Sessions: the newest {limit} of {matched:,} that match (narrow the search to see older ones; "
                "click a row to open it)")
    return f"Sessions: {matched} match (click a row to open it)"


def session_record(timeline: dict[str, Any], *, public: bool = False) -> dict[str, Any]:
    """A stored session as plain JSON for agents and scripts: its status, best result, settings
    and every round's candidates with their scores, by image id (no file paths, no pictures).
    In ``public`` mode backend names that hold a path are cut to their last part, and no text
    carries a server path."""
    session = timeline["session"]
    name = model_label if public else (lambda value: value)
    best = None if session["best_image_id"] is None else {
        "score": session["best_score"], "round": session["best_round"], "candidate": session["best_candidate"],
        "image_id": session["best_image_id"]}
    record = {
        **{key: session[key] for key in ("id", "task", "prompt", "status", "stop_reason", "message", "created")},
        **{role: name(session[f"{role}_name"]) for role in ("generator", "critic", "rewriter")},
        "best": best, "settings": session["settings"],
        "rounds": [_round_record(session, rnd) for rnd in timeline["rounds"]],
    }
    return redact(record) if public else record


def _round_record(session: dict[str, Any], rnd: dict[str, Any]) -> dict[str, Any]:
    dimensions = task_dimensions(session["task"])

    def candidate(c: dict[str, Any]) -> dict[str, Any]:
        critique = c["critique"] or {}
        return {"image_id": c["id"], "candidate": c["candidate"], "seed": c["seed"],
                "critiqued": bool(critique), "ok": bool(critique.get("ok")), "score": critique.get("score"),
                "scores": {d.key: critique.get(d.key) for d in dimensions} if critique.get("ok") else {},
                "summary": critique.get("summary"), "failure": critique.get("failure_reason")}

    return {"round": rnd["idx"], "status": round_status(session, rnd), "prompt": rnd["prompt"], "seed": rnd["seed"],
            "best_score": rnd["best_score"], "next_prompt": rnd["next_prompt"], "prompt_source": rnd["prompt_source"],
            "candidates": [candidate(c) for c in rnd["candidates"]]}


def public_session_export(session_json: Path) -> None:
    """Make an exported ``session.json`` fit for a public deployment: without the backends'
    settings (endpoint URLs, model folders), the serving process (``owner``: host and pid) and
    the visitor who made it, and with every server path cut to its last part (display names
    such as ``diffusers:/models/flux`` become ``diffusers:flux``)."""
    exported = json.loads(session_json.read_text(encoding="utf-8"))
    for key in ("generator", "critic", "rewriter", "owner", "visitor"):
        exported["session"].pop(key, None)
    session_json.write_text(json.dumps(redact(exported), indent=2, default=str), encoding="utf-8")


def parse_date(text: str, what: str) -> datetime | None:
    """A ``YYYY-MM-DD`` (or full ISO) date typed into a search box, as UTC; ``None`` when empty."""
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise InvalidInputError(f"{what}: {text.strip()!r} is not a date; write it like 2026-11-26.") from e
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def session_id_from(text: str) -> str:
    """The session id typed or picked in a box. Raises ``InvalidInputError`` when empty."""
    if not text or not text.strip():
        raise InvalidInputError("No session chosen: search and click a row, or paste a session id.")
    return text.strip()


def backend_settings(services: Services) -> dict[str, Any]:
    """Each configured role's settings (endpoints, model folders), without loading any model."""
    settings = {}
    for role in ("critic", "t2i_generator", "edit_generator", "rewriter"):
        slot = getattr(services, role)
        if slot is not None:
            settings[role] = slot.config if isinstance(slot, Lazy) else slot.to_config()
    return settings


def rewriter_choices(services: Services) -> list[tuple[str, str]]:
    """Where the next prompt can come from: the critic, a person, and an LLM when one is set up."""
    choices = [("Critic's refined request", "critic"), ("Me (approve each prompt)", "human")]
    slot = services.rewriter
    if slot is not None and not (isinstance(slot, Lazy) and slot.config.get("backend") == "critic"):
        choices.insert(1, ("LLM rewriter", "llm"))
    return choices


def _fmt(score: float | None) -> str:
    return "—" if score is None else f"{score:.2f}"


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


#: Styles of the timeline cards; passed to ``launch(css=...)``.
CSS = """
.rr-timeline .rr-session {margin-bottom: .5em}
.rr-round {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6em; margin-bottom: .6em}
.rr-round-head {font-size: .9em; margin-bottom: .3em}
.rr-prompt {font-style: italic; margin-bottom: .4em}
.rr-prompt del {color: #b42318} .rr-prompt ins {color: #067647; text-decoration: none; font-weight: 600}
.rr-candidates {display: flex; flex-wrap: wrap; gap: .6em}
.rr-candidate {width: 440px; padding: .3em; border-radius: 6px}
.rr-candidate-body {display: flex; gap: .6em; align-items: flex-start} .rr-scores {flex: 1}
.rr-candidate.rr-is-best {outline: 2px solid #f5b000}
.rr-candidate img {width: 128px; image-rendering: pixelated; display: block}
.rr-best {font-weight: 700; color: #b54708}
.rr-dim {display: flex; align-items: center; gap: .3em; font-size: .8em}
.rr-dim-name {width: 90px} .rr-dim-score {width: 3em; text-align: right}
.rr-bar {flex: 1; height: .6em; background: var(--neutral-200); border-radius: 3px; overflow: hidden}
.rr-bar span {display: block; height: 100%; background: #2e90fa}
.rr-failure {color: #b42318; font-size: .85em}
.rr-summary {font-size: .8em; margin-top: .2em}
"""

