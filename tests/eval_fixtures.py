"""Small preference benchmarks written by the tests in each published layout, and a critic that
judges them by colour, so that every expected number can be worked out by hand.

Every fixture holds the same five pairs (``PAIRS``): colours of image A and B and the label.
``ColourCritic`` prefers red to blue (Text Faithfulness 4 vs 2, Physical Quality always 3), so it
predicts A, B, tie, B, tie: right on pairs 0 and 3 of the three decisive ones (2/3), and with ties
counted (a tie or both-bad label matched by a predicted tie) right on 4 of 5. MMRB2 has no ties:
its fixtures hold the three decisive pairs only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from models.types import (
    CritiqueRequest,
    CritiqueResult,
    DimensionVerdict,
    PairRequest,
    PairResult,
    PairwiseJudgement,
)
from studio.judge import record_vote
from studio.store import SessionStore
from tests.studio_fakes import make_critique

RGB = {"red": (220, 30, 30), "blue": (30, 30, 220)}
#: (colour of A, colour of B, label, model A, model B)
PAIRS = [
    ("red", "blue", "A", "m1", "m2"),
    ("blue", "red", "A", "m1", "m3"),
    ("red", "red", "tie", "m2", "m3"),
    ("blue", "red", "B", "m2", "m3"),
    ("blue", "blue", "both_bad", "m1", "m2"),
]
DECISIVE = [p for p in PAIRS if p[2] in ("A", "B")]
VOTE_TYPE = {"A": "leftvote", "B": "rightvote", "tie": "tievote", "both_bad": "bothbad_vote"}
RANKING = {"A": "A>B", "B": "B>A", "tie": "A=B=Good", "both_bad": "A=B=Bad"}


def png(colour: str, size: int = 16) -> bytes:
    """PNG bytes of a square of ``colour`` ("red", "blue", or any PIL colour)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), RGB.get(colour, colour)).save(buffer, format="PNG")
    return buffer.getvalue()


def struct(colour: str) -> dict[str, Any]:
    """A Hugging Face ``Image`` struct holding a PNG of ``colour``."""
    return {"bytes": png(colour), "path": None}


def write_parquet(records: list[dict[str, Any]], path: Path) -> Path:
    """Write ``records`` as one parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def genai_t2i(folder: Path) -> Path:
    return write_parquet([
        {"prompt": f"a red square {i}", "left_image": struct(a), "right_image": struct(b), "vote_type": VOTE_TYPE[label],
         "left_model": ma, "right_model": mb}
        for i, (a, b, label, ma, mb) in enumerate(PAIRS)
    ], folder / "genai_t2i.parquet")


def genai_edit(folder: Path) -> Path:
    return write_parquet([
        {"source_prompt": "a grey square", "target_prompt": "a red square", "instruct_prompt": f"make it red {i}",
         "source_image": struct("grey"), "left_output_image": struct(a), "right_output_image": struct(b),
         "vote_type": VOTE_TYPE[label], "left_model": ma, "right_model": mb}
        for i, (a, b, label, ma, mb) in enumerate(PAIRS)
    ], folder / "genai_edit.parquet")


def mmrb2(folder: Path, task: str) -> Path:
    return write_parquet([
        {"pair_id": f"p{i}", "prompt_text": f"a red square {i}",
         "prompt_images": [struct("grey")] if task == "edit" else [],
         "response_a_images": [struct(a), struct("green")], "response_b_images": [struct(b)],
         "chosen": label, "response_a_model": ma, "response_b_model": mb}
        for i, (a, b, label, ma, mb) in enumerate(DECISIVE)
    ], folder / f"mmrb2_{task}.parquet")


def editreward(folder: Path) -> Path:
    return write_parquet([
        {"instruction": f"make it red {i}", "source_image": png("grey"), "candidate_1": png(a), "candidate_2": png(b),
         "ranking": RANKING[label], "model_1": ma, "model_2": mb}
        for i, (a, b, label, ma, mb) in enumerate(PAIRS)
    ], folder / "editreward.parquet")


def shapes_layout(folder: Path) -> Path:
    return write_parquet([
        {"pair_id": f"s{i}", "task": "t2i", "prompt": f"a red square {i}", "image_a": struct(a), "image_b": struct(b),
         "source_image": None, "label": "tie" if label == "both_bad" else label}
        for i, (a, b, label, _, _) in enumerate(PAIRS)
    ], folder / "shapes.parquet")


def studio_votes(folder: Path, fmt: str) -> Path:
    """Record the pairs as votes in a store and export them with ``SessionStore.export_votes``."""
    store = SessionStore(folder / "votes-store" / "studio.db")
    for i, (a, b, label, ma, mb) in enumerate(PAIRS):
        images = [Image.open(io.BytesIO(png(c))).convert("RGB") for c in (a, b)]
        record_vote(store, PairRequest("t2i", f"a red square {i}", *images), label, model_a=ma, model_b=mb)
    path = store.export_votes(folder / f"votes-{fmt}", format=fmt)  # type: ignore[arg-type]
    store.close()
    return path


WRITERS = {
    "genai-bench-t2i": genai_t2i,
    "genai-bench-edit": genai_edit,
    "mmrb2-t2i": lambda folder: mmrb2(folder, "t2i"),
    "mmrb2-edit": lambda folder: mmrb2(folder, "edit"),
    "editreward-bench": editreward,
    "studio-votes": lambda folder: studio_votes(folder, "jsonl"),
    "studio-votes-parquet": lambda folder: studio_votes(folder, "parquet"),
    "shapes-t2i": shapes_layout,
}


def redness(image: Image.Image) -> float:
    """Text Faithfulness by colour: 4 for a red image, 2 for a blue one, 3 otherwise."""
    r, _, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
    return 4.0 if r > b + 50 else 2.0 if b > r + 50 else 3.0


class ColourCritic:
    """Prefers red: Text Faithfulness from ``redness``, Physical Quality always 3. Counts calls."""

    name = "colour-critic"

    def __init__(self) -> None:
        self.images_critiqued = 0
        self.pairs_judged = 0
        self.calls: list[int] = []

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        self.calls.append(len(requests))
        self.images_critiqued += len(requests)
        return [make_critique(r.task, {"text_faithfulness": redness(r.image), "physical_quality": 3.0})
                for r in requests]

    def judge(self, requests: Sequence[PairRequest]) -> list[PairResult]:
        self.calls.append(len(requests))
        self.pairs_judged += len(requests)
        results: list[PairResult] = []
        for r in requests:
            a, b = redness(r.image_a), redness(r.image_b)
            dims = {"text_faithfulness": DimensionVerdict(a, b, "A" if a > b else "B" if b > a else "tie"),
                    "physical_quality": DimensionVerdict(3.0, 3.0, "tie")}
            results.append(PairwiseJudgement(r.task, dims, "colour", raw=json.dumps([a, b])))
        return results

    def to_config(self) -> dict[str, Any]:
        return {}
