"""Running a PARROT stage from the command line: ``python -m studio.parrot.<stage> --config FILE``.

Outside the job runner a stage reports to ``ConsoleContext``: progress and metrics go to the log
(stderr), the result is the last line on stdout as one JSON object, as the other studio commands
do. The job runner gives the same ``run(config, ctx)`` a context that writes to the store.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, TextIO, TypeVar

from models.errors import StudioError
from studio.jobs.config import parse_config, save_config
from studio.options import configure_logging

logger = logging.getLogger(__name__)

C = TypeVar("C")


class ConsoleContext:
    """A ``JobContext`` for a stage run by hand: logs progress, prints the result as JSON.

    SIGTERM and SIGINT ask the stage to stop (it checkpoints and returns) instead of killing it.
    """

    def __init__(self, run_dir: Path, out: TextIO | None = None) -> None:
        self.job_id: str | None = None
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.out = out or sys.stdout
        self._stop = False

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        logger.info("%s/%s %s", step, total if total is not None else "?", message)

    def metric(self, step: int, name: str, value: float) -> None:
        logger.info("step %d: %s = %.4g", step, name, value)

    def artifact(self, name: str, path: Path, kind: str = "file") -> None:
        logger.info("%s (%s): %s", name, kind, path)

    def result(self, summary: dict[str, Any]) -> None:
        self.out.write(json.dumps(summary, default=str) + "\n")
        self.out.flush()

    def should_stop(self) -> bool:
        return self._stop

    def request_stop(self, *_: Any) -> None:
        """Signal handler: finish the current unit, checkpoint, return."""
        logger.warning("Stop requested; finishing the current step.")
        self._stop = True


def stage_main(config_cls: type[C], run: Callable[[C, Any], dict[str, Any]], argv: list[str] | None) -> int:
    """Parse ``argv`` into ``config_cls``, save it as ``config.json`` in its run folder and run the
    stage there. Returns 0 when done, 2 with the message on stderr for a ``StudioError``."""
    configure_logging(default=logging.INFO)
    try:
        config = parse_config(config_cls, argv)
        run_dir = Path(getattr(config, "run_dir"))
        ctx = ConsoleContext(run_dir)
        save_config(config, run_dir / "config.json")
        signal.signal(signal.SIGTERM, ctx.request_stop)
        signal.signal(signal.SIGINT, ctx.request_stop)
        run(config, ctx)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
