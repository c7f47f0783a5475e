"""Tools for agents: the engine's actions answering JSON, with images by stored id.

Gradio's MCP server (``--mcp``) makes a tool of every public endpoint, but the UI's endpoints
answer with widget values (Markdown, an HTML timeline with inline thumbnails, tables) that reach
an agent as one Python repr of tens of kilobytes, and take images as Gradio file uploads, which
an MCP client can only give by URL. These endpoints are the MCP tools instead:

- each answers one JSON text (the UI endpoints stay what the page and ``gradio_client`` call,
  and are left out of the MCP tool list);
- images go in as a stored image id (from an earlier answer) or as base64 (a PNG or JPEG, a
  ``data:`` URI too), and come out as ids; the ``image`` tool returns one as MCP image content
  with a URL the client can fetch;
- optional inputs have defaults in the schema, and a bad input answers the same plain-language
  message as in the UI.

The model tools share the UI's one GPU slot (``concurrency_id="gpu"``); the store-only ones skip
the queue. Their REST names are ``agent_<tool>`` (MCP names them by function: ``refine``, ...).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict
from typing import Any, Iterator

import gradio as gr
from PIL import Image

from models.errors import InvalidInputError
from models.images import prepare_image
from models.types import Critique, CritiqueRequest, PairRequest
from studio import diagnose as diagnosis
from studio import grammar, loop
from studio.config import LoopSettings
from studio.judge import PairVerdict, generate_pair as make_pair, judge_pair, record_vote
from studio.loop import LoopEvent, RefineRequest
from studio.services import Services
from studio.ui import adapt
from studio.ui.errors import ui_errors
from studio.ui.preload import model_bound

#: MCP tool names, each served at REST ``agent_<name>``.
AGENT_TOOLS = ("refine", "resume", "generate_pair", "judge", "vote", "diagnose", "history_search", "session_json",
               "image")
#: The UI endpoints an agent reaches through the tools above (left out of the MCP tool list).
UI_ONLY = ("refine", "resume", "generate_pair", "judge", "vote", "diagnose", "diagnose_batch", "history_search",
           "history_open", "session_json")
#: Largest base64 image an agent may send (characters; about 15 MB decoded).
MAX_BASE64_CHARS = 20_000_000


def add_agent_tools(services: Services) -> None:
    """Register the agent tools in the current ``gr.Blocks`` (call inside ``with demo:``).

    Local mode only: an MCP call carries no visitor identity, so a public deployment could not
    keep one visitor's sessions from another (``studio.ui.app.build_app`` leaves them out)."""
    store = services.store
    defaults = LoopSettings()

    def image_input(value: str, what: str, *, required: bool = True) -> Image.Image | None:
        """An image given by stored id or as base64, decoded and checked like an upload."""
        text = "" if value is None else str(value).strip()  # an agent may send an id as a number
        if not text:
            if required:
                raise InvalidInputError(f"No {what} given: pass a stored image id (from an earlier answer) or the "
                                        "image as base64 (PNG or JPEG).")
            return None
        if text.isdigit():
            return prepare_image(store.image_path(int(text)), what=what)
        if len(text) > MAX_BASE64_CHARS:
            raise InvalidInputError(f"{what}: {len(text):,} characters of base64 is too large; the most is "
                                    f"{MAX_BASE64_CHARS:,}.")
        try:
            data = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
        except (binascii.Error, ValueError, IndexError) as e:
            raise InvalidInputError(f"{what}: neither a stored image id nor base64 image data.") from e
        return prepare_image(data, what=what)

    def source_input(task: str, value: str) -> Image.Image | None:
        return image_input(value, "source image") if task == "edit" else None

    def answer(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    def run_session(events: Iterator[LoopEvent], sid: str = "") -> str:
        """Run the session's events to the end; answer the stored session."""
        for event in events:
            sid = event.session_id
        return answer(adapt.session_record(store.session_timeline(sid)))

    @ui_errors
    def refine(prompt: str, task: str = "t2i", source_image: str = "", max_rounds: int = defaults.max_rounds,
               candidates: int = defaults.candidates, seed: int = defaults.seed,
               seed_policy: str = defaults.seed_policy, rewriter: str = "critic",
               on_repeat: str = defaults.on_repeat, max_tries_per_prompt: int = defaults.max_tries_per_prompt,
               plateau_rounds: int = defaults.plateau_rounds, first_prompt: str = defaults.first_prompt,
               judge_against: str = defaults.judge_against) -> str:
        """Run a Generate-Critique-Refine session to its end and answer the stored session as JSON:
        status, stop reason, the best image's id and score, and every round's prompt and candidates
        with their scores (images by id: pass one to the image tool to see it).

        Args:
            prompt: what the image should show, or the edit instruction.
            task: "t2i" (text to image) or "edit".
            source_image: the image to edit (edit only): a stored image id or base64 PNG/JPEG.
            max_rounds: most rounds to run.
            candidates: images per round; the critic's best continues.
            seed: first seed.
            seed_policy: "fixed" (same seed every round) or "vary".
            rewriter: next prompt from "critic", "llm" or "human" (the session then waits; continue with resume).
            on_repeat: when a round's prompt was already generated with its seed: "vary_seed", "restate" or "stop".
            max_tries_per_prompt: most rounds one prompt may be generated in (0: no limit).
            plateau_rounds: stop after this many rounds without gain (0: off).
            first_prompt: round 1 from the critic's expansion of the prompt ("expanded") or the prompt as written ("request").
            judge_against: judge every round against the prompt as written ("request") or that round's own prompt ("round").
        """
        settings = LoopSettings.from_dict({**defaults.to_dict(), **{
            "max_rounds": max_rounds, "candidates": candidates, "seed": seed, "seed_policy": seed_policy,
            "rewriter": rewriter, "on_repeat": on_repeat, "max_tries_per_prompt": max_tries_per_prompt,
            "plateau_rounds": plateau_rounds, "first_prompt": first_prompt, "judge_against": judge_against}})
        grammar.check_request(services, task, prompt)  # type: ignore[arg-type]
        request = RefineRequest(task, prompt, source_input(task, source_image))  # type: ignore[arg-type]
        return run_session(loop.refine(request, services, settings))

    @ui_errors
    def resume(session_id: str, prompt: str = "") -> str:
        """Continue a stored session (interrupted, cancelled, failed or awaiting a prompt) to its
        end and answer it as JSON, as refine does.

        Args:
            session_id: the session to continue.
            prompt: the next round's prompt (empty: the one the session proposed).
        """
        sid = adapt.session_id_from(session_id)
        if prompt:
            grammar.check_request(services, store.get_session(sid)["task"], prompt)
        return run_session(loop.resume(sid, services, prompt=prompt or None), sid)

    @ui_errors
    def generate_pair(prompt: str, task: str = "t2i", source_image: str = "", seed_a: int = 0, seed_b: int = 1) -> str:
        """Generate two candidates for one prompt from two seeds; answer their stored image ids
        (for judge, or the image tool) and the generator's name.

        Args:
            prompt: the prompt or edit instruction.
            task: "t2i" or "edit".
            source_image: the image to edit (edit only): a stored image id or base64 PNG/JPEG.
            seed_a: seed of image A.
            seed_b: seed of image B.
        """
        seeds = (adapt.seed_value(_number(seed_a, "seed_a"), "seed_a"), adapt.seed_value(_number(seed_b, "seed_b"), "seed_b"))
        (a, name_a), (b, _) = make_pair(services, task, prompt, source_input(task, source_image), seeds)  # type: ignore[arg-type]
        return answer({"image_a": a, "image_b": b, "generator": name_a})

    @ui_errors
    def judge(prompt: str, image_a: str, image_b: str, task: str = "t2i", source_image: str = "",
              both_orders: bool = True) -> str:
        """The critic's verdict on image A against image B for one prompt, as JSON: the winner
        ("A", "B" or "tie"; null when the critic could not judge), position consistency, per-dimension
        scores with justifications, and the judgement id (for vote).

        Args:
            prompt: the prompt or edit instruction both images answer.
            image_a: first image: a stored image id or base64 PNG/JPEG.
            image_b: second image: a stored image id or base64 PNG/JPEG.
            task: "t2i" or "edit".
            source_image: the edited image's source (edit only): a stored image id or base64.
            both_orders: also judge B/A and report position consistency.
        """
        request = PairRequest(task, prompt, image_input(image_a, "image A"), image_input(image_b, "image B"),  # type: ignore[arg-type]
                              source_input(task, source_image))
        return answer(verdict_record(judge_pair(request, services, both_orders=bool(both_orders))))

    @ui_errors
    def vote(judgement_id: int, vote: str) -> str:
        """Record a person's preference on a judgement (a new vote replaces the earlier one) and
        answer the stored vote as JSON.

        Args:
            judgement_id: the judgement voted on (from judge).
            vote: "A", "B", "tie" or "both_bad".
        """
        judged = adapt.judgement_id_from(str(judgement_id))
        if judged is None:
            raise InvalidInputError("No judgement id: judge a pair first, then vote on its judgement_id.")
        earlier = store.vote_on(judged)
        record = store.get_vote(record_vote(store, judged, vote))
        return answer({**record, "replaced": None if earlier is None else earlier["vote"]})

    @ui_errors
    def diagnose(prompt: str, image: str, task: str = "t2i", source_image: str = "") -> str:
        """The critic's full critique of one image as JSON: the [0, 1] score, each dimension's
        score (1-4; null for N/A) and justification, summary, refined request, or the failure.

        Args:
            prompt: the prompt or edit instruction the image answers.
            image: the image to diagnose: a stored image id or base64 PNG/JPEG.
            task: "t2i" or "edit".
            source_image: the edit's source image (edit only): a stored image id or base64.
        """
        request = CritiqueRequest(task, prompt, image_input(image, "image"), source_input(task, source_image))  # type: ignore[arg-type]
        result = diagnosis.diagnose(request, services)
        critique = result.critique
        body: dict[str, Any] = {"ok": result.ok, "score": result.score, "image_id": result.image_id,
                                "critique_id": result.critique_id}
        if isinstance(critique, Critique):
            body |= {"scores": critique.scores, "justifications": critique.justifications,
                     "missing": critique.missing, "summary": critique.summary,
                     "refined_request": critique.refined_request}
        else:
            body |= {"failure": critique.reason}
        return answer(body)

    @ui_errors
    def history_search(text: str = "", model: str = "", status: str = "", since: str = "", until: str = "",
                       scores: str = "") -> str:
        """Stored sessions, newest first, matching every condition given (none: the latest), as
        JSON: how many match, and the newest 200 with their best score and best image id.

        Args:
            text: words the prompt contains.
            model: part of the generator or critic name.
            status: running, awaiting, finished, interrupted, cancelled or failed (empty: any).
            since: sessions from this date (YYYY-MM-DD).
            until: sessions before this date (YYYY-MM-DD).
            scores: conditions on the best critique, e.g. "text_rendering < 2; physical_quality >= 3".
        """
        rows = adapt.search_sessions(store, text, model, status, since, until, scores)
        return answer({"matched": rows[0]["matched"] if rows else 0, "sessions": [
            {"id": r["id"], "created": r["created"], "status": r["status"], "task": r["task"], "prompt": r["prompt"],
             "generator": r["generator_name"], "critic": r["critic_name"], "best_score": r["best_score"],
             "best_image_id": r["best_image_id"]} for r in rows]})

    @ui_errors
    def session_json(session_id: str) -> str:
        """A stored session as JSON: status, best result, settings, and each round's prompt and
        candidates with their scores (images by id: pass one to the image tool to see it).

        Args:
            session_id: the session to read.
        """
        return answer(adapt.session_record(store.session_timeline(adapt.session_id_from(session_id))))

    @ui_errors
    def image(image_id: float) -> str:
        """A stored image (a session's candidate, a judged or diagnosed image) by its id, as an
        image with a URL to fetch it.

        Args:
            image_id: the image's id, from another tool's answer.
        """
        return str(store.image_path(int(_number(image_id, "image_id"))))

    gpu = {"concurrency_id": "gpu", "concurrency_limit": 1}
    for fn in (refine, resume, generate_pair, judge, diagnose):
        gr.api(model_bound(fn), api_name=f"agent_{fn.__name__}", **gpu)
    for fn in (vote, history_search, session_json):
        gr.api(fn, api_name=f"agent_{fn.__name__}", queue=False)
    # an image output (not gr.api): Gradio serves the file and its MCP server answers it as image content
    wanted, picture = gr.Number(visible=False, precision=0), gr.Image(visible=False, type="filepath", format="png")
    gr.Button(visible=False).click(image, wanted, picture, api_name="agent_image", queue=False)


def verdict_record(verdict: PairVerdict) -> dict[str, Any]:
    """A pair verdict as plain JSON (the critic's raw text left out)."""
    record = asdict(verdict)
    for key in ("raw_ab", "raw_ba"):
        record.pop(key)
    return record


def hide_ui_endpoints_from_mcp(demo: gr.Blocks) -> None:
    """Leave the UI endpoints that have an agent tool (or answer only widgets) out of the MCP
    tool list; they stay REST endpoints for the page and ``gradio_client``. Gradio's MCP server
    lists an endpoint's function only when it carries no ``_mcp_type`` or the type "tool" (what
    ``gr.mcp.tool`` sets); "ui" is neither, so it lists none of these."""
    for block_fn in demo.fns.values():
        if block_fn.api_name in UI_ONLY and block_fn.fn is not None:
            block_fn.fn._mcp_type = "ui"  # type: ignore[attr-defined]


def _number(value: Any, what: str) -> float:
    """``value`` as a number (an agent may send "3"); ``InvalidInputError`` otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what}: {value!r} is not a number.") from e
