"""One small Protocol per role. Implementations do not inherit from these; they only match them.

Besides the role Protocols, a backend may offer optional capabilities, each a runtime-checkable
Protocol that callers test with ``isinstance`` (never ``getattr``/``hasattr``): ``Closable``
(release memory or clients), ``Loadable`` (load weights now instead of on first use),
``HealthChecked`` (a server to reach), ``PromptLimited`` (how long a prompt may be) and
``CancellableGenerator`` (``generate`` polls ``should_stop``; see ``accepts_should_stop``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from models.prompt_limit import PromptLimit
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


# -- optional capabilities ---------------------------------------------------------------------


@runtime_checkable
class Closable(Protocol):
    """Holds something worth releasing (an HTTP client, model memory); loads again on next use."""

    def close(self) -> None: ...


@runtime_checkable
class Loadable(Protocol):
    """Loads its weights on first use; ``load()`` loads them now (the app's start-up preload)."""

    def load(self) -> None: ...


@runtime_checkable
class HealthChecked(Protocol):
    """Talks to a server: ``health_check()`` raises ``BackendUnavailableError`` when it cannot
    be reached and returns what it serves otherwise."""

    def health_check(self) -> str: ...


@runtime_checkable
class PromptLimited(Protocol):
    """Knows how long a prompt its text encoder reads (tokens), instead of the default limit."""

    def prompt_limit(self) -> PromptLimit: ...


@runtime_checkable
class Expanding(Protocol):
    """A critic that writes a request in the generator's prompt language before any image is
    seen (the refine loop's ``first_prompt="expanded"``); raises ``InvalidInputError`` for a
    request it cannot read."""

    def expand_request(self, task: Task, prompt: str, seed: int) -> str: ...


class CancellableGenerator(Generator, Protocol):
    """A generator whose ``generate`` polls ``should_stop`` between steps and raises
    ``CancellationError`` once it returns True."""

    def generate(self, request: GenerationRequest, *,
                 should_stop: Callable[[], bool] | None = None) -> GenerationResult: ...


def accepts_should_stop(generator: Generator) -> bool:
    """Whether ``generator`` is a ``CancellableGenerator`` (its ``generate`` takes ``should_stop``)."""
    try:
        return "should_stop" in inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False
