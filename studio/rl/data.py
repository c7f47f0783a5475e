"""Where RL prompts come from: a JSONL file (prompt plus, for editing, a source image path, as in
the public RL data) or generated shapes-world prompts and edits; and the held-out evaluation set.

Every item has a ``key``: its prompt *and* its source image, so an edit instruction reused on
two sources is two groups. Sources keep their random state so a resumed run draws the same
prompts as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from models.errors import ConfigError, InvalidInputError, JobError, NotFoundError
from models.images import prepare_image
from models.shapes import world
from models.shapes.train_generator import ExcludedKeys, heldout_edits, heldout_scenes
from models.types import Task
from studio.jsonl import read_jsonl_records

HELDOUT_SCENES = 200  # held-out scenes (and edits) RL never trains on: evaluations may use at most these


@dataclass(frozen=True)
class PromptItem:
    """One prompt to sample a group for. ``source_id`` names the source image (its path, or the
    shapes scene); ``form`` is the shapes prompt form; ``target`` the shapes scene an edit
    should produce (for the analyzer check)."""

    prompt: str
    source_id: str | None = None
    source_path: str | None = None
    source_scene: world.Scene | None = None
    form: str | None = None
    target: world.Scene | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        """The group key: prompt and source image."""
        return (self.prompt, self.source_id)

    def source_image(self) -> Image.Image | None:
        """The edit's source image (rendered for the shapes world, read from disk for JSONL)."""
        if self.source_scene is not None:
            return world.render(self.source_scene)
        if self.source_path is not None:
            return prepare_image(self.source_path, what=f"source image {self.source_path}")
        return None


class PromptSource(Protocol):
    """Draws training prompts; its state round-trips through ``state``/``load_state``."""

    def draw(self, n: int, retired: set[tuple[str, str | None]]) -> list[PromptItem]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class ShapesPrompts:
    """Fresh random shapes-world scenes: t2i prompts in the short and/or detailed form, or edits of
    a rendered source scene. Never one of the first ``HELDOUT_SCENES`` held-out scenes or edit
    sources, and never a scene with a held-out scene's prompt text in either form
    (``ExcludedKeys``): a short prompt names only shapes and colours, so another scene can have the
    same text, and training on it would be training on the evaluation prompt."""

    def __init__(self, task: Task, form: str = "both", seed: int = 0) -> None:
        self.task, self.form = task, form
        self.rng = random.Random(seed)
        held_out = heldout_scenes(HELDOUT_SCENES)
        self._excluded = ExcludedKeys(
            frozenset(held_out) | {scene for scene, _ in heldout_edits(HELDOUT_SCENES)},
            frozenset(text for s in held_out for text in (world.short_prompt(s), world.detailed_prompt(s))))

    def draw(self, n: int, retired: set[tuple[str, str | None]]) -> list[PromptItem]:
        items: list[PromptItem] = []
        while len(items) < n:
            scene = world.random_scene(self.rng)
            if self._excluded.excludes(scene):
                continue
            item = self._item(scene)
            if item.key not in retired:
                items.append(item)
        return items

    def _item(self, scene: world.Scene) -> PromptItem:
        if self.task == "edit":
            edit = world.random_edit(scene, self.rng)
            return PromptItem(edit.instruction, source_id=repr(scene), source_scene=scene, form=edit.kind,
                              target=edit.target)
        form = self.form if self.form != "both" else self.rng.choice(("short", "detailed"))
        prompt = world.short_prompt(scene) if form == "short" else world.detailed_prompt(scene)
        return PromptItem(prompt, form=form, target=scene)

    def state(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.setstate(_rng_from_state(state["rng"]))


class JsonlPrompts:
    """Rows of a JSONL file, shuffled once per pass, skipping retired prompts."""

    def __init__(self, path: str | Path, task: Task, seed: int = 0) -> None:
        self.items = read_jsonl(path, task)
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.cursor = 0

    def draw(self, n: int, retired: set[tuple[str, str | None]]) -> list[PromptItem]:
        if all(item.key in retired for item in self.items):
            raise JobError("Every training prompt has been retired (solved by every sample); nothing is left to train on.")
        items: list[PromptItem] = []
        while len(items) < n:
            if self.cursor >= len(self.order):
                self.order = list(range(len(self.items)))
                self.rng.shuffle(self.order)
                self.cursor = 0
            item = self.items[self.order[self.cursor]]
            self.cursor += 1
            if item.key not in retired:
                items.append(item)
        return items

    def state(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "order": self.order, "cursor": self.cursor}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.setstate(_rng_from_state(state["rng"]))
        self.order, self.cursor = list(state["order"]), int(state["cursor"])


def read_jsonl(path: str | Path, task: Task) -> list[PromptItem]:
    """Prompt items of a JSONL file: ``{"prompt": ..., "source_image": path}`` per line (the source
    required for editing, refused for text-to-image; relative paths are from the file's folder).
    Raises ``NotFoundError`` / ``InvalidInputError`` naming the bad line."""
    path = Path(path)
    items: list[PromptItem] = []
    for where, row in read_jsonl_records(path, what="prompt"):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError(f"{where} has no \"prompt\" text.")
        source = row.get("source_image")
        if task == "edit" and not source:
            raise InvalidInputError(f"{where}: an editing model needs a \"source_image\" path per prompt.")
        if task == "t2i" and source:
            raise InvalidInputError(f"{where} has a source image, but the model is text-to-image.")
        source_path = str((path.parent / source).resolve()) if source else None
        if source_path is not None and not Path(source_path).is_file():
            raise NotFoundError(f"{where}: no source image at {source_path}.")
        items.append(PromptItem(prompt.strip(), source_id=source_path, source_path=source_path))
    if not items:
        raise InvalidInputError(f"{path} holds no prompts.")
    return items


def prompt_source(data: str, task: Task, form: str, seed: int) -> PromptSource:
    """The training prompt source for the ``data`` setting ('shapes' or a JSONL path)."""
    if data == "shapes":
        return ShapesPrompts(task, form, seed)
    if not data.endswith(".jsonl"):
        raise ConfigError(f"data must be 'shapes' or a .jsonl file, got {data!r}.")
    return JsonlPrompts(data, task, seed)


def eval_items(data: str, eval_data: str | None, task: Task, n: int) -> list[PromptItem]:
    """Held-out prompts: ``eval_data`` rows, or the shapes world's held-out scenes (``n`` per form)
    and edits. Raises ``ConfigError`` when JSONL training data comes without held-out prompts, or
    when ``n`` is more than the ``HELDOUT_SCENES`` that training leaves out."""
    if eval_data is not None:
        return read_jsonl(eval_data, task)[:n]
    if data != "shapes":
        raise ConfigError("Give eval_data (a JSONL of held-out prompts) to evaluate a JSONL-trained run.")
    if n > HELDOUT_SCENES:
        raise ConfigError(f"Only the first {HELDOUT_SCENES} held-out shapes scenes are kept out of RL training; "
                          f"asked for {n}.")
    if task == "edit":
        return [PromptItem(e.instruction, source_id=repr(s), source_scene=s, form=e.kind, target=e.target)
                for s, e in heldout_edits(n)]
    scenes = heldout_scenes(n)
    return [PromptItem(world.short_prompt(s), form="short", target=s) for s in scenes] + [
        PromptItem(world.detailed_prompt(s), form="detailed", target=s) for s in scenes]


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list[Any]) -> tuple[Any, ...]:
    return (state[0], tuple(state[1]), state[2])
