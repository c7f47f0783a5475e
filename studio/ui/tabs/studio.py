"""The Studio tab: run a Generate-Critique-Refine session and watch it round by round."""

from __future__ import annotations

import collections
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from models.errors import InvalidInputError
from models.shapes import world
from models.types import task_dimensions
from studio import grammar, loop
from studio.config import LoopSettings
from studio.loop import ImageReady, LoopEvent, RefineRequest
from studio.services import Services
from studio.ui import adapt
from studio.ui.errors import ui_errors
from studio.ui.limits import STORE_QUEUED, Admission
from studio.ui.preload import model_bound
from studio.ui.redact import redact_paths
from studio.ui.stopping import LastLines, StopRequests
from studio.ui.widgets import image_input, score_plot, source_visibility, task_radio

logger = logging.getLogger(__name__)

DIMENSIONS = {d.key: d.heading for d in task_dimensions("edit")}
#: ``LoopSettings.on_repeat`` choices as (label, value).
REPEAT_CHOICES = [("vary the seed", "vary_seed"), ("re-state what failed", "restate"), ("stop", "stop")]
#: ``LoopSettings.first_prompt`` choices as (label, value).
FIRST_PROMPT_CHOICES = [("the critic's expansion of the prompt", "expanded"), ("the prompt as written", "request")]
#: ``LoopSettings.judge_against`` choices as (label, value).
JUDGE_AGAINST_CHOICES = [("the prompt as written", "request"), ("the round's own prompt", "round")]


def cancel_in_background(events: Iterator[LoopEvent], stop: threading.Event) -> None:
    """The viewer closed the stream (Stop button, closed tab): ask the engine to stop and let it
    reach its next check in a background thread, so that the session is stored as cancelled
    (not abandoned mid-round) without holding up the server."""
    stop.set()
    threading.Thread(target=collections.deque, args=(events, 0), name="studio-cancel", daemon=True).start()


def create_studio_tab(services: Services, *, public: bool = False, admission: Admission | None = None,
                      ) -> dict[str, Any]:
    """Build the Studio tab's widgets and listeners; return its components by name, plus
    ``resume_handler``, ``outputs`` and ``last_status`` (a stream's follow-up: its last status line
    written again) for other tabs that start a resume here (History).

    ``admission`` holds the deployment's visitors and limits (default: local, no limits): a
    session is recorded with its visitor, only its visitor continues it, and in public mode a
    request over a limit is refused when it is submitted."""
    admission = admission or Admission()
    visitors = admission.visitors
    shown = redact_paths if public else str  # a status line as shown: no server paths in public mode
    names = services.names()
    tasks = tuple(t for t, role in (("t2i", "t2i_generator"), ("edit", "edit_generator")) if names[role])
    defaults = LoopSettings()
    with gr.Row():
        with gr.Column(scale=2):
            task = task_radio(tasks or ("t2i",))
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="What should the image show?")
            source = image_input("Source image", visible=False, height=340, elem_id="studio-source")
            with gr.Accordion("Loop settings", open=False):
                with gr.Row():
                    max_rounds = gr.Slider(1, 10, value=defaults.max_rounds, step=1, label="Max rounds")
                    candidates = gr.Slider(1, 8, value=defaults.candidates, step=1,
                                           label="Images per round (best of N)")
                with gr.Row():
                    seed = gr.Number(value=defaults.seed, precision=0, minimum=0, label="Seed")
                    seed_policy = gr.Radio(["fixed", "vary"], value=defaults.seed_policy, label="Seed policy")
                choices = adapt.rewriter_choices(services)
                rewriter = gr.Radio(choices, value="llm" if ("LLM rewriter", "llm") in choices else "critic",
                                    label="Next prompt from")
                thresholds = [
                    gr.Slider(1, 4, value=defaults.thresholds.get(key, 3.5), step=0.25, label=f"Stop when {heading} ≥")
                    for key, heading in DIMENSIONS.items()
                ]
                with gr.Row():
                    plateau = gr.Slider(0, 5, value=defaults.plateau_rounds, step=1,
                                        label="Stop after rounds without gain (0: off)")
                    regression = gr.Checkbox(value=defaults.stop_on_regression, label="Stop when a round scores lower")
                with gr.Row():
                    on_repeat = gr.Radio(REPEAT_CHOICES, value=defaults.on_repeat,
                                         label="When a prompt comes back with its seed")
                    max_tries = gr.Slider(0, 10, value=defaults.max_tries_per_prompt, step=1,
                                          label="Most rounds per prompt (0: no limit)")
                with gr.Row():
                    first_prompt = gr.Radio(FIRST_PROMPT_CHOICES, value=defaults.first_prompt,
                                            label="Round 1 generates from")
                    judge_against = gr.Radio(JUDGE_AGAINST_CHOICES, value=defaults.judge_against,
                                             label="Judge every round against")
            models = gr.Markdown(models_markdown(names), elem_id="studio-models")
            if not public:
                with gr.Accordion("Backend settings", open=False):
                    gr.JSON(adapt.backend_settings(services), label="Endpoints and model folders")
            with gr.Row():
                run = gr.Button("Run", variant="primary")
                stop = gr.Button("Stop", variant="stop")
            _examples(services, tasks, task, prompt, source)
        with gr.Column(scale=3):
            with gr.Row():
                status = gr.Markdown("Type a prompt and press **Run**.", elem_id="studio-status")
                session_id = gr.Textbox(label="Session", max_lines=1, scale=0, min_width=200,
                                        placeholder="a session id (see History)", elem_id="studio-session")
                session_resume = gr.Button("Resume", scale=0, min_width=90)
            with gr.Row():
                latest = gr.Image(label="Latest image", interactive=False, height=300, elem_id="studio-latest",
                                  elem_classes="rr-image")
                compare = gr.ImageSlider(label="Before / after", type="filepath", interactive=False, height=300,
                                         elem_id="studio-compare", elem_classes="rr-slider")
            plot = score_plot("studio-plot")
            timeline = gr.HTML(label="Rounds", elem_id="studio-timeline")
            with gr.Row():
                proposed = gr.Textbox(label="Next prompt (edit it, then Continue)", lines=2, scale=3)
                resume_button = gr.Button("Continue with this prompt", scale=1)

    outputs = [session_id, status, latest, compare, plot, timeline, proposed]
    stops = StopRequests()
    last_lines = LastLines()

    def show(events: Iterator[LoopEvent], stop_flag: threading.Event, max_total: int,
             progress: gr.Progress) -> Iterator[tuple[Any, ...]]:
        """Stream the events as widget values. When the engine fails mid-session, the widgets
        first show the session as stored (failed, with its message; outputs keep their last
        values), then the error is raised for its one pop-up."""
        sid, suggestion, latest_path = None, gr.skip(), None
        try:
            for event in events:
                sid = event.session_id
                progress(adapt.event_progress(event, max_total), desc=shown(adapt.event_status(event)))
                suggestion = adapt.next_prompt(event) or suggestion
                if isinstance(event, ImageReady):
                    latest_path = str(services.store.image_path(event.image_id))
                best, before_after, frame, html = adapt.session_view(services.store, sid, public=public)
                # a resumed session shows its best until a new image; never gr.skip() on an image: an
                # update gives the browser session its own copy of the widget, whose cached files
                # Gradio's delete_cache does not see (studio/ui/scratch.py)
                latest = latest_path or best
                yield sid, shown(adapt.event_status(event)), latest, before_after, frame, html, suggestion
        except GeneratorExit:
            cancel_in_background(events, stop_flag)
            raise
        except Exception:
            if sid is not None:
                best, before_after, frame, html = adapt.session_view(services.store, sid, public=public)
                status_line = shown(adapt.session_status(services.store.get_session(sid)))
                yield sid, status_line, latest_path or best, before_after, frame, html, suggestion
            raise

    def run_stoppably(start: Callable[[Callable[[], bool]], Iterator[LoopEvent]], max_total: int,
                      request: gr.Request | None,
                      progress: gr.Progress) -> Iterator[tuple[Any, ...]]:
        """Register a stop flag for this browser session, start the engine with it, stream."""
        key, stop_flag = stops.start(getattr(request, "session_hash", None))
        try:
            for outputs in show(start(stop_flag.is_set), stop_flag, max_total, progress):
                last_lines.keep(key, outputs[1])
                yield outputs
        finally:
            stops.finish(key, stop_flag)

    # Defaults: the API (and MCP) schema marks an input optional when its parameter defaults to
    # None or its widget has a value; the rest mirror the widgets' values.
    @ui_errors
    def refine(task: str, prompt: str, source_image: str | None = None, max_rounds: float = defaults.max_rounds,
               candidates: float = defaults.candidates, seed: float = defaults.seed,
               seed_policy: str = defaults.seed_policy, rewriter: str = "critic",
               text_faithfulness: float = thresholds[0].value, image_faithfulness: float = thresholds[1].value,
               physical_quality: float = thresholds[2].value, text_rendering: float = thresholds[3].value,
               plateau: float = defaults.plateau_rounds, regression: bool = defaults.stop_on_regression,
               on_repeat: str = defaults.on_repeat, max_tries_per_prompt: float = defaults.max_tries_per_prompt,
               first_prompt: str = defaults.first_prompt, judge_against: str = defaults.judge_against,
               request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """Run a Generate-Critique-Refine session, streaming each step.

        Args:
            task: "t2i" (text to image) or "edit".
            prompt: what the image should show, or the edit instruction.
            source_image: the image to edit (edit task only).
            max_rounds: most rounds to run.
            candidates: images per round; the critic's best continues.
            seed: first seed.
            seed_policy: "fixed" (same seed every round) or "vary".
            rewriter: next prompt from "critic", "llm" or "human" (pause for approval).
            text_faithfulness: stop threshold (1-4).
            image_faithfulness: stop threshold (1-4, edits).
            physical_quality: stop threshold (1-4).
            text_rendering: stop threshold (1-4).
            plateau: stop after this many rounds without gain (0: off).
            regression: stop when a round scores lower than the one before.
            on_repeat: when a round's prompt was already generated with its seed: "vary_seed" (a new
                seed), "restate" (re-state what failed first, then vary the seed) or "stop".
            max_tries_per_prompt: most rounds one prompt may be generated in before the session
                stops as exhausted (0: no limit).
            first_prompt: round 1 generates from the critic's expansion of the prompt into the
                generator's detailed form ("expanded"; a critic that cannot expand keeps the prompt)
                or from the prompt as written ("request").
            judge_against: the critic judges every round against the prompt as written ("request")
                or against that round's own prompt ("round").
        """
        scores = (text_faithfulness, image_faithfulness, physical_quality, text_rendering)
        limits = dict(zip(DIMENSIONS, scores, strict=True))
        settings = adapt.loop_settings(max_rounds, candidates, seed, seed_policy, rewriter, limits, plateau, regression,
                                      on_repeat, max_tries_per_prompt, first_prompt, judge_against)
        grammar.check_request(services, task, prompt)  # type: ignore[arg-type]
        visitor = visitors.of(request)
        wanted = RefineRequest(task, prompt, adapt.source_upload(task, source_image), visitor=visitor.writes)
        yield from run_stoppably(lambda should_stop: loop.refine(wanted, services, settings, should_stop=should_stop),
                                 settings.max_rounds, request, progress)

    @ui_errors
    def resume(session_id: str, prompt: str | None = None, request: gr.Request | None = None,
               progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:
        """Continue a stored session (interrupted, cancelled, failed or awaiting a prompt).

        Args:
            session_id: the session to continue.
            prompt: the next round's prompt (empty: the one the session proposed).
        """
        session_id = (session_id or "").strip()
        if not session_id:
            raise InvalidInputError("No session to continue: run one first, paste a session id into the Session "
                                    "box, or pick one in History and press Resume in Studio.")
        visitor = visitors.of(request)
        stored_session = services.store.get_session(session_id, visitor=visitor.reads)
        visitor.check_can_continue(stored_session)
        if prompt:
            grammar.check_request(services, stored_session["task"], prompt)
        settings = LoopSettings.from_dict(stored_session["settings"])
        yield from run_stoppably(
            lambda should_stop: loop.resume(session_id, services, prompt=prompt or None, should_stop=should_stop),
            settings.max_rounds, request, progress)

    @ui_errors
    def request_stop(request: gr.Request) -> Any:
        """Ask this browser session's run to stop at its next check."""
        found = stops.stop(request.session_hash)
        logger.info("stop requested by browser session %s: %s", request.session_hash,
                    "stopping its run" if found else "no run in flight")
        return "Stopping after the current step…" if found else gr.skip()

    def last_status(request: gr.Request) -> Any:
        """The line this browser session's stream ended with, written again once the stream has
        ended: the Stop button's "Stopping…" answer travels outside the stream and may reach the
        browser after the stream's last line."""
        line = last_lines.take(request.session_hash)
        return gr.skip() if line is None else line

    task.change(source_visibility, task, source, api_visibility="private", queue=False)
    inputs = [task, prompt, source, max_rounds, candidates, seed, seed_policy, rewriter, *thresholds, plateau,
              regression, on_repeat, max_tries, first_prompt, judge_against]
    streaming = {"concurrency_id": "gpu", "concurrency_limit": 1, "show_progress_on": [status]}
    refine_validator = admission.validator(refine, images=lambda a: (a.get("max_rounds", defaults.max_rounds),
                                                                      a.get("candidates", defaults.candidates)))
    resume_validator = admission.validator(resume, flag="session_id")

    def wait_notice() -> None:
        notice = admission.notice(services.store)
        if notice:
            gr.Info(notice, duration=20)

    # a toast with the requests ahead and a wait estimate first (the status line's progress, where
    # Gradio counts down the place in the queue, would cover a notice written there)
    run.click(wait_notice, None, None, api_visibility="private", **STORE_QUEUED).then(
        model_bound(refine), inputs, outputs, api_name="refine", validator=refine_validator, **streaming).then(
        last_status, None, status, queue=False, api_visibility="private")
    resume_button.click(wait_notice, None, None, api_visibility="private", **STORE_QUEUED).then(
        model_bound(resume), [session_id, proposed], outputs, api_name="resume", validator=resume_validator,
        **streaming).then(last_status, None, status, queue=False, api_visibility="private")
    session_resume.click(wait_notice, None, None, api_visibility="private", **STORE_QUEUED).then(
        model_bound(resume), [session_id, gr.State("")], outputs, api_visibility="private",
        validator=resume_validator, **streaming).then(last_status, None, status, queue=False, api_visibility="private")
    stop.click(request_stop, None, status, queue=False, api_visibility="private")
    return {"models": models, "task": task, "prompt": prompt, "source": source, "run": run, "stop": stop, "status": status,
            "session_id": session_id, "latest": latest, "compare": compare, "plot": plot, "timeline": timeline,
            "proposed": proposed, "resume": resume_button, "session_resume": session_resume,
            "resume_handler": model_bound(resume), "outputs": outputs, "last_status": last_status,
            "streaming": {**streaming, "validator": resume_validator}}


def _examples(services: Services, tasks: tuple[str, ...], task: gr.Radio, prompt: gr.Textbox,
              source: gr.Image) -> None:
    """Clickable example requests (from the shapes world's grammar when its critic is loaded, with
    a note on what that world reads), filling the task, the prompt and, for edits, the source."""
    rows: list[list[Any]] = []
    if grammar.shapes_world(services):
        gr.Markdown(f"**What this world understands.** {grammar.vocabulary()}", elem_id="studio-vocabulary")
        rows += [["t2i", text, None] for text in grammar.example_prompts()] if "t2i" in tasks else []
        if "edit" in tasks:
            folder = Path(tempfile.gettempdir()) / "rationalrewards-examples"
            folder.mkdir(exist_ok=True)
            for i, (scene, instruction) in enumerate(grammar.example_edits()):
                path = folder / f"edit-source-{i}.png"
                world.render(scene).save(path)
                rows.append(["edit", instruction, str(path)])
    elif "t2i" in tasks:
        rows += [["t2i", text, None] for text in grammar.GENERAL_EXAMPLES]
    if rows:
        gr.Examples(rows, [task, prompt, source], label="Examples (click one to fill the request)",
                    elem_id="studio-examples")


def models_markdown(names: dict[str, str | None]) -> str:
    """Which backend serves each role."""
    labels = {"critic": "Critic", "t2i_generator": "Text-to-image", "edit_generator": "Editing", "rewriter": "Rewriter"}
    return "Models — " + " · ".join(f"{labels[role]}: `{name}`" for role, name in names.items() if name)
