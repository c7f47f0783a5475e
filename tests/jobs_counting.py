"""A tiny real job kind for the job tests: it counts units, one checkpoint per unit.

Each unit appends its number to ``units.txt`` in the run folder (so a test sees which units ran,
and how often) and writes ``checkpoint.json``; with ``--resume`` it continues after the last
checkpointed unit. Options make it crash once, ignore SIGTERM, or report whether an environment
variable reached it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field

from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind

RESUMABLE = True


@dataclass
class CountConfig:
    """Count to ``total``, one unit every ``delay_s`` seconds."""

    total: int = field(default=5, metadata={"help": "units to count"})
    delay_s: float = field(default=0.05, metadata={"help": "seconds per unit"})
    crash_at: int | None = field(default=None, metadata={"help": "raise at this unit (first attempt only)"})
    ignore_stop: bool = field(default=False, metadata={"help": "keep counting after SIGTERM"})
    secret_env: str | None = field(default=None, metadata={"help": "report a digest of this environment variable"})


def run(config: CountConfig, ctx: JobContext) -> None:
    """Count the units not yet checkpointed; report progress, a metric and the result."""
    checkpoint = ctx.run_dir / "checkpoint.json"
    done = json.loads(checkpoint.read_text())["done"] if ctx.resuming and checkpoint.exists() else 0
    for unit in range(done + 1, config.total + 1):
        if ctx.should_stop() and not config.ignore_stop:
            return
        if unit == config.crash_at and not ctx.resuming:
            raise RuntimeError(f"crashed at unit {unit}")
        time.sleep(config.delay_s)
        with open(ctx.run_dir / "units.txt", "a") as units:
            units.write(f"{unit}\n")
        checkpoint.write_text(json.dumps({"done": unit}))
        print(f"counted unit {unit}", file=sys.stderr, flush=True)
        ctx.progress(unit, config.total, f"unit {unit}")
        ctx.metric(unit, "count_squared", unit * unit)
    summary: dict[str, object] = {"counted": config.total}
    if config.secret_env:
        value = os.environ.get(config.secret_env, "")
        summary["secret_sha256"] = hashlib.sha256(value.encode()).hexdigest()
    (ctx.run_dir / "total.txt").write_text(str(config.total))
    ctx.artifact("total", ctx.run_dir / "total.txt", "file")
    ctx.result(summary)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.jobs_counting --config FILE``."""
    return run_kind(CountConfig, run, argv)


if __name__ == "__main__":
    sys.exit(main())
