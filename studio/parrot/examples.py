"""Student examples in exactly the studio's critic protocol, and the sharegpt form they travel in.

The prompt of every example is built by ``models.critic.prompts`` (the same functions the critic
backends call), so the student is trained on exactly what it sees at inference. The answer is the
kept rationale written in the protocol layout: pointwise (one image, with the refinement section)
and pairwise (Score A, Score B and Winner per dimension, then the overall winner).

Sharegpt (LLaMA-Factory): ``{"messages": [{"role": "system", ...}, {"role": "user", "content":
"...<image>..."}, {"role": "assistant", ...}], "images": [paths]}``: each image part of the
user message becomes one ``<image>`` token, in order. ``sharegpt_to_messages`` turns a record
back into the chat messages the transformers critic renders, exactly.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image

from models.critic.answer import format_score, pointwise_answer_text
from models.critic.chat import ChatPrompt
from models.critic.prompts import build_pairwise_prompt, build_pointwise_prompt
from models.critic.scoring import ScoringPolicy
from models.errors import InvalidInputError
from models.types import Critique, CritiqueRequest, PairRequest, Winner, task_dimensions

IMAGE_TOKEN = "<image>"

Format = Literal["pointwise", "pairwise"]


def pointwise_answer(critique: Critique) -> str:
    """``critique`` in the pointwise protocol layout (analysis, judgement, summary, refinement)."""
    return pointwise_answer_text(
        critique.task, analysis=critique.analysis or "", justifications=critique.justifications,
        scores=critique.scores, summary=critique.summary or "",
        refinement_comments=critique.refinement_comments or "", refined_request=critique.refined_request or "",
    )


def pairwise_answer(a: Critique, b: Critique, policy: ScoringPolicy) -> str:
    """The two critiques as one pairwise judgement: per dimension both justifications, Score A,
    Score B and the winner by score; the overall winner is ``policy.prefer(a, b)``."""
    lines = ["# User Request Analysis", a.analysis or b.analysis or "", "# Detailed Judgement"]
    for number, dim in enumerate(task_dimensions(a.task), start=1):
        score_a, score_b = a.scores.get(dim.key), b.scores.get(dim.key)
        lines += [
            f"{number}. {dim.heading}:",
            f"## Justification: Image A: {a.justifications.get(dim.key) or ''} "
            f"Image B: {b.justifications.get(dim.key) or ''}",
            f"## Score A: {format_score(score_a)}",
            f"## Score B: {format_score(score_b)}",
            f"## Winner: {_dimension_winner(score_a, score_b)}",
        ]
    overall = policy.prefer(a, b)
    verdict = "The two images are equally good." if overall == "tie" else f"Image {overall} is better."
    lines += [
        f"# Summary: {verdict} Image A: {a.summary or ''} Image B: {b.summary or ''}",
        f"# Overall Winner: {_winner_word(overall)}",
    ]
    return "\n".join(lines)


def _dimension_winner(score_a: float | None, score_b: float | None) -> str:
    if score_a is None or score_b is None or score_a == score_b:
        return "Tie"
    return "A" if score_a > score_b else "B"


def _winner_word(winner: Winner) -> str:
    return "Tie" if winner == "tie" else winner


def pointwise_prompt(task: str, prompt: str, image: Image.Image, source: Image.Image | None) -> ChatPrompt:
    """The critic's pointwise prompt for one image (``build_pointwise_prompt``)."""
    return build_pointwise_prompt(CritiqueRequest(task, prompt, image, source))  # type: ignore[arg-type]


def pairwise_prompt(task: str, prompt: str, a: Image.Image, b: Image.Image, source: Image.Image | None) -> ChatPrompt:
    """The critic's pairwise prompt (``build_pairwise_prompt``)."""
    return build_pairwise_prompt(PairRequest(task, prompt, a, b, source))  # type: ignore[arg-type]


def to_sharegpt(prompt: ChatPrompt, answer: str, image_paths: list[str]) -> dict[str, Any]:
    """One sharegpt record: the prompt's messages as text with one ``<image>`` per image part,
    the answer as the assistant turn, and ``image_paths`` (one per image of the prompt, in order)."""
    if len(image_paths) != len(prompt.images):
        raise InvalidInputError(
            f"The prompt has {len(prompt.images)} image(s) but {len(image_paths)} path(s) were given.")
    messages = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            texts = [part.get("text", "") for part in content if part.get("type") == "text"]
            if any(IMAGE_TOKEN in text for text in texts):
                raise InvalidInputError(f"A prompt text contains {IMAGE_TOKEN!r}, which sharegpt reserves for images.")
            content = "".join(IMAGE_TOKEN if part.get("type") == "image" else part.get("text", "") for part in content)
        messages.append({"role": message["role"], "content": content})
    messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, "images": list(image_paths)}


def sharegpt_to_messages(record: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(the chat messages before the answer, with image parts, as the critic backends send them;
    the assistant's answer). Raises ``InvalidInputError`` when the record is not one example
    ending in an assistant turn or its ``<image>`` tokens and images differ in number."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        raise InvalidInputError("A sharegpt example needs 'messages' ending with the assistant's answer.")
    tokens = sum(str(m.get("content", "")).count(IMAGE_TOKEN) for m in messages)
    images = len(record.get("images") or [])
    if tokens != images:
        raise InvalidInputError(f"The example has {tokens} {IMAGE_TOKEN} token(s) but {images} image(s).")
    chat = []
    for message in messages[:-1]:
        pieces = str(message["content"]).split(IMAGE_TOKEN)
        parts: list[dict[str, Any]] = []
        for n, piece in enumerate(pieces):
            if n:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        chat.append({"role": message["role"], "content": parts})
    return chat, str(messages[-1]["content"])
