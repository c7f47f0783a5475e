"""A critic prompt as chat messages, usable by an OpenAI-compatible server and by a
transformers chat template alike."""

from __future__ import annotations

import base64
import io
import secrets
import struct
import threading
import weakref
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Union

import numpy as np
import orjson
from PIL import Image

from models.errors import ConfigError, InvalidInputError
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

    def image_data_uris(self, compression: Compression = "none") -> list[str]:
        """``images`` as PNG data URIs, each encoded once while the image lives (``ENCODINGS``):
        a prompt sent again (a re-asked critique), the same image in another prompt (pairwise A/B
        and B/A, a pointwise critique of a judged image) reuse the encoding."""
        return [ENCODINGS.data_uri(image, compression) for image in self.images]


@dataclass
class CompletionError:
    """A completion that did not arrive (after the backend's own retries). ``reason`` is plain
    language and names the endpoint or model involved."""

    reason: str


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NO_FILTER, _SUB_FILTER = 0, 1

Compression = Literal["none", "fast"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "fast")
"""How the PNGs sent to a critic server are deflated, both lossless: ``"none"`` stores the rows
(about 2 ms for a 1024 px image, a 3.1 MB PNG); ``"fast"`` Sub-filters them and deflates with the
run-length strategy (about 25 ms, a third smaller on photos, far smaller on flat renders).
``bench.critic_http --compression none,fast`` measures both."""


def png_data_uri(image: Image.Image, compression: Compression = "none") -> str:
    """``image`` encoded losslessly as a ``data:image/png;base64,...`` URI (not cached)."""
    if compression not in COMPRESSIONS:
        raise ConfigError(f"The PNG compression must be one of {list(COMPRESSIONS)}; got {compression!r}.")
    plain_rgb = image.mode == "RGB" and not image.info.keys() & {"icc_profile", "transparency"}
    png = _rgb_png(image, compression) if plain_rgb else _pillow_png(image, compression)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pillow_png(image: Image.Image, compression: Compression) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0 if compression == "none" else 1)
    return buffer.getvalue()


def _rgb_png(image: Image.Image, compression: Compression) -> bytes:
    """A PNG of an 8-bit RGB image, built with numpy and zlib (both release the GIL, so images
    encode in parallel threads).

    Pillow's encoder tries every row filter on every row and then runs a full deflate: about
    110 ms for a 1024 px photo (0.14 s at Pillow's level 1). ``"none"`` writes the rows unfiltered
    in stored deflate blocks; ``"fast"`` applies the Sub filter (each byte minus the byte one pixel
    to its left), which turns smooth regions into small numbers, and deflates them with
    ``Z_RLE``: Huffman codes and runs, no match search.
    """
    width, height = image.size
    pixels = np.asarray(image, dtype=np.uint8).reshape(height, 3 * width)
    rows = np.empty((height, 3 * width + 1), dtype=np.uint8)
    if compression == "none":
        rows[:, 0] = _NO_FILTER
        rows[:, 1:] = pixels
        data = zlib.compress(rows.data, 0)
    else:
        rows[:, 0] = _SUB_FILTER
        rows[:, 1:4] = pixels[:, :3]
        np.subtract(pixels[:, 3:], pixels[:, :-3], out=rows[:, 4:])  # uint8 arithmetic wraps, as PNG wants
        deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        data = deflate.compress(rows.data) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    chunks = ((b"IHDR", header), (b"IDAT", data), (b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(chunk)) + kind + chunk + struct.pack(">I", zlib.crc32(kind + chunk))
        for kind, chunk in chunks
    )


class EncodingCache:
    """PNG data URIs of the images still alive, each encoded once.

    Keyed by the image object (not its pixels: hashing them would cost a good part of encoding
    them), so an image must not be drawn on after it was sent. Concurrent requests for one image
    wait for the one encoding under way. An entry goes when its image is garbage-collected, and
    the oldest go when the URIs held exceed ``max_chars``.
    """

    def __init__(self, max_chars: int = 512 * 2**20) -> None:
        self.max_chars = max_chars
        # re-entrant: a garbage collection inside a locked block may drop an image, whose weakref
        # callback (``_forget``) then takes the lock again in the same thread
        self._lock = threading.RLock()
        self._slots: dict[tuple[int, str], tuple[weakref.ref[Image.Image], Future[str]]] = {}
        self._chars = 0

    def data_uri(self, image: Image.Image, compression: Compression = "none") -> str:
        """``png_data_uri(image, compression)``, from the cache when this image was encoded so before."""
        key = (id(image), compression)
        with self._lock:
            slot = self._slots.get(key)
            owner = slot is None or slot[0]() is not image
            if owner:
                if slot is not None:  # a dead image's entry whose id was reused before its callback ran
                    self._chars -= _size(slot[1])
                ref = weakref.ref(image, lambda dead, key=key: self._forget(key, dead))
                slot = self._slots[key] = (ref, Future())
        future = slot[1]  # type: ignore[index]
        if owner:
            try:
                uri = png_data_uri(image, compression)
            except BaseException as e:
                future.set_exception(e)
                self._forget(key, slot[0])  # type: ignore[index]
                raise
            future.set_result(uri)
            self._count(key, future)
        return future.result()

    def __len__(self) -> int:
        return len(self._slots)

    def _forget(self, key: tuple[int, str], ref: weakref.ref[Image.Image]) -> None:
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot[0] is ref:
                del self._slots[key]
                self._chars -= _size(slot[1])

    def _count(self, key: tuple[int, str], future: Future[str]) -> None:
        """Count a finished encoding (unless it was dropped meanwhile), then drop the oldest over
        ``max_chars``."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot[1] is future:
                self._chars += _size(future)
            for oldest in list(self._slots):
                if self._chars <= self.max_chars or len(self._slots) <= 1:
                    break
                dropped = self._slots.pop(oldest, None)
                if dropped is not None:
                    self._chars -= _size(dropped[1])


def _size(future: Future[str]) -> int:
    """The length of a finished encoding; 0 while it is under way or when it failed."""
    return len(future.result()) if future.done() and future.exception() is None else 0


ENCODINGS = EncodingCache()
"""The process's cache of image encodings, shared by every critic client."""


def to_openai_messages(prompt: ChatPrompt, compression: Compression = "none") -> list[dict[str, Any]]:
    """``prompt.messages`` for an OpenAI-compatible server: each ``{"type": "image"}`` placeholder
    becomes an ``image_url`` part holding the matching image of ``prompt.images`` as a PNG data URI
    (each image encoded once while it lives, see ``ChatPrompt.image_data_uris``).

    Raises ``InvalidInputError`` when the number of placeholders and of images differ.
    """
    _check_placeholders(prompt)
    return _with_image_urls(prompt, prompt.image_data_uris(compression))


def openai_request_body(prompt: ChatPrompt, fields: dict[str, Any], compression: Compression = "none") -> bytes:
    """The JSON body of a chat request: ``fields`` (model, temperature, ...) and the messages of
    ``to_openai_messages``, the same JSON.

    The data URIs are spliced into the serialised body instead of passing through the JSON
    writer, which would scan and copy each multi-megabyte string once more while holding the GIL
    (about 3 ms for a 1024 px image, a fifth of the client's work per request). The marks they
    replace carry a random nonce, so no text of the prompt can be mistaken for one.
    Raises ``InvalidInputError`` as ``to_openai_messages`` does.
    """
    _check_placeholders(prompt)
    nonce = secrets.token_hex(8)
    marks = [f"studio-image-{nonce}-{i}" for i in range(len(prompt.images))]
    parts = [orjson.dumps({**fields, "messages": _with_image_urls(prompt, marks)})]
    for mark, uri in zip(marks, prompt.image_data_uris(compression)):
        head, tail = parts.pop().split(mark.encode("ascii"), 1)
        parts += [head, uri.encode("ascii"), tail]  # base64 and the data: prefix need no JSON escaping
    return b"".join(parts)


def _check_placeholders(prompt: ChatPrompt) -> None:
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


def _with_image_urls(prompt: ChatPrompt, urls: Iterable[str]) -> list[dict[str, Any]]:
    """``prompt.messages`` with each image placeholder replaced by an ``image_url`` part of ``urls``, in order."""
    images = iter(urls)
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
