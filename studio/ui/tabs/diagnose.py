"""The Diagnose tab: the full critique of one image, or a batch table with CSV export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from models.errors import InvalidInputError
from models.types import CritiqueRequest, task_dimensions
from studio import diagnose as diagnosis
from studio.services import Services
from studio.ui import adapt
from studio.ui.errors import ui_errors
from studio.ui.limits import Admission
from studio.ui.preload import model_bound
from studio.ui.redact import redact_paths
from studio.ui.scratch import scratch_folder
from studio.ui.widgets import image_input, source_visibility, task_radio

logger = logging.getLogger(__name__)


def create_diagnose_tab(services: Services, *, public: bool = False, admission: Admission | None = None,
                        ) -> dict[str, gr.components.Component]:
    """Build the Diagnose tab's widgets and listeners; return its components by name.

    In ``public`` mode the batch cannot read a folder on the server, only uploaded files, and
    ``admission`` refuses a visitor's model requests over their limit when they are submitted.
    """
    admission = admission or Admission()
    with gr.Row():
        with gr.Column():
            task = task_radio()
            prompt = gr.Textbox(label="Prompt", lines=2)
            source = image_input("Source image", visible=False)
            image = image_input("Image to diagnose", elem_id="diagnose-image")
            run = gr.Button("Diagnose", variant="primary")
        with gr.Column():
            chart = gr.BarPlot(x="dimension", y="score", y_lim=[1, 4], label="Scores", height=220,
                               sort=[d.heading for d in task_dimensions("edit")])
            report = gr.Markdown("Upload an image and its prompt, then press **Diagnose**.", elem_id="diagnose-report")
            refined = gr.Textbox(label="Refined request", interactive=False, lines=2)
            with gr.Accordion("Critic's raw output", open=False):
                raw = gr.Textbox(show_label=False, interactive=False, lines=8)
    with gr.Accordion("Batch", open=False):
        with gr.Row():
            files = gr.File(label="Images" if public else "Images (or one .csv/.jsonl of prompt,image rows)",
                            file_count="multiple")
            folder = gr.Textbox(label="…or a folder on the server", visible=not public)
        batch_prompt = gr.Textbox(label="Prompt for every image (not needed with a .csv/.jsonl)")
        batch = gr.Button("Diagnose batch")
        table = gr.Dataframe(label="Results (click a header to sort)", interactive=False,
                             headers=list(adapt.BATCH_COLUMNS), elem_id="diagnose-table")
        csv_file = gr.File(label="CSV export", interactive=False)

    @ui_errors
    def diagnose(task: str, prompt: str, source_image: str | None, image: str | None) -> tuple[Any, ...]:
        """The critic's full critique of one image: scores, justifications, summary, refined request.

        Args:
            task: "t2i" or "edit".
            prompt: the prompt or edit instruction the image answers.
            source_image: the edit's source image (edit task only).
            image: the image to diagnose.
        """
        request = CritiqueRequest(task, prompt, adapt.open_upload(image, "image"),  # type: ignore[arg-type]
                                  adapt.source_upload(task, source_image))
        result = diagnosis.diagnose(request, services)
        frame = adapt.critique_frame(result.critique) if result.ok else None
        report = adapt.critique_markdown(result.critique)
        shown = redact_paths(report) if public else report
        return frame, shown, result.refined_request or "", result.critique.raw or ""

    @ui_errors
    def diagnose_batch(task: str, files: list[str] | None, folder: str, prompt: str,
                       progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:
        """Diagnose many images: a table (one row per image) and its CSV.

        Args:
            task: "t2i" or "edit".
            files: image files, or one .csv/.jsonl of prompt,image rows (not in public mode).
            folder: a folder of images on the server (not in public mode).
            prompt: the prompt of every image (not needed with a .csv/.jsonl).
        """
        items = diagnosis.load_batch(_batch_source(files, folder, public=public), prompt=prompt or None, task=task)  # type: ignore[arg-type]
        progress(0, desc=f"Diagnosing {len(items)} image(s)…")
        rows = list(diagnosis.diagnose_many(items, services, on_progress=lambda done, total: progress(done / total)))
        target = scratch_folder("diagnose-") / "diagnosis.csv"
        return adapt.batch_frame(rows), str(diagnosis.write_csv(rows, target))

    task.change(source_visibility, task, source, api_visibility="private", queue=False)
    # progress and an error's badge show on one output (the report, the table), not on each
    run.click(model_bound(diagnose), [task, prompt, source, image], [chart, report, refined, raw],
              api_name="diagnose", concurrency_id="gpu", concurrency_limit=1, show_progress_on=[report],
              validator=admission.validator(diagnose))
    batch.click(model_bound(diagnose_batch), [task, files, folder, batch_prompt], [table, csv_file],
                api_name="diagnose_batch", concurrency_id="gpu", concurrency_limit=1, show_progress_on=[table],
                validator=admission.validator(diagnose_batch))
    return {"task": task, "prompt": prompt, "source": source, "image": image, "run": run, "chart": chart,
            "report": report, "refined": refined, "raw": raw, "files": files, "folder": folder,
            "batch_prompt": batch_prompt, "batch": batch, "table": table, "csv": csv_file}


def _batch_source(uploads: list[str] | None, folder: str, *, public: bool) -> str | list[str]:
    """What ``load_batch`` reads: one uploaded table, the uploaded images, or the folder. Public
    mode takes only uploaded images (a folder or a table would name files on the server)."""
    folder = "" if public else (folder or "")
    if uploads and folder.strip():
        raise InvalidInputError("Give either uploaded files or a folder, not both.")
    if uploads:
        tables = [u for u in uploads if Path(u).suffix.lower() in (".csv", ".jsonl")]
        if tables and public:
            raise InvalidInputError("This shared studio takes uploaded images only; upload the image files.")
        if tables and len(uploads) > 1:
            raise InvalidInputError("Upload either one .csv/.jsonl file or image files, not both.")
        return tables[0] if tables else uploads
    if folder.strip():
        return folder.strip()
    raise InvalidInputError("Nothing to diagnose: upload images (or a .csv/.jsonl), or name a folder.")
