"""Shapes-world preference sets with known truth, as a benchmark for the runner.

``shapes:TASK:N[:seedS]`` names a set: ``N`` pairs from ``models.shapes.pairs.make_pair`` for
``TASK`` (``t2i`` or ``edit``), drawn in order from ``random.Random(S)`` (seed 0 when left out),
so the same name is always the same set. The records use the runner's ``shapes`` layout:
``pair_id``, ``task``, ``prompt``, ``image_a``, ``image_b``, ``source_image`` (PNG bytes as
Hugging Face ``Image`` structs), ``label`` (``A``, ``B`` or ``tie``), ``defects_a``, ``defects_b``.

Write one to parquet (for another tool, or to pin it)::

    python -m studio.evaluation.shapes_set shapes:t2i:500:seed0 pairs.parquet
"""

from __future__ import annotations

import argparse
import io
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from models.errors import InvalidInputError, StudioError
from models.shapes.pairs import PreferencePair, make_pair
from models.types import Task

_SPEC = re.compile(r"shapes:(t2i|edit):(\d+)(?::(?:seed)?(\d+))?")


@dataclass(frozen=True)
class ShapesSpec:
    """A generated set: ``n`` pairs of ``task`` from seed ``seed``."""

    task: Task
    n: int
    seed: int = 0

    def __str__(self) -> str:
        return f"shapes:{self.task}:{self.n}:seed{self.seed}"


def parse_shapes_spec(text: str) -> ShapesSpec:
    """Read ``shapes:TASK:N[:seedS]`` (e.g. ``shapes:t2i:500:seed0``). Raises ``InvalidInputError``."""
    match = _SPEC.fullmatch(text.strip())
    if not match or int(match.group(2)) < 1:
        raise InvalidInputError(
            f"Cannot read the shapes set {text!r}; write shapes:TASK:N[:seedS] with TASK t2i or edit and N >= 1, "
            "e.g. shapes:t2i:500:seed0."
        )
    return ShapesSpec(match.group(1), int(match.group(2)), int(match.group(3) or 0))  # type: ignore[arg-type]


def generate_records(spec: ShapesSpec, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` (default all ``spec.n``) records of the set, in the ``shapes`` layout."""
    rng = random.Random(spec.seed)
    count = spec.n if limit is None else min(limit, spec.n)
    return [pair_record(f"shapes-{spec.task}-seed{spec.seed}-{i}", make_pair(rng, spec.task)) for i in range(count)]


def pair_record(pair_id: str, pair: PreferencePair) -> dict[str, Any]:
    """One pair as a ``shapes``-layout record (images as ``{"bytes", "path"}`` PNG structs)."""
    return {
        "pair_id": pair_id,
        "task": pair.task,
        "prompt": pair.prompt,
        "image_a": _png_struct(pair.image_a),
        "image_b": _png_struct(pair.image_b),
        "source_image": _png_struct(pair.source_image) if pair.source_image is not None else None,
        "label": pair.label,
        "defects_a": [d.kind for d in pair.defects_a],
        "defects_b": [d.kind for d in pair.defects_b],
    }


def write_parquet(spec: ShapesSpec, path: str | Path) -> Path:
    """Write the whole set to one parquet file at ``path``; return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(generate_records(spec)), path)
    return path


def _png_struct(image: Image.Image) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.evaluation.shapes_set SPEC OUT.parquet``: write a set; exit 2 on a bad spec."""
    parser = argparse.ArgumentParser(description="Write a shapes-world preference set to parquet.")
    parser.add_argument("spec", help="shapes:TASK:N[:seedS], e.g. shapes:t2i:500:seed0")
    parser.add_argument("out", help="the .parquet file to write")
    args = parser.parse_args(argv)
    try:
        path = write_parquet(parse_shapes_spec(args.spec), args.out)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
