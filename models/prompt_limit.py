"""How long a prompt a generator can read: counted in its own tokenizer's tokens, or in characters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.errors import ConfigError


@dataclass(frozen=True)
class PromptLimit:
    """A prompt length limit.

    With ``count_tokens`` (the generator's tokenizer), a prompt fits when it has at most
    ``max_tokens`` tokens; without it, when it has at most ``max_chars`` characters.

    Example::

        PromptLimit(max_chars=300).fits("a red circle")  # True
    """

    max_chars: int = 4000
    max_tokens: int | None = None
    count_tokens: Callable[[str], int] | None = None

    def __post_init__(self) -> None:
        if (self.count_tokens is None) != (self.max_tokens is None):
            raise ConfigError("PromptLimit needs both max_tokens and count_tokens, or neither.")
        if self.max_chars < 1 or (self.max_tokens is not None and self.max_tokens < 1):
            raise ConfigError(
                f"PromptLimit limits must be positive, got max_chars={self.max_chars}, max_tokens={self.max_tokens}."
            )

    @property
    def unit(self) -> str:
        """``"tokens"`` or ``"characters"``: what ``measure`` counts."""
        return "tokens" if self.count_tokens is not None else "characters"

    @property
    def limit(self) -> int:
        """The largest allowed ``measure`` of a prompt."""
        return self.max_tokens if self.max_tokens is not None else self.max_chars

    def measure(self, text: str) -> int:
        """The length of ``text`` in this limit's unit."""
        return self.count_tokens(text) if self.count_tokens is not None else len(text)

    def fits(self, text: str) -> bool:
        """Whether ``text`` is within the limit."""
        return self.measure(text) <= self.limit

    def describe(self) -> str:
        """The limit in words, e.g. ``"512 tokens"``."""
        return f"{self.limit} {self.unit}"
