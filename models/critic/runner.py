"""The one place where critic prompts are built, sent to a text backend, parsed, and retried.

Every critic backend (transformers, OpenAI-compatible HTTP, the shapes-world reference critic)
is a ``TextCompleter``: it turns ``ChatPrompt``s into text. ``ProtocolCritic`` wraps one and
gives the ``critique`` / ``judge`` interface the engine uses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, TypeVar, Union

from PIL import Image

from models.base import Closable
from models.critic.chat import ChatPrompt, CompletionError
from models.critic.parser import parse_critique, parse_pairwise
from models.critic.prompts import build_pairwise_prompt, build_pointwise_prompt
from models.critic.templates import load_templates
from models.errors import ConfigError, CritiqueParseError
from models.images import ImageLimits, check_prompt, prepare_image
from models.types import (
    CritiqueFailure,
    CritiqueRequest,
    CritiqueResult,
    PairRequest,
    PairResult,
)

logger = logging.getLogger(__name__)

Parsed = TypeVar("Parsed")


class TextCompleter(Protocol):
    """A backend that writes the critic's text for each prompt, in order.

    A backend may also offer ``complete_iter(prompts)``, yielding ``(index, text)`` as each answer
    arrives (the HTTP backend does); the runner then parses answers while others are in flight.
    """

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]: ...


@dataclass
class CriticStats:
    """Counters a user can see: how many calls, and how many failed and why."""

    requests: int = 0
    parse_retries: int = 0
    parse_failures: int = 0
    transport_failures: int = 0
    repaired: int = 0
    failure_reasons: list[str] = field(default_factory=list)


class _PreparedImages:
    """``prepare_image`` once per image object within one call: an image that several requests
    share (A/B and B/A, an edit's source for every candidate) becomes one prepared object, so it is
    converted or downscaled once and its PNG encoding (``ChatPrompt.image_data_uris``) is shared."""

    def __init__(self, limits: ImageLimits) -> None:
        self.limits = limits
        self._done: dict[int, tuple[Image.Image, Image.Image]] = {}

    def __call__(self, image: Image.Image | str | Path | bytes, what: str) -> Image.Image:
        if not isinstance(image, Image.Image):
            return prepare_image(image, self.limits, what=what)
        done = self._done.get(id(image))
        if done is None or done[0] is not image:
            done = self._done[id(image)] = (image, prepare_image(image, self.limits, what=what))
        return done[1]


class ProtocolCritic:
    """Critique and judge images with any ``TextCompleter``.

    A parse failure is re-asked ``parse_retries`` times, then returned as a ``CritiqueFailure``
    (counted in ``stats``); a transport failure is returned as one at once (backends retry
    connection errors themselves). Nothing is ever turned into a score. ``prompts`` is a folder
    of the user's prompt templates (``models.critic.templates.load_templates``; checked here, so
    a bad template fails at start); ``None`` uses the shipped ones.
    """

    def __init__(
        self,
        completer: TextCompleter,
        *,
        parse_retries: int = 1,
        limits: ImageLimits | None = None,
        name: str = "critic",
        prompts: str | Path | None = None,
    ) -> None:
        if parse_retries < 0:
            raise ConfigError(f"parse_retries must be 0 or more, got {parse_retries}.")
        self.templates = load_templates(prompts)
        self.completer = completer
        self.parse_retries = parse_retries
        self.limits = limits or ImageLimits()
        self.name = name
        self.stats = CriticStats()

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        """Pointwise critiques for ``requests``, in order: a ``Critique`` or a ``CritiqueFailure``.

        Raises ``InvalidInputError`` (before any model call) when a request is unusable.
        """
        prepare = _PreparedImages(self.limits)
        prompts = [
            build_pointwise_prompt(self._checked_pointwise(r, i, prepare), self.templates) for i, r in enumerate(requests)
        ]
        return self._run(prompts, lambda text, p: parse_critique(text, p.request.task))

    def judge(self, requests: Sequence[PairRequest]) -> list[PairResult]:
        """Pairwise judgements (A first, B second) for ``requests``, in order."""
        prepare = _PreparedImages(self.limits)
        prompts = [build_pairwise_prompt(self._checked_pair(r, i, prepare), self.templates) for i, r in enumerate(requests)]
        return self._run(prompts, lambda text, p: parse_pairwise(text, p.request.task))

    # -- input checks -------------------------------------------------------------------------

    def _checked_pointwise(self, request: CritiqueRequest, index: int, prepare: _PreparedImages) -> CritiqueRequest:
        where = f"request {index + 1}"
        check_prompt(request.prompt, self.limits, where=where)
        return CritiqueRequest(
            task=request.task,
            prompt=request.prompt.strip(),
            image=prepare(request.image, f"{where}: image"),
            source_image=self._checked_source(request.task, request.source_image, where, prepare),
        )

    def _checked_pair(self, request: PairRequest, index: int, prepare: _PreparedImages) -> PairRequest:
        where = f"pair {index + 1}"
        check_prompt(request.prompt, self.limits, where=where)
        return PairRequest(
            task=request.task,
            prompt=request.prompt.strip(),
            image_a=prepare(request.image_a, f"{where}: image A"),
            image_b=prepare(request.image_b, f"{where}: image B"),
            source_image=self._checked_source(request.task, request.source_image, where, prepare),
        )

    def _checked_source(
        self, task: str, source: Image.Image | str | Path | bytes | None, where: str, prepare: _PreparedImages
    ) -> Image.Image | None:
        if task == "edit":  # the request checked its task and that an edit has its source image
            return prepare(source, f"{where}: source image")  # type: ignore[arg-type]
        return None

    # -- the loop -----------------------------------------------------------------------------

    def _run(
        self, prompts: list[ChatPrompt], parse: Callable[[str, ChatPrompt], Parsed]
    ) -> list[Union[Parsed, CritiqueFailure]]:
        results: list[Union[Parsed, CritiqueFailure, None]] = [None] * len(prompts)
        last_raw: list[str | None] = [None] * len(prompts)
        pending = list(range(len(prompts)))
        self.stats.requests += len(prompts)
        for attempt in range(1, self.parse_retries + 2):
            if not pending:
                break
            if attempt > 1:
                self.stats.parse_retries += len(pending)
                logger.info("%s: re-asking %d unparseable critiques", self.name, len(pending))
            still_pending = []
            for slot, text in self._answers([prompts[i] for i in pending]):
                i = pending[slot]
                if isinstance(text, CompletionError):
                    self.stats.transport_failures += 1
                    self._note_failure(text.reason)
                    results[i] = CritiqueFailure(reason=text.reason, raw=last_raw[i], attempts=attempt)
                    continue
                last_raw[i] = text
                try:
                    parsed = parse(text, prompts[i])
                except CritiqueParseError as e:
                    if attempt <= self.parse_retries:
                        still_pending.append(i)
                    else:
                        self.stats.parse_failures += 1
                        reason = f"{self.name} output did not parse after {attempt} attempt(s): {e}"
                        self._note_failure(reason)
                        results[i] = CritiqueFailure(reason=reason, raw=text, attempts=attempt)
                    continue
                if parsed.warnings:
                    self.stats.repaired += 1
                results[i] = parsed
            pending = sorted(still_pending)
        return results  # type: ignore[return-value]

    def _answers(self, prompts: list[ChatPrompt]) -> Iterator[tuple[int, Union[str, CompletionError]]]:
        """``(index into prompts, text)`` for every prompt: as they arrive where the backend can
        stream them, else all at once."""
        stream = getattr(self.completer, "complete_iter", None)
        if stream is None:
            texts = self.completer.complete(prompts)
            if len(texts) != len(prompts):
                raise RuntimeError(f"{self.name} returned {len(texts)} completions for {len(prompts)} prompts")
            yield from enumerate(texts)
            return
        seen: set[int] = set()
        for index, text in stream(prompts):
            seen.add(index)
            yield index, text
            # hand the GIL to the backend's I/O thread between answers: parsing a burst of answers
            # back to back would hold it for up to the 5 ms switch interval while replies wait
            time.sleep(0)
        if seen != set(range(len(prompts))):
            raise RuntimeError(f"{self.name} answered {len(seen)} of {len(prompts)} prompts")

    def _note_failure(self, reason: str) -> None:
        logger.warning("%s: %s", self.name, reason[:300])
        self.stats.failure_reasons = (self.stats.failure_reasons + [reason])[-20:]

    def to_config(self) -> dict[str, object]:
        """Settings that rebuild this critic (the backend's own, plus ``parse_retries`` and the
        ``prompts`` folder when the templates are a user's)."""
        backend = getattr(self.completer, "to_config", lambda: {})()
        prompts = {"prompts": self.templates.folder} if self.templates.folder else {}
        return {**backend, "parse_retries": self.parse_retries, **prompts}

    def close(self) -> None:
        """Release the backend (HTTP client, model memory) if it holds anything."""
        if isinstance(self.completer, Closable):
            self.completer.close()
