"""Critic prompt templates: text files with named slots, checked against the protocol at load.

A template is the whole prompt of one kind of call (``pointwise_t2i.txt``, ``pointwise_edit.txt``,
``pairwise_t2i.txt``, ``pairwise_edit.txt``). An optional ``[system]`` line starts the system
message and a ``[user]`` line the user message; a file without them is all user message. Slots
use ``str.format`` syntax: ``{request}`` (the user's instruction, inserted as written) and one slot
per image, each exactly once, where the text names the image: ``{image}`` (the generated or
edited image), ``{source_image}`` (edit), ``{image_a}`` and ``{image_b}`` (pairwise). Write
``{{`` and ``}}`` for literal braces.

Loading checks every marker the parser needs (``# Detailed Judgement``, each numbered dimension
heading with its fields, ``# Summary:`` and, pointwise, the refinement section) and raises
``ConfigError`` naming what is missing. The shipped templates live in ``templates/`` next to
this module; ``load_templates(folder)`` takes a user's files (say, the exact text of a
checkpoint's model card) and the shipped ones for the rest.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from models.errors import ConfigError
from models.types import task_dimensions

Kind = Literal["pointwise", "pairwise"]

SHIPPED_DIR = Path(__file__).resolve().parent / "templates"
"""The folder of the shipped templates."""

IMAGE_SLOTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("pointwise", "t2i"): ("image",),
    ("pointwise", "edit"): ("source_image", "image"),
    ("pairwise", "t2i"): ("image_a", "image_b"),
    ("pairwise", "edit"): ("source_image", "image_a", "image_b"),
}
"""The image slots each template must have, each exactly once."""

_SYSTEM, _USER = "[system]", "[user]"
_JUDGEMENT = "# Detailed Judgement"
_SUMMARY = "# Summary:"
_REFINEMENT = ("# User Request Refinement:", "## Refinement Comments:", "## Refined Request:")
_FIELDS: dict[str, tuple[str, ...]] = {
    "pointwise": ("## Justification:", "## Score:"),
    "pairwise": ("## Justification:", "## Score A:", "## Score B:", "## Winner:"),
}


def file_name(kind: str, task: str) -> str:
    """The template file of ``kind`` calls for ``task``: ``pointwise_t2i.txt`` and so on."""
    return f"{kind}_{task}.txt"


@dataclass(frozen=True)
class PromptTemplate:
    """One checked template: the system text (``None`` when there is none) and the user text.

    ``origin`` names the file, for error messages.
    """

    kind: Kind
    task: str
    system: str | None
    user: str
    origin: str

    @functools.cached_property
    def _pieces(self) -> tuple[tuple[str, str | None], ...]:
        """The user text as (literal text, slot or ``None``) pieces, split once."""
        return tuple((literal, slot) for literal, slot, _, _ in string.Formatter().parse(self.user))

    def render(self, request: str, images: dict[str, Image.Image]) -> tuple[list[dict[str, Any]], list[Image.Image]]:
        """The chat messages with ``request`` filled in and an ``{"type": "image"}`` part at each
        image slot, and the images in the order of their slots."""
        parts: list[dict[str, Any]] = []
        ordered: list[Image.Image] = []
        text = ""
        for literal, slot in self._pieces:
            text += literal
            if slot == "request":
                text += request
            elif slot is not None:
                parts += [{"type": "text", "text": text}, {"type": "image"}] if text else [{"type": "image"}]
                ordered.append(images[slot])
                text = ""
        if text:
            parts.append({"type": "text", "text": text})
        messages = [{"role": "user", "content": parts}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system}]})
        return messages, ordered


def parse_template(kind: Kind, task: str, text: str, origin: str) -> PromptTemplate:
    """Split ``text`` into system and user parts and check it; raise ``ConfigError`` naming every
    problem (unknown or repeated slots, stray braces, missing protocol markers)."""
    system, user = _split_roles(text, origin)
    problems = _slot_problems(kind, task, system, user)
    problems += [f"the marker {marker} is missing" for marker in missing_markers(kind, task, user)]
    if problems:
        raise ConfigError(
            f"The critic template {origin} cannot be used: {'; '.join(problems)}. The parser needs every marker of "
            f"the protocol layout; compare with the shipped {file_name(kind, task)} in {SHIPPED_DIR}."
        )
    if system is not None:
        system = system.replace("{{", "{").replace("}}", "}")
    return PromptTemplate(kind=kind, task=task, system=system, user=user, origin=origin)


def _split_roles(text: str, origin: str) -> tuple[str | None, str]:
    lines = text.strip("\n").splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (_SYSTEM, _USER)]
    if not marks:
        return None, "\n".join(lines)
    roles = [lines[i].strip() for i in marks]
    if roles not in ([_USER], [_SYSTEM, _USER]) or marks[0] != 0:
        raise ConfigError(
            f"The critic template {origin} may start with a '[system]' line, then needs one '[user]' line before "
            f"the user message (a file with neither is all user message); found {roles}."
        )
    if len(marks) == 1:
        return None, "\n".join(lines[1:]).strip("\n")
    return "\n".join(lines[1 : marks[1]]).strip("\n"), "\n".join(lines[marks[1] + 1 :]).strip("\n")


def _slots(text: str) -> list[str]:
    """The slot names in ``text`` in order; raises ``ValueError`` for stray braces and for a slot
    with a format spec or conversion (``{request!r}``, ``{image:>4}``), which would be ignored."""
    found = []
    for _, slot, spec, conversion in string.Formatter().parse(text):
        if slot is None:
            continue
        if spec or conversion:
            raise ValueError(f"the slot {{{slot}}} has a format spec or conversion; write just {{{slot}}}")
        found.append(slot)
    return found


def _slot_problems(kind: str, task: str, system: str | None, user: str) -> list[str]:
    problems: list[str] = []
    wanted = ("request", *IMAGE_SLOTS[(kind, task)])
    for role, text in (("system", system), ("user", user)):
        if text is None:
            continue
        try:
            found = _slots(text)
        except ValueError as e:
            problems.append(f"the {role} text cannot be read ({e}); write '{{{{' and '}}}}' for literal braces")
            continue
        if role == "system" and found:
            problems.append(f"the system text may hold no slots, found {sorted(set(found))}")
            continue
        if role == "user":
            unknown = sorted(set(found) - set(wanted))
            if unknown:
                problems.append(f"unknown slot(s) {unknown} (this template takes {list(wanted)})")
            problems += [f"the slot {{{slot}}} is missing" for slot in wanted if slot not in found]
            problems += [f"the slot {{{slot}}} appears {found.count(slot)} times" for slot in IMAGE_SLOTS[(kind, task)]
                         if found.count(slot) > 1]
    return problems


def missing_markers(kind: str, task: str, text: str) -> list[str]:
    """The protocol markers ``text`` lacks, quoted, in layout order: ``# Detailed Judgement``, each
    numbered dimension heading with its fields (in either order) before the next heading,
    ``# Summary:`` and, for pointwise templates, the refinement section after it."""
    start = text.rfind(_JUDGEMENT)
    if start < 0:
        return [repr(_JUDGEMENT)]
    missing: list[str] = []
    headings = [f"{n}. {dim.heading}:" for n, dim in enumerate(task_dimensions(task), start=1)]
    at = start
    for i, heading in enumerate(headings):
        found = text.find(heading, at)
        if found < 0:
            missing.append(repr(heading))
            continue
        ends = [p for p in (text.find(h, found) for h in [*headings[i + 1 :], _SUMMARY]) if p >= 0]
        block = text[found : min(ends) if ends else len(text)]
        missing += [f"{field!r} under {heading!r}" for field in _FIELDS[kind] if field not in block]
        at = found + len(heading)
    summary = text.find(_SUMMARY, at)
    if summary < 0:
        missing.append(repr(_SUMMARY))
    if kind == "pointwise":
        at = max(summary, at)
        for marker in _REFINEMENT:
            found = text.find(marker, at)
            if found < 0:
                missing.append(repr(marker))
            else:
                at = found
    return missing


@dataclass(frozen=True)
class PromptTemplates:
    """The four templates of the critic, by ``(kind, task)``. ``folder`` is the user's folder the
    templates were loaded from (``None``: all shipped)."""

    templates: dict[tuple[str, str], PromptTemplate]
    folder: str | None = None

    def get(self, kind: Kind, task: str) -> PromptTemplate:
        """The template of ``kind`` calls for ``task``. Raises ``ValueError`` for an unknown task."""
        task_dimensions(task)  # raises for an unknown task
        return self.templates[(kind, task)]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read the critic template {path}: {e}.") from e


@functools.cache
def shipped_templates() -> PromptTemplates:
    """The templates shipped with the studio (read and checked once)."""
    return PromptTemplates({
        key: parse_template(key[0], key[1], _read(SHIPPED_DIR / file_name(*key)), file_name(*key))  # type: ignore[arg-type]
        for key in IMAGE_SLOTS
    })


def load_templates(folder: str | Path | None = None) -> PromptTemplates:
    """The shipped templates, with those found in ``folder`` (``pointwise_t2i.txt`` and so on)
    in their place.

    Raises ``ConfigError`` when ``folder`` is not a folder, holds none of the four files, holds a
    ``.txt`` file with another name (a misspelt template would silently not be used), or when a
    template fails its check.
    """
    shipped = shipped_templates()
    if folder is None:
        return shipped
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--critic-prompts: {path} is not a folder of critic templates.")
    names = {file_name(*key): key for key in IMAGE_SLOTS}
    stray = sorted(p.name for p in path.glob("*.txt") if p.name not in names)
    if stray:
        raise ConfigError(f"--critic-prompts: {path} holds {stray}; template files are named {sorted(names)}.")
    templates = dict(shipped.templates)
    for name, key in names.items():
        if (path / name).is_file():
            templates[key] = parse_template(key[0], key[1], _read(path / name), str(path / name))  # type: ignore[arg-type]
    if templates == shipped.templates:
        raise ConfigError(f"--critic-prompts: {path} holds none of the template files {sorted(names)}.")
    return PromptTemplates(templates, folder=str(path))
