"""Judge two images for one prompt, and record a person's vote as a preference pair.

The critic judges the pair as A/B and, by default, also as B/A (both in one batched call); the
B/A result is mapped back to the A/B labels. When the two orders disagree the pair is a tie and
``consistent`` is False: position bias, not the images, decided it. A failed order is listed in
``failures`` and never turned into a verdict.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Sequence

from models.critic.scoring import ScoringPolicy, position_consistency
from models.errors import InvalidInputError
from models.images import check_prompt
from PIL import Image

from models.types import DimensionVerdict, GenerationRequest, PairRequest, PairResult, PairwiseJudgement, Task, Winner
from studio.grammar import check_request
from studio.services import Services
from studio.store import VOTES, SessionStore

logger = logging.getLogger(__name__)

_SWAP: dict[str, Winner] = {"A": "B", "B": "A", "tie": "tie"}


@dataclass
class PairVerdict:
    """The critic's verdict on a pair, in the A/B labels of the request.

    ``winner`` is ``None`` when no order could be judged. ``consistent`` is ``None`` unless both
    orders were judged. ``dimensions`` holds per-dimension scores averaged over the judged orders
    (``winner`` per dimension from those averages). ``failures`` names each order that failed.
    """

    winner: Winner | None
    consistent: bool | None
    winner_ab: Winner | None
    winner_ba: Winner | None
    dimensions: dict[str, DimensionVerdict]
    summary: str | None
    raw_ab: str | None
    raw_ba: str | None
    failures: list[str] = field(default_factory=list)
    judgement_id: int | None = None
    image_a_id: int | None = None
    image_b_id: int | None = None
    source_image_id: int | None = None

    @property
    def ok(self) -> bool:
        """Whether a winner could be named."""
        return self.winner is not None


def judge_pair(
    request: PairRequest,
    services: Services,
    *,
    policy: ScoringPolicy | None = None,
    both_orders: bool = True,
    visitor: str | None = None,
) -> PairVerdict:
    """Judge ``request.image_a`` against ``request.image_b`` and store the verdict.

    Example: ``judge_pair(PairRequest("t2i", "a red cube", img1, img2), services).winner``

    :param policy: how per-dimension scores become a winner (ties within its tolerance).
    :param both_orders: also judge B/A and check position consistency.
    :param visitor: who asks, in a shared deployment (recorded with the judgement).
    Raises ``InvalidInputError`` for an empty prompt or an edit without a source image.
    """
    return judge_pairs([request], services, policy=policy, both_orders=both_orders, visitor=visitor)[0]


def judge_pairs(
    requests: Sequence[PairRequest],
    services: Services,
    *,
    policy: ScoringPolicy | None = None,
    both_orders: bool = True,
    visitor: str | None = None,
) -> list[PairVerdict]:
    """Judge many pairs in one batched critic call (A/B and, with ``both_orders``, B/A of each)
    and store every verdict; the verdicts come back in the order of ``requests``.

    Raises ``InvalidInputError`` (before the critic is called) for an empty prompt or an edit
    without a source image in any request.
    """
    for request in requests:
        check_prompt(request.prompt)
    policy = policy or ScoringPolicy.default()
    critic = services.get_critic()
    batch: list[PairRequest] = []
    for request in requests:
        batch.append(request)
        if both_orders:
            batch.append(PairRequest(request.task, request.prompt, request.image_b, request.image_a,
                                     request.source_image))
    results = critic.judge(batch) if batch else []
    step = 2 if both_orders else 1
    verdicts = []
    for i, request in enumerate(requests):
        ab, ba = results[i * step], (results[i * step + 1] if both_orders else None)
        verdict = _verdict(ab, ba, policy)
        _save(services.store, request, verdict, critic.name, visitor)
        verdicts.append(verdict)
    return verdicts


def _verdict(ab: PairResult, ba: PairResult | None, policy: ScoringPolicy) -> PairVerdict:
    """The verdict from the A/B result and the B/A result (``None`` when only A/B was asked)."""
    failures: list[str] = []
    winner_ab = _winner(ab, policy, "A/B", failures)
    winner_ba = _winner(ba, policy, "B/A", failures) if ba is not None else None
    winner_ba = _SWAP[winner_ba] if winner_ba is not None else None
    consistent: bool | None = None
    winner: Winner | None
    if winner_ab is not None and winner_ba is not None:
        check = position_consistency(ab, ba, policy)  # type: ignore[arg-type]
        consistent, winner = check.consistent, check.final
    else:
        winner = winner_ab if winner_ab is not None else winner_ba
    judged = [r for r in (ab, _swapped(ba)) if isinstance(r, PairwiseJudgement)]
    return PairVerdict(
        winner=winner, consistent=consistent, winner_ab=winner_ab, winner_ba=winner_ba,
        dimensions=_merge(judged), summary=next((j.summary for j in judged if j.summary), None),
        raw_ab=ab.raw, raw_ba=ba.raw if ba is not None else None, failures=failures,
    )


def generate_pair(
    services: Services,
    task: Task,
    prompt: str,
    source: Image.Image | None,
    seeds: tuple[int, int],
    model_b: str | None = None,
) -> list[tuple[int, str]]:
    """Generate candidates A and B for one prompt (A with the configured generator, B with
    ``model_b`` or the same one), store them as judge images, and return ``(image id, generator
    name)`` for each.

    Raises ``InvalidInputError`` for an empty prompt or one the loaded world cannot read.
    """
    check_prompt(prompt)
    check_request(services, task, prompt)
    made = []
    for seed, model in zip(seeds, (None, model_b)):
        generator = services.get_generator(task, model)
        result = generator.generate(GenerationRequest(task, prompt, source, seed=seed))
        saved = services.store.save_image(result.images[0], role="judge", seed=seed, settings=result.settings)
        made.append((saved.id, generator.name))
    return made


def record_vote(
    store: SessionStore,
    target: int | PairRequest,
    vote: str,
    *,
    model_a: str | None = None,
    model_b: str | None = None,
    visitor: str | None = None,
) -> int:
    """Record a person's vote ("A", "B", "tie" or "both_bad") on a stored judgement (its id) or
    on a pair of images; return the vote id.

    :param visitor: who votes, in a shared deployment: recorded with the vote, and a judgement
        must be theirs.
    Raises ``InvalidInputError`` for an unknown vote, ``NotFoundError`` for an unknown judgement
    (or someone else's).
    """
    if vote not in VOTES:
        raise InvalidInputError(f"Unknown vote {vote!r}; use one of {list(VOTES)}.")
    if isinstance(target, PairRequest):
        check_prompt(target.prompt)
        a, b, source = _save_images(store, target)
        return store.save_vote(vote=vote, task=target.task, prompt=target.prompt, image_a_id=a, image_b_id=b,
                               source_image_id=source, model_a=model_a, model_b=model_b, visitor=visitor)
    row = store.get_judgement(target, visitor=visitor)
    return store.save_vote(vote=vote, task=row["task"], prompt=row["prompt"], image_a_id=row["image_a_id"],
                           image_b_id=row["image_b_id"], source_image_id=row["source_image_id"],
                           model_a=model_a, model_b=model_b, judgement_id=target, visitor=visitor)


def _winner(result: PairResult | None, policy: ScoringPolicy, order: str, failures: list[str]) -> Winner | None:
    if result is None:
        return None
    if not isinstance(result, PairwiseJudgement):
        failures.append(f"{order}: {result.reason}")
        return None
    try:
        return policy.pairwise_winner(result)
    except InvalidInputError as e:
        failures.append(f"{order}: {e}")
        return None


def _swapped(result: PairResult | None) -> PairResult | None:
    """A B/A judgement relabelled as A/B."""
    if not isinstance(result, PairwiseJudgement):
        return result
    dims = {
        key: DimensionVerdict(v.score_b, v.score_a, _SWAP[v.winner] if v.winner else None, v.justification)
        for key, v in result.dimensions.items()
    }
    return PairwiseJudgement(result.task, dims, result.summary, result.raw, list(result.warnings))


def _merge(judged: list[PairwiseJudgement]) -> dict[str, DimensionVerdict]:
    """Per-dimension scores averaged over the judged orders, winner from the averages."""
    keys = dict.fromkeys(k for j in judged for k in j.dimensions)
    merged = {}
    for key in keys:
        verdicts = [j.dimensions[key] for j in judged if key in j.dimensions]
        a, b = _mean([v.score_a for v in verdicts]), _mean([v.score_b for v in verdicts])
        if a is not None and b is not None:
            winner: Winner | None = "A" if a > b else "B" if b > a else "tie"
        else:
            winners = {v.winner for v in verdicts if v.winner}
            winner = winners.pop() if len(winners) == 1 else ("tie" if winners else None)
        merged[key] = DimensionVerdict(a, b, winner, next((v.justification for v in verdicts if v.justification), None))
    return merged


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _save_images(store: SessionStore, request: PairRequest) -> tuple[int, int, int | None]:
    a = store.save_image(request.image_a, role="judge").id
    b = store.save_image(request.image_b, role="judge").id
    source = store.save_image(request.source_image, role="source").id if request.source_image is not None else None
    return a, b, source


def _save(store: SessionStore, request: PairRequest, verdict: PairVerdict, critic_name: str,
          visitor: str | None) -> None:
    verdict.image_a_id, verdict.image_b_id, verdict.source_image_id = _save_images(store, request)
    verdict.judgement_id = store.save_judgement(
        task=request.task, prompt=request.prompt, image_a_id=verdict.image_a_id, image_b_id=verdict.image_b_id,
        source_image_id=verdict.source_image_id, critic_name=critic_name, winner=verdict.winner,
        consistent=None if verdict.consistent is None else int(verdict.consistent),
        dimensions=json.dumps({k: asdict(v) for k, v in verdict.dimensions.items()}),
        raw_ab=verdict.raw_ab, raw_ba=verdict.raw_ba, failures=json.dumps(verdict.failures), visitor=visitor,
    )
    logger.info("judgement %s: winner %s (consistent: %s)", verdict.judgement_id, verdict.winner, verdict.consistent)
