"""Checks on user images and prompts, with plain-language errors.

Every image a backend sees passes ``prepare_image``: it is decoded fully (truncated files fail
here, not deep inside a model), refused when it is a decompression bomb, converted to RGB
(alpha composited on white, palette/greyscale/CMYK/16-bit converted), and downscaled when it is
over the working pixel limit.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.errors import InvalidInputError

logger = logging.getLogger(__name__)

ImageInput = Union[Image.Image, str, Path, bytes]


@dataclass(frozen=True)
class ImageLimits:
    """Limits on inputs. ``max_pixels``: larger images are downscaled to fit; ``refuse_pixels``:
    larger images are refused outright (decompression-bomb guard); prompts over
    ``max_prompt_chars`` are refused."""

    max_pixels: int = 1024 * 1024
    refuse_pixels: int = 40_000_000
    max_prompt_chars: int = 4000


def check_prompt(prompt: str, limits: ImageLimits = ImageLimits(), *, where: str = "prompt") -> str:
    """Return the stripped prompt; raise ``InvalidInputError`` if it is empty or over-long."""
    if not isinstance(prompt, str):
        raise InvalidInputError(f"{where}: the prompt must be text, got {type(prompt).__name__}.")
    text = prompt.strip()
    if not text:
        raise InvalidInputError(f"{where}: the prompt is empty. Type what the image should show.")
    if len(text) > limits.max_prompt_chars:
        raise InvalidInputError(
            f"{where}: the prompt has {len(text)} characters; the limit is {limits.max_prompt_chars}. "
            "Shorten it."
        )
    return text


def _open(image: ImageInput, what: str, limits: ImageLimits) -> Image.Image:
    """Open ``image`` and decode it fully, refusing huge ones before decoding."""
    if isinstance(image, Image.Image):
        opened = image
    else:
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise InvalidInputError(f"{what}: no file at {path}.")
            source: object = path
        elif isinstance(image, (bytes, bytearray)):
            source = io.BytesIO(image)
        else:
            raise InvalidInputError(
                f"{what}: expected an image, a file path or bytes, got {type(image).__name__}."
            )
        try:
            opened = Image.open(source)  # type: ignore[arg-type]  # reads the header only
        except UnidentifiedImageError as e:
            raise InvalidInputError(
                f"{what}: the file is not an image format we can read (PNG, JPEG, WebP, ...)."
            ) from e
        except Image.DecompressionBombError as e:
            raise InvalidInputError(f"{what}: the image is far too large to open safely ({e}).") from e
        except (OSError, SyntaxError, ValueError) as e:  # a header cut short
            raise InvalidInputError(f"{what}: the image file is corrupt or truncated ({e}).") from e
    _refuse_if_huge(opened, what, limits)
    try:
        opened.load()  # also decodes a lazily opened PIL image handed in by the caller
    except (OSError, SyntaxError, ValueError) as e:
        raise InvalidInputError(f"{what}: the image file is corrupt or truncated ({e}).") from e
    return opened


def _refuse_if_huge(image: Image.Image, what: str, limits: ImageLimits) -> None:
    w, h = image.size
    if w <= 0 or h <= 0:
        raise InvalidInputError(f"{what}: the image has no pixels ({w}x{h}).")
    if w * h > limits.refuse_pixels:
        raise InvalidInputError(
            f"{what}: the image is {w}x{h} ({w * h / 1e6:.1f} megapixels); the limit is "
            f"{limits.refuse_pixels / 1e6:.0f} megapixels. Downscale it before uploading."
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha is composited on white, 16-bit greyscale is mapped from
    its 0-65535 range (32-bit integers too when they exceed 255), float greyscale from 0-1 when it
    fits there (else clipped to 0-255), CMYK/palette/greyscale go through PIL's conversion."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and peak > 255):
            arr = arr * (255.0 / 65535.0)
        elif mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        grey = np.clip(arr, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def prepare_image(image: ImageInput, limits: ImageLimits = ImageLimits(), *, what: str = "image") -> Image.Image:
    """Decode, check, convert to RGB and downscale ``image``; raise ``InvalidInputError`` with a
    plain-language reason when it cannot be used."""
    rgb = to_rgb(_open(image, what, limits))
    w, h = rgb.size
    if w * h > limits.max_pixels:
        scale = (limits.max_pixels / (w * h)) ** 0.5
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        logger.info("%s: downscaling %dx%d to %dx%d", what, w, h, *size)
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb
