"""A mixed RL reward: a critic's per-dimension reward plus prompt-dependent partial credit.

    {"critic": {"backend": "bench.rl_partial_credit:PartialCreditCritic",
                "weights": {"text_faithfulness": 1.0, "physical_quality": 0.5},
                "terms": {"colour_match": 1.0, "shape_match": 1.0}}}

Each image's reward is the weighted mean of the base critic's ``ScoringPolicy`` reward (its
``weights``, in [0, 1]) and the ``bench.rl_sanity`` terms (each in [0, 1]), returned as a scalar
critique (``overall`` only), which the RL reward path reads as a scalar reward model's score. A
failed base critique stays a failure (never scored 0), and so does an image whose terms cannot be
scored (a prompt that is not a shapes-world prompt).
"""

from __future__ import annotations

from typing import Any

from bench.rl_sanity import REWARDS
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, InvalidInputError
from models.registry import load_backend
from models.types import Critique, CritiqueFailure, CritiqueRequest


class PartialCreditCritic:
    """The base critic's weighted reward mixed with prompt-dependent stub terms.

    :param base: the base critic's spec (default: the shapes-world reference critic).
    :param weights: the base reward's per-dimension weights; ``weight`` its share of the mix.
    :param terms: ``bench.rl_sanity`` reward name -> its weight in the mix.
    """

    name = "partial-credit"

    def __init__(self, *, base: dict | None = None, weights: dict[str, float] | None = None, weight: float = 1.0,
                 terms: dict[str, float] | None = None, **_: Any) -> None:
        spec = dict(base or {"backend": "shapes"})
        self.base = load_backend("critic", spec.pop("backend"), **spec)
        self.policy = ScoringPolicy(weights=weights, name="partial_credit_base")
        self.terms = dict(terms or {})
        unknown = sorted(set(self.terms) - set(REWARDS))
        if unknown:
            raise ConfigError(f"Unknown partial-credit term(s) {unknown}; use {sorted(REWARDS)}.")
        self.weight = float(weight)
        if self.weight < 0 or any(w < 0 for w in self.terms.values()) or self.weight + sum(self.terms.values()) <= 0:
            raise ConfigError("Partial-credit weights must be >= 0 and not all 0.")

    def critique(self, requests: list[CritiqueRequest]) -> list[Any]:
        """One scalar critique per request (the base critic's failures pass through)."""
        results = self.base.critique(requests)
        total = self.weight + sum(self.terms.values())
        mixed: list[Any] = []
        for request, result in zip(requests, results, strict=True):
            if not isinstance(result, Critique):
                mixed.append(result)
                continue
            base = self.policy.score(result)
            if base is None:
                mixed.append(CritiqueFailure(f"no dimension counted by the {self.policy.name!r} policy was scored",
                                             result.raw))
                continue
            try:
                credit = sum(w * REWARDS[name].score(request.image, request.prompt) for name, w in self.terms.items())
            except InvalidInputError as error:  # e.g. a prompt the terms cannot read: this image fails, not the batch
                mixed.append(CritiqueFailure(f"partial credit: {error}", result.raw))
                continue
            mixed.append(Critique(request.task, {}, {}, None, None, None, None, (self.weight * base + credit) / total, ""))
        return mixed

    def close(self) -> None:
        """Close the base critic if it holds resources."""
        close = getattr(self.base, "close", None)
        if close is not None:
            close()
