"""Per-row results of an evaluation run, kept in the session store's ``eval_rows`` table.

A run is identified by its ``run_id`` (the job id, or the run folder outside the job runner).
Each benchmark row has at most one result per run: a resumed run replaces a failed row's result
and keeps finished ones. ``export`` writes the rows as CSV and JSONL for download.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.types import Winner
from studio.evaluation.layouts import Label
from studio.store import SessionStore, now

#: Columns of the exported tables, in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "row_index", "row_id", "task", "prompt", "label", "winner", "correct", "consistent", "score_a", "score_b",
    "model_a", "model_b", "failure", "critique_a_id", "critique_b_id", "judgement_id", "dimensions",
)


@dataclass
class RowResult:
    """What the critic made of one benchmark row.

    ``winner`` is the predicted ``"A"``, ``"B"`` or ``"tie"`` (``None`` when the row failed, and
    ``failure`` says why). ``score_a``/``score_b`` are the [0, 1] scores under the run's scoring
    policy. ``consistent`` says whether A/B and B/A agreed (``None`` when only one order was
    judged). ``dimensions`` maps a dimension key to its ``[score A, score B]``.
    """

    row_index: int
    row_id: str
    task: str
    prompt: str
    label: Label
    model_a: str | None = None
    model_b: str | None = None
    winner: Winner | None = None
    score_a: float | None = None
    score_b: float | None = None
    consistent: bool | None = None
    failure: str | None = None
    critique_a_id: int | None = None
    critique_b_id: int | None = None
    judgement_id: int | None = None
    dimensions: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        """Whether the critic named a winner for this row."""
        return self.failure is None and self.winner is not None

    @property
    def correct(self) -> bool:
        """Whether the prediction matches the label; a tie or both-bad label is matched by a
        predicted tie. A failed row is never correct."""
        if not self.answered:
            return False
        expected = self.label if self.label in ("A", "B") else "tie"
        return self.winner == expected


class EvalRows:
    """The ``eval_rows`` of one run in ``store``."""

    def __init__(self, store: SessionStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def count(self) -> int:
        """How many rows this run has recorded (finished or failed)."""
        return int(self.store.db.execute("select count(*) from eval_rows where run_id = ?", [self.run_id]).fetchone()[0])

    def recorded(self) -> dict[int, RowResult]:
        """Every recorded result of the run, by row index."""
        rows = self.store.db["eval_rows"].rows_where("run_id = ?", [self.run_id], order_by="row_index")
        return {row["row_index"]: _result(row) for row in rows}

    def save(self, results: list[RowResult], *, benchmark: str, mode: str, critic_name: str) -> None:
        """Record ``results``, replacing an earlier result of the same row (a retried failure)."""
        stamp = now()
        db = self.store.db
        with db.conn:  # one transaction per batch
            for r in results:
                record = {
                    **{k: v for k, v in asdict(r).items() if k != "dimensions"},
                    "dimensions": json.dumps(r.dimensions), "correct": int(r.correct),
                    "consistent": None if r.consistent is None else int(r.consistent),
                    "run_id": self.run_id, "benchmark": benchmark, "mode": mode, "critic_name": critic_name,
                    "created": stamp,
                }
                columns = ", ".join(f"[{c}]" for c in record)
                marks = ", ".join("?" for _ in record)
                db.conn.execute(f"insert or replace into eval_rows ({columns}) values ({marks})", list(record.values()))

    def export(self, folder: Path) -> tuple[Path, Path]:
        """Write the run's rows to ``folder/rows.csv`` and ``folder/rows.jsonl``; return both paths."""
        folder.mkdir(parents=True, exist_ok=True)
        records = [_export_record(r) for r in self.recorded().values()]
        csv_path, jsonl_path = folder / "rows.csv", folder / "rows.jsonl"
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for record in records:
                writer.writerow({**record, "dimensions": json.dumps(record["dimensions"])})
        jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return csv_path, jsonl_path


def _result(row: dict[str, Any]) -> RowResult:
    return RowResult(
        row_index=row["row_index"], row_id=row["row_id"], task=row["task"], prompt=row["prompt"], label=row["label"],
        model_a=row["model_a"], model_b=row["model_b"], winner=row["winner"], score_a=row["score_a"],
        score_b=row["score_b"], consistent=None if row["consistent"] is None else bool(row["consistent"]),
        failure=row["failure"], critique_a_id=row["critique_a_id"], critique_b_id=row["critique_b_id"],
        judgement_id=row["judgement_id"], dimensions=json.loads(row["dimensions"] or "{}"),
    )


def _export_record(r: RowResult) -> dict[str, Any]:
    record = {key: getattr(r, key) for key in EXPORT_COLUMNS if key != "correct"}
    record["correct"] = r.correct
    return {key: record[key] for key in EXPORT_COLUMNS}
