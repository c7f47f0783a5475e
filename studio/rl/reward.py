"""Rewards from any critic backend, overlapped with sampling.

``RewardQueue.submit`` hands a batch of images to the critic and returns at once when overlap is
on: a worker thread critiques it while the caller draws the next images. ``collect`` waits for
every submitted image. A critique that failed (``CritiqueFailure``, or one with no dimension the
scoring policy counts) has reward ``None`` and its reason: it is counted, never scored 0.

A *scalar* reward model (a Bradley-Terry model, a critic's overall score with its rationale
thrown away) is a critic whose critiques score no dimension and carry only ``overall``: its
reward is that number, and its ``Scored`` has no per-dimension scores.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from models.base import Critic
from models.critic.scoring import ScoringPolicy
from models.errors import JobError
from models.types import Critique, CritiqueRequest


@dataclass
class Scored:
    """The reward of one image: the policy's [0, 1] scalar and the per-dimension scores (1-4),
    or ``reward is None`` with the ``failure`` reason."""

    reward: float | None
    dimensions: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


def score_results(results: list[Any], policy: ScoringPolicy) -> list[Scored]:
    """``Scored`` items of a critic's results, in order: the policy's score of the dimensions, or
    a scalar critic's ``overall`` when the critique scores no dimension at all."""
    scored: list[Scored] = []
    for result in results:
        if not isinstance(result, Critique):
            scored.append(Scored(None, failure=getattr(result, "reason", "the critic returned no critique")))
            continue
        dims = {k: float(v) for k, v in result.scores.items() if v is not None}
        if not dims:
            scored.append(_scalar(result.overall))
            continue
        reward = policy.score(result)
        if reward is None:
            scored.append(Scored(None, dims, failure=f"no dimension counted by the {policy.name!r} policy was scored"))
        else:
            scored.append(Scored(reward, dims))
    return scored


def _scalar(overall: float | None) -> Scored:
    """The reward of a critique without dimension scores: its finite ``overall``, else a failure."""
    if overall is None:
        return Scored(None, failure="the critique scored no dimension and has no overall score")
    if not math.isfinite(overall):
        return Scored(None, failure=f"the critique's overall score is not a finite number ({overall!r})")
    return Scored(float(overall))


class RewardQueue:
    """Critiques submitted images in order, on a worker thread (``overlap=True``) or inline.

    ``busy_seconds`` is the time spent inside critic calls; ``wait_seconds`` the time ``collect``
    waited for them after the caller had finished submitting.
    """

    def __init__(self, critic: Critic, policy: ScoringPolicy, *, overlap: bool, batch_size: int) -> None:
        self.critic, self.policy, self.overlap, self.batch_size = critic, policy, overlap, batch_size
        self._results: dict[int, Scored] = {}
        self._pending: queue.Queue[tuple[list[int], list[CritiqueRequest]] | None] = queue.Queue()
        self._error: BaseException | None = None
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0
        self._worker: threading.Thread | None = None
        if overlap:
            self._worker = threading.Thread(target=self._work, name="rl-reward", daemon=True)
            self._worker.start()

    def submit(self, indices: list[int], requests: list[CritiqueRequest]) -> None:
        """Critique ``requests``; their rewards are stored under ``indices``."""
        for start in range(0, len(requests), self.batch_size):
            chunk = (indices[start : start + self.batch_size], requests[start : start + self.batch_size])
            if self.overlap:
                self._pending.put(chunk)
            else:
                self._score(*chunk)

    def collect(self, indices: list[int]) -> list[Scored]:
        """The rewards of ``indices``, waiting for the worker to finish them. Re-raises a critic
        crash as ``JobError``."""
        started = time.perf_counter()
        if self.overlap:
            self._pending.join()
        self.wait_seconds += time.perf_counter() - started
        if self._error is not None:
            raise JobError(f"The critic failed: {self._error}") from self._error
        return [self._results.pop(i) for i in indices]

    def close(self) -> None:
        """Stop the worker thread."""
        if self._worker is not None:
            self._pending.put(None)
            self._worker.join(timeout=60)
            self._worker = None

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._score(*item)
            except BaseException as e:  # surfaced by collect(), never swallowed
                self._error = e
            finally:
                self._pending.task_done()

    def _score(self, indices: list[int], requests: list[CritiqueRequest]) -> None:
        started = time.perf_counter()
        results = self.critic.critique(requests)
        self.busy_seconds += time.perf_counter() - started
        if len(results) != len(requests):
            raise JobError(f"The critic returned {len(results)} results for {len(requests)} images.")
        for i, scored in zip(indices, score_results(results, self.policy)):
            self._results[i] = scored
