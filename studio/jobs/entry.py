"""The shared ``main`` of every job kind: parse the config, run the kind, record the outcome.

A kind module stays small::

    def main(argv: list[str] | None = None) -> int:
        return run_kind(EvalConfig, run, argv)

and is then run as ``python -m <module> --config FILE [flags] [--job-id ID --job-store DB] [--resume]``.
With ``--job-id`` and ``--job-store`` (how the job runner starts it) every report goes to the job's
row and the process writes its own final status: "done", "cancelled" (it stopped after SIGTERM)
or "failed" (an exception, with its message as the reason). Without them the kind runs in the
foreground, logging its progress to stderr. Either way the last line on stdout is the result as
one JSON object, and the exit status is 0 (done or cancelled), 1 (the kind raised) or 2 (a
config error).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

from models.errors import StudioError
from studio.jobs.config import parse_config, save_config
from studio.jobs.context import JobContext, RecordingContext
from studio.jobs.store_context import StoreContext
from studio.options import configure_logging
from studio.store import SessionStore

logger = logging.getLogger(__name__)

C = TypeVar("C")
RunFn = Callable[[Any, JobContext], Any]


def run_kind(config_cls: type[C], run: Callable[[C, JobContext], Any], argv: list[str] | None = None) -> int:
    """Run one job of a kind (``run(config, ctx)``) from its command line; return the exit status."""
    job_args, rest = _job_parser().parse_known_args(argv)
    if job_args.config:
        rest = ["--config", job_args.config, *rest]
    configure_logging(default=logging.INFO)
    if bool(job_args.job_id) != bool(job_args.job_store):
        print("error: --job-id and --job-store go together (the job's id in that store).", file=sys.stderr)
        return 2
    store = SessionStore(job_args.job_store) if job_args.job_store else None
    try:
        try:
            config = parse_config(config_cls, rest)
        except StudioError as e:
            print(f"error: {e}", file=sys.stderr)
            if store is not None:
                store.finish_job(job_args.job_id, "failed", exit_code=2, reason=f"invalid config: {e}")
            return 2
        if store is None:
            return _run_foreground(config, run, job_args)
        return _run_recorded(config, run, store, job_args)
    finally:
        if store is not None:
            store.close()


def _run_foreground(config: Any, run: RunFn, job_args: argparse.Namespace) -> int:
    """Run in this process: the config is saved in the run folder (so the run can be repeated),
    and SIGTERM or Ctrl-C asks the kind to stop after its current unit, as a job's cancel does."""
    run_dir = Path(job_args.run_dir or (Path(job_args.config).parent if job_args.config else Path.cwd()))
    ctx = _LoggingContext(run_dir, resuming=job_args.resume)
    if not job_args.config:
        save_config(config, run_dir / "config.json")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, ctx.request_stop)
    try:
        run(config, ctx)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _print_result(ctx.summary)
    return 0


def _run_recorded(config: Any, run: RunFn, store: SessionStore, job_args: argparse.Namespace) -> int:
    job = store.get_job(job_args.job_id)
    with StoreContext(store, job["id"], Path(job["folder"]), resuming=job_args.resume) as ctx:
        try:
            run(config, ctx)
        except Exception as e:
            traceback.print_exc()
            reason = str(e) if isinstance(e, StudioError) else f"{type(e).__name__}: {e}"
            store.finish_job(ctx.job_id, "failed", exit_code=1, reason=reason)  # type: ignore[arg-type]
            return 1
    if ctx.should_stop():
        step, total = ctx.last_step
        where = f"at step {step}" + (f" of {total}" if total else "")
        store.finish_job(ctx.job_id, "cancelled", exit_code=0,  # type: ignore[arg-type]
                         reason=f"stopped on request (SIGTERM) {where}; resume continues from its last checkpoint")
    else:
        store.finish_job(ctx.job_id, "done", exit_code=0)  # type: ignore[arg-type]
    _print_result(ctx.summary)
    return 0


def _print_result(summary: dict[str, Any] | None) -> None:
    print(json.dumps(summary if summary is not None else {}, default=str), flush=True)


def _job_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--job-id", help="the job's id in --job-store (set by the job runner)")
    parser.add_argument("--job-store", help="the session store's database file (with --job-id)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    parser.add_argument("--run-dir", help="run folder when run without a store (default: the config file's folder)")
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser


class _LoggingContext(RecordingContext):
    """``RecordingContext`` that also logs each report, for a kind run in the foreground."""

    def __init__(self, run_dir: Path, *, resuming: bool) -> None:
        super().__init__(run_dir, resuming=resuming)

    def request_stop(self, *_: Any) -> None:
        """Signal handler: the kind finishes its current unit, checkpoints and returns."""
        logger.warning("stop requested: finishing the current step")
        self.stop_requested = True

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        super().progress(step, total, message)
        logger.info("step %d/%s %s", step, total if total is not None else "?", message)

    def metric(self, step: int, name: str, value: float) -> None:
        super().metric(step, name, value)
        logger.info("step %d: %s = %g", step, name, value)

    def artifact(self, name: str, path: Path, kind: str = "file") -> None:
        super().artifact(name, path, kind)
        logger.info("artifact %s (%s): %s", name, kind, path)
