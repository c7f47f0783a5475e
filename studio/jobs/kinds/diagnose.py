"""Diagnose a folder (or list, or table) of images as a background job: the same code as
``python -m studio diagnose``, with progress, a score curve and the CSV table as an artifact.

Run as a job with ``python -m studio jobs start diagnose --inputs images/ --prompt "a red cube"``
or alone with ``python -m studio.jobs.kinds.diagnose --inputs images/ --prompt "a red cube"``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from models.errors import ConfigError
from models.images import prepare_image
from studio.config import StudioConfig
from studio.diagnose import BatchItem, DiagnosisRow, diagnose_many, load_batch, write_csv
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.jobs.specs import check_spec
from studio.services import Services


def _shapes_critic() -> dict[str, Any]:
    return {"backend": "shapes"}


@dataclass
class DiagnoseConfig:
    """Critique every image of a batch and write the table."""

    inputs: list[str] = field(default_factory=list, metadata={
        "help": "image files, a folder of images, or one .csv/.jsonl of prompt,image[,source_image][,task] rows"})
    prompt: str | None = field(default=None, metadata={"help": "the prompt of every image (not with a .csv/.jsonl)"})
    task: Literal["t2i", "edit"] = field(default="t2i", metadata={"help": "text to image or editing"})
    source: str | None = field(default=None, metadata={"help": "the source image of every edit"})
    batch_size: int = field(default=4, metadata={"help": "images per critic call"})
    critic: dict[str, Any] = field(default_factory=_shapes_critic, metadata={
        "help": "the critic's backend spec as JSON, e.g. {\"backend\": \"openai\", \"base_url\": \"http://host:8000/v1\"}"
                " (API keys come from the environment)"})
    store: str = field(default="", metadata={
        "help": "session store folder the critiques go to (default: the store the job runs in, else .studio)"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a missing input, a bad batch size or a bad critic spec."""
        if not self.inputs:
            raise ConfigError("inputs: give image files, a folder of images, or a .csv/.jsonl table.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        check_spec(self.critic, "critic")


def diagnosed_rows(config: DiagnoseConfig, ctx: JobContext) -> Iterator[tuple[DiagnosisRow, BatchItem]]:
    """Diagnose the configured batch, reporting progress and each image's score to ``ctx``; stop
    early (after a batch) when the job is asked to stop."""
    source = config.inputs[0] if len(config.inputs) == 1 else config.inputs
    items = load_batch(source, prompt=config.prompt, task=config.task)
    if config.source:
        shared = prepare_image(config.source, what="--source")
        for item in items:
            item.source_image = shared
    services = Services.from_config(StudioConfig(store_dir=_store_dir(config, ctx), critic=config.critic))
    try:
        for n, (row, item) in enumerate(zip(diagnose_many(items, services, batch_size=config.batch_size), items), 1):
            ctx.progress(n, len(items), item.name)
            if row.score is not None:
                ctx.metric(n, "score", row.score)
            yield row, item
            if n % config.batch_size == 0 and ctx.should_stop():
                return
    finally:
        services.close()


def summarize(rows: list[DiagnosisRow], config: DiagnoseConfig) -> dict[str, Any]:
    """The job's result: how many images were read, scored and failed, and the mean score."""
    scores = [row.score for row in rows if row.score is not None]
    return {"critic": config.critic.get("name") or config.critic["backend"], "n": len(rows), "scored": len(scores),
            "failed": sum(not row.ok for row in rows), "mean_score": sum(scores) / len(scores) if scores else None}


def run(config: DiagnoseConfig, ctx: JobContext) -> None:
    """Diagnose the batch; the table goes to ``diagnosis.csv`` in the run folder."""
    rows = [row for row, _ in diagnosed_rows(config, ctx)]
    table = write_csv(rows, ctx.run_dir / "diagnosis.csv")
    ctx.artifact("diagnosis.csv", table, "table")
    ctx.result(summarize(rows, config))


def _store_dir(config: DiagnoseConfig, ctx: JobContext) -> str:
    """The store the critiques go to: the configured one, else the job's (run folders live in
    ``<store>/runs/<job id>``), else ``.studio``."""
    if config.store:
        return config.store
    return str(Path(ctx.run_dir).resolve().parents[1]) if ctx.job_id else ".studio"


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.jobs.kinds.diagnose``: see ``studio.jobs.entry.run_kind``."""
    return run_kind(DiagnoseConfig, run, argv)


if __name__ == "__main__":
    sys.exit(main())
