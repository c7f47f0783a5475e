"""The Judge tab: two images and a prompt; the critic's verdict in both orders; a person's vote."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from models.errors import InvalidInputError, NotFoundError
from models.types import PairRequest
from studio.judge import generate_pair as make_pair
from studio.judge import judge_pair, record_vote
from studio.services import Services
from studio.ui import adapt
from studio.ui.errors import ui_errors
from studio.ui.limits import STORE_ONLY, Admission
from studio.ui.preload import model_bound
from studio.ui.redact import redact_paths
from studio.ui.widgets import image_input, source_visibility, task_radio

logger = logging.getLogger(__name__)

VOTE_CHOICES = [("A is better", "A"), ("B is better", "B"), ("Tie", "tie"), ("Both bad", "both_bad")]
VOTE_LABELS = {value: label for label, value in VOTE_CHOICES}
VERDICT_PLACEHOLDER = "Upload two images and a prompt, then press **Judge**."


def create_judge_tab(services: Services, *, public: bool = False, admission: Admission | None = None,
                     ) -> dict[str, gr.components.Component]:
    """Build the Judge tab's widgets and listeners; return its components by name.

    In ``public`` mode B cannot come from another model (that would load any hub id or folder).
    ``admission`` holds the visitors and limits: judgements and votes are recorded with their
    visitor, a vote only goes on the visitor's own judgement, the history pickers list their own
    sessions, and model requests over a visitor's limit are refused when submitted."""
    admission = admission or Admission()
    visitors = admission.visitors
    with gr.Row():
        with gr.Column():
            task = task_radio()
            prompt = gr.Textbox(label="Prompt", lines=2)
            source = image_input("Source image", visible=False)
            with gr.Row():
                image_a = image_input("Image A", elem_id="judge-image-a", height=340)
                image_b = image_input("Image B", elem_id="judge-image-b", height=340)
            with gr.Accordion("Pick from history or generate", open=False):
                with gr.Row():
                    pick_a = gr.Dropdown(label="A from history (best image of recent sessions)", choices=[])
                    pick_b = gr.Dropdown(label="B from history (best image of recent sessions)", choices=[])
                with gr.Row():
                    seed_a = gr.Number(value=0, precision=0, minimum=0, label="Seed A")
                    seed_b = gr.Number(value=1, precision=0, minimum=0, label="Seed B")
                model_b = gr.Textbox(label="Model for B: a diffusers hub id or folder (empty: the same model as A)",
                                     max_lines=1, visible=not public)
                generate_button = gr.Button("Generate A and B")
                models = gr.State(("", ""))  # the models that made A and B, recorded with a vote
            both_orders = gr.Checkbox(value=True, label="Judge both orders (A/B and B/A) to check position bias")
            judge_button = gr.Button("Judge", variant="primary")
        with gr.Column():
            verdict = gr.Markdown(VERDICT_PLACEHOLDER, elem_id="judge-verdict")
            table = gr.Dataframe(label="Per dimension (averaged over both orders)", interactive=False,
                                 headers=list(adapt.VERDICT_COLUMNS), elem_id="judge-table")
            judgement_id = gr.Textbox(label="Judgement", interactive=False, max_lines=1, elem_id="judge-judgement")
            choice = gr.Radio(VOTE_CHOICES, label="Your vote")
            record = gr.Button("Record vote")
            vote_status = gr.Markdown(elem_id="judge-vote-status")

    @ui_errors
    def judge(task: str, prompt: str, source_image: str | None, image_a: str | None, image_b: str | None,
              both_orders: bool, request: gr.Request | None = None) -> tuple[Any, ...]:
        """The critic's verdict on image A against image B for one prompt.

        Args:
            task: "t2i" or "edit".
            prompt: the prompt or edit instruction both images answer.
            source_image: the edited image's source (edit task only).
            image_a: first image.
            image_b: second image.
            both_orders: also judge B/A and report position consistency.
        """
        pair = _pair(task, prompt, source_image, image_a, image_b)
        result = judge_pair(pair, services, both_orders=both_orders, visitor=visitors.of(request).writes)
        said = adapt.verdict_markdown(result)  # failures name their cause: no server paths in public mode
        return redact_paths(said) if public else said, adapt.verdict_frame(result), str(result.judgement_id)

    @ui_errors
    def vote(judgement_id: str, vote: str | None, task: str, prompt: str, source_image: str | None,
             image_a: str | None, image_b: str | None, models: tuple[str, str] = ("", ""),
             request: gr.Request | None = None) -> str:
        """Record a person's preference as a pair for the preference dataset.

        Args:
            judgement_id: the judgement voted on (empty: vote on the images given here).
            vote: "A", "B", "tie" or "both_bad".
            task: "t2i" or "edit" (without a judgement).
            prompt: the prompt (without a judgement).
            source_image: the edit's source (without a judgement, edit task).
            image_a: first image (without a judgement).
            image_b: second image (without a judgement).
            models: the models that generated A and B, when they were generated here.
        """
        if not vote:
            raise InvalidInputError("Pick a vote first: A, B, tie or both bad.")
        judged = adapt.judgement_id_from(judgement_id)
        target = judged if judged is not None else _pair(task, prompt, source_image, image_a, image_b)
        earlier = services.store.vote_on(judged) if judged is not None else None
        model_a, model_b = models or ("", "")
        vote_id = record_vote(services.store, target, vote, model_a=model_a or None, model_b=model_b or None,
                              visitor=visitors.of(request).writes)
        return adapt.vote_markdown(services.store.get_vote(vote_id), VOTE_LABELS, earlier)

    @ui_errors
    def generate_pair(task: str, prompt: str, source_image: str | None = None, seed_a: float = 0,
                      seed_b: float = 1, model_b: str | None = None) -> tuple[str, str, tuple[str, str]]:
        """Generate two candidates for one prompt, from two seeds and optionally two models.

        Args:
            task: "t2i" or "edit".
            prompt: the prompt or edit instruction.
            source_image: the image to edit (edit task only).
            seed_a: seed of image A.
            seed_b: seed of image B.
            model_b: a diffusers hub id or folder for B (empty: the configured model, as for A).
        """
        if public and (model_b or "").strip():
            raise InvalidInputError("This shared studio compares seeds of its own model only; leave 'Model for B' empty.")
        seeds = (adapt.seed_value(seed_a, "Seed A"), adapt.seed_value(seed_b, "Seed B"))
        (a, name_a), (b, name_b) = make_pair(services, task, prompt, adapt.source_upload(task, source_image),  # type: ignore[arg-type]
                                             seeds, model_b)
        return str(services.store.image_path(a)), str(services.store.image_path(b)), (name_a, name_b)

    @ui_errors
    def recent(request: gr.Request) -> Any:
        return gr.update(choices=adapt.recent_images(services.store, visitor=visitors.of(request).reads))

    @ui_errors
    def picked(image_id: str | None, request: gr.Request) -> Any:
        if not image_id:
            return gr.skip()
        visitor = visitors.of(request)
        if visitor.id is not None and image_id not in {v for _, v in adapt.recent_images(
                services.store, visitor=visitor.reads)}:
            raise NotFoundError(f"No image with id {image_id!r} among your sessions.")
        return str(services.store.image_path(int(image_id)))

    task.change(source_visibility, task, source, api_visibility="private", queue=False)
    for picker in (pick_a, pick_b):
        picker.focus(recent, None, picker, api_visibility="private")
    pick_a.change(picked, pick_a, image_a, api_visibility="private")
    pick_b.change(picked, pick_b, image_b, api_visibility="private")
    generate_button.click(model_bound(generate_pair), [task, prompt, source, seed_a, seed_b, model_b],
                          [image_a, image_b, models], api_name="generate_pair", concurrency_id="gpu",
                          concurrency_limit=1, validator=admission.validator(generate_pair))
    judge_button.click(model_bound(judge), [task, prompt, source, image_a, image_b, both_orders],
                       [verdict, table, judgement_id], api_name="judge", concurrency_id="gpu", concurrency_limit=1,
                       show_progress_on=[verdict],  # progress and an error's badge on the verdict only
                       validator=admission.validator(judge))
    record.click(vote, [judgement_id, choice, task, prompt, source, image_a, image_b, models], vote_status,
                 api_name="vote", **STORE_ONLY)  # store only: skips the model queue
    for widget in (image_a, image_b):  # an image the person brings was made by no model we know
        widget.upload(lambda: ("", ""), None, models, api_visibility="private", queue=False)
    for widget in (image_a, image_b, prompt, task):  # a new pair: the old verdict and vote no longer apply
        widget.change(lambda: ("", VERDICT_PLACEHOLDER, None, "", None), None,
                      [judgement_id, verdict, table, vote_status, choice], api_visibility="private", queue=False)
    return {"task": task, "prompt": prompt, "source": source, "image_a": image_a, "image_b": image_b,
            "judge": judge_button, "verdict": verdict, "table": table, "judgement_id": judgement_id, "vote": choice,
            "record": record, "vote_status": vote_status, "generate": generate_button, "model_b": model_b}


def _pair(task: str, prompt: str, source: str | None, a: str | None, b: str | None) -> PairRequest:
    return PairRequest(task, prompt, adapt.open_upload(a, "image A"), adapt.open_upload(b, "image B"),  # type: ignore[arg-type]
                       adapt.source_upload(task, source))
