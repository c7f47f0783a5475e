"""A critic backend over a scalar Bradley-Terry reward model: an overall score, no rationale.

``BTCritic(model=FOLDER)`` loads a folder written by ``studio.parrot.bt`` (``--critic bt:FOLDER``).
Its reward ``r`` becomes a protocol score ``1 + 3 * sigmoid(r)`` that stands for every judged
dimension (N/A dimensions stay N/A), so any scoring policy, the RL trainer and the studio read it
as the image's one overall score. There are no justifications, no summary beyond the reward and
no refined request; a pairwise judgement compares the two rewards.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from models.critic.bt_reward import load_reward_model, reward_inputs
from models.critic.scoring import ScoringPolicy
from models.errors import InvalidInputError
from models.images import prepare_image
from models.types import (
    Critique, CritiqueRequest, CritiqueResult, DimensionVerdict, PairRequest, PairResult, PairwiseJudgement, Task,
    check_task_source, task_dimensions,
)

_POLICY = ScoringPolicy()


@dataclass(frozen=True)
class BTSettings:
    """What rebuilds a ``BTCritic``."""

    model: str
    device: str = "auto"
    batch_size: int = 16


def protocol_score(reward: float) -> float:
    """The reward on the protocol's 1-4 scale: ``1 + 3 * sigmoid(reward)``."""
    return 1.0 + 3.0 / (1.0 + math.exp(-reward))


class BTCritic:
    """Scores images with a Bradley-Terry reward model (see the module docstring)."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16, name: str | None = None) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}.")
        self.settings = BTSettings(model=model, device=device, batch_size=batch_size)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.model, self.processor = load_reward_model(model, self.device)
        self.name = name or f"bt ({model})"

    def rewards(self, requests: Sequence[CritiqueRequest]) -> list[float]:
        """The raw reward of each request's image, in order."""
        items = []
        for request in requests:
            check_task_source(request.task, request.source_image)
            source = request.source_image
            items.append((request.prompt, prepare_image(request.image),
                          prepare_image(source, what="source image") if source is not None else None))
        found: list[float] = []
        with torch.no_grad():
            for start in range(0, len(items), self.settings.batch_size):
                batch = reward_inputs(self.processor, items[start:start + self.settings.batch_size], self.device)
                found += self.model(batch).float().cpu().tolist()
        return found

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        """One score-only ``Critique`` per request."""
        return [_critique(r.task, reward) for r, reward in zip(requests, self.rewards(requests))]

    def judge(self, requests: Sequence[PairRequest]) -> list[PairResult]:
        """Compare the two images of each pair by their rewards."""
        singles = [CritiqueRequest(r.task, r.prompt, image, r.source_image)
                   for r in requests for image in (r.image_a, r.image_b)]
        rewards = self.rewards(singles)
        results: list[PairResult] = []
        for n, request in enumerate(requests):
            a, b = _critique(request.task, rewards[2 * n]), _critique(request.task, rewards[2 * n + 1])
            winner = _POLICY.prefer(a, b)
            dimensions = {
                key: DimensionVerdict(a.scores[key], b.scores[key], None if a.scores[key] is None else winner)
                for key in a.scores
            }
            raw = json.dumps({"reward_a": rewards[2 * n], "reward_b": rewards[2 * n + 1]})
            results.append(PairwiseJudgement(request.task, dimensions, _summary(winner), raw, overall_winner=winner))
        return results

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this backend."""
        return {"model": self.settings.model, "device": self.settings.device, "batch_size": self.settings.batch_size}


def _critique(task: Task, reward: float) -> Critique:
    score = round(protocol_score(reward), 4)
    scores = {dim.key: None if dim.allows_na else score for dim in task_dimensions(task)}
    summary = (f"Bradley-Terry reward {reward:.3f} (score {score:.2f} of 4): one scalar, no per-dimension "
               "judgement and no rationale.")
    critique = Critique(task=task, scores=scores, justifications={key: None for key in scores}, analysis=None,
                        summary=summary, refinement_comments=None, refined_request=None, overall=None,
                        raw=json.dumps({"reward": reward}))
    critique.overall = _POLICY.score(critique)
    return critique


def _summary(winner: str) -> str:
    return "The rewards are equal." if winner == "tie" else f"Image {winner} has the higher Bradley-Terry reward."
