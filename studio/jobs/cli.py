"""``python -m studio jobs start|list|show|logs|cancel|resume|wait``: background jobs, headless.

Every sub-command but ``logs`` prints JSON lines on stdout (one job per line); ``logs`` prints the
job's log as it is. ``start`` takes the kind's own config flags after the kind's name
(``python -m studio jobs start diagnose --inputs images/ --prompt "a red cube"``), or
``--config FILE``; ``--store`` and the runner's own flags (``--device``, ``--gpu-gb``,
``--parent``) come before the kind. ``wait`` exits 0 when the job is done, 1 when it failed or was cancelled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from studio.jobs.config import parse_config
from studio.jobs.procs import log_tail
from studio.jobs.registry import KINDS, load_kind
from studio.jobs.runner import Runner
from studio.jobs.view import job_summary
from studio.options import add_store_option
from studio.store import SessionStore


def add_jobs_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``jobs`` command and its sub-commands to ``commands``."""
    jobs = commands.add_parser("jobs", help="start, list, watch, cancel and resume background jobs",
                               description=__doc__.split("\n\n")[0])
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="queue a job; prints its record",
                           description=f"Queue a job of KIND ({', '.join(KINDS)}, or a package.module path); "
                                       "the flags after KIND are the kind's config (see `jobs start KIND --help`).")
    start.add_argument("--device", choices=("cpu", "cuda"), help="resource the job uses (default: its config's, else cpu)")
    start.add_argument("--gpu-gb", type=float, default=0.0, help="GPU memory (GiB) that must be free before it starts")
    start.add_argument("--parent", metavar="JOB_ID", help="start only after this job is done (a pipeline stage)")
    start.add_argument("kind", help="the job kind")
    start.add_argument("flags", nargs=argparse.REMAINDER, help="the kind's config flags")
    sub.add_parser("list", help="every job, newest first").add_argument("--status", help="only jobs in this status")
    for name, summary in (("show", "one job with its metrics and artifacts"), ("cancel", "stop a job"),
                          ("resume", "continue a failed or cancelled job from its checkpoint"),
                          ("wait", "wait until a job ends; exit 0 if it is done")):
        p = sub.add_parser(name, help=summary)
        p.add_argument("job_id")
        if name == "wait":
            p.add_argument("--timeout", type=float, help="give up after this many seconds (exit 2)")
    logs = sub.add_parser("logs", help="print a job's log")
    logs.add_argument("job_id")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    for action in sub.choices.values():
        add_store_option(action)


def run_jobs_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run one ``jobs`` sub-command; return the exit status (``StudioError`` propagates)."""
    store = SessionStore(Path(args.store) / "studio.db")
    try:
        runner = Runner(store)
        action = args.jobs_command
        if action == "start":
            if args.flags[:1] == ["--"]:
                args.flags = args.flags[1:]
            config = parse_config(load_kind(args.kind).config_cls, args.flags,
                                  prog=f"python -m studio jobs start {args.kind}")
            job_id = runner.submit(args.kind, config, device=args.device, gpu_gb=args.gpu_gb, parent_id=args.parent)
            _emit(out, job_summary(store.get_job(job_id)))
        elif action == "list":
            runner.poll()
            for job in store.list_jobs(status=args.status):
                _emit(out, job_summary(job))
        elif action == "show":
            runner.poll()
            record = job_summary(store.get_job(args.job_id))
            record.update(metrics=store.job_metrics(args.job_id), artifacts=store.job_artifacts(args.job_id))
            _emit(out, record)
        elif action == "logs":
            job = store.get_job(args.job_id)
            if args.tail is not None:
                text = log_tail(job["log_path"], args.tail)
            else:
                log = Path(job["log_path"])
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            out.write(text if text.endswith("\n") or not text else text + "\n")
        elif action in ("cancel", "resume"):
            message = getattr(runner, action)(args.job_id)
            _emit(out, {**job_summary(store.get_job(args.job_id)), "action": message})
        elif action == "wait":
            job = runner.wait(args.job_id, timeout_s=args.timeout)
            _emit(out, job_summary(job))
            return 0 if job["status"] == "done" else 1
        return 0
    finally:
        store.close()


def _emit(out: TextIO, record: dict) -> None:
    out.write(json.dumps(record, default=str) + "\n")
    out.flush()
