"""The one tolerant parser of critic output, pointwise and pairwise. Pure functions, no I/O.

It reads the layout ``models.critic.prompts`` asks for and the usual deviations from it: either
order of Score and Justification, markdown around headings and numbers, words after a number,
``3/4`` or ``3.5 out of 4``, a leading ``<think>...</think>`` block, a refined request over several
lines, missing or truncated sections. Every repair and every missing part is named in
``warnings``. A text with no readable dimension raises ``CritiqueParseError`` (keeping the raw
text); it is never turned into a score.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Union

from models.critic.scoring import ScoringPolicy
from models.errors import CritiqueParseError
from models.types import Critique, Dimension, DimensionVerdict, PairwiseJudgement, Winner, task_dimensions

logger = logging.getLogger(__name__)

# Leading markup before a label: spaces, '#', '>', '*', '_', '`', bullets, then "1." / "2)".
_LEAD = re.compile(r"^[\s#>*_`-]*(?:\(?\d{1,2}\s*[.)]\s*)?[\s*_`]*")
_MARKED = re.compile(r"^\s*(?:#|\*\*|__|\(?\d{1,2}\s*[.)])")
_NUMBER = re.compile(r"(?<![\w.])[+-]?(?:(?:nan|inf(?:inity)?)\b|(?:\d+(?:\.\d+)?|\.\d+)(?:e[+-]?\d+)?)", re.IGNORECASE)
_NA = re.compile(r"^(?:n\s*/\s*a|n\.a\.?|not applicable)(?![\w])", re.IGNORECASE)
_SCORE_LIKE = re.compile(r"^(?:[+-]?(?:\d|\.\d)|n\s*/\s*a|n\.a|not applicable|nan\b|inf)", re.IGNORECASE)
_PAIR_SCORE = re.compile(r"^(?:score\s*(?:for\s*)?(?:image\s*|candidate\s*)?\(?([ab])\)?|(?:image\s*)?([ab])\s*score)$")
_WINNER_AB = re.compile(r"^(?:image|candidate|output|picture)?\s*\(?([ab])\)?(?![\w])", re.IGNORECASE)
_WINNER_TIE = re.compile(r"\b(?:tie|tied|equal|equally|draw|same|both|neither)\b", re.IGNORECASE)
_END_TOKENS = re.compile(r"(?:<\|im_end\|>|<\|endoftext\|>|</s>)\s*$")
_COLON = re.compile(r"[:：]")
_SPACES = re.compile(r"\s+")
_PARENS = re.compile(r"[()]")
_TRAILING_NOTE = re.compile(r"\s*\(.*\)$")
_DEFAULT_POLICY = ScoringPolicy.default()

_SECTION_LABELS = {
    "analysis": ("user request analysis", "request analysis"),
    "judgement": ("detailed judgement", "detailed judgment"),
    "summary": ("summary", "overall summary"),
    "refinement": ("user request refinement", "request refinement"),
    "comments": ("refinement comments", "refinement comment"),
    "refined": ("refined request", "refined prompt", "refined instruction"),
    "overall_winner": ("overall winner", "final winner"),
}
_FIELD_LABELS = {
    "justification": ("justification",),
    "score": ("score", "final score"),
    "winner": ("winner",),
}
_DIMENSION_ALIASES = {
    "text_faithfulness": ("text faithfulness", "prompt faithfulness"),
    "image_faithfulness": ("image faithfulness", "source faithfulness"),
    "physical_quality": (
        "physical and visual quality",
        "physical visual quality",
        "physical quality",
        "visual quality",
        "physical and visual",
    ),
    "text_rendering": ("text rendering",),
}
_SECTION_NAMES = {
    "analysis": "# User Request Analysis", "judgement": "# Detailed Judgement", "summary": "# Summary",
    "refinement": "# User Request Refinement", "comments": "## Refinement Comments",
    "refined": "## Refined Request", "overall_winner": "# Overall Winner",
}
_LABELS: dict[str, str] = {}
for _kind, _names in (*_SECTION_LABELS.items(), *_FIELD_LABELS.items(), *_DIMENSION_ALIASES.items()):
    for _name in _names:
        _LABELS[_name] = _kind
_DIMENSION_KEYS = frozenset(_DIMENSION_ALIASES)
_FIELD_NAMES = {
    "justification": "Justification", "score": "Score", "score_a": "Score A", "score_b": "Score B", "winner": "Winner"
}
_FIELDS = frozenset(_FIELD_NAMES)


def _normalise_label(label: str) -> str:
    label = label.strip().strip("*_`").strip().lower()
    label = label.replace("&", " and ").replace("/", " ").replace("-", " ").replace("_", " ")
    return _SPACES.sub(" ", label).strip(" .")


def _classify(line: str) -> tuple[str | None, str, bool]:
    """(kind, value, marked): what a line starts (a section, a dimension, a field, or ``None`` for
    plain text), the text after its colon, and whether it carries heading markup."""
    parts = _COLON.split(line, maxsplit=1)
    head = parts[0]  # the leading markup never holds a colon, so the label ends at the first one
    kind, marked = _label_kind(head) if len(head) <= _CACHED_HEAD else _read_label(head)
    value = parts[1] if len(parts) == 2 else ""
    return kind, value.strip().strip("*_`").strip(), marked


def _read_label(head: str) -> tuple[str | None, bool]:
    """(kind, marked) of the text before a line's first colon (the whole line when it has none)."""
    name = _normalise_label(head[_LEAD.match(head).end():])  # type: ignore[union-attr]
    pair = _PAIR_SCORE.match(_PARENS.sub("", name))
    if pair:
        kind: str | None = "score_" + (pair.group(1) or pair.group(2))
    else:  # "Text Rendering (if any)" reads as "Text Rendering"
        kind = _LABELS.get(name) or _LABELS.get(_TRAILING_NOTE.sub("", name))
    return kind, bool(_MARKED.match(head))


_CACHED_HEAD = 80
"""Heads up to this long are looked up in a cache: labels repeat in every critique ("## Score"),
and reading one costs more than the rest of a line's parsing."""
_label_kind = functools.lru_cache(maxsize=2048)(_read_label)


@dataclass
class _Block:
    """One dimension as written: the text after its heading and each labelled field's lines."""

    heading: str
    fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Layout:
    """The critic's text split into sections and dimension blocks."""

    sections: dict[str, list[str]] = field(default_factory=dict)
    blocks: dict[str, _Block] = field(default_factory=dict)


def _strip_think(text: str, warnings: list[str]) -> str:
    """Drop a leading reasoning block: ``<think>...</think>`` (empty or not), or everything up to a
    lone ``</think>`` (when the chat template opened the block in the prompt)."""
    body = _END_TOKENS.sub("", text.strip())
    lower = body.lower()
    if lower.startswith("<think>"):
        end = lower.find("</think>")
        if end < 0:
            warnings.append("The reasoning block <think> was never closed; parsed the text inside it.")
            return body[len("<think>"):]
        return body[end + len("</think>"):]
    end = lower.find("</think>")
    if end >= 0 and body[end + len("</think>"):].strip():
        return body[end + len("</think>"):]
    return body


_TAIL_SECTIONS = frozenset({"summary", "refinement", "comments", "refined", "overall_winner"})
"""Sections that follow the judgement: a dimension heading after one of them is not judgement."""


def _split(text: str, task: str, warnings: list[str]) -> _Layout:
    """Walk the lines once, routing each to the section, dimension or field it belongs to.

    Only the text after the last ``# Detailed Judgement`` heading is read as judgement, summary and
    refinement; the text before it is the analysis (an echoed request there cannot plant scores
    or a refined request). Without that heading the whole text is read. A dimension heading after
    the summary or refinement has begun is plain text; a repeated section keeps its last copy.
    """
    lines = text.splitlines()
    kinds = [_classify(line) for line in lines]
    headings = [i for i, (kind, _, _) in enumerate(kinds) if kind == "judgement"]
    start = headings[-1] if headings else 0
    if len(headings) > 1:
        warnings.append(f"'# Detailed Judgement' appears {len(headings)} times; read the judgement after the last one.")
    layout = _Layout()
    _read_analysis(lines[:start], kinds[:start], layout, warnings)
    _read_judgement(lines[start:], kinds[start:], task, layout, warnings)
    return layout


def _read_analysis(lines: list[str], kinds: list[tuple[str | None, str, bool]], layout: _Layout, warnings: list[str]) -> None:
    """The text before the judgement: a preamble and the ``# User Request Analysis`` section. Other
    headings in it are kept as text (with one warning): they are not the critic's judgement."""
    target = layout.sections.setdefault("preamble", [])
    ignored = 0
    for line, (kind, value, marked) in zip(lines, kinds):
        if kind == "analysis" and "analysis" not in layout.sections:
            target = layout.sections.setdefault("analysis", [value])
            continue
        ignored += _is_heading(kind, value, marked)
        target.append(line)
    if ignored:
        warnings.append(
            f"Ignored {ignored} heading(s) written before the last '# Detailed Judgement' (an echoed prompt?); "
            "read only the judgement after it."
        )


def _is_heading(kind: str | None, value: str, marked: bool) -> bool:
    """Whether a classified line would start a section, a dimension or a field of the judgement
    (prose such as "Text Rendering: the word OPEN" or "Score: high" in an analysis would not)."""
    if kind in _DIMENSION_KEYS:
        return marked or not value or bool(_SCORE_LIKE.match(value))
    return kind in _SECTION_LABELS or (kind in _FIELDS and marked)


def _read_judgement(
    lines: list[str], kinds: list[tuple[str | None, str, bool]], task: str, layout: _Layout, warnings: list[str]
) -> None:
    """The judgement with its dimension blocks, then the summary and refinement sections."""
    wanted = {d.key: d for d in task_dimensions(task)}
    target: list[str] = layout.sections.setdefault("preamble", [])
    block: _Block | None = None
    tail = False  # a summary or refinement section has begun
    late = 0
    for line, (kind, value, marked) in zip(lines, kinds):
        if kind in _DIMENSION_KEYS and _is_heading(kind, value, marked):
            if tail:
                late += 1
                target.append(line)
                continue
            if kind not in wanted:
                warnings.append(f"Ignored a '{line.strip()}' section: it is not a dimension of the {task} task.")
                block, target = None, []
                continue
            if kind in layout.blocks:
                warnings.append(f"{wanted[kind].heading} appears twice; kept the first.")
                block, target = None, []
                continue
            block = layout.blocks[kind] = _Block(wanted[kind].heading)
            target = block.fields.setdefault("heading", [value])
        elif kind in _FIELDS and block is not None:
            if kind in block.fields:
                warnings.append(f"{block.heading}: a second '{_FIELD_NAMES[kind]}' line was ignored.")
                target = []
                continue
            target = block.fields.setdefault(kind, [value])
        elif kind in _SECTION_LABELS and kind != "judgement":
            block = None
            tail = tail or (kind in _TAIL_SECTIONS and bool(layout.blocks))
            if kind in layout.sections and kind != "preamble":
                warnings.append(f"The '{_SECTION_NAMES[kind]}' section appears twice; kept the last.")
            target = layout.sections[kind] = [value]
        elif kind == "judgement":
            block, target = None, []
        else:
            target.append(line)
    if late:
        warnings.append(f"Ignored {late} dimension heading(s) written after the summary or refinement began.")


def _text(lines: list[str] | None) -> str | None:
    """Joined, trimmed text of ``lines``; ``None`` when there is none."""
    if not lines:
        return None
    joined = "\n".join(line.rstrip() for line in lines).strip()
    return joined or None


def _first_line(lines: list[str]) -> str | None:
    return next((line.strip() for line in lines if line.strip()), None)


class _NotApplicable:
    """The score a critic wrote as N/A on a dimension that allows it."""

    def __repr__(self) -> str:
        return "N/A"


NOT_APPLICABLE = _NotApplicable()
Score = Union[float, _NotApplicable, None]
"""A read score: a float in [1, 4], ``NOT_APPLICABLE``, or ``None`` when it is missing or unreadable."""


def _read_score(text: str | None, dim: Dimension, what: str, warnings: list[str]) -> Score:
    """The score in a score field's text, in [1, 4]. ``NOT_APPLICABLE`` for N/A on a dimension that
    allows it (no warning); ``None`` for anything unreadable (with a warning)."""
    if text is None:
        warnings.append(f"{dim.heading}: the {what} is empty; counted as missing.")
        return None
    cleaned = text.strip().strip("*_`").strip()
    if _NA.match(cleaned):
        if not dim.allows_na:
            warnings.append(f"{dim.heading}: N/A is only allowed for Text Rendering; the {what} counts as missing.")
            return None
        return NOT_APPLICABLE
    match = _NUMBER.search(cleaned)
    if match is None:
        warnings.append(f"{dim.heading}: could not read a number in the {what} {cleaned[:60]!r}; counted as missing.")
        return None
    value = float(match.group(0))
    if not math.isfinite(value):
        warnings.append(f"{dim.heading}: the {what} {match.group(0)!r} is not a finite number; counted as missing.")
        return None
    if not 1.0 <= value <= 4.0:
        clamped = min(4.0, max(1.0, value))
        warnings.append(f"{dim.heading}: the {what} {value:g} is outside 1-4; clamped to {clamped:g}.")
        value = clamped
    return value


def _number(score: Score) -> float | None:
    """The float of a read score; ``None`` for N/A and for a missing one."""
    return score if isinstance(score, float) else None


def _dimension_score(block: _Block, dim: Dimension, warnings: list[str]) -> Score:
    """The pointwise score of one block, falling back to a number written on the heading line."""
    if "score" in block.fields:
        return _read_score(_first_line(block.fields["score"]), dim, "score", warnings)
    inline = block.fields["heading"][0]
    if inline and _SCORE_LIKE.match(inline):
        warnings.append(f"{dim.heading}: no '## Score:' line; read the score from the heading line.")
        return _read_score(inline, dim, "score", warnings)
    warnings.append(f"{dim.heading}: no score was written; counted as missing.")
    return None


def _justification(block: _Block, dim: Dimension, warnings: list[str]) -> str | None:
    """The justification field, or the free text under the heading when the label is missing."""
    if "justification" in block.fields:
        return _text(block.fields["justification"])
    heading = block.fields["heading"]
    lines = heading[1:] if heading[0] and _SCORE_LIKE.match(heading[0]) else heading
    text = _text(lines)
    if text is None:
        warnings.append(f"{dim.heading}: no justification was written.")
    return text


def _analysis(layout: _Layout, warnings: list[str]) -> str | None:
    if "analysis" in layout.sections:
        return _text(layout.sections["analysis"])
    preamble = _text(layout.sections.get("preamble"))
    if preamble is None:
        warnings.append("No user request analysis was written.")
        return None
    warnings.append("No '# User Request Analysis' heading; used the first paragraph as the analysis.")
    return preamble.split("\n\n", 1)[0].strip()


def _unquote(text: str | None) -> str | None:
    """Drop one pair of quotes wrapping the whole text (the critic often quotes its request)."""
    if text and len(text) >= 2 and text[0] + text[-1] in ('""', "“”", "''"):
        return text[1:-1].strip() or None
    return text


def _no_dimension(text: str, task: str) -> CritiqueParseError:
    start = " ".join(text.split())[:80]
    return CritiqueParseError(
        f"No dimension of the {task} critique could be read (expected headings such as "
        f"'1. Text Faithfulness:' followed by '## Score: 3.5'). The output starts: {start!r}.",
        text,
    )


def parse_critique(text: str, task: str) -> Critique:
    """Parse a pointwise critique for ``task`` (``"t2i"`` or ``"edit"``).

    Scores are floats in [1, 4] (clamped with a warning), ``None`` for N/A (Text Rendering only)
    or a dimension that is missing or unreadable (with a warning). ``overall`` uses
    ``ScoringPolicy.default()``. Raises ``CritiqueParseError`` when no dimension has a score, and
    ``ValueError`` for an unknown task.
    """
    dimensions = task_dimensions(task)
    warnings: list[str] = []
    layout = _split(_strip_think(text, warnings), task, warnings)
    scores: dict[str, float | None] = {}
    justifications: dict[str, str | None] = {}
    missing: list[str] = []
    readable = 0
    for dim in dimensions:
        block = layout.blocks.get(dim.key)
        if block is None:
            warnings.append(f"{dim.heading}: the dimension is missing from the critique.")
            scores[dim.key], justifications[dim.key] = None, None
            missing.append(dim.key)
            continue
        score = _dimension_score(block, dim, warnings)
        scores[dim.key] = _number(score)
        justifications[dim.key] = _justification(block, dim, warnings)
        readable += score is not None
        if score is None:
            missing.append(dim.key)
    if not readable:
        raise _no_dimension(text, task)
    summary = _text(layout.sections.get("summary"))
    if summary is None:
        warnings.append("No summary was written.")
    comments = _text(layout.sections.get("comments"))
    refined = _unquote(_text(layout.sections.get("refined")))
    if refined is None:
        warnings.append("No refined request was written.")
    critique = Critique(
        task=task,  # type: ignore[arg-type]
        scores=scores,
        justifications=justifications,
        analysis=_analysis(layout, warnings),
        summary=summary,
        refinement_comments=comments,
        refined_request=refined,
        overall=None,
        raw=text,
        warnings=warnings,
        missing=missing,
    )
    critique.overall = _DEFAULT_POLICY.score(critique)
    if warnings:
        logger.debug("critique parsed with %d warning(s): %s", len(warnings), "; ".join(warnings))
    return critique


def _read_winner(text: str | None) -> Winner | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a winner field (``"Image A"``, ``"**B**"``, ``"Tie"``,
    ``"equal"``, ``"draw"``); ``None`` when it names none of them."""
    if not text:
        return None
    cleaned = text.strip().strip("*_`\"'").strip()
    match = _WINNER_AB.match(cleaned)
    if match:
        return "A" if match.group(1).lower() == "a" else "B"
    return "tie" if _WINNER_TIE.search(cleaned) else None


def _verdict(block: _Block, dim: Dimension, warnings: list[str]) -> tuple[DimensionVerdict, bool]:
    """The verdict of one pairwise block and whether anything in it was readable."""
    found: dict[str, float | None] = {}
    readable = not_applicable = False
    for side in ("a", "b"):
        lines = block.fields.get(f"score_{side}")
        if lines is None:
            warnings.append(f"{dim.heading}: no score for Image {side.upper()}; counted as missing.")
            found[side] = None
            continue
        score = _read_score(_first_line(lines), dim, f"score of Image {side.upper()}", warnings)
        found[side] = _number(score)
        readable = readable or found[side] is not None
        not_applicable = not_applicable or score is NOT_APPLICABLE
    winner_text = _first_line(block.fields.get("winner", []))
    winner = _read_winner(winner_text)
    # an N/A dimension (the request asks for no text) may name no winner, or "N/A"
    unjudged = not_applicable and (winner_text is None or bool(_NA.match(winner_text.strip("*_` "))))
    if winner is None and not unjudged:
        if winner_text is not None:
            warnings.append(f"{dim.heading}: could not read the winner {winner_text[:40]!r}.")
        a, b = found["a"], found["b"]
        if a is not None and b is not None:
            winner = "A" if a > b else "B" if b > a else "tie"
            warnings.append(f"{dim.heading}: no readable winner; took {winner} from the scores.")
        else:
            warnings.append(f"{dim.heading}: no winner was written.")
    readable = readable or winner is not None
    justification = _text(block.fields.get("justification")) or _text(block.fields["heading"])
    verdict = DimensionVerdict(score_a=found["a"], score_b=found["b"], winner=winner, justification=justification)
    return verdict, readable


def parse_pairwise(text: str, task: str) -> PairwiseJudgement:
    """Parse a pairwise judgement for ``task``: per dimension Score A, Score B and Winner.

    A missing winner is derived from the two scores (with a warning); ``# Overall Winner:`` is read
    into ``overall_winner`` when present. Raises ``CritiqueParseError`` when no dimension has a
    readable score or winner.
    """
    dimensions = task_dimensions(task)
    warnings: list[str] = []
    layout = _split(_strip_think(text, warnings), task, warnings)
    verdicts: dict[str, DimensionVerdict] = {}
    readable = 0
    for dim in dimensions:
        block = layout.blocks.get(dim.key)
        if block is None:
            warnings.append(f"{dim.heading}: the dimension is missing from the judgement.")
            verdicts[dim.key] = DimensionVerdict(score_a=None, score_b=None, winner=None)
            continue
        verdicts[dim.key], ok = _verdict(block, dim, warnings)
        readable += ok
    if not readable:
        raise _no_dimension(text, task)
    summary = _text(layout.sections.get("summary"))
    if summary is None:
        warnings.append("No summary was written.")
    overall_text = _first_line(layout.sections.get("overall_winner", []))
    overall = _read_winner(overall_text)
    if overall_text is not None and overall is None:
        warnings.append(f"Could not read the overall winner {overall_text[:40]!r}.")
    return PairwiseJudgement(
        task=task,  # type: ignore[arg-type]
        dimensions=verdicts,
        summary=summary,
        raw=text,
        warnings=warnings,
        overall_winner=overall,
    )
