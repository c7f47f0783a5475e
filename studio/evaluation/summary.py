"""The figures of an evaluation run: accuracy with a 95% Wilson interval, counts, ties, position
consistency, and per-model and per-dimension breakdowns.

Denominators follow the benchmark reference: ``accuracy`` is over every row whose label names a
better image (failed and not yet judged rows count as wrong), ``accuracy_answered`` over those
the critic answered, and ``accuracy_with_ties`` (benchmarks with tie labels) over every row, a
tie or both-bad label being matched by a predicted tie.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from studio.evaluation.layouts import PreferenceRow
from studio.evaluation.published import PUBLISHED_ACCURACY
from studio.evaluation.results import RowResult

Z_95 = 1.959964
#: Benchmarks whose labels include ties (and so report ``accuracy_with_ties``).
TIE_BENCHMARK_PREFIXES = ("genai-bench", "editreward-bench", "studio-votes", "shapes")
#: How many failed rows the summary lists (the exported rows list every one).
LISTED_FAILURES = 50


def wilson_interval(correct: int, n: int, z: float = Z_95) -> list[float] | None:
    """The Wilson score interval ``[low, high]`` of ``correct / n`` (``None`` when ``n`` is 0)."""
    if n == 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def sign_test_p(gained: int, lost: int) -> float:
    """The exact two-sided sign test's p-value for ``gained`` items that improved against ``lost``
    that got worse (ties left out; with 0/1 outcomes, McNemar's exact test): the chance of a split
    at least this uneven when each changed item is a fair coin."""
    changed = gained + lost
    if changed == 0:
        return 1.0
    tail = sum(math.comb(changed, k) for k in range(min(gained, lost) + 1)) / 2 ** changed
    return min(1.0, 2 * tail)


def ratio(part: int, whole: int) -> float | None:
    """``part / whole``, or ``None`` when ``whole`` is 0."""
    return part / whole if whole else None


def summarize(rows: list[PreferenceRow], results: dict[int, RowResult], *, benchmark: str, critic: str,
              mode: str, both_orders: bool, tie_tolerance: float, weights: dict[str, float] | None) -> dict[str, Any]:
    """The run's summary dict (JSON-ready) from every row read and the results recorded so far."""
    decisive = [row for row in rows if row.decisive]
    done = [results[row.index] for row in rows if row.index in results]
    answered = [r for r in done if r.answered]
    failed = [r for r in done if not r.answered]
    right = sum(1 for row in decisive if row.index in results and results[row.index].correct)
    answered_decisive = [r for r in answered if r.label in ("A", "B")]
    checked = [r for r in answered if r.consistent is not None]
    summary: dict[str, Any] = {
        "benchmark": benchmark, "critic": critic, "mode": mode,
        "n": len(rows), "answered": len(answered), "failed": len(failed), "pending": len(rows) - len(done),
        "ties": len(rows) - len(decisive), "decisive": len(decisive),
        "accuracy": ratio(right, len(decisive)),
        "accuracy_ci": wilson_interval(right, len(decisive)),
        "accuracy_answered": ratio(sum(r.correct for r in answered_decisive), len(answered_decisive)),
        "predicted_ties": sum(1 for r in answered if r.winner == "tie"),
        "position_consistency": ratio(sum(1 for r in checked if r.consistent), len(checked)),
        "both_orders": both_orders, "tie_tolerance": tie_tolerance, "weights": weights,
        "protocol": protocol(benchmark, both_orders),
    }
    if benchmark.startswith(TIE_BENCHMARK_PREFIXES):
        summary["accuracy_with_ties"] = ratio(sum(r.correct for r in done), len(rows))
    summary["per_model"] = per_model(rows, results)
    summary["per_dimension"] = per_dimension(answered_decisive)
    summary["failed_rows"] = [{"row_index": r.row_index, "row_id": r.row_id, "reason": r.failure}
                              for r in failed[:LISTED_FAILURES]]
    if benchmark in PUBLISHED_ACCURACY:
        summary["published_accuracy_percent"] = PUBLISHED_ACCURACY[benchmark]
    return summary


def protocol(benchmark: str, both_orders: bool) -> str:
    """How this run's accuracy is counted, in words (printed beside the numbers)."""
    parts = ["pairwise accuracy over rows with a decisive label (tie and both-bad labels excluded); "
             "failed rows count as wrong in 'accuracy' and are left out of 'accuracy_answered'"]
    if benchmark.startswith(TIE_BENCHMARK_PREFIXES):
        parts.append("'accuracy_with_ties' counts every row, a tie or both-bad label matched by a predicted tie")
    if benchmark == "editreward-bench":
        parts.append("EditReward-Bench K=2 pair accuracy (not group accuracy)")
    if both_orders:
        parts.append("judged A/B and B/A: a pair counts as right only when both orders agree with the label")
    return "; ".join(parts) + "."


def per_model(rows: list[PreferenceRow], results: dict[int, RowResult]) -> dict[str, dict[str, Any]]:
    """Accuracy over the decisive rows in which each model appears (either side)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if not row.decisive:
            continue
        correct = row.index in results and results[row.index].correct
        for model in {row.model_a, row.model_b} - {None, ""}:
            counts[model][0] += correct  # type: ignore[index]
            counts[model][1] += 1  # type: ignore[index]
    return {model: {"n": n, "accuracy": ratio(c, n)} for model, (c, n) in sorted(counts.items())}


def per_dimension(answered_decisive: Iterable[RowResult]) -> dict[str, dict[str, Any]]:
    """For each dimension: how often its own scores alone (higher wins) pick the labelled image,
    over the answered decisive rows where both images have a score on it."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in answered_decisive:
        for key, (a, b) in r.dimensions.items():
            if a is None or b is None:
                continue
            winner = "A" if a > b else "B" if b > a else "tie"
            counts[key][0] += winner == r.label
            counts[key][1] += 1
    return {key: {"n": n, "accuracy": ratio(c, n)} for key, (c, n) in sorted(counts.items())}
