"""Reading JSONL files of records (benchmark votes, PARROT pairs and rationales, RL prompts) with
one set of errors: a missing file is ``NotFoundError``, a line that is not a JSON object is
``InvalidInputError`` naming the file and line. Blank lines are skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from models.errors import InvalidInputError, NotFoundError


def read_jsonl_records(path: str | Path, *, what: str = "records") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for each JSON object line of ``path``; ``where`` ("pairs.jsonl line 3")
    is for the caller's own errors about that record.

    :param what: what the file holds, for the missing-file error ("No pairs file at ...").
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"No {what} file at {path}.")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{where} is not valid JSON: {e}") from e
            if not isinstance(record, dict):
                raise InvalidInputError(f"{where} must be a JSON object, got {type(record).__name__}.")
            yield where, record
