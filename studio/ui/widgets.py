"""Widgets shared by the tabs."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from models.types import TASKS
from studio.ui.image_upload import ImageUpload

logger = logging.getLogger(__name__)

TASK_LABELS = {"t2i": "Text to image", "edit": "Image editing"}


def image_input(label: str, **kwargs: Any) -> ImageUpload:
    """An image upload handing the handler a file path."""
    return ImageUpload(label=label, type="filepath", sources=["upload", "clipboard"], **kwargs)


#: Round labels in order (the plot's x axis is categorical: one tick per round, never "1, 2, 2").
ROUND_ORDER = [str(i) for i in range(1, 101)]


def score_plot(elem_id: str) -> gr.LinePlot:
    """Per-dimension scores (1-4) of each round's best image."""
    return gr.LinePlot(x="round", y="score", color="dimension", y_lim=[1, 4], sort=ROUND_ORDER,
                       label="Scores per round", height=300, elem_id=elem_id, elem_classes="rr-plot")


def task_radio(tasks: tuple[str, ...] = TASKS) -> gr.Radio:
    """The task choice (text to image or editing) among ``tasks``."""
    return gr.Radio([(TASK_LABELS[t], t) for t in tasks], value=tasks[0], label="Task")


def source_visibility(task: str) -> dict[str, Any]:
    """Show the source-image widget only for the edit task."""
    return gr.update(visible=task == "edit")
