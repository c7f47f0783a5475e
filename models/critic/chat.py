"""A critic prompt as chat messages, usable by an OpenAI-compatible server and by a
transformers chat template alike."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from PIL import Image

from models.errors import InvalidInputError
from models.types import CritiqueRequest, PairRequest


@dataclass
class ChatPrompt:
    """Messages for one critic call.

    ``messages`` follow the OpenAI/transformers shape: ``{"role": ..., "content": [parts]}`` where a
    part is ``{"type": "text", "text": ...}`` or ``{"type": "image"}``. The image placeholders
    stand, in order, for ``images``. ``request`` is what the prompt was built from, so that a
    backend which needs the structured request (the shapes-world reference critic) has it.
    """

    kind: Literal["pointwise", "pairwise"]
    messages: list[dict[str, Any]]
    images: list[Image.Image]
    request: Union[CritiqueRequest, PairRequest]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompletionError:
    """A completion that did not arrive (after the backend's own retries). ``reason`` is plain
    language and names the endpoint or model involved."""

    reason: str


def png_data_uri(image: Image.Image) -> str:
    """``image`` encoded losslessly as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(prompt: ChatPrompt) -> list[dict[str, Any]]:
    """``prompt.messages`` for an OpenAI-compatible server: each ``{"type": "image"}`` placeholder
    becomes an ``image_url`` part holding the matching image of ``prompt.images`` as a PNG data URI.

    Raises ``InvalidInputError`` when the number of placeholders and of images differ.
    """
    placeholders = sum(
        1
        for message in prompt.messages
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "image"
    )
    if placeholders != len(prompt.images):
        raise InvalidInputError(
            f"The critic prompt names {placeholders} image(s) but carries {len(prompt.images)}; "
            "each image placeholder needs exactly one image."
        )
    images = iter(prompt.images)
    messages: list[dict[str, Any]] = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": png_data_uri(next(images))}}
                if part.get("type") == "image"
                else part
                for part in content
            ]
        messages.append({**message, "content": content})
    return messages
