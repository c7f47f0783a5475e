"""PARROT stage 2, consistency filtering: keep only rationales that re-predict their label.

Each rationale is checked in order, and the first failed check is its rejection reason:

1. ``teacher_failed`` / ``malformed``: a side's teacher call failed or its text did not parse;
   ``parser_warnings``: the parser had to repair or found something missing (unless allowed);
   ``no_score``: a side has no score that counts under the scoring policy.
2. ``tie_dropped`` / ``both_bad_dropped``: the label is a tie or both-bad and those are dropped.
3. ``scores_disagree``: the preference re-predicted from the rationale's own scores, without the
   label (``ScoringPolicy`` with ``tie_tolerance``; both-bad: both below ``bad_threshold``),
   differs from the label.
4. ``rejudge_failed`` / ``rejudge_disagrees``: optionally, a second critic judges the pair without
   the label (one pairwise call) and must agree with it.
5. ``over_sample_limit``: the pair already has ``samples_per_pair`` kept rationales.

Writes ``kept.jsonl`` and ``rejected.jsonl`` (each record's ``extra`` says why and what was
predicted) to the run folder; the summary has the acceptance rate and the count of each reason.

    python -m studio.parrot.filter --rationales runs/gen/rationales.jsonl --run-dir runs/filter
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from models.critic.parser import parse_critique
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, CritiqueParseError
from models.images import prepare_image
from models.types import PairRequest
from studio.config import _check_choice, _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.anchoring import agreement
from studio.parrot.rationale import Rationale, read_rationales, rebased, write_rationales
from studio.parrot.teacher import build_critic, check_spec

logger = logging.getLogger(__name__)

KEPT_FILE, REJECTED_FILE = "kept.jsonl", "rejected.jsonl"
REASONS = (
    "teacher_failed", "malformed", "parser_warnings", "no_score", "tie_dropped", "both_bad_dropped",
    "scores_disagree", "rejudge_failed", "rejudge_disagrees", "over_sample_limit",
)


@dataclass
class FilterConfig:
    """PARROT consistency filtering: keep rationales whose own scores re-predict the label."""

    rationales: str = field(default="", metadata={"help": "the rationales.jsonl written by generate"})
    tie_tolerance: float = field(default=0.02, metadata={"help": "scores closer than this are a tie (0-1 scale)"})
    bad_threshold: float = field(default=0.5, metadata={"help": "both_bad: both overall scores below this"})
    allow_warnings: bool = field(default=False, metadata={"help": "keep critiques the parser had to repair"})
    ties: Literal["keep", "drop"] = field(
        default="keep", metadata={"help": "tie labels: keep (must re-predict a tie) or drop"})
    both_bad: Literal["keep", "drop"] = field(default="keep", metadata={"help": "both_bad labels: keep or drop"})
    samples_per_pair: int = field(default=1, metadata={"help": "kept rationales per pair at most"})
    rejudge: dict | None = field(
        default=None, metadata={"help": "a second critic's spec for a label-blind pairwise re-judgement"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        if not self.rationales:
            raise ConfigError("rationales: give the rationales.jsonl that generate wrote.")
        _check_float("tie_tolerance", self.tie_tolerance, low=0, high=1)
        _check_float("bad_threshold", self.bad_threshold, low=0, high=1)
        _check_choice("ties", self.ties, ("keep", "drop"))
        _check_choice("both_bad", self.both_bad, ("keep", "drop"))
        _check_int("samples_per_pair", self.samples_per_pair, low=1)
        if self.rejudge is not None:
            check_spec(self.rejudge, "rejudge")


def run(config: FilterConfig, ctx: JobContext) -> dict[str, Any]:
    """Check every rationale, write kept and rejected ones, report the acceptance rate and reasons."""
    source = Path(config.rationales)
    run_dir = Path(ctx.run_dir)
    rationales = [rebased(r, source.parent, run_dir) for r in read_rationales(source)]
    policy = ScoringPolicy(tie_tolerance=config.tie_tolerance)
    verdicts = [check(r, config, policy) for r in rationales]
    if config.rejudge is not None:
        verdicts = _rejudge(rationales, verdicts, config, policy, run_dir)
    kept: list[Rationale] = []
    rejected: list[Rationale] = []
    per_pair: Counter[str] = Counter()
    for rationale, (reason, predicted) in zip(rationales, verdicts):
        if reason is None and per_pair[rationale.pair_id] >= config.samples_per_pair:
            reason = "over_sample_limit"
        marked = replace(rationale, extra={**rationale.extra, "reason": reason, "predicted": predicted})
        if reason is None:
            per_pair[rationale.pair_id] += 1
            kept.append(marked)
        else:
            rejected.append(marked)
    write_rationales(run_dir / KEPT_FILE, kept)
    write_rationales(run_dir / REJECTED_FILE, rejected)
    summary = _summary(rationales, kept, rejected)
    ctx.metric(len(rationales), "acceptance_rate", summary["acceptance_rate"])
    ctx.progress(len(rationales), len(rationales), f"kept {len(kept)} of {len(rationales)}")
    ctx.artifact("kept rationales", run_dir / KEPT_FILE, "dataset")
    ctx.artifact("rejected rationales", run_dir / REJECTED_FILE, "table")
    ctx.result(summary)
    return summary


def check(rationale: Rationale, config: FilterConfig, policy: ScoringPolicy) -> tuple[str | None, str | None]:
    """(rejection reason or ``None``, the preference the rationale's scores predict)."""
    critiques = []
    for side in (rationale.a, rationale.b):
        if side.failure is not None or side.raw is None:
            failure = side.failure or ""
            return ("teacher_failed" if failure.startswith("teacher failed") or side.raw is None else "malformed"), None
        try:
            critique = parse_critique(side.raw, rationale.task)
        except CritiqueParseError:
            return "malformed", None
        if critique.warnings and not config.allow_warnings:
            return "parser_warnings", None
        if policy.score(critique) is None:
            return "no_score", None
        critiques.append(critique)
    if rationale.label == "tie" and config.ties == "drop":
        return "tie_dropped", None
    if rationale.label == "both_bad" and config.both_bad == "drop":
        return "both_bad_dropped", None
    found = agreement(critiques[0], critiques[1], rationale.label, policy, config.bad_threshold)
    return (None if found.agrees else "scores_disagree"), found.predicted


def _rejudge(
    rationales: list[Rationale], verdicts: list[tuple[str | None, str | None]], config: FilterConfig,
    policy: ScoringPolicy, run_dir: Path,
) -> list[tuple[str | None, str | None]]:
    """Ask the second critic, label-blind, about every pair still in; reject where it disagrees."""
    todo = [i for i, (reason, _) in enumerate(verdicts) if reason is None]
    critic = build_critic(config.rejudge or {}, "rejudge")
    try:
        results = critic.judge([_pair_request(rationales[i], run_dir) for i in todo])
    finally:
        critic.close()
    verdicts = list(verdicts)
    for i, result in zip(todo, results):
        if not result.ok:
            verdicts[i] = ("rejudge_failed", None)
            continue
        winner = policy.pairwise_winner(result)  # type: ignore[arg-type]
        label = rationales[i].label
        agrees = winner == label or (label == "both_bad")  # a pairwise judge cannot say both-bad
        verdicts[i] = (None if agrees else "rejudge_disagrees", verdicts[i][1])
    return verdicts


def _pair_request(rationale: Rationale, run_dir: Path) -> PairRequest:
    def image(key: str) -> Any:
        path = rationale.images.get(key)
        return None if path is None else prepare_image(run_dir / path, what=f"{rationale.rationale_id}: image {key}")

    return PairRequest(rationale.task, rationale.prompt, image("a"), image("b"), image("source"))


def _summary(rationales: list[Rationale], kept: list[Rationale], rejected: list[Rationale]) -> dict[str, Any]:
    reasons = Counter(r.extra["reason"] for r in rejected)
    summary: dict[str, Any] = {
        "stage": "filter",
        "n": len(rationales),
        "kept": len(kept),
        "rejected": len(rejected),
        "acceptance_rate": len(kept) / len(rationales) if rationales else 0.0,
        "reasons": {reason: reasons[reason] for reason in REASONS if reasons[reason]},
        "pairs": len({r.pair_id for r in rationales}),
        "pairs_kept": len({r.pair_id for r in kept}),
    }
    known = [r for r in kept if r.truth is not None]
    if known:  # shapes world: how many kept rationales explain a wrong ("flipped") label
        summary["kept_with_wrong_label"] = sum(r.label != r.truth for r in known)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.filter --config FILE [flags]``."""
    return run_kind(FilterConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
