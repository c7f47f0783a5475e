"""A scripted language-model teacher for the PARROT tests, and labelled pairs written as JSONL.

``ScriptedTeacher`` reads the anchoring sentence in each prompt, as an LLM would, and writes a
protocol critique whose scores follow it. The request's wording picks a misbehaviour: a prompt
containing "contrary" gets scores against the verdict, "garbage" an unparseable answer, "down" a
transport failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

from PIL import Image

from models.critic.chat import ChatPrompt, CompletionError
from models.critic.runner import ProtocolCritic
from studio.jobs.context import RecordingContext
from studio.parrot import export, filter as parrot_filter, generate

SPEC = {"backend": "tests.parrot_helpers:ScriptedTeacher"}


def _user_text(prompt: ChatPrompt) -> str:
    return "".join(part.get("text", "") for part in prompt.messages[-1]["content"] if part.get("type") == "text")


def critique_text(score: float, note: str = "") -> str:
    """A complete t2i critique in the protocol layout with ``score`` on both judged dimensions."""
    return "\n".join([
        "# User Request Analysis", "The request asks for shapes.", "# Detailed Judgement",
        "1. Text Faithfulness:", f"## Justification: Objects as seen {note}.", f"## Score: {score}",
        "2. Physical and Visual Quality:", "## Justification: Edges as seen.", f"## Score: {score}",
        "3. Text Rendering:", "## Justification: No text asked.", "## Score: N/A",
        "# Summary: As judged.", "# User Request Refinement:", "## Refinement Comments: Pin the layout.",
        "## Refined Request: the same shapes, placed exactly",
    ])


class ScriptedTeacherChat:
    """A ``TextCompleter`` that answers each anchoring prompt as its request's wording says."""

    def __init__(self) -> None:
        self.prompts: list[ChatPrompt] = []

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        self.prompts += prompts
        answers: list[Union[str, CompletionError]] = []
        for prompt in prompts:
            request = prompt.request.prompt
            text = _user_text(prompt)
            if "down" in request:
                answers.append(CompletionError("the teacher endpoint is down"))
                continue
            if "garbage" in request:
                answers.append("I rather like this picture.")
                continue
            better = "preferred the image you are judging to" in text
            worse = "preferred the other candidate to" in text
            if "contrary" in request:
                better, worse = worse, better
            both_bad = "both the image you are judging and the other candidate fail" in text
            answers.append(critique_text(3.5 if better else 1.5 if worse or both_bad else 2.5))
        return answers


class ScriptedTeacher(ProtocolCritic):
    """``ScriptedTeacherChat`` behind the critic interface (the registry builds it from ``SPEC``)."""

    def __init__(self, name: str = "scripted teacher") -> None:
        super().__init__(ScriptedTeacherChat(), name=name)


def write_pairs(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """A JSONL pairs file of t2i pairs ``(prompt, label)`` with plain images; returns its path."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (prompt, label) in enumerate(rows):
        for side, colour in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
            Image.new("RGB", (64, 64), colour).save(folder / "img" / f"{n}{side}.png")
        lines.append(json.dumps({"id": f"p{n}", "prompt": prompt, "image_a": f"img/{n}a.png",
                                 "image_b": f"img/{n}b.png", "label": label}))
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def scripted_dataset(root: Path, formats: list[str], eval_fraction: float) -> tuple[Path, Path]:
    """Three labelled pairs through generate (the scripted teacher), filter and export under
    ``root``; returns the rationales file and the sharegpt dataset folder."""
    pairs = write_pairs(root, [("a red circle", "A"), ("a blue square", "B"), ("a red star", "B")])
    gen = RecordingContext(root / "gen")
    generate.run(generate.GenerateConfig(source="jsonl", pairs=str(pairs), teacher=SPEC, draws=1), gen)
    kept = RecordingContext(root / "filter")
    parrot_filter.run(parrot_filter.FilterConfig(rationales=str(gen.run_dir / "rationales.jsonl")), kept)
    data = RecordingContext(root / "dataset")
    export.run(export.ExportConfig(kept=str(kept.run_dir / "kept.jsonl"), formats=formats,
                                   eval_fraction=eval_fraction), data)
    return gen.run_dir / "rationales.jsonl", data.run_dir
