"""Plain data shared by every backend and the engine: tasks, dimensions, requests, critiques."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from PIL import Image

from models.errors import InvalidInputError

Task = Literal["t2i", "edit"]
TASKS: tuple[Task, ...] = ("t2i", "edit")
Winner = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Dimension:
    """One judged dimension of the critique protocol.

    ``heading`` is exactly what the critic writes; ``levels`` are the labels of levels 4, 3, 2, 1.
    """

    key: str
    heading: str
    levels: tuple[str, str, str, str]
    allows_na: bool = False


TEXT_FAITHFULNESS = Dimension(
    "text_faithfulness", "Text Faithfulness",
    ("Full match", "Minor mismatch", "Some mismatch", "Major deviations"),
)
IMAGE_FAITHFULNESS = Dimension(
    "image_faithfulness", "Image Faithfulness",
    ("Uses input fully", "Minor mismatch", "Partial mismatch", "Fails to use input"),
)
PHYSICAL_QUALITY = Dimension(
    "physical_quality", "Physical and Visual Quality",
    ("No noticeable flaws", "Minor flaws", "Some flaws", "Severe flaws"),
)
TEXT_RENDERING = Dimension(
    "text_rendering", "Text Rendering",
    ("Full match", "Mostly match", "Partial match", "Major deviations"),
    allows_na=True,
)

_TASK_DIMENSIONS: dict[str, tuple[Dimension, ...]] = {
    "t2i": (TEXT_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_RENDERING),
    "edit": (TEXT_FAITHFULNESS, IMAGE_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_RENDERING),
}


def task_dimensions(task: str) -> tuple[Dimension, ...]:
    """The dimensions of ``task`` in protocol order. Raises ``ValueError`` for an unknown task."""
    if task not in _TASK_DIMENSIONS:
        raise ValueError(f"Unknown task {task!r}; expected one of {sorted(_TASK_DIMENSIONS)}.")
    return _TASK_DIMENSIONS[task]


def check_task_source(task: str, source_image: object | None) -> None:
    """The one check every request type makes when it is built: a known task, and a source
    image for an edit. Raises ``InvalidInputError`` otherwise."""
    if task not in TASKS:
        raise InvalidInputError(f"Unknown task {task!r}; use 't2i' or 'edit'.")
    if task == "edit" and source_image is None:
        raise InvalidInputError("The edit task needs a source image; none was given. "
                                "Add one or switch the task to text-to-image.")


@dataclass
class CritiqueRequest:
    """One image to critique. ``image`` is the generated (t2i) or edited (edit) image;
    ``source_image`` is the edit's input and is required for ``task == "edit"`` (checked when
    the request is built: ``InvalidInputError``)."""

    task: Task
    prompt: str
    image: Image.Image
    source_image: Image.Image | None = None

    def __post_init__(self) -> None:
        check_task_source(self.task, self.source_image)


@dataclass
class PairRequest:
    """Two candidate images for one request, judged side by side (A first, B second); an edit
    needs its ``source_image`` (checked when the request is built: ``InvalidInputError``)."""

    task: Task
    prompt: str
    image_a: Image.Image
    image_b: Image.Image
    source_image: Image.Image | None = None

    def __post_init__(self) -> None:
        check_task_source(self.task, self.source_image)


@dataclass
class Critique:
    """A parsed pointwise critique.

    ``scores`` maps each dimension key of the task to a float in [1, 4], or ``None`` for N/A or a
    dimension the critic did not write. ``missing`` lists the keys whose ``None`` is not an N/A
    (the dimension is absent, unreadable, or N/A where only Text Rendering may be): such a
    critique is incomplete and meets no threshold. ``overall`` is the [0, 1] scalar under the
    default scoring policy (``None`` when no dimension counts). ``warnings`` says what the parser
    repaired or found missing; ``raw`` is the critic's text.
    """

    task: Task
    scores: dict[str, float | None]
    justifications: dict[str, str | None]
    analysis: str | None
    summary: str | None
    refinement_comments: str | None
    refined_request: str | None
    overall: float | None
    raw: str
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    ok = True

    def is_missing(self, key: str) -> bool:
        """Whether dimension ``key`` of the task has no score that is not an allowed N/A."""
        return is_missing(self.task, self.scores, self.missing, key)

    def meets(self, minimums: dict[str, float]) -> bool:
        """Whether the critique is complete and reaches every minimum (see ``meets_minimums``)."""
        return meets_minimums(self.task, self.scores, self.missing, minimums)


def is_missing(task: str, scores: dict[str, float | None], missing: list[str], key: str) -> bool:
    """Whether dimension ``key`` of ``task`` has no score and is not an allowed N/A: its score is
    ``None`` and it is listed in ``missing`` or cannot be N/A at all."""
    dims = {d.key: d for d in task_dimensions(task)}
    return key in dims and scores.get(key) is None and (key in missing or not dims[key].allows_na)


def meets_minimums(task: str, scores: dict[str, float | None], missing: list[str], minimums: dict[str, float]) -> bool:
    """Whether a critique's ``scores`` reach every per-dimension minimum of ``task``.

    An N/A Text Rendering counts as reached; a missing dimension (``is_missing``) never does, and
    a critique missing a dimension that cannot be N/A reaches none (it is incomplete, say cut
    off). Minimums on dimensions the task does not have are ignored.
    """
    dims = task_dimensions(task)
    if any(not d.allows_na and is_missing(task, scores, missing, d.key) for d in dims):
        return False
    keys = {d.key for d in dims}
    for key, value in minimums.items():
        if key not in keys:
            continue
        score = scores.get(key)
        if is_missing(task, scores, missing, key) or (score is not None and score < value):
            return False
    return True


@dataclass
class DimensionVerdict:
    """Pairwise verdict on one dimension."""

    score_a: float | None
    score_b: float | None
    winner: Winner | None
    justification: str | None = None


@dataclass
class PairwiseJudgement:
    """A parsed pairwise judgement: per-dimension scores for A and B and a winner each.
    ``overall_winner`` is the critic's own overall verdict when it wrote one."""

    task: Task
    dimensions: dict[str, DimensionVerdict]
    summary: str | None
    raw: str
    warnings: list[str] = field(default_factory=list)
    overall_winner: Winner | None = None

    ok = True


@dataclass
class CritiqueFailure:
    """A critique that could not be obtained: transport error or unparseable output.

    Never a score. ``raw`` is the last text the critic wrote (``None`` if it wrote nothing).
    """

    reason: str
    raw: str | None = None
    attempts: int = 1

    ok = False


CritiqueResult = Union[Critique, CritiqueFailure]
PairResult = Union[PairwiseJudgement, CritiqueFailure]


MAX_IMAGES_PER_REQUEST = 8
"""The most images one generation request (and so one loop round) may ask for."""


@dataclass
class GenerationRequest:
    """What to generate. ``source_image`` is required for ``task == "edit"`` (checked when the
    request is built: ``InvalidInputError``). ``None`` settings mean
    the backend's defaults (which it reports back in ``GenerationResult.settings``).
    Image ``i`` of a request uses seed ``seed + i``."""

    task: Task
    prompt: str
    source_image: Image.Image | None = None
    seed: int = 0
    num_images: int = 1
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        check_task_source(self.task, self.source_image)


@dataclass
class GenerationResult:
    """Generated images with the exact settings used (model, steps, guidance, size, seeds, ...)."""

    images: list[Image.Image]
    seeds: list[int]
    settings: dict[str, object]
