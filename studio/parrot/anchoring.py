"""Anchoring a teacher's critiques on a preference label.

Two mechanisms, used together:

* **The anchoring prompt** (for language-model teachers). The studio's own pointwise prompt for
  one image (``build_pointwise_prompt``: rubric, scoring method, refinement request, output
  layout) is extended with the other candidate image and the label stated as an established fact
  to explain from evidence in the image, never to repeat. The answer is therefore a normal
  protocol critique that the studio's parser reads.
* **Selection by agreement** (for every teacher, and the only one that works for the shapes-world
  reference critic, which cannot read the label). Several critiques are drawn per image; every
  (critique of A, critique of B) combination whose scores re-predict the label is a sample from
  the teacher's critiques *conditioned on the label* (rejection sampling: the kept combinations
  are distributed as the teacher's perceptions given that they agree with the label). Among the
  agreeing combinations the most typical ones (scores closest to the median of their image's
  draws) are kept, so the label picks between plausible perceptions instead of rewarding the
  wildest hallucination.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from models.critic.chat import ChatPrompt
from models.critic.prompts import build_pointwise_prompt
from models.critic.scoring import ScoringPolicy
from models.errors import InvalidInputError
from models.types import Critique, CritiqueRequest

Verdict = Literal["better", "worse", "tie", "both_bad"]

_VERDICT_TEXT: dict[str, str] = {
    "better": "preferred the image you are judging to the other candidate",
    "worse": "preferred the other candidate to the image you are judging",
    "tie": "found the image you are judging and the other candidate equally good",
    "both_bad": "found that both the image you are judging and the other candidate fail the request",
}

ANCHOR_INSTRUCTION = (
    "Careful human raters compared the two and {verdict}. Take this verdict as an established fact "
    "that your critique must explain: find the concrete evidence in the image you are judging that "
    "accounts for it, and let your scores show it. Do not quote or mention the verdict, the raters or "
    "the other candidate; write the critique in the layout above as if you had judged this image alone."
)


def side_verdict(label: str, side: Literal["a", "b"]) -> Verdict:
    """The label as seen from one image: ``"A"`` is ``"better"`` for side a and ``"worse"`` for b."""
    if label in ("tie", "both_bad"):
        return label  # type: ignore[return-value]
    if label not in ("A", "B"):
        raise InvalidInputError(f"Unknown preference label {label!r}; use A, B, tie or both_bad.")
    return "better" if (label == "A") == (side == "a") else "worse"


def anchored_prompt(request: CritiqueRequest, other: Image.Image, verdict: Verdict | None) -> ChatPrompt:
    """The studio's pointwise prompt for ``request.image``, followed by the other candidate and
    the anchoring instruction for ``verdict``; ``None`` leaves the label out (the un-anchored
    ablation still shows both images)."""
    prompt = build_pointwise_prompt(request)
    parts = [
        {"type": "text", "text": "\n\nFor context, the other candidate made for the same request:"},
        {"type": "image"},
    ]
    if verdict is not None:
        parts.append({"type": "text", "text": "\n\n" + ANCHOR_INSTRUCTION.format(verdict=_VERDICT_TEXT[verdict])})
    user = prompt.messages[-1]
    messages = [*prompt.messages[:-1], {**user, "content": [*user["content"], *parts]}]
    return ChatPrompt(
        kind="pointwise", messages=messages, images=[*prompt.images, other], request=prompt.request,
        meta={**prompt.meta, "anchor": verdict},
    )


@dataclass(frozen=True)
class Agreement:
    """Whether a pair of critiques re-predicts a label, and why not."""

    agrees: bool
    predicted: str
    reason: str = ""


def agreement(a: Critique, b: Critique, label: str, policy: ScoringPolicy, bad_threshold: float) -> Agreement:
    """Re-predict the preference from the two critiques' own scores and compare it with ``label``.

    A and B are compared with ``policy`` (its ``tie_tolerance`` decides ties). ``"both_bad"``
    agrees when both overall scores are below ``bad_threshold`` (on the [0, 1] scale). Raises
    ``InvalidInputError`` when a critique has no counted score.
    """
    winner = policy.prefer(a, b)
    if label == "both_bad":
        score_a, score_b = policy.score(a), policy.score(b)
        bad = score_a is not None and score_b is not None and max(score_a, score_b) < bad_threshold
        predicted = "both_bad" if bad else winner
        reason = "" if bad else f"scores {score_a:.2f} / {score_b:.2f} are not both below {bad_threshold:.2f}"
        return Agreement(bad, predicted, reason)
    agrees = winner == label
    return Agreement(agrees, winner, "" if agrees else f"the scores prefer {winner}, the label says {label}")


def typicality(critiques: list[Critique]) -> list[float]:
    """For each critique, the distance of its scores from the per-dimension medians of all of them
    (0 is the most typical draw)."""
    scored = [{key: value for key, value in c.scores.items() if value is not None} for c in critiques]
    keys = {key for scores in scored for key in scores}
    medians = {key: statistics.median([s[key] for s in scored if key in s]) for key in keys}
    return [sum(abs(value - medians[key]) for key, value in scores.items()) for scores in scored]


def choose_combinations(
    a: list[Critique], b: list[Critique], label: str | None, policy: ScoringPolicy, bad_threshold: float, samples: int,
) -> tuple[list[tuple[int, int]], int]:
    """Up to ``samples`` (index into ``a``, index into ``b``) combinations, and how many agreed.

    With a ``label``, only combinations that agree with it are chosen, most typical first,
    each draw used once where possible; when none agrees, the single most typical combination is
    returned (the filter then rejects it, and counts why). Without a label (no anchoring) the most
    typical combinations are returned.
    """
    if not a or not b:
        return [], 0
    spread_a, spread_b = typicality(a), typicality(b)
    combinations = [(i, j) for i in range(len(a)) for j in range(len(b))]
    ranked = sorted(combinations, key=lambda ij: spread_a[ij[0]] + spread_b[ij[1]])
    if label is None:
        return _distinct(ranked, samples), 0
    agreeing = [ij for ij in ranked if agreement(a[ij[0]], b[ij[1]], label, policy, bad_threshold).agrees]
    if not agreeing:
        return ranked[:1], 0
    return _distinct(agreeing, samples), len(agreeing)


def _distinct(ranked: list[tuple[int, int]], samples: int) -> list[tuple[int, int]]:
    """The first ``samples`` of ``ranked``, preferring combinations whose draws are not used yet."""
    chosen: list[tuple[int, int]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for i, j in ranked:
        if len(chosen) == samples:
            return chosen
        if i not in used_a and j not in used_b:
            chosen.append((i, j))
            used_a.add(i)
            used_b.add(j)
    for ij in ranked:  # fewer fresh draws than samples: reuse draws in new combinations
        if len(chosen) == samples:
            break
        if ij not in chosen:
            chosen.append(ij)
    return chosen
