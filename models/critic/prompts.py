"""Critic prompts of the RationalRewards protocol, pointwise and pairwise, for t2i and edit.

The structure (a system message, then ``User Instruction: ...``, the images where the text names
them, the rubric with its level labels, the scoring method, the refinement request and the output
layout) and every marker of the layout follow the protocol the released checkpoints were trained
on; the prose is ours. The parser in ``models.critic.parser`` reads exactly this layout (and the
usual deviations from it).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

from PIL import Image

from models.critic.chat import ChatPrompt
from models.types import CritiqueRequest, Dimension, PairRequest, task_dimensions

logger = logging.getLogger(__name__)

_SUBJECT = {"t2i": "generated images", "edit": "edited images"}

_POINTWISE_SYSTEM = (
    "You are an expert evaluator of {subject}. You read a user's request, look closely at the "
    "image(s), judge each quality dimension on a 1-4 scale with a short written justification, "
    "and then suggest how the request itself could be refined so that the next attempt fixes the "
    "weaknesses you found."
)

_PAIRWISE_SYSTEM = (
    "You are an expert evaluator of {subject}. You compare two candidate images, Image A and "
    "Image B, made for the same user request. For each quality dimension you justify your view, "
    "score both candidates on a 1-4 scale and name the better one, or a tie."
)

_SCORING_METHOD = (
    "Scoring method: for each dimension, first decide which integer level (1, 2, 3 or 4) the "
    "image reaches according to the rubric. Then justify that choice by pointing at concrete "
    "evidence in the image, and adjust the score by a fraction (for example 2.5 or 3.75) when the "
    "image sits between two levels. Write only the final number after the score marker."
)

_NA_RULE = "Write N/A as the Text Rendering score only when the request asks for no text in the image."

_PAIRWISE_METHOD = (
    " Score Image A and Image B independently, then name the winner of the dimension; write Tie "
    "when they are equally good."
)

_LAYOUT_INTRO = "Answer in exactly this layout, keeping every heading and marker:\n"

_REFINEMENT_REQUEST = (
    "After judging, write a refined version of the user's request: keep everything the user "
    "asked for, and reword or add detail so that a new attempt avoids the weaknesses you found. "
    "Explain the changes first in the refinement comments."
)


def _user_content(
    task: str, instruction: str, judged: list[tuple[str, Image.Image]], source: Image.Image | None, body: str
) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """User-message parts and their images: the instruction, then each image placeholder right
    after the text naming it ([source,] judged...), then the body text."""
    named = list(judged)
    if task == "edit":  # the request checked that an edit has its source image
        named.insert(0, ("Source image (before the edit)", source))  # type: ignore[arg-type]
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"User Instruction: {instruction}\n"}]
    for label, _ in named:
        parts += [{"type": "text", "text": f"\n{label}:"}, {"type": "image"}]
    parts.append({"type": "text", "text": "\n\n" + body})
    return parts, [image for _, image in named]


@functools.cache  # the same few texts for every request of a task
def _rubric(dimensions: tuple[Dimension, ...]) -> str:
    lines = ["Rubric (level 4 is best, level 1 is worst):"]
    for number, dim in enumerate(dimensions, start=1):
        levels = ", ".join(f"{level} = {label}" for level, label in zip((4, 3, 2, 1), dim.levels))
        lines.append(f"{number}. {dim.heading}: {levels}.")
    lines.append(_NA_RULE)
    return "\n".join(lines)


@functools.cache  # the same few texts for every request of a task
def _dimension_help(task: str) -> str:
    lines = [
        "What each dimension covers:",
        "- Text Faithfulness: does the image show everything the request asks for, and nothing it rules out?",
    ]
    if task == "edit":
        lines.append(
            "- Image Faithfulness: does the edited image keep what the request did not ask to change "
            "in the source image (identity, layout, style, background)?"
        )
    lines += [
        "- Physical and Visual Quality: anatomy, physics, lighting, perspective, artefacts and overall finish.",
        "- Text Rendering: is the text the request asks for legible, spelled right and placed as asked?",
    ]
    return "\n".join(lines)


@functools.cache  # the same few texts for every request of a task
def _pointwise_layout(dimensions: tuple[Dimension, ...]) -> str:
    lines = ["# User Request Analysis", "<what the request asks for>", "# Detailed Judgement"]
    for number, dim in enumerate(dimensions, start=1):
        score = "<1-4 or N/A>" if dim.allows_na else "<1-4>"
        lines += [f"{number}. {dim.heading}:", "## Justification: <evidence>", f"## Score: {score}"]
    lines += [
        "# Summary: <overall assessment>",
        "# User Request Refinement:",
        "## Refinement Comments: <what to change and why>",
        "## Refined Request: <the refined request>",
    ]
    return "\n".join(lines)


@functools.cache  # the same few texts for every request of a task
def _pairwise_layout(dimensions: tuple[Dimension, ...]) -> str:
    lines = ["# User Request Analysis", "<what the request asks for>", "# Detailed Judgement"]
    for number, dim in enumerate(dimensions, start=1):
        score = "<1-4 or N/A>" if dim.allows_na else "<1-4>"
        lines += [
            f"{number}. {dim.heading}:",
            "## Justification: <compare the two candidates>",
            f"## Score A: {score}",
            f"## Score B: {score}",
            "## Winner: <A, B or Tie>",
        ]
    lines += ["# Summary: <overall comparison>", "# Overall Winner: <A, B or Tie>"]
    return "\n".join(lines)


def _chat(
    kind: Literal["pointwise", "pairwise"],
    system: str,
    request: CritiqueRequest | PairRequest,
    judged: list[tuple[str, Image.Image]],
    body: list[str],
) -> ChatPrompt:
    """The system message and the user message of one critic call, with their images."""
    parts, images = _user_content(request.task, request.prompt, judged, request.source_image, "\n\n".join(body))
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system.format(subject=_SUBJECT[request.task])}]},
        {"role": "user", "content": parts},
    ]
    return ChatPrompt(kind=kind, messages=messages, images=images, request=request)


def build_pointwise_prompt(request: CritiqueRequest) -> ChatPrompt:
    """The critic prompt for one image: analysis, per-dimension judgement, summary, refinement.

    Images come in the order the text names them: for ``edit`` the source first, then the edited
    image. The request itself checked its task and an edit's source image; other input checks
    (empty prompt, image size) belong to ``ProtocolCritic``.
    """
    dimensions = task_dimensions(request.task)
    label = "Edited image" if request.task == "edit" else "Generated image"
    body = [
        _rubric(dimensions),
        _dimension_help(request.task),
        _SCORING_METHOD,
        _REFINEMENT_REQUEST,
        _LAYOUT_INTRO + _pointwise_layout(dimensions),
    ]
    return _chat("pointwise", _POINTWISE_SYSTEM, request, [(label, request.image)], body)


def build_pairwise_prompt(request: PairRequest) -> ChatPrompt:
    """The critic prompt comparing Image A and Image B per dimension (Score A, Score B, Winner).

    Images come in the order the text names them: ``[source,] A, B``. Raises like
    ``build_pointwise_prompt``.
    """
    dimensions = task_dimensions(request.task)
    body = [
        _rubric(dimensions),
        _dimension_help(request.task),
        _SCORING_METHOD + _PAIRWISE_METHOD,
        _LAYOUT_INTRO + _pairwise_layout(dimensions),
    ]
    judged = [("Image A", request.image_a), ("Image B", request.image_b)]
    return _chat("pairwise", _PAIRWISE_SYSTEM, request, judged, body)
