"""A rationale: a teacher's critiques of both images of a labelled pair, as one JSONL record.

Each side keeps the teacher's raw text (the one source of truth: the filter parses it again with
the studio's parser) and, for reading, the parsed per-dimension scores and justifications,
summary, refinement comments and refined request, or the reason it failed. Image paths are
relative to the folder of the JSONL file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from models.errors import InvalidInputError
from models.types import Critique, Task
from studio.jsonl import read_jsonl_records

RATIONALES_FILE = "rationales.jsonl"


@dataclass
class SideText:
    """One image's critique: the raw text, and the parsed fields (or ``failure``)."""

    raw: str | None
    failure: str | None = None
    parsed: dict[str, Any] | None = None

    @classmethod
    def from_critique(cls, critique: Critique) -> SideText:
        """A successfully parsed critique."""
        parsed = {
            "scores": critique.scores, "justifications": critique.justifications, "analysis": critique.analysis,
            "summary": critique.summary, "refinement_comments": critique.refinement_comments,
            "refined_request": critique.refined_request, "overall": critique.overall, "warnings": critique.warnings,
        }
        return cls(raw=critique.raw, parsed=parsed)


@dataclass
class Rationale:
    """One teacher sample for one pair.

    ``anchored``: the label was shown to the teacher. ``draws``: critiques drawn per image;
    ``agreeing``: how many (A, B) combinations of them agreed with the label (what anchoring
    selected from). ``images`` maps ``a``, ``b``, ``source`` to relative paths.
    """

    rationale_id: str
    pair_id: str
    sample: int
    task: Task
    prompt: str
    label: str
    images: dict[str, str | None]
    a: SideText
    b: SideText
    teacher: str
    anchored: bool
    draws: int
    agreeing: int
    truth: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rationale:
        """Rebuild from ``asdict`` output. Raises ``InvalidInputError`` for a malformed record."""
        try:
            sides = {key: SideText(**data[key]) for key in ("a", "b")}
            return cls(**{**data, **sides})
        except (KeyError, TypeError) as e:
            raise InvalidInputError(f"Not a PARROT rationale record ({e}); keys: {sorted(data)[:12]}.") from e


def write_rationales(path: Path, rationales: list[Rationale], *, append: bool = False) -> None:
    """Write (or append) ``rationales`` as JSON lines to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as out:
        for rationale in rationales:
            out.write(rationale.to_json() + "\n")


def read_rationales(path: str | Path) -> Iterator[Rationale]:
    """The rationales of a JSONL file. Raises ``NotFoundError`` for a missing file and
    ``InvalidInputError`` naming the line for a malformed one."""
    for where, data in read_jsonl_records(path, what="rationales"):
        try:
            yield Rationale.from_dict(data)
        except InvalidInputError as e:
            raise InvalidInputError(f"{where}: {e}") from e


def rebased(rationale: Rationale, from_dir: Path, to_dir: Path) -> Rationale:
    """``rationale`` with its image paths, relative to ``from_dir``, made relative to ``to_dir``."""
    if Path(from_dir).resolve() == Path(to_dir).resolve():
        return rationale
    images = {
        key: None if path is None else os.path.relpath(Path(from_dir).resolve() / path, Path(to_dir).resolve())
        for key, path in rationale.images.items()
    }
    return replace(rationale, images=images)
