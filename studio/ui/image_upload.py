"""An image upload widget that rejects unreadable files with a readable message.

Gradio writes a ``.pyi`` stub beside any module that defines a component class;
``image_upload.pyi`` is that stub, kept in the repository so that it is not rewritten.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)


class UnreadableUpload(str):
    """What ``ImageUpload`` hands a handler in place of the path of a file it could not open: the
    message saying why, which the handler raises (``adapt.open_upload``). It is not raised while
    preprocessing because a Gradio validator preprocesses the same inputs when the request is
    submitted, and an error there reaches the caller as a bare "400 Bad Request"."""


class ImageUpload(gr.Image):
    """``gr.Image`` whose unreadable uploads become a readable message.

    Gradio opens an uploaded image before any handler runs; a file that is not an image would
    otherwise surface as a generic error. The browser renders it as a plain image widget.
    """

    is_template = True  # rendered by the frontend's "image" component

    def preprocess(self, payload: Any) -> Any:
        """Gradio's preprocessing, with PIL's errors turned into an ``UnreadableUpload`` naming the widget."""
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError as e:
            logger.info("rejected upload for %r: %s", self.label, e)
            return UnreadableUpload(
                f"{self.label}: the uploaded image is too large to open safely (over "
                f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels). Downscale it before uploading.")
        except (UnidentifiedImageError, OSError) as e:
            logger.info("rejected upload for %r: %s", self.label, e)
            return UnreadableUpload(
                f"{self.label}: the uploaded file is not an image we can read. Upload a PNG, JPEG or WebP file.")
