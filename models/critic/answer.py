"""Writing an answer in the protocol's pointwise layout (the text a critic model is trained to
write): the reference shapes critic writes its critiques with it, and PARROT writes its student
targets with it, so both match what ``models.critic.parser`` reads."""

from __future__ import annotations

from typing import Mapping

from models.types import task_dimensions


def format_score(score: float | None) -> str:
    """A score as the protocol writes it: ``3.5``, ``4``, ``N/A``."""
    return "N/A" if score is None else f"{score:.2f}".rstrip("0").rstrip(".")


def pointwise_answer_text(
    task: str,
    *,
    analysis: str,
    justifications: Mapping[str, str | None],
    scores: Mapping[str, float | None],
    summary: str,
    refinement_comments: str,
    refined_request: str,
) -> str:
    """The pointwise layout: analysis, one numbered judgement per dimension of ``task``
    (justification, then score), summary, refinement comments and the refined request."""
    lines = ["# User Request Analysis", analysis, "# Detailed Judgement"]
    for number, dim in enumerate(task_dimensions(task), start=1):
        lines += [
            f"{number}. {dim.heading}:",
            f"## Justification: {justifications.get(dim.key) or ''}",
            f"## Score: {format_score(scores.get(dim.key))}",
        ]
    lines += [
        f"# Summary: {summary}",
        "# User Request Refinement:",
        f"## Refinement Comments: {refinement_comments}",
        f"## Refined Request: {refined_request}",
    ]
    return "\n".join(lines)
