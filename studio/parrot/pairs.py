"""Labelled preference pairs, PARROT's input: shapes-world known truth, a JSONL file, a benchmark or votes.

A pair is a request (task, prompt, optional source image), image A, image B and a label: ``"A"``,
``"B"``, ``"tie"`` or ``"both_bad"``. ``truth`` is the known better image where it is known (the
shapes world), kept apart from the label so that a measurement never scores against noisy labels.

JSONL layout (one object per line; image paths relative to the JSONL file's folder)::

    {"id": "p1", "task": "t2i", "prompt": "a red circle", "image_a": "img/1a.png",
     "image_b": "img/1b.png", "label": "A"}
    {"task": "edit", "prompt": "make the square blue", "source_image": "img/2s.png", ...}

Preference benchmarks in their published layouts and the studio's vote export are read by
``studio.evaluation.layouts``; ``preference_pairs`` turns their rows into ``LabeledPair`` objects.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, get_args

from PIL import Image

from models.errors import InvalidInputError
from models.images import check_prompt, prepare_image
from models.shapes.pairs import make_pair
from models.types import TASKS, PairRequest, Task, Winner
from studio.evaluation.layouts import TaskOption, load_rows, row_images
from studio.jsonl import read_jsonl_records

logger = logging.getLogger(__name__)

Label = Literal["A", "B", "tie", "both_bad"]
LABELS: tuple[str, ...] = get_args(Label)
#: The seed of the shapes-world pairs held out from PARROT training (``bench.parrot_shapes``);
#: their requests are also kept out of the shapes VLM base's pretraining (``studio.parrot.pretrain``).
HELDOUT_SEED = 10_000


@dataclass
class LabeledPair:
    """One labelled preference pair. ``truth`` is the known better image (``None`` when unknown)."""

    pair_id: str
    task: Task
    prompt: str
    image_a: Image.Image
    image_b: Image.Image
    label: Label
    source_image: Image.Image | None = None
    truth: Winner | None = None

    def to_request(self) -> PairRequest:
        """The pair as a critic's ``PairRequest`` (A first, B second)."""
        return PairRequest(self.task, self.prompt, self.image_a, self.image_b, self.source_image)


def flip_label(label: Winner, rng: random.Random) -> Winner:
    """A wrong label for ``label``: A and B swap; a tie becomes A or B at random."""
    if label == "tie":
        return rng.choice(("A", "B"))
    return "B" if label == "A" else "A"


def shapes_pairs(
    count: int, *, seed: int = 0, flip_rate: float = 0.1, tasks: tuple[Task, ...] = ("t2i",),
    tie_prob: float = 0.2, size: int = 64,
) -> Iterator[LabeledPair]:
    """``count`` shapes-world pairs with known truth and "human" labels, a ``flip_rate`` share of
    them wrong (``flip_label``). Tasks alternate over ``tasks``; the same seed gives the same pairs."""
    if not 0 <= flip_rate <= 1:
        raise InvalidInputError(f"flip_rate must be between 0 and 1; got {flip_rate!r}.")
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise InvalidInputError(f"tasks must be a non-empty list of {list(TASKS)}; got {list(tasks)}.")
    rng = random.Random(seed)
    labels = random.Random(seed + 1)  # separate stream: the flip rate does not change the images
    for i in range(count):
        pair = make_pair(rng, tasks[i % len(tasks)], size=size, tie_prob=tie_prob)
        label = flip_label(pair.label, labels) if labels.random() < flip_rate else pair.label
        yield LabeledPair(
            pair_id=f"shapes-{seed}-{i:05d}", task=pair.task, prompt=pair.prompt, image_a=pair.image_a,
            image_b=pair.image_b, label=label, source_image=pair.source_image, truth=pair.label,
        )


def read_jsonl_pairs(path: str | Path) -> Iterator[LabeledPair]:
    """The pairs of a JSONL file (layout in the module docstring), in order.

    Raises ``NotFoundError`` for a missing file and ``InvalidInputError`` naming the line for a
    malformed row (bad JSON, unknown task or label, missing field, unreadable image).
    """
    path = Path(path)
    for number, (where, row) in enumerate(read_jsonl_records(path, what="pairs"), start=1):
        yield _row_pair(row, where, path, number)


def _row_pair(row: dict[str, Any], where: str, path: Path, number: int) -> LabeledPair:
    missing = [key for key in ("prompt", "image_a", "image_b", "label") if not row.get(key)]
    if missing:
        raise InvalidInputError(f"{where} lacks {missing}; each row needs prompt, image_a, image_b and label.")
    task = row.get("task", "t2i")
    if task not in TASKS:
        raise InvalidInputError(f"{where}: unknown task {task!r}; use one of {list(TASKS)}.")
    if row["label"] not in LABELS:
        raise InvalidInputError(f"{where}: unknown label {row['label']!r}; use one of {list(LABELS)}.")
    if task == "edit" and not row.get("source_image"):
        raise InvalidInputError(f"{where}: an edit pair needs source_image.")
    truth = row.get("truth")
    if truth is not None and truth not in ("A", "B", "tie"):
        raise InvalidInputError(f"{where}: truth must be A, B or tie; got {truth!r}.")

    def image(key: str) -> Image.Image:
        return prepare_image(path.parent / row[key], what=f"{where}: {key}")

    return LabeledPair(
        pair_id=str(row.get("id", f"{path.stem}-{number}")), task=task,
        prompt=check_prompt(str(row["prompt"]), where=where),
        image_a=image("image_a"), image_b=image("image_b"), label=row["label"],
        source_image=image("source_image") if row.get("source_image") else None, truth=truth,
    )


def preference_pairs(
    data: str, *, layout: str = "auto", task: TaskOption = "auto", limit: int | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[LabeledPair]:
    """The rows of a preference benchmark or a studio vote export (``studio.evaluation.layouts.load_rows``:
    a parquet file or folder, ``votes.jsonl``, ``shapes:TASK:N``) as labelled pairs, in order.

    Pair ids are ``<benchmark>-<row index>``. The labels are the benchmark's (human) labels, so
    ``truth`` stays unknown. A row whose images or prompt cannot be read is skipped: logged and
    passed to ``on_skip`` as a sentence naming the row. Raises ``InvalidInputError`` for a source
    that cannot be read at all (missing, unknown layout or columns, an unknown label).
    """
    benchmark, rows = load_rows(data, layout=layout, task=task, limit=limit)
    for row in rows:
        try:
            request = row_images(row)
        except InvalidInputError as e:
            logger.warning("Skipping a row of %s: %s", data, e)
            if on_skip is not None:
                on_skip(str(e))
            continue
        yield LabeledPair(
            pair_id=f"{benchmark}-{row.index:05d}", task=request.task, prompt=request.prompt,
            image_a=request.image_a, image_b=request.image_b, label=row.label, source_image=request.source_image,
        )


def pair_image_paths(pair_id: str, has_source: bool) -> dict[str, str | None]:
    """Where ``save_pair_images`` puts a pair's images, relative to the run folder."""
    return {
        "a": f"images/{pair_id}_a.png",
        "b": f"images/{pair_id}_b.png",
        "source": f"images/{pair_id}_source.png" if has_source else None,
    }


def save_pair_images(pair: LabeledPair, folder: Path) -> dict[str, str | None]:
    """Write the pair's images as PNG under ``folder/images`` and return their relative paths."""
    paths = pair_image_paths(pair.pair_id, pair.source_image is not None)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for key, image in (("a", pair.image_a), ("b", pair.image_b), ("source", pair.source_image)):
        if image is not None:
            image.save(folder / str(paths[key]))
    return paths
