"""What a job kind's code sees while it runs: one object to report progress, metrics, artifacts
and its result to, and to ask whether it should stop.

A job kind is a module with a typed config dataclass and ``run(config, ctx)``. The job runner
gives it a context that writes every report to the job's row in the session store (the job
process owns its record); tests give it ``RecordingContext``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class JobContext(Protocol):
    """The running job's reporting channel.

    ``run_dir`` is the job's own folder (config, log, checkpoints, artifacts). ``job_id`` is its
    id in the store (``None`` when a kind runs outside any store, e.g. in a unit test).
    ``resuming`` is True when the job was started again (``--resume``) in the run folder of an
    earlier attempt: a kind that checkpoints continues from there instead of starting over.
    """

    job_id: str | None
    run_dir: Path
    resuming: bool

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        """``step`` of ``total`` units done (``total`` None when unknown); the store derives the ETA."""

    def metric(self, step: int, name: str, value: float) -> None:
        """One point of a curve: ``name`` (e.g. ``"accuracy"``, ``"loss"``) at ``step``."""

    def artifact(self, name: str, path: Path, kind: str = "file") -> None:
        """A file or folder the job produced (``kind``: file, critic, lora, dataset, table, image)."""

    def result(self, summary: dict[str, Any]) -> None:
        """The job's final, JSON-ready summary (shown in the job view and the Leaderboard)."""

    def should_stop(self) -> bool:
        """True once the job was asked to stop (cancel): finish the current unit, checkpoint, return."""


class RecordingContext:
    """A ``JobContext`` that keeps every report in lists: for tests and for running a kind inline."""

    def __init__(self, run_dir: Path, job_id: str | None = None, *, resuming: bool = False) -> None:
        self.job_id = job_id
        self.resuming = resuming
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.steps: list[tuple[int, int | None, str]] = []
        self.metrics: list[tuple[int, str, float]] = []
        self.artifacts: list[tuple[str, Path, str]] = []
        self.summary: dict[str, Any] | None = None
        self.stop_requested = False

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        self.steps.append((step, total, message))

    def metric(self, step: int, name: str, value: float) -> None:
        self.metrics.append((step, name, float(value)))

    def artifact(self, name: str, path: Path, kind: str = "file") -> None:
        self.artifacts.append((name, Path(path), kind))

    def result(self, summary: dict[str, Any]) -> None:
        self.summary = summary

    def should_stop(self) -> bool:
        return self.stop_requested
