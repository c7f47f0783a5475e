"""Judge a batch of benchmark rows with the critic: pairwise (one call per pair, optionally in
both orders) or pointwise then compare (one critique per image, reusing critiques the store
already holds for the same pixels, request and critic).

Every row comes back as a ``RowResult``: a winner with both scores, or a failure with its reason
(an unreadable image, an answer that did not parse after the critic's retries, a server error).
A failure is never turned into a winner or a score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

from models.critic.scoring import ScoringPolicy
from models.errors import InvalidInputError
from models.types import Critique, CritiqueRequest, CritiqueResult, PairRequest, PairwiseJudgement, task_dimensions
from studio.evaluation.layouts import PreferenceRow, row_images
from studio.evaluation.results import RowResult
from studio.judge import judge_pairs
from studio.services import Services

logger = logging.getLogger(__name__)

Mode = Literal["pairwise", "pointwise"]


@dataclass(frozen=True)
class JudgeSettings:
    """How rows are judged: ``mode``, the scoring ``policy`` (weights, tie tolerance), whether
    pairwise judging also asks B/A (``both_orders``), and whether pointwise mode reuses stored
    critiques (``reuse_critiques``)."""

    mode: Mode
    policy: ScoringPolicy
    both_orders: bool = False
    reuse_critiques: bool = True


def judge_rows(rows: Sequence[PreferenceRow], services: Services, settings: JudgeSettings) -> list[RowResult]:
    """Judge ``rows`` in one batched critic call; one ``RowResult`` per row, in order."""
    results: dict[int, RowResult] = {}
    ready: list[tuple[int, PairRequest]] = []
    for i, row in enumerate(rows):
        try:
            ready.append((i, row_images(row)))
        except InvalidInputError as e:
            results[i] = _base(row, failure=str(e))
    if ready:
        judge = _pairwise if settings.mode == "pairwise" else _pointwise
        judged = judge([rows[i] for i, _ in ready], [r for _, r in ready], services, settings)
        results.update({i: result for (i, _), result in zip(ready, judged, strict=True)})
    return [results[i] for i in range(len(rows))]


def _base(row: PreferenceRow, **values: object) -> RowResult:
    return RowResult(row.index, row.row_id, row.task, row.prompt, row.label, row.model_a, row.model_b, **values)  # type: ignore[arg-type]


def _pairwise(rows: list[PreferenceRow], requests: list[PairRequest], services: Services,
              settings: JudgeSettings) -> list[RowResult]:
    verdicts = judge_pairs(requests, services, policy=settings.policy, both_orders=settings.both_orders)
    results = []
    for row, verdict in zip(rows, verdicts, strict=True):
        dimensions = {key: [v.score_a, v.score_b] for key, v in verdict.dimensions.items()}
        merged = PairwiseJudgement(row.task, verdict.dimensions, verdict.summary, "")
        scores = settings.policy.pair_scores(merged) if verdict.dimensions else None
        # a pair with a failed order is a failure: the protocol needs every order it asked for
        failure = "; ".join(verdict.failures) or None
        results.append(_base(
            row, winner=None if failure else verdict.winner, failure=failure,
            score_a=scores[0] if scores else None, score_b=scores[1] if scores else None,
            consistent=verdict.consistent, judgement_id=verdict.judgement_id, dimensions=dimensions,
        ))
    return results


def _pointwise(rows: list[PreferenceRow], requests: list[PairRequest], services: Services,
               settings: JudgeSettings) -> list[RowResult]:
    store, critic = services.store, services.get_critic()
    found: dict[tuple[int, str], tuple[int, CritiqueResult]] = {}
    asks: list[tuple[tuple[int, str], CritiqueRequest, int]] = []
    for i, request in enumerate(requests):
        for side, image in (("A", request.image_a), ("B", request.image_b)):
            stored = store.save_image(image, role="eval")
            cached = store.find_critique(stored.sha256, task=request.task, prompt=request.prompt,
                                         critic_name=critic.name) if settings.reuse_critiques else None
            if cached is not None:
                found[(i, side)] = (cached, store.get_critique(cached))
            else:
                asks.append(((i, side), CritiqueRequest(request.task, request.prompt, image, request.source_image),
                             stored.id))
    if len(asks) < 2 * len(requests):
        logger.info("reusing %d stored critique(s)", 2 * len(requests) - len(asks))
    answers = critic.critique([request for _, request, _ in asks]) if asks else []
    for (key, request, image_id), result in zip(asks, answers, strict=True):
        score = settings.policy.score(result) if isinstance(result, Critique) else None
        critique_id = store.save_critique(result, task=request.task, prompt=request.prompt, image_id=image_id,
                                          critic_name=critic.name, score=score)
        found[key] = (critique_id, result)
    return [_compare(row, found[(i, "A")], found[(i, "B")], settings.policy) for i, row in enumerate(rows)]


def _compare(row: PreferenceRow, a: tuple[int, CritiqueResult], b: tuple[int, CritiqueResult],
             policy: ScoringPolicy) -> RowResult:
    (id_a, critique_a), (id_b, critique_b) = a, b
    ids = {"critique_a_id": id_a, "critique_b_id": id_b}
    failures = [f"image {side}: {c.reason}" for side, c in (("A", critique_a), ("B", critique_b))
                if not isinstance(c, Critique)]
    if failures:
        return _base(row, failure="; ".join(failures), **ids)
    assert isinstance(critique_a, Critique) and isinstance(critique_b, Critique)
    dimensions = {d.key: [critique_a.scores.get(d.key), critique_b.scores.get(d.key)]
                  for d in task_dimensions(row.task)}
    try:
        winner = policy.prefer(critique_a, critique_b)
    except InvalidInputError as e:
        return _base(row, failure=str(e), dimensions=dimensions, **ids)
    return _base(row, winner=winner, score_a=policy.score(critique_a), score_b=policy.score(critique_b),
                 dimensions=dimensions, **ids)
