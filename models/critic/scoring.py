"""How critiques become numbers and preferences: which dimensions count, their weights, the
[0, 1] scalar, ties, and the A/B vs B/A position check for pairwise judging."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Mapping

from models.errors import ConfigError, InvalidInputError
from models.types import (
    IMAGE_FAITHFULNESS,
    Critique,
    PairwiseJudgement,
    Winner,
    task_dimensions,
)

logger = logging.getLogger(__name__)

ALL_DIMENSION_KEYS: tuple[str, ...] = tuple(d.key for d in task_dimensions("edit"))
_SWAP: dict[str, Winner] = {"A": "B", "B": "A", "tie": "tie"}


def _non_negative_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class ScoringPolicy:
    """Which dimensions count and with what weight.

    ``weights``: ``None`` counts every scored dimension with weight 1; a mapping counts only the
    dimensions it names (weight 0 leaves one out). ``tie_tolerance`` is on the [0, 1] scale: two
    results closer than this are a tie. The scalar is ``(weighted mean - 1) / 3``; N/A and missing
    dimensions never count.
    """

    weights: Mapping[str, float] | None = None
    tie_tolerance: float = 0.02
    name: str = "default"

    def __post_init__(self) -> None:
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise ConfigError(f"Scoring weights must be a mapping of dimension to weight, got {self.weights!r}.")
            unknown = sorted(set(self.weights) - set(ALL_DIMENSION_KEYS))
            if unknown:
                raise ConfigError(
                    f"Unknown dimension(s) {unknown} in scoring weights; use {list(ALL_DIMENSION_KEYS)}."
                )
            for key, weight in self.weights.items():
                if not _non_negative_number(weight):
                    raise ConfigError(f"The weight of {key} must be a finite number >= 0, got {weight!r}.")
            object.__setattr__(self, "weights", {k: float(v) for k, v in self.weights.items()})
        if not _non_negative_number(self.tie_tolerance):
            raise ConfigError(f"tie_tolerance must be a finite number >= 0, got {self.tie_tolerance!r}.")

    # -- presets ------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> ScoringPolicy:
        """Every scored dimension, equal weights (the public README's average)."""
        return cls()

    @classmethod
    def rl_reward(cls) -> ScoringPolicy:
        """The public RL reward: equal weights, Image Faithfulness left out."""
        return cls(
            weights={key: 1.0 for key in ALL_DIMENSION_KEYS if key != IMAGE_FAITHFULNESS.key},
            name="rl_reward",
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoringPolicy:
        """Rebuild from ``to_dict`` output. Raises ``ConfigError`` for unknown keys or bad values."""
        allowed = {"weights", "tie_tolerance", "name"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"Unknown scoring setting(s) {unknown}; allowed: {sorted(allowed)}.")
        name = data.get("name", "custom")
        if not isinstance(name, str):
            raise ConfigError(f"The scoring policy name must be text, got {name!r}.")
        return cls(weights=data.get("weights"), tie_tolerance=data.get("tie_tolerance", 0.02), name=name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready settings."""
        return {
            "weights": None if self.weights is None else dict(self.weights),
            "tie_tolerance": self.tie_tolerance,
            "name": self.name,
        }

    # -- scoring ------------------------------------------------------------------------------

    def weight(self, key: str) -> float:
        """The weight of dimension ``key`` (0 when the policy leaves it out)."""
        return 1.0 if self.weights is None else self.weights.get(key, 0.0)

    def score(self, critique: Critique) -> float | None:
        """``(weighted mean of the counted scores - 1) / 3`` in [0, 1]; ``None`` when no counted
        dimension has a score."""
        return self._normalised_mean({k: v for k, v in critique.scores.items() if v is not None})

    def prefer(self, a: Critique, b: Critique) -> Winner:
        """``"A"`` or ``"B"`` for the critique with the higher score, ``"tie"`` within
        ``tie_tolerance``. Raises ``InvalidInputError`` when either has no counted score."""
        score_a, score_b = self.score(a), self.score(b)
        for label, value in (("A", score_a), ("B", score_b)):
            if value is None:
                raise InvalidInputError(
                    f"Critique {label} has no score that counts under the {self.name!r} scoring policy; "
                    "it cannot be compared. Re-run the critique or count more dimensions."
                )
        return self._compare(score_a, score_b)  # type: ignore[arg-type]

    def pairwise_winner(self, judgement: PairwiseJudgement) -> Winner:
        """The winner of a pairwise judgement from its summed per-dimension scores.

        Counted dimensions with both scores are compared on the [0, 1] scale (a tie within
        ``tie_tolerance``). When no counted dimension has both scores, the per-dimension winners
        are used instead (weighted votes; equal votes are a tie). Raises ``InvalidInputError``
        when neither is available.
        """
        scores = self.pair_scores(judgement)
        if scores is not None:
            return self._compare(*scores)
        votes = [
            (self.weight(key), v.winner) for key, v in judgement.dimensions.items() if v.winner and self.weight(key) > 0
        ]
        if not votes:
            raise InvalidInputError(
                f"The pairwise judgement has no scored or decided dimension that counts under the "
                f"{self.name!r} scoring policy; it cannot name a winner."
            )
        balance = sum(w for w, winner in votes if winner == "A") - sum(w for w, winner in votes if winner == "B")
        return "A" if balance > 0 else "B" if balance < 0 else "tie"

    def pair_scores(self, judgement: PairwiseJudgement) -> tuple[float, float] | None:
        """The [0, 1] scores of A and B over the counted dimensions scored on both sides (the
        numbers ``pairwise_winner`` compares); ``None`` when no counted dimension has both."""
        pairs = {
            key: (v.score_a, v.score_b)
            for key, v in judgement.dimensions.items()
            if v.score_a is not None and v.score_b is not None
        }
        score_a = self._normalised_mean({k: a for k, (a, _) in pairs.items()})
        score_b = self._normalised_mean({k: b for k, (_, b) in pairs.items()})
        return None if score_a is None or score_b is None else (score_a, score_b)

    def _normalised_mean(self, scores: Mapping[str, float]) -> float | None:
        weighted = [(self.weight(k), v) for k, v in scores.items() if self.weight(k) > 0]
        total = sum(w for w, _ in weighted)
        if total == 0:
            return None
        return (sum(w * v for w, v in weighted) / total - 1.0) / 3.0

    def _compare(self, score_a: float, score_b: float) -> Winner:
        if abs(score_a - score_b) <= self.tie_tolerance:
            return "tie"
        return "A" if score_a > score_b else "B"


@dataclass(frozen=True)
class PositionCheck:
    """The same pair judged as A/B and as B/A.

    ``winner_ba_mapped`` is the B/A result in the A/B labels (its "A" is the A/B run's "B").
    ``final`` is the agreed winner, or, when the two orders disagree, ``"tie"`` (default) or the
    A/B result (``on_inconsistent="ab"``).
    """

    winner_ab: Winner
    winner_ba_mapped: Winner
    consistent: bool
    final: Winner


def position_consistency(
    ab: PairwiseJudgement,
    ba: PairwiseJudgement,
    policy: ScoringPolicy | None = None,
    *,
    on_inconsistent: Literal["tie", "ab"] = "tie",
) -> PositionCheck:
    """Check that swapping the candidates' positions does not change the winner.

    ``ab`` judged (A, B) in that order, ``ba`` the same two images swapped. An inconsistent pair
    ends as a tie by default: position bias, not the images, decided it.
    """
    if on_inconsistent not in ("tie", "ab"):
        raise ConfigError(f"on_inconsistent must be 'tie' or 'ab', got {on_inconsistent!r}.")
    policy = policy or ScoringPolicy.default()
    winner_ab = policy.pairwise_winner(ab)
    mapped = _SWAP[policy.pairwise_winner(ba)]
    consistent = winner_ab == mapped
    if not consistent:
        logger.info("position bias: A/B says %s, B/A (mapped) says %s", winner_ab, mapped)
    final: Winner = winner_ab if consistent or on_inconsistent == "ab" else "tie"
    return PositionCheck(winner_ab=winner_ab, winner_ba_mapped=mapped, consistent=consistent, final=final)
