"""Prompt rewriters: turn the current prompt and its critique into the next round's prompt.

``CriticRewriter`` takes the critic's own refined request. ``LLMRewriter`` asks an
instruction-following LLM to merge the critique's weaknesses into the prompt, within the
generator's prompt length limit. Both return the new prompt as a string (the ``Rewriter``
protocol) and leave a plain-language remark about the last call in ``last_note`` (``None`` when
there is nothing to say). A person editing or approving the prompt is the engine's job.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Union

from models.base import Closable
from models.chat_llm import ChatLLM, Message, build_chat_llm
from models.errors import ConfigError, RewriteError
from models.images import check_prompt
from models.prompt_limit import PromptLimit
from models.types import Critique, Task, task_dimensions

logger = logging.getLogger(__name__)

LimitSource = Union[PromptLimit, Callable[[Task], PromptLimit], None]

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_LABEL = re.compile(
    r"^\s*(?:here is|here's)?\s*(?:the|a|my)?\s*(?:new|refined|rewritten|revised|improved|final|updated)?\s*"
    r"(?:prompt|request|instruction)\s*:\s*",
    re.IGNORECASE,
)
_QUOTES = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`")]


class CriticRewriter:
    """The next prompt is the critic's refined request. When the critique has none, or one that
    is no prompt (fewer than ``MIN_PROMPT_LETTERS`` letters, e.g. "?"), the prompt is kept and
    ``last_note`` says so."""

    def __init__(self, *, name: str = "critic") -> None:
        self.name = name
        self.last_note: str | None = None

    def rewrite(self, prompt: str, critique: Critique, task: Task) -> str:
        """``critique.refined_request``, or ``prompt`` unchanged (with a note) when it is missing
        or unusable."""
        refined = (critique.refined_request or "").strip()
        if usable_prompt(refined):
            self.last_note = None
            return refined
        self.last_note = ("The critic wrote no refined request, so the prompt is kept unchanged." if not refined else
                          f"The critic's refined request {refined[:40]!r} is no prompt, so the prompt is kept unchanged.")
        logger.info(self.last_note)
        return prompt.strip()

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this rewriter."""
        return {"name": self.name}


class LLMRewriter:
    """An instruction-following LLM merges the critique into the prompt.

    :param llm_backend: ``"openai"`` (an OpenAI-compatible endpoint) or ``"transformers"`` (a
        local causal LM); the remaining keyword settings go to that backend (``model``,
        ``base_url``, ``timeout_s``, ``max_retries``, ``max_new_tokens``, ...; see ``models.chat_llm``).
    :param limit: the generator's prompt length limit, or a function of the task returning it
        (called once per task, on its first rewrite, e.g.
        ``lambda task: services.get_generator(task).prompt_limit()``); default: 4000 characters.
    :param attempts: how many answers to ask for before a too-long one is an error.
    :param name: the name the studio shows for this rewriter.

    The answer is cleaned (reasoning blocks, code fences, ``Refined prompt:`` labels, quotes) and
    checked: empty, or still over the limit after ``attempts`` answers, raises ``RewriteError``.
    """

    def __init__(
        self, *, llm_backend: str = "openai", limit: LimitSource = None, attempts: int = 2, name: str = "llm",
        **settings: Any,
    ) -> None:
        if not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"attempts must be a whole number of 1 or more; got {attempts!r}.")
        self.name = name
        self.llm_backend = llm_backend
        self.llm: ChatLLM = build_chat_llm(llm_backend, **settings)
        self.attempts = attempts
        self.last_note: str | None = None
        self._limit_source = limit
        self._limits: dict[str, PromptLimit] = {}

    def limit_for(self, task: Task) -> PromptLimit:
        """The prompt length limit for ``task`` (from the ``limit`` setting, resolved once per task)."""
        if task not in self._limits:
            source = self._limit_source
            self._limits[task] = source(task) if callable(source) else source or PromptLimit()
        return self._limits[task]

    def rewrite(self, prompt: str, critique: Critique, task: Task) -> str:
        """The prompt rewritten by the LLM to fix the critique's weaknesses, within ``limit``.

        Raises ``RewriteError`` when the LLM answers with nothing usable, and
        ``BackendUnavailableError`` when it cannot be reached.
        """
        prompt = check_prompt(prompt)
        limit = self.limit_for(task)
        messages = build_rewrite_messages(prompt, critique, task, limit)
        for attempt in range(1, self.attempts + 1):
            answer = self.llm.chat(messages)
            text = clean_rewrite(answer)
            if not usable_prompt(text):
                raise RewriteError(
                    f"The rewriter {self.name!r} answered with no usable prompt (raw answer: {answer[:200]!r}). "
                    "Try again, use the critic's refined request, or edit the prompt by hand."
                )
            length = limit.measure(text)
            if length <= limit.limit:
                self.last_note = (
                    None if attempt == 1 else f"The LLM needed {attempt} answers to fit {limit.describe()}."
                )
                return text
            logger.info("rewriter answer %d has %d %s; the limit is %d", attempt, length, limit.unit, limit.limit)
            messages = messages + [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": f"That prompt is {length} {limit.unit} long; the limit is "
                                            f"{limit.describe()}. Shorten it, keeping the most important fixes. "
                                            "Reply with the prompt only."},
            ]
        raise RewriteError(
            f"The prompt of the rewriter {self.name!r} is still {length} {limit.unit} long after "
            f"{self.attempts} answers; the generator reads at most {limit.describe()}. Use the critic's refined "
            "request or edit the prompt."
        )

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this rewriter (the limit comes from the generator at run time)."""
        return {"llm_backend": self.llm_backend, **self.llm.to_config(), "attempts": self.attempts, "name": self.name}

    def close(self) -> None:
        """Release the LLM backend (HTTP client) if it holds one."""
        if isinstance(self.llm, Closable):
            self.llm.close()


def build_rewrite_messages(prompt: str, critique: Critique, task: Task, limit: PromptLimit) -> list[Message]:
    """Chat messages asking an LLM to rewrite ``prompt`` so the next image fixes what ``critique``
    found, within ``limit``."""
    kind = "an instruction for an image-editing model" if task == "edit" else "a prompt for a text-to-image model"
    size = f"at most {limit.limit} characters" if limit.unit == "characters" else (
        f"at most {limit.limit} tokens (about {max(1, limit.limit * 3 // 4)} words)"
    )
    system = (
        f"You improve {kind}. You are given the current text and an expert critique of the image it "
        "produced. Write a new version that keeps everything the user asked for and makes the fixes "
        "the critique calls for, stated concretely. Do not add new subjects or styles the user did "
        f"not ask for. The new text must be {size}. Reply with the new text only: no preamble, no "
        "quotes, no explanation."
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Current text:\n{prompt}\n\nCritique:\n{critique_weaknesses(critique, task)}"},
    ]


def critique_weaknesses(critique: Critique, task: Task) -> str:
    """The parts of ``critique`` a rewrite should act on, as plain text: each dimension scored below
    4 with its justification, the summary, the refinement comments and the critic's own suggestion."""
    lines = []
    for dim in task_dimensions(task):
        score = critique.scores.get(dim.key)
        if score is not None and score < 4:
            why = critique.justifications.get(dim.key) or "no justification given"
            lines.append(f"- {dim.heading} ({score:g}/4): {why}")
    if not lines:
        lines.append("- No dimension was scored below 4.")
    for label, text in (("Summary", critique.summary), ("Refinement comments", critique.refinement_comments),
                        ("The critic's suggested request", critique.refined_request)):
        if text and text.strip():
            lines.append(f"{label}: {text.strip()}")
    return "\n".join(lines)


#: A usable prompt has at least this many letters (a lone "?" or "ok" is an answer, not a prompt).
MIN_PROMPT_LETTERS = 3


def usable_prompt(text: str) -> bool:
    """Whether a cleaned rewrite can be the next prompt: it has ``MIN_PROMPT_LETTERS`` letters."""
    return sum(ch.isalpha() for ch in text) >= MIN_PROMPT_LETTERS


def clean_rewrite(text: str) -> str:
    """The prompt inside an LLM answer: reasoning blocks, code fences, a leading
    ``Refined prompt:``-style label, markdown bold and surrounding quotes removed, whitespace
    collapsed. Returns ``""`` when nothing is left."""
    text = _THINK.sub("", text.rsplit("</think>", 1)[-1]).strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    text = text.replace("**", "").replace("__", "").strip()
    text = _LABEL.sub("", text, count=1).strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTES:
            if text.startswith(left) and text.endswith(right):
                text, changed = text[len(left):len(text) - len(right)].strip(), True
    return " ".join(text.split())
