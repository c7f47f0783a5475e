"""A critic prompt as chat messages, usable by an OpenAI-compatible server and by a
transformers chat template alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from PIL import Image

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
