"""The preference benchmark runner, a job kind: ``python -m studio.evaluation.run --config FILE``.

It reads a benchmark (``layouts``), judges its rows in batches with a critic built from a backend
spec (``judging``), stores one result per row in the session store (``results``), and reports
progress, a running-accuracy curve, the exported rows and the summary (``summary``) to its
``JobContext``. The **last line on stdout is the summary as one JSON object**.

Flags are ``EvalConfig``'s fields (``--data``, ``--mode``, ``--tie-tolerance``, ...; ``--config FILE``
reads them from JSON first) plus the job flags of ``studio.jobs.entry`` (``--job-id ID --job-store
DB`` from the job runner: the job id is the run's identity; ``--run-dir DIR`` outside it).
``--resume`` continues the run of the same job id or run folder: finished rows are kept, failed
ones are judged again. ``python -m studio eval`` runs the same code with the app's critic flags.

Example::

    python -m studio.evaluation.run --data shapes:t2i:500:seed0 --mode pointwise --store .studio --run-dir runs/e1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.base import Critic
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError
from models.registry import load_backend
from studio.config import _check_choice, _check_int
from studio.evaluation.judging import JudgeSettings, Mode, judge_rows
from studio.evaluation.layouts import LAYOUT_NAMES, LayoutName, PreferenceRow, TaskOption, load_rows
from studio.evaluation.results import EvalRows, RowResult
from studio.evaluation.summary import summarize
from studio.jobs.config import (
    config_fields,
    config_from_dict,
    json_object,
    config_parser,
    load_config_values,
)
from studio.jobs.context import JobContext, RecordingContext
from studio.jobs.entry import run_kind
from studio.options import config_from_args
from studio.services import Services
from studio.store import SessionStore

logger = logging.getLogger(__name__)

#: Spec settings left out of a critic's display name (secrets, and what does not change answers).
_UNNAMED_SETTINGS = frozenset({"backend", "name", "api_key", "api_key_env", "parse_retries", "concurrency",
                               "timeout_s", "max_retries", "backoff_s"})


def _default_critic() -> dict[str, Any]:
    return {"backend": "shapes"}


@dataclass
class EvalConfig:
    """Evaluate a critic on a preference benchmark (accuracy against human or known labels)."""

    data: str = field(default="", metadata={"help": "a parquet file, a folder of *.parquet, a studio vote export "
                                                    "(.jsonl/.parquet), or a shapes set shapes:TASK:N[:seedS]"})
    layout: LayoutName = field(default="auto", metadata={"help": "the file layout; auto detects it by its columns"})
    task: TaskOption = field(default="auto", metadata={"help": "MMRB2's task when the layout does not name it; "
                                                               "auto: edit when rows carry prompt_images"})
    mode: Mode = field(default="pairwise", metadata={"help": "pairwise: one call per pair; pointwise: one critique "
                                                             "per image, then compare the scores"})
    tie_tolerance: float = field(default=0.02, metadata={"help": "scores (0-1) closer than this are a tie"})
    position_consistency: bool | None = field(default=None, metadata={
        "help": "pairwise: also judge B/A; a pair is right only when both orders agree (unset: the "
                "benchmark's protocol, on for MMRB2)"})
    weights: dict[str, float] | None = field(default=None, metadata={
        "help": "ScoringPolicy dimension weights as JSON, e.g. {\"text_faithfulness\": 2, \"physical_quality\": 1} "
                "(unset: every scored dimension, equal weights)"})
    critic: dict[str, Any] = field(default_factory=_default_critic, metadata={
        "help": "the critic backend spec as JSON, as in StudioConfig (e.g. {\"backend\": \"openai\", "
                "\"base_url\": \"http://localhost:8000/v1\"})"})
    store: str = field(default=".studio", metadata={"help": "the session store: a folder, or its studio.db file"})
    limit: int | None = field(default=None, metadata={"help": "judge only the first N rows"})
    batch_size: int = field(default=64, metadata={"help": "rows per critic call (an HTTP critic runs a call's "
                                                          "requests concurrently)"})
    concurrency: int | None = field(default=None, metadata={"help": "requests in flight at once (OpenAI-compatible "
                                                                    "critic only; unset: the backend's)"})
    retries: int = field(default=1, metadata={"help": "times an unparseable answer is asked again before the row "
                                                      "fails"})
    reuse_critiques: bool = field(default=True, metadata={"help": "pointwise: reuse stored critiques of the same "
                                                                  "image, request and critic"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a missing data source or a setting out of range."""
        if not isinstance(self.data, str) or not self.data.strip():
            raise ConfigError("data is required: a benchmark file or folder, or a shapes set like shapes:t2i:500.")
        _check_choice("layout", self.layout, LAYOUT_NAMES)
        _check_choice("task", self.task, ("auto", "t2i", "edit"))
        _check_choice("mode", self.mode, ("pairwise", "pointwise"))
        if self.position_consistency and self.mode == "pointwise":
            raise ConfigError("position_consistency (A/B then B/A) applies to pairwise mode; pointwise critiques "
                              "see one image at a time.")
        if not isinstance(self.critic, dict) or not isinstance(self.critic.get("backend"), str):
            raise ConfigError(f"critic must be a backend spec like {{\"backend\": \"shapes\"}}, got {self.critic!r}.")
        if self.concurrency is not None:
            _check_int("concurrency", self.concurrency, low=1)
            if self.critic["backend"] != "openai":
                raise ConfigError(f"concurrency applies to an OpenAI-compatible critic; this critic's backend is "
                                  f"{self.critic['backend']!r}.")
        if self.limit is not None:
            _check_int("limit", self.limit, low=1)
        _check_int("batch_size", self.batch_size, low=1)
        _check_int("retries", self.retries, low=0)
        self.policy()

    def policy(self) -> ScoringPolicy:
        """The ``ScoringPolicy`` rows are scored with. Raises ``ConfigError`` for bad weights."""
        if isinstance(self.tie_tolerance, bool) or not isinstance(self.tie_tolerance, (int, float)) \
                or not math.isfinite(self.tie_tolerance) or not 0 <= self.tie_tolerance <= 1:
            raise ConfigError(f"tie_tolerance must be a number between 0 and 1, got {self.tie_tolerance!r}.")
        return ScoringPolicy(weights=self.weights, tie_tolerance=float(self.tie_tolerance),
                             name="default" if self.weights is None else "custom")

    def both_orders(self, benchmark: str) -> bool:
        """Whether pairs are judged A/B and B/A: as set, else the benchmark's protocol (MMRB2)."""
        if self.mode != "pairwise":
            return False
        return self.position_consistency if self.position_consistency is not None else benchmark.startswith("mmrb2")

    def critic_spec(self) -> dict[str, Any]:
        """The critic spec with the run's name, ``parse_retries`` and ``concurrency`` filled in."""
        spec = {**self.critic, "parse_retries": self.retries, "name": self.critic.get("name") or critic_label(self.critic)}
        if self.concurrency is not None:
            spec["concurrency"] = self.concurrency
        return spec


def critic_label(spec: dict[str, Any]) -> str:
    """A critic's name from its spec: the backend plus the settings that change its answers,
    e.g. ``shapes`` or ``shapes(perception_noise=0.2)``. Runs, leaderboard rows and cached
    critiques are told apart by it."""
    settings = {k: v for k, v in sorted(spec.items()) if k not in _UNNAMED_SETTINGS and v is not None}
    if not settings:
        return str(spec["backend"])
    return f"{spec['backend']}({', '.join(f'{k}={v}' for k, v in settings.items())})"


def build_critic(config: EvalConfig) -> Critic:
    """Build the critic ``config.critic`` describes (through the backend registry)."""
    spec = config.critic_spec()
    return load_backend("critic", spec["backend"], **{k: v for k, v in spec.items() if k != "backend"})


def store_path(store: str | Path) -> Path:
    """The database file of ``store``: a ``.db`` file as given, else ``<folder>/studio.db``."""
    path = Path(store)
    return path if path.suffix == ".db" else path / "studio.db"


def run_id_of(ctx: JobContext) -> str:
    """The identity of a run in the store: its job id, or its run folder outside the job runner."""
    return ctx.job_id or f"run:{ctx.run_dir.resolve()}"


# -- running -------------------------------------------------------------------------------------


def run(config: EvalConfig, ctx: JobContext) -> dict[str, Any]:
    """Run the benchmark with the store and critic ``config`` names; return the summary."""
    store = SessionStore(store_path(config.store))
    try:
        return execute(config, ctx, store)
    finally:
        store.close()


def execute(config: EvalConfig, ctx: JobContext, store: SessionStore, *, critic: Critic | None = None) -> dict[str, Any]:
    """Run the benchmark against an open ``store``: read the rows, build the critic, judge the
    rows not finished yet, and report the summary (``ctx.result``) and the exported rows.

    :param critic: judge with this critic instead of building ``config.critic`` (for embedding
        and tests); it is then left open.
    """
    config.validate()
    benchmark, rows = load_rows(config.data, layout=config.layout, task=config.task, limit=config.limit)
    table = EvalRows(store, run_id_of(ctx))
    recorded = table.recorded()
    if recorded and not ctx.resuming:
        raise ConfigError(f"This run ({table.run_id}) already has {len(recorded)} judged row(s); pass --resume to "
                          "continue it, or start a new run folder.")
    _check_same_rows(rows, recorded)
    own = critic is None
    critic = critic or build_critic(config)
    try:
        services = Services(store=store, critic=critic)
        settings = JudgeSettings(config.mode, config.policy(), config.both_orders(benchmark), config.reuse_critiques)
        stopped = _judge_all(rows, recorded, table, services, settings, ctx, benchmark, config.batch_size)
    finally:
        close = getattr(critic, "close", None)
        if own and close is not None:
            close()
    summary = summarize(rows, table.recorded(), benchmark=benchmark, critic=critic.name, mode=config.mode,
                        both_orders=settings.both_orders, tie_tolerance=settings.policy.tie_tolerance,
                        weights=config.weights)
    summary.update(run_id=table.run_id, data=config.data, stopped=stopped)
    _report(summary, table, ctx)
    return summary


def _check_same_rows(rows: list[PreferenceRow], recorded: dict[int, RowResult]) -> None:
    by_index = {row.index: row for row in rows}
    for index, result in recorded.items():
        row = by_index.get(index)
        if row is None or row.row_id != result.row_id:
            raise ConfigError(f"The benchmark rows changed since this run started (row {index} was "
                              f"{result.row_id!r}, now {row.row_id if row else 'missing'!r}); start a new run.")


def _judge_all(rows: list[PreferenceRow], recorded: dict[int, RowResult], table: EvalRows, services: Services,
               settings: JudgeSettings, ctx: JobContext, benchmark: str, batch_size: int) -> bool:
    """Judge every row without a finished result, batch by batch; return whether it was stopped."""
    results = dict(recorded)
    todo = [row for row in rows if row.index not in results or not results[row.index].answered]
    if recorded:
        logger.info("resuming: %d row(s) finished, %d to judge", len(rows) - len(todo), len(todo))
    ctx.progress(len(rows) - len(todo), len(rows), "starting")
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        if ctx.should_stop():
            logger.info("stopped after %d of %d rows", len(results), len(rows))
            return True
        judged = judge_rows(todo[start:start + batch_size], services, settings)
        table.save(judged, benchmark=benchmark, mode=settings.mode, critic_name=services.get_critic().name)
        results.update({r.row_index: r for r in judged})
        decisive = [r for r in results.values() if r.label in ("A", "B")]
        accuracy = sum(r.correct for r in decisive) / len(decisive) if decisive else 0.0
        failed = sum(1 for r in results.values() if not r.answered)
        ctx.metric(len(results), "accuracy", accuracy)
        ctx.progress(len(results), len(rows), f"accuracy {accuracy:.3f}, {failed} failed, "
                                              f"{time.perf_counter() - started:.0f} s")
    return False


def _report(summary: dict[str, Any], table: EvalRows, ctx: JobContext) -> None:
    csv_path, jsonl_path = table.export(ctx.run_dir)
    ctx.artifact("rows.csv", csv_path, "table")
    ctx.artifact("rows.jsonl", jsonl_path, "table")
    summary_path = ctx.run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    ctx.artifact("summary.json", summary_path, "file")
    ctx.result(summary)


# -- outside the job runner ---------------------------------------------------------------------


class StderrContext(RecordingContext):
    """The context of ``python -m studio eval``: progress lines on stderr (unless ``quiet``), every
    report also kept as in ``RecordingContext``."""

    def __init__(self, run_dir: Path, *, resuming: bool = False, quiet: bool = False) -> None:
        super().__init__(run_dir, resuming=resuming)
        self.quiet = quiet

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        super().progress(step, total, message)
        if not self.quiet:
            print(f"eval: {step}/{total} rows {message}", file=sys.stderr, flush=True)


def resolve_run_dir(run_dir: str | None, config: EvalConfig, *, resuming: bool) -> Path:
    """The run folder of ``python -m studio eval``: ``run_dir`` when given, else a new folder
    under the store's ``eval/``."""
    if run_dir:
        return Path(run_dir)
    if resuming:
        raise ConfigError("--resume continues an earlier run: give its --run-dir (or its --job-id).")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return store_path(config.store).parent / "eval" / f"{stamp}-{uuid.uuid4().hex[:6]}"


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    """Add ``EvalConfig``'s flags (and ``--config``), ``--run-dir`` and ``--critic-settings`` to
    ``parser``: the ``python -m studio eval`` sub-command, whose app flags (``--critic``,
    ``--critic-url``, ``--store``, ...) are added after these and replace the config's spec flags."""
    config_parser(EvalConfig, parser)
    parser.add_argument("--run-dir", help="the run folder; give an earlier one with --resume "
                                          "(default: a new folder under the store's eval/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir: keep finished "
                                                              "rows, judge failed and missing ones")
    parser.add_argument("--critic-settings", type=json_object, metavar="JSON", default={},
                        help="more settings of the critic backend, e.g. '{\"perception_noise\": 0.2}' for the "
                             "shapes critic")


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The ``EvalConfig`` of ``python -m studio eval``'s flags: the critic spec comes from the
    app's critic flags (``studio.options``) plus ``--critic-settings``; flags override ``--config``."""
    values = load_config_values(args.config) if args.config else {}
    values.update({f.name: getattr(args, f.name) for f, _ in config_fields(EvalConfig)
                   if f.name not in ("critic", "store") and hasattr(args, f.name)})
    critic = config_from_args(args).critic or _default_critic()
    values.update(critic={**critic, **args.critic_settings}, store=args.store)
    return config_from_dict(EvalConfig, values)


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.evaluation.run --config FILE [flags] [--job-id ID --job-store DB] [--resume]``
    (how the job runner starts it); the summary is the last stdout line."""
    return run_kind(EvalConfig, run, argv)


#: A resumed job keeps its finished rows and judges the failed and missing ones.
RESUMABLE = True

if __name__ == "__main__":
    sys.exit(main())
