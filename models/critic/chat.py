"""A critic prompt as chat messages, usable by an OpenAI-compatible server and by a
transformers chat template alike."""

from __future__ import annotations

import base64
import io
import struct
import zlib
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
    _data_uris: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def image_data_uris(self) -> list[str]:
        """``images`` as PNG data URIs (``png_data_uri``), encoded on the first call and kept, so
        a prompt that is sent again (a re-asked critique) is not encoded again."""
        if self._data_uris is None:
            self._data_uris = [png_data_uri(image) for image in self.images]
        return self._data_uris


@dataclass
class CompletionError:
    """A completion that did not arrive (after the backend's own retries). ``reason`` is plain
    language and names the endpoint or model involved."""

    reason: str


PNG_COMPRESS_LEVEL = 1
"""zlib level of the PNGs sent to the server: lossless at any level, and level 1 takes a fraction of
the default level's CPU for a somewhat larger upload (nothing next to a model's latency)."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_uri(image: Image.Image) -> str:
    """``image`` encoded losslessly as a ``data:image/png;base64,...`` URI."""
    plain_rgb = image.mode == "RGB" and not image.info.keys() & {"icc_profile", "transparency"}
    png = _rgb_png(image) if plain_rgb else _pillow_png(image)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pillow_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _rgb_png(image: Image.Image) -> bytes:
    """A minimal PNG of an 8-bit RGB image: unfiltered rows in one zlib stream.

    Pillow's encoder tries every row filter on every row, which costs more than the compression
    itself and was the largest client CPU cost per critic request after HTTP; the critic images
    (``prepare_image`` makes them RGB) need no smaller upload than unfiltered level-1 zlib gives.
    """
    width, height = image.size
    pixels = memoryview(image.tobytes())
    stride = 3 * width
    rows = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    chunks = ((b"IHDR", header), (b"IDAT", zlib.compress(rows, PNG_COMPRESS_LEVEL)), (b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks
    )


def to_openai_messages(prompt: ChatPrompt) -> list[dict[str, Any]]:
    """``prompt.messages`` for an OpenAI-compatible server: each ``{"type": "image"}`` placeholder
    becomes an ``image_url`` part holding the matching image of ``prompt.images`` as a PNG data URI
    (encoded once per prompt, see ``ChatPrompt.image_data_uris``).

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
    images = iter(prompt.image_data_uris())
    messages: list[dict[str, Any]] = []
    for message in prompt.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": next(images)}}
                if part.get("type") == "image"
                else part
                for part in content
            ]
        messages.append({**message, "content": content})
    return messages
