"""Preference pairs with known truth, for evaluation, PARROT and tests.

``make_pair(rng, task)`` draws a request (a t2i prompt, or an edit instruction with its source
image) and two images of it. The truth comes from construction, not from a judge: the better
image carries a set of defects ``D`` (possibly none) and the worse one carries ``D`` plus one more
defect, so the worse image is strictly worse; a tie carries the same defects on both sides (drawn
independently: same kinds and severities, different pixels). Both sides also get a light jitter
that no critic should punish.

Defects are chosen so that the request can see them: a short prompt leaves sizes and positions
open, so its pairs never differ by a wrong size or position; an extra fault never touches an
object an earlier fault already changed (it could undo it), and on an edit it never touches what
the edit changes. A prompt with a relation ("two red circles above a blue square", asked for
with ``prompt_form="relation"``) pins only the relation: its pairs differ by a broken relation
(a related object moved), a missing object, the word or the drawing, never by an attribute
change or an extra object that could pass for another member of a related group; once a
relation is broken no later fault touches a related object.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from models.errors import InvalidInputError
from models.shapes.defects import (
    Defect,
    apply_edit_fault,
    apply_fault,
    break_relation,
    feasible_faults,
    feasible_image_defects,
    relation_moves,
    render_with_defects,
    unrequested_change_kinds,
)
from models.shapes.world import (
    POSITIONS,
    PromptSpec,
    Scene,
    detailed_prompt,
    parse_prompt,
    random_edit,
    random_scene,
    relation_prompt,
    render,
    short_prompt,
)
from models.types import PairRequest, Task, Winner

logger = logging.getLogger(__name__)

PromptForm = Literal["short", "detailed", "relation"]
_QUALITY_DEFECTS = ("blur", "noise", "colour_bleed", "broken", "merged", "smudge")
_UNSEEN_IN_SHORT = ("wrong_size", "wrong_position")
_SEEN_WITH_RELATIONS = ("missing_object", "wrong_word", "missing_word")
_NUISANCE = Defect("jitter", 0.3, "light jitter")


@dataclass
class PreferencePair:
    """Two images for one request with the known better one.

    ``label`` is ``"A"``, ``"B"`` or ``"tie"``; ``defects_a`` / ``defects_b`` list what was done to
    each image; ``scene`` is the scene the request asks for (the edit's target for ``edit``) and
    ``source`` the edit's source scene (``None`` for t2i).
    """

    task: Task
    prompt: str
    image_a: Image.Image
    image_b: Image.Image
    label: Winner
    defects_a: tuple[Defect, ...]
    defects_b: tuple[Defect, ...]
    scene: Scene
    source: Scene | None = None
    source_image: Image.Image | None = None

    def to_request(self) -> PairRequest:
        """The pair as a critic's ``PairRequest`` (A first, B second)."""
        return PairRequest(self.task, self.prompt, self.image_a, self.image_b, self.source_image)


@dataclass
class _Side:
    scene: Scene
    defects: list[Defect]
    touched: set[str]  # positions changed by faults (and, for edits, by the edit itself)
    word_touched: bool


def _touched(before: Scene, after: Scene) -> set[str]:
    return {p for p in POSITIONS if before.at(p) != after.at(p)}


def _options(side: _Side, form: PromptForm, source: Scene | None, asked: PromptSpec | None = None) -> list[str]:
    """The defect kinds that can still be added to ``side`` without undoing an earlier one
    (``asked``: the request of a ``"relation"`` prompt)."""
    used = {d.kind for d in side.defects}
    faults = [k for k in feasible_faults(side.scene) if form == "detailed" or k not in _UNSEEN_IN_SHORT]
    if asked is not None:
        faults = [k for k in faults if k in _SEEN_WITH_RELATIONS]
        faults += ["broken_relation"] if relation_moves(side.scene, asked, avoid=sorted(side.touched)) else []
    if side.word_touched:
        faults = [k for k in faults if k not in ("wrong_word", "missing_word")]
    free_objects = [o for o in side.scene.objects if o.position not in side.touched]
    if not free_objects:
        faults = [k for k in faults if k in ("extra_object", "wrong_word", "missing_word")]
    if len(free_objects) < 2 or len(side.scene.objects) < 2:
        faults = [k for k in faults if k != "missing_object"]
    if source is not None:
        if not any(d.is_scene_fault for d in side.defects):
            faults.append("edit_not_applied")
        if unrequested_change_kinds(source, side.scene, sorted(side.touched)):
            faults.append("unrequested_change")
    quality = [k for k in feasible_image_defects(side.scene) if k in _QUALITY_DEFECTS]
    return [k for k in faults + quality if k not in used]


def _add(side: _Side, kind: str, rng: random.Random, source: Scene | None, asked: PromptSpec | None = None) -> _Side:
    """``side`` with one more defect of ``kind``."""
    if kind == "broken_relation":
        assert asked is not None
        scene, defect = break_relation(side.scene, asked, rng, avoid=sorted(side.touched))
        related = {(asked.objects[g[0]].colour, asked.objects[g[0]].shape) for r in asked.relations for g in (r.first, r.second)}
        touched = side.touched | {o.position for o in scene.objects if (o.colour, o.shape) in related}
        return _Side(scene, side.defects + [defect], touched | _touched(side.scene, scene), side.word_touched)
    if kind in _QUALITY_DEFECTS:
        return _Side(side.scene, side.defects + [Defect(kind, rng.uniform(0.5, 1.0))], side.touched, side.word_touched)
    if kind == "edit_not_applied":
        assert source is not None
        scene, defect = apply_edit_fault(source, side.scene, kind, rng)
        return _Side(scene, side.defects + [defect], side.touched, True)
    if kind == "unrequested_change":
        assert source is not None
        scene, defect = apply_edit_fault(source, side.scene, kind, rng, avoid=sorted(side.touched))
    else:
        scene, defect = apply_fault(side.scene, kind, rng, avoid=sorted(side.touched))
    word_touched = side.word_touched or scene.word != side.scene.word
    return _Side(scene, side.defects + [defect], side.touched | _touched(side.scene, scene), word_touched)


def _add_one(side: _Side, form: PromptForm, rng: random.Random, source: Scene | None,
             asked: PromptSpec | None = None) -> _Side:
    """``side`` with one more defect of a kind drawn from ``_options``. A scene fault that would
    leave an earlier "merged" defect without neighbouring objects to merge (a moved or removed
    object) is drawn again from the other kinds."""
    options = _options(side, form, source, asked)
    while True:
        kind = rng.choice(options)
        added = _add(side, kind, rng, source, asked)
        if all(d.kind != "merged" for d in added.defects) or "merged" in feasible_image_defects(added.scene):
            return added
        options = [k for k in options if k != kind]


def _draw(side: _Side, rng: random.Random, size: int) -> Image.Image:
    return render_with_defects(side.scene, side.defects + [_NUISANCE], rng, size)


def make_pair(
    rng: random.Random,
    task: Task,
    *,
    size: int = 64,
    tie_prob: float = 0.2,
    base_defect_prob: float = 0.5,
    prompt_form: PromptForm | None = None,
) -> PreferencePair:
    """A preference pair with known truth for ``task`` (``"t2i"`` or ``"edit"``).

    :param tie_prob: share of pairs whose two sides carry the same defects (label ``"tie"``).
    :param base_defect_prob: chance that the better side has a defect of its own.
    :param prompt_form: ``"short"`` or ``"detailed"`` t2i prompt; ``None`` picks one of these
        two at random; ``"relation"`` a prompt with one relation the scene satisfies (drawn from
        scenes with at least two kinds of object). Edits always use the instruction written by
        ``random_edit``.
    """
    if task not in ("t2i", "edit"):
        raise InvalidInputError(f"Unknown task {task!r}; use 't2i' or 'edit'.")
    for name, value in (("tie_prob", tie_prob), ("base_defect_prob", base_defect_prob)):
        if not 0 <= value <= 1:
            raise InvalidInputError(f"{name} must be between 0 and 1; got {value!r}.")
    scene = random_scene(rng)
    source: Scene | None = None
    asked: PromptSpec | None = None
    if task == "edit":
        source, edit = scene, random_edit(scene, rng)
        scene, prompt, form = edit.target, edit.instruction, "detailed"
    else:
        form = prompt_form or rng.choice(("short", "detailed"))
        if form == "relation":
            while (related := relation_prompt(scene, rng)) is None:
                scene = random_scene(rng)
            prompt, asked = related, parse_prompt(related)
        else:
            prompt = short_prompt(scene) if form == "short" else detailed_prompt(scene)
    start = _Side(scene, [], _touched(source, scene) if source else set(), bool(source and source.word != scene.word))
    better = start
    if rng.random() < base_defect_prob:
        better = _add_one(better, form, rng, source, asked)
    if rng.random() < tie_prob:
        worse, label_if_a_is_better = better, "tie"
    else:
        worse, label_if_a_is_better = _add_one(better, form, rng, source, asked), "A"
    a_is_better = rng.random() < 0.5
    first, second = (better, worse) if a_is_better else (worse, better)
    label: Winner = "tie" if label_if_a_is_better == "tie" else ("A" if a_is_better else "B")
    return PreferencePair(
        task=task,
        prompt=prompt,
        image_a=_draw(first, rng, size),
        image_b=_draw(second, rng, size),
        label=label,
        defects_a=tuple(first.defects),
        defects_b=tuple(second.defects),
        scene=scene,
        source=source,
        source_image=render(source, size) if source else None,
    )
