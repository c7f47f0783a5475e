"""One small Protocol per role. Implementations do not inherit from these; they only match them."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from models.types import (
    Critique,
    CritiqueRequest,
    CritiqueResult,
    GenerationRequest,
    GenerationResult,
    PairRequest,
    PairResult,
    Task,
)


class Critic(Protocol):
    """Writes critiques (pointwise) and judgements (pairwise), in order, never raising for a bad
    completion: failures come back as ``CritiqueFailure`` items."""

    name: str

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]: ...

    def judge(self, requests: Sequence[PairRequest]) -> list[PairResult]: ...

    def to_config(self) -> dict[str, Any]: ...


class Generator(Protocol):
    """Text-to-image and/or editing. ``tasks`` says which of the two it can do."""

    name: str
    tasks: tuple[Task, ...]

    def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def to_config(self) -> dict[str, Any]: ...


class Rewriter(Protocol):
    """Turns the current prompt and its critique into the next round's prompt."""

    name: str

    def rewrite(self, prompt: str, critique: Critique, task: Task) -> str: ...

    def to_config(self) -> dict[str, Any]: ...
