"""Curate a batch of images as a background job: diagnose each one (as the diagnose kind) and
keep those that pass the thresholds, exactly as ``python -m studio curate`` does.

Kept images are copied into ``copy_to`` (default: ``kept/`` in the run folder), an artifact.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from studio.cli import passes
from studio.diagnose import write_csv
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.jobs.kinds.diagnose import DiagnoseConfig, diagnosed_rows, summarize

@dataclass
class CurateConfig(DiagnoseConfig):
    """Diagnose a batch and keep the images that pass the score thresholds."""

    min_score: float | None = field(default=None, metadata={"help": "keep images scoring at least this (0-1)"})
    min: dict[str, float] = field(default_factory=dict, metadata={
        "help": "also require each dimension's score, as JSON, e.g. {\"text_rendering\": 3}"})
    copy_to: str | None = field(default=None, metadata={"help": "copy kept images here (default: kept/ in the run folder)"})

    def validate(self) -> None:
        """``DiagnoseConfig.validate`` plus a required ``min_score`` in [0, 1]."""
        super().validate()
        if self.min_score is None or not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"min_score is required and must be between 0 and 1, got {self.min_score!r}.")


def run(config: CurateConfig, ctx: JobContext) -> None:
    """Diagnose, keep and copy; the diagnosis table goes to ``diagnosis.csv`` in the run folder."""
    target = Path(config.copy_to) if config.copy_to else ctx.run_dir / "kept"
    target.mkdir(parents=True, exist_ok=True)
    rows, kept = [], 0
    for row, item in diagnosed_rows(config, ctx):
        if passes(row, config.min_score, config.min):  # type: ignore[arg-type]
            shutil.copy2(item.image, target / Path(item.image).name)  # type: ignore[arg-type]
            kept += 1
        rows.append(row)
    ctx.artifact("kept", target, "dataset")
    ctx.artifact("diagnosis.csv", write_csv(rows, ctx.run_dir / "diagnosis.csv"), "table")
    summary: dict[str, Any] = summarize(rows, config)
    summary["kept"] = kept
    ctx.result(summary)


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.jobs.kinds.curate``: see ``studio.jobs.entry.run_kind``."""
    return run_kind(CurateConfig, run, argv)


if __name__ == "__main__":
    sys.exit(main())
