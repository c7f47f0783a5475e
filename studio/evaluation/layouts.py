"""Preference benchmark files in their published layouts, read into one ``PreferenceRow`` type.

A data source is one parquet file, a folder of ``*.parquet`` files (concatenated), the studio's
own vote export (``votes.jsonl`` or ``votes.parquet``), or a generated shapes-world set named
``shapes:TASK:N[:seedS]`` (see ``studio.evaluation.shapes_set``). ``--layout auto`` picks the
layout by its columns (``LAYOUTS`` lists the columns that identify each layout and those it
needs). Images stay as stored (Hugging Face ``Image`` structs ``{"bytes", "path"}``, bare
bytes, file paths, lists of structs) until a row is judged: ``row_images`` decodes them, so one
unreadable image fails its row, never the whole run.

Example::

    benchmark, rows = load_rows("genai_bench_t2i/", layout="auto")
    request = row_images(rows[0])          # a PairRequest, or InvalidInputError for that row
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, get_args

from PIL import Image

from models.errors import InvalidInputError
from models.images import ImageInput, check_prompt, prepare_image
from models.types import PairRequest, Task
from studio.jsonl import read_jsonl_records

logger = logging.getLogger(__name__)

Label = Literal["A", "B", "tie", "both_bad"]
LayoutName = Literal[
    "auto", "genai-bench-t2i", "genai-bench-edit", "mmrb2-t2i", "mmrb2-edit", "editreward-bench",
    "studio-votes", "shapes",
]
LAYOUT_NAMES: tuple[str, ...] = get_args(LayoutName)
TaskOption = Literal["auto", "t2i", "edit"]

#: GenAI-Bench's (and the studio's vote export's) ``vote_type`` values.
VOTE_TYPES: dict[str, Label] = {"leftvote": "A", "rightvote": "B", "tievote": "tie", "bothbad_vote": "both_bad"}
#: EditReward-Bench's K=2 ``ranking`` strings.
RANKINGS: dict[str, Label] = {"A>B": "A", "B>A": "B", "A=B=Good": "tie", "A=B=Bad": "both_bad"}


@dataclass
class PreferenceRow:
    """One benchmark pair: a request, two candidates and the human (or known) label.

    ``index`` is the row's position in the source (0-based, after concatenation); ``row_id`` its
    own id where the layout has one (else the index as text). Images are kept as stored; relative
    paths are relative to ``base_dir``. ``label`` is ``"A"``, ``"B"``, ``"tie"`` (both good) or
    ``"both_bad"``.
    """

    index: int
    row_id: str
    task: Task
    prompt: str
    image_a: Any
    image_b: Any
    label: Label
    source_image: Any = None
    model_a: str | None = None
    model_b: str | None = None
    base_dir: Path | None = None

    @property
    def decisive(self) -> bool:
        """Whether the label names a better image (not a tie or both bad)."""
        return self.label in ("A", "B")


@dataclass(frozen=True)
class Layout:
    """A file layout: the columns that identify it and how a record becomes a row."""

    name: str
    detect: tuple[str, ...]
    required: tuple[str, ...]
    read: Callable[[int, dict[str, Any], Path | None, str], PreferenceRow]


# -- decoding ------------------------------------------------------------------------------------


def row_images(row: PreferenceRow) -> PairRequest:
    """The row as a checked ``PairRequest`` with decoded images.

    Raises ``InvalidInputError`` naming the row and the image when an image is missing or not
    readable, or the prompt is empty (that row fails; the run goes on).
    """
    where = f"row {row.index} ({row.row_id})"
    prompt = check_prompt(row.prompt if isinstance(row.prompt, str) else "", where=where)
    source = None
    if row.task == "edit":
        source = decode_image(row.source_image, row.base_dir, f"{where}: source image")
    return PairRequest(
        row.task, prompt, decode_image(row.image_a, row.base_dir, f"{where}: image A"),
        decode_image(row.image_b, row.base_dir, f"{where}: image B"), source,
    )


def decode_image(value: Any, base_dir: Path | None, what: str) -> Image.Image:
    """Decode a stored image: a Hugging Face ``{"bytes", "path"}`` struct, bytes, a file path
    (relative to ``base_dir``), a PIL image, or a list of those (its first). Raises
    ``InvalidInputError`` when there is none or it cannot be read."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidInputError(f"{what}: the image list is empty.")
        value = value[0]
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None or value == "" or value == b"":
        raise InvalidInputError(f"{what}: no image in this row.")
    source: ImageInput
    if isinstance(value, str):
        path = Path(value)
        source = path if path.is_absolute() or base_dir is None else base_dir / path
    else:
        source = value
    return prepare_image(source, what=what)


# -- labels ----------------------------------------------------------------------------------------


def _label(value: Any, table: dict[str, Label], column: str, index: int) -> Label:
    text = value.strip() if isinstance(value, str) else value
    if text not in table:
        raise InvalidInputError(
            f"row {index}: {column} is {value!r}; expected one of {sorted(table)}."
        )
    return table[text]


def _text(record: dict[str, Any], column: str) -> str | None:
    value = record.get(column)
    return None if value is None else str(value)


# -- layouts ---------------------------------------------------------------------------------------


def _genai_t2i(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    return PreferenceRow(
        index, str(record.get("id", index)), "t2i", record["prompt"], record["left_image"], record["right_image"],
        _label(record["vote_type"], VOTE_TYPES, "vote_type", index),
        model_a=_text(record, "left_model"), model_b=_text(record, "right_model"), base_dir=base_dir,
    )


def _genai_edit(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    return PreferenceRow(
        index, str(record.get("id", index)), "edit", record["instruct_prompt"], record["left_output_image"],
        record["right_output_image"], _label(record["vote_type"], VOTE_TYPES, "vote_type", index),
        source_image=record["source_image"], model_a=_text(record, "left_model"),
        model_b=_text(record, "right_model"), base_dir=base_dir,
    )


def _mmrb2(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    chosen = record["chosen"].upper() if isinstance(record["chosen"], str) else record["chosen"]
    return PreferenceRow(
        index, str(record["pair_id"]), task, record["prompt_text"],  # type: ignore[arg-type]
        record["response_a_images"], record["response_b_images"],
        _label(chosen, {"A": "A", "B": "B"}, "chosen", index),
        source_image=record.get("prompt_images") if task == "edit" else None,
        model_a=_text(record, "response_a_model"), model_b=_text(record, "response_b_model"), base_dir=base_dir,
    )


def _editreward(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    return PreferenceRow(
        index, str(record.get("id", index)), "edit", record["instruction"], record["candidate_1"],
        record["candidate_2"], _label(record["ranking"], RANKINGS, "ranking", index),
        source_image=record["source_image"], model_a=_text(record, "model_1"), model_b=_text(record, "model_2"),
        base_dir=base_dir,
    )


def _studio_votes(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    row_task = record.get("task") or "t2i"
    if row_task not in ("t2i", "edit"):
        raise InvalidInputError(f"row {index}: task is {row_task!r}; expected 't2i' or 'edit'.")
    return PreferenceRow(
        index, str(index), row_task, record["prompt"], record["left_image"], record["right_image"],
        _label(record["vote_type"], VOTE_TYPES, "vote_type", index), source_image=record.get("source_image"),
        model_a=_text(record, "left_model") or None, model_b=_text(record, "right_model") or None, base_dir=base_dir,
    )


def _shapes(index: int, record: dict[str, Any], base_dir: Path | None, task: str) -> PreferenceRow:
    row_task = record["task"]
    if row_task not in ("t2i", "edit"):
        raise InvalidInputError(f"row {index}: task is {row_task!r}; expected 't2i' or 'edit'.")
    return PreferenceRow(
        index, str(record.get("pair_id", index)), row_task, record["prompt"], record["image_a"], record["image_b"],
        _label(record["label"], {"A": "A", "B": "B", "tie": "tie"}, "label", index),
        source_image=record.get("source_image"), base_dir=base_dir,
    )


#: Layouts in detection order (the studio's vote export is GenAI-Bench's columns plus ``task``).
LAYOUTS: tuple[Layout, ...] = (
    Layout("studio-votes", ("prompt", "left_image", "right_image", "vote_type", "task"),
           ("prompt", "left_image", "right_image", "vote_type"), _studio_votes),
    Layout("genai-bench-t2i", ("prompt", "left_image", "right_image"),
           ("prompt", "left_image", "right_image", "vote_type"), _genai_t2i),
    Layout("genai-bench-edit", ("source_prompt", "target_prompt", "left_output_image", "right_output_image"),
           ("instruct_prompt", "source_image", "left_output_image", "right_output_image", "vote_type"), _genai_edit),
    Layout("mmrb2", ("pair_id", "prompt_text", "response_a_images", "response_b_images"),
           ("pair_id", "prompt_text", "response_a_images", "response_b_images", "chosen"), _mmrb2),
    Layout("editreward-bench", ("instruction", "source_image", "candidate_1", "candidate_2"),
           ("instruction", "source_image", "candidate_1", "candidate_2", "ranking"), _editreward),
    Layout("shapes", ("prompt", "image_a", "image_b", "label", "task"),
           ("prompt", "image_a", "image_b", "label", "task"), _shapes),
)
_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def detect_layout(columns: list[str]) -> str:
    """The name of the first layout whose identifying columns are all in ``columns``.

    Raises ``InvalidInputError`` naming the columns found and each layout's expected columns.
    """
    found = set(columns)
    for layout in LAYOUTS:
        if set(layout.detect) <= found:
            return layout.name
    expected = "; ".join(f"{layout.name}: {', '.join(layout.detect)}" for layout in LAYOUTS)
    raise InvalidInputError(
        f"Cannot tell the benchmark layout from the columns {sorted(found)}. Expected the columns of one of "
        f"these layouts: {expected}. Pass --layout to choose one."
    )


def benchmark_name(layout: str, rows: list[PreferenceRow]) -> str:
    """The name a run reports: the layout, with the task for MMRB2 and shapes sets."""
    if layout in ("mmrb2", "shapes"):
        tasks = sorted({row.task for row in rows}) or ["t2i"]
        return f"{layout}-{'+'.join(tasks)}"
    return layout


# -- reading -------------------------------------------------------------------------------------


def load_rows(data: str, *, layout: str = "auto", task: TaskOption = "auto",
              limit: int | None = None) -> tuple[str, list[PreferenceRow]]:
    """Read a benchmark into rows; return ``(benchmark name, rows)``.

    :param data: a parquet file, a folder of parquet files, a ``.jsonl`` vote export, or a shapes
        set ``shapes:TASK:N[:seedS]``.
    :param layout: one of ``LAYOUT_NAMES``; ``"auto"`` detects it by the columns.
    :param task: MMRB2's task (``"t2i"`` or ``"edit"``) when the layout does not say; ``"auto"``:
        edit when the rows carry ``prompt_images``.
    :param limit: read only the first ``limit`` rows.
    Raises ``InvalidInputError`` for a missing or unreadable source, unknown or missing columns,
    or a label the layout does not know.
    """
    if layout not in LAYOUT_NAMES:
        raise InvalidInputError(f"Unknown layout {layout!r}; use one of {list(LAYOUT_NAMES)}.")
    if data.startswith("shapes:"):
        from studio.evaluation.shapes_set import generate_records, parse_shapes_spec

        if layout not in ("auto", "shapes"):
            raise InvalidInputError(f"{data!r} is a generated shapes-world set; its layout is 'shapes', not {layout!r}.")
        spec = parse_shapes_spec(data)
        records, base_dir = generate_records(spec, limit=limit), None
    else:
        records, base_dir = read_records(Path(data))
    if limit is not None:
        records = records[:limit]
    if not records:
        raise InvalidInputError(f"{data} holds no rows.")
    columns = list(dict.fromkeys(key for record in records[:1] for key in record))
    name = _resolve_layout(layout, columns)
    spec_layout = _BY_NAME[name]
    missing = [c for c in spec_layout.required if c not in columns]
    if missing:
        raise InvalidInputError(
            f"{data} does not have the {name} columns {missing}; it has {sorted(columns)}, "
            f"the layout needs {list(spec_layout.required)}."
        )
    row_task = _mmrb2_task(layout, task, records) if name == "mmrb2" else "t2i"
    rows = [spec_layout.read(i, record, base_dir, row_task) for i, record in enumerate(records)]
    return benchmark_name(name, rows), rows


def _resolve_layout(layout: str, columns: list[str]) -> str:
    if layout == "auto":
        return detect_layout(columns)
    return "mmrb2" if layout.startswith("mmrb2") else layout


def _mmrb2_task(layout: str, task: TaskOption, records: list[dict[str, Any]]) -> str:
    named = layout.removeprefix("mmrb2-") if layout.startswith("mmrb2-") else None
    if named and task != "auto" and task != named:
        raise InvalidInputError(f"--layout {layout} and --task {task} disagree; give one of them.")
    if named:
        return named
    if task != "auto":
        return task
    return "edit" if any(record.get("prompt_images") for record in records) else "t2i"


def read_records(path: Path) -> tuple[list[dict[str, Any]], Path]:
    """The records of a parquet file, a folder of ``*.parquet`` files (concatenated, in name
    order) or a ``.jsonl`` file, with the folder relative image paths start from."""
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise InvalidInputError(f"The folder {path} holds no .parquet files.")
        return _read_parquet(files), path
    if not path.is_file():
        raise InvalidInputError(f"No benchmark file or folder at {path}.")
    if path.suffix.lower() == ".parquet":
        return _read_parquet([path]), path.parent
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path), path.parent
    raise InvalidInputError(f"{path}: expected a .parquet file, a folder of them, or a .jsonl vote export.")


def _read_parquet(files: list[Path]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for file in files:
        try:
            tables.append(pq.read_table(file))
        except (OSError, pa.ArrowException) as e:
            raise InvalidInputError(f"{file} is not a readable parquet file: {e}") from e
    try:
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except pa.ArrowException as e:
        raise InvalidInputError(f"The parquet files in {files[0].parent} do not share one set of columns: {e}") from e
    logger.info("read %d rows from %d parquet file(s)", table.num_rows, len(files))
    return table.to_pylist()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [record for _, record in read_jsonl_records(path, what="votes")]
