"""Critic prompts of the RationalRewards protocol, pointwise and pairwise, for t2i and edit.

The text comes from templates (``models.critic.templates``): the shipped ones follow the structure
the released checkpoints were trained on (for pointwise calls a system message, then
``User Instruction: ...``, the numbered images where the text names them, a rubric that says what
each level 1-4 of each dimension means, the scoring method, the refinement request and the output
layout; pairwise calls have no system message and end each dimension with ``## Winner:``), in our
own words. The parser in ``models.critic.parser`` reads that layout and the usual deviations.
"""

from __future__ import annotations

from PIL import Image

from models.critic.chat import ChatPrompt
from models.critic.templates import Kind, PromptTemplates, load_templates
from models.types import CritiqueRequest, PairRequest


def _source(request: CritiqueRequest | PairRequest) -> dict[str, Image.Image]:
    """``{"source_image": ...}`` for an edit, ``{}`` for t2i (the request checked its task and
    that an edit has its source image when it was built)."""
    return {"source_image": request.source_image} if request.task == "edit" else {}  # type: ignore[dict-item]


def _chat(
    kind: Kind, request: CritiqueRequest | PairRequest, images: dict[str, Image.Image], templates: PromptTemplates | None
) -> ChatPrompt:
    template = (templates or load_templates()).get(kind, request.task)
    messages, ordered = template.render(request.prompt, images)
    return ChatPrompt(kind=kind, messages=messages, images=ordered, request=request)


def build_pointwise_prompt(request: CritiqueRequest, templates: PromptTemplates | None = None) -> ChatPrompt:
    """The critic prompt for one image: analysis, per-dimension judgement, summary, refinement.

    ``templates`` default to the shipped ones. Images come in the order the text names them: for
    ``edit`` the source first, then the edited image. Other input checks (empty prompt, image
    size) belong to ``ProtocolCritic``.
    """
    images = {**_source(request), "image": request.image}
    return _chat("pointwise", request, images, templates)


def build_pairwise_prompt(request: PairRequest, templates: PromptTemplates | None = None) -> ChatPrompt:
    """The critic prompt comparing Image A and Image B per dimension (Score A, Score B, Winner).

    Images come in the order the text names them: ``[source,] A, B``.
    """
    images = {**_source(request), "image_a": request.image_a, "image_b": request.image_b}
    return _chat("pairwise", request, images, templates)
