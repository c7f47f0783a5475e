"""Re-state a request that was already tried: the parts the critique says failed come first.

When the refine loop would generate from a prompt it has already generated from, ``restate``
offers a different wording of the same request instead of the same image again: the prompt's
clauses (split on commas and "and"; a trailing "with ..." clause, such as a word to draw, stays
last) are reordered so that those sharing the most words with the critique's account of what went
wrong come first, where a text encoder weighs them most. Nothing is added or dropped, so the
request asks for exactly the same thing.
"""

from __future__ import annotations

import re

from models.types import Critique

_TAIL = re.compile(r",?\s+with\s+.*$", re.IGNORECASE | re.DOTALL)
_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.IGNORECASE)
_WORDS = re.compile(r"[a-z]+")
_COMMON = frozenset("a an the of at in on to is are and or with as by its it this that instead there image".split())


def failure_text(critique: Critique, thresholds: dict[str, float]) -> str:
    """What the critique says went wrong: the justifications of the dimensions below their
    threshold (all of them when no threshold applies) and the refinement comments."""
    below = [key for key, score in critique.scores.items() if score is not None and score < thresholds.get(key, 4.0)]
    parts = [critique.justifications.get(key) or "" for key in below]
    return " ".join([*parts, critique.refinement_comments or ""])


def _content_words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower())) - _COMMON


def restate(prompt: str, failures: str) -> str | None:
    """``prompt`` with the clauses that ``failures`` speaks of moved to the front (the most
    words in common first, ties in their old order), or ``None`` when that changes nothing:
    a single clause, or no clause named more than the others.

    Example: ``restate("a red circle at the top and a blue square on the left", "the blue
    square is missing")`` gives ``"a blue square on the left and a red circle at the top"``.
    """
    tail = _TAIL.search(prompt)
    body, suffix = (prompt[: tail.start()], prompt[tail.start():]) if tail else (prompt, "")
    clauses = [c for c in _SPLIT.split(body.strip()) if c]
    if len(clauses) < 2:
        return None
    wanted = _content_words(failures)
    overlap = [len(_content_words(c) & wanted) for c in clauses]
    order = sorted(range(len(clauses)), key=lambda i: -overlap[i])
    if order == list(range(len(clauses))):
        return None
    ordered = [clauses[i] for i in order]
    return ", ".join(ordered[:-1]) + " and " + ordered[-1] + suffix
