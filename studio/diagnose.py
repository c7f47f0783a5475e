"""Diagnose: the full critique of one image (or of a batch) without generating anything.

``diagnose`` critiques one image; ``diagnose_many`` critiques a batch in batched critic calls
and yields one ``DiagnosisRow`` per item (a row for an unreadable image says why, it is never
scored); ``write_csv`` exports the table. ``load_batch`` reads a folder of images (with one
prompt), a CSV or JSONL file of ``prompt,image[,source_image][,task]`` rows, or a list of files.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image

from models.critic.scoring import ScoringPolicy
from models.errors import InvalidInputError
from models.images import ImageInput, check_prompt, prepare_image
from models.types import TASKS, Critique, CritiqueRequest, CritiqueResult, Task, task_dimensions
from studio.services import Services
from studio.store import DIMENSION_COLUMNS

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CSV_COLUMNS = ("name", "task", "prompt", "ok", "score", *DIMENSION_COLUMNS, "summary", "refined_request", "failure")


@dataclass
class Diagnosis:
    """One critique with what the UI shows: ``chart`` is ``(dimension heading, score or None)``
    in protocol order; ``score`` is the [0, 1] scalar (``None`` for a failure)."""

    critique: CritiqueResult
    score: float | None
    chart: list[tuple[str, float | None]]
    image_id: int
    critique_id: int

    @property
    def ok(self) -> bool:
        """Whether the critic's output could be parsed."""
        return self.critique.ok

    @property
    def summary(self) -> str | None:
        """The critique's summary (``None`` for a failure)."""
        return self.critique.summary if isinstance(self.critique, Critique) else None

    @property
    def refined_request(self) -> str | None:
        """The critic's refined request (``None`` for a failure)."""
        return self.critique.refined_request if isinstance(self.critique, Critique) else None


@dataclass
class BatchItem:
    """One image of a batch: a display ``name``, the prompt, the image and, for edits, the source."""

    name: str
    task: Task
    prompt: str
    image: Path | Image.Image
    source_image: Path | Image.Image | None = None


@dataclass
class DiagnosisRow:
    """A row of the batch table. ``failure`` says why an item has no scores; ``missing`` lists
    the dimensions the critique lacks (not N/A, see ``Critique.missing``)."""

    name: str
    task: Task
    prompt: str
    ok: bool
    score: float | None
    scores: dict[str, float | None] = field(default_factory=dict)
    summary: str | None = None
    refined_request: str | None = None
    failure: str | None = None
    critique_id: int | None = None
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """A flat dict with ``CSV_COLUMNS`` keys (dimensions the task lacks are empty)."""
        flat = {key: getattr(self, key) for key in ("name", "task", "prompt", "ok", "score")}
        flat.update({key: self.scores.get(key) for key in DIMENSION_COLUMNS})
        flat.update(summary=self.summary, refined_request=self.refined_request, failure=self.failure)
        return flat


def diagnose(request: CritiqueRequest, services: Services, *, policy: ScoringPolicy | None = None) -> Diagnosis:
    """Critique one image (with its source for edits) and store image and critique.

    Example: ``diagnose(CritiqueRequest("t2i", "a red cube", image), services).chart``

    Raises ``InvalidInputError`` (before the critic is called) for an empty prompt, an unreadable
    image, or an edit without a source image.
    """
    checked = _checked(request.task, request.prompt, request.image, request.source_image)
    result = services.get_critic().critique([checked])[0]
    return _record(services, checked, result, policy or ScoringPolicy.default())


def diagnose_many(
    items: Iterable[BatchItem],
    services: Services,
    *,
    policy: ScoringPolicy | None = None,
    batch_size: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[DiagnosisRow]:
    """Critique every item, ``batch_size`` images per critic call, yielding rows in order.

    :param on_progress: called with ``(items done, items in all)`` after each batch.
    """
    items = list(items)
    policy = policy or ScoringPolicy.default()
    critic = services.get_critic()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        ready: list[tuple[BatchItem, CritiqueRequest]] = []
        rows: dict[int, DiagnosisRow] = {}
        for i, item in enumerate(chunk):
            try:
                ready.append((item, _checked(item.task, item.prompt, item.image, item.source_image)))
            except InvalidInputError as e:
                rows[i] = DiagnosisRow(item.name, item.task, item.prompt, ok=False, score=None, failure=str(e))
        results = critic.critique([request for _, request in ready]) if ready else []
        done = iter(zip(ready, results, strict=True))
        for i, item in enumerate(chunk):
            if i not in rows:
                (_, request), result = next(done)
                rows[i] = _row(item, _record(services, request, result, policy))
            yield rows[i]
        if on_progress is not None:
            on_progress(min(start + batch_size, len(items)), len(items))


def load_batch(
    source: str | Path | Sequence[str | Path], *, prompt: str | None = None, task: Task = "t2i"
) -> list[BatchItem]:
    """Batch items from a folder of images or a list of files (both with ``prompt``), or from a
    ``.csv``/``.jsonl`` file with ``prompt`` and ``image`` columns (optional ``source_image`` and
    ``task``; relative paths are relative to the file's folder).

    Raises ``InvalidInputError`` when the source is missing, empty, or lacks a prompt or column.
    """
    if not isinstance(source, (str, Path)):
        return _with_prompt([Path(p) for p in source], prompt, task, "the uploaded files")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return _with_prompt(files, prompt, task, f"the folder {path}")
    if path.suffix.lower() in (".csv", ".jsonl") and path.is_file():
        return _from_table(path, task)
    raise InvalidInputError(f"{path} is neither a folder of images nor a .csv/.jsonl file of prompt,image rows.")


def write_csv(rows: Iterable[DiagnosisRow], path: str | Path) -> Path:
    """Write the batch table (``CSV_COLUMNS``) to ``path``."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_dict())
    return path


def _checked(task: str, prompt: str, image: ImageInput, source: ImageInput | None) -> CritiqueRequest:
    """A request with a checked prompt and decoded images; ``InvalidInputError`` otherwise."""
    checked_source = prepare_image(source, what="source image") if task == "edit" and source is not None else None
    return CritiqueRequest(task, check_prompt(prompt), prepare_image(image), checked_source)  # type: ignore[arg-type]


def _record(services: Services, request: CritiqueRequest, result: CritiqueResult, policy: ScoringPolicy) -> Diagnosis:
    store = services.store
    image_id = store.save_image(request.image, role="diagnose").id
    score = policy.score(result) if isinstance(result, Critique) else None
    critique_id = store.save_critique(result, task=request.task, prompt=request.prompt, image_id=image_id,
                                      critic_name=services.get_critic().name, score=score)
    chart = [
        (d.heading, result.scores.get(d.key) if isinstance(result, Critique) else None)
        for d in task_dimensions(request.task)
    ]
    return Diagnosis(result, score, chart, image_id, critique_id)


def _row(item: BatchItem, diagnosis: Diagnosis) -> DiagnosisRow:
    critique = diagnosis.critique
    if not isinstance(critique, Critique):
        return DiagnosisRow(item.name, item.task, item.prompt, ok=False, score=None, failure=critique.reason,
                            critique_id=diagnosis.critique_id)
    return DiagnosisRow(item.name, item.task, item.prompt, ok=True, score=diagnosis.score, scores=dict(critique.scores),
                        summary=critique.summary, refined_request=critique.refined_request,
                        critique_id=diagnosis.critique_id, missing=list(critique.missing))


def _with_prompt(files: list[Path], prompt: str | None, task: Task, where: str) -> list[BatchItem]:
    if prompt is None or not prompt.strip():
        raise InvalidInputError(f"Diagnosing {where} needs a prompt for the images; none was given.")
    if not files:
        raise InvalidInputError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {where}.")
    return [BatchItem(p.name, task, prompt, p) for p in files]


def _from_table(path: Path, default_task: Task) -> list[BatchItem]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            records = list(csv.DictReader(handle))
        else:
            try:
                records = [json.loads(line) for line in handle if line.strip()]
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path} has a line that is not JSON: {e}") from e
    items = []
    for n, record in enumerate(records, start=1):
        if not record.get("prompt") or not record.get("image"):
            raise InvalidInputError(f"{path}, row {n}: needs 'prompt' and 'image' values; got {sorted(record)}.")
        source = record.get("source_image") or None
        task = record.get("task") or default_task
        if task not in TASKS:
            raise InvalidInputError(f"{path}, row {n}: unknown task {task!r}; use 't2i' or 'edit'.")
        items.append(BatchItem(
            name=Path(record["image"]).name, task=task, prompt=record["prompt"],
            image=path.parent / record["image"], source_image=path.parent / source if source else None,
        ))
    if not items:
        raise InvalidInputError(f"{path} has no rows.")
    return items
