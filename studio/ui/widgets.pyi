"""Widgets shared by the tabs."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from models.types import TASKS

logger = logging.getLogger(__name__)

TASK_LABELS = {"t2i": "Text to image", "edit": "Image editing"}

from gradio.events import Dependency

class ImageUpload(gr.Image):
    """``gr.Image`` whose unreadable uploads become a readable ``gr.Error``.

    Gradio opens an uploaded image before any handler runs; a file that is not an image would
    otherwise surface as a generic error. The browser renders it as a plain image widget.
    """

    is_template = True  # rendered by the frontend's "image" component

    def preprocess(self, payload: Any) -> Any:
        """Gradio's preprocessing, with PIL's errors turned into a message naming the widget."""
        try:
            return super().preprocess(payload)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            logger.info("rejected upload for %r: %s", self.label, e)
            raise gr.Error(
                f"{self.label}: the uploaded file is not an image we can read. Upload a PNG, JPEG or WebP file.",
                print_exception=False,
            ) from e
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


def image_input(label: str, **kwargs: Any) -> ImageUpload:
    """An image upload handing the handler a file path."""
    return ImageUpload(label=label, type="filepath", sources=["upload", "clipboard"], **kwargs)


def task_radio(tasks: tuple[str, ...] = TASKS) -> gr.Radio:
    """The task choice (text to image or editing) among ``tasks``."""
    return gr.Radio([(TASK_LABELS[t], t) for t in tasks], value=tasks[0], label="Task")


def source_visibility(task: str) -> dict[str, Any]:
    """Show the source-image widget only for the edit task."""
    return gr.update(visible=task == "edit")