"""Controlled defects of known kind and severity for shapes-world images.

Two families:

* **scene faults** change *what* is drawn (a wrong colour, a missing object, a wrong word, ...;
  for edits also an edit that was not applied or an unrequested change; for a prompt with
  relations an object moved so that a relation breaks). They are applied to a ``Scene`` before
  rendering with ``apply_fault`` / ``apply_edit_fault`` / ``break_relation``.
* **image defects** change *how well* it is drawn (blur, noise, jitter, colour bleeding, a broken
  shape, two shapes merged, a smudge). ``render_with_defects`` draws a scene with them.

Every random choice comes from the ``random.Random`` passed in, so a seed reproduces an image.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.errors import InvalidInputError
from models.shapes.world import (
    BACKGROUND,
    COLOURS,
    POSITIONS,
    SHAPES,
    ObjectJitter,
    PromptSpec,
    Scene,
    ShapeObject,
    cell_centre,
    check_relations,
    describe,
    object_extent,
    random_object,
    render,
    shape_mask,
)

logger = logging.getLogger(__name__)

SCENE_FAULTS: tuple[str, ...] = (
    "wrong_colour", "wrong_shape", "wrong_size", "wrong_position",
    "missing_object", "extra_object", "wrong_word", "missing_word", "broken_relation",
)
EDIT_FAULTS: tuple[str, ...] = ("edit_not_applied", "unrequested_change")
IMAGE_DEFECTS: tuple[str, ...] = ("blur", "noise", "jitter", "colour_bleed", "broken", "merged", "smudge")
SMUDGE_COLOUR: tuple[int, int, int] = (120, 100, 85)  # a muddy brown that is no palette colour
_BLEED_DISTANCE = 150.0  # a bleeding colour differs this much (RGB) from the object's own


@dataclass(frozen=True)
class Defect:
    """One defect of an image: its ``kind`` (a scene fault, edit fault or image defect), its
    ``severity`` in (0, 1] (image defects; scene faults are 1) and a plain ``detail``."""

    kind: str
    severity: float = 1.0
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCENE_FAULTS + EDIT_FAULTS + IMAGE_DEFECTS:
            raise InvalidInputError(f"Unknown defect kind {self.kind!r}; known: {', '.join(SCENE_FAULTS + EDIT_FAULTS + IMAGE_DEFECTS)}.")
        if not 0 < self.severity <= 1:
            raise InvalidInputError(f"A defect severity is in (0, 1]; got {self.severity!r} for {self.kind}.")

    @property
    def is_scene_fault(self) -> bool:
        """True for faults that change what is drawn (scene and edit faults)."""
        return self.kind not in IMAGE_DEFECTS


# -- scene faults -----------------------------------------------------------------------------


def feasible_faults(scene: Scene) -> list[str]:
    """The scene faults that can be applied to ``scene``."""
    free = any(scene.at(p) is None for p in POSITIONS)
    kinds = ["wrong_colour", "wrong_shape", "wrong_size"]
    if free:
        kinds += ["wrong_position", "extra_object"]
    if len(scene.objects) > 1:
        kinds.append("missing_object")
    if scene.word:
        kinds += ["wrong_word", "missing_word"]
    return kinds


def _swap(scene: Scene, old: ShapeObject, new: ShapeObject | None) -> Scene:
    kept = tuple(o for o in scene.objects if o != old)
    return Scene(kept + ((new,) if new else ()), scene.word)


def apply_fault(scene: Scene, kind: str, rng: random.Random, *, avoid: Sequence[str] = ()) -> tuple[Scene, Defect]:
    """``scene`` with one fault of ``kind``, and the ``Defect`` describing it.

    :param avoid: positions whose objects must stay untouched (edits use it to change only
        what the instruction did not ask for). Raises ``InvalidInputError`` when the fault is not
        possible on this scene.
    """
    if kind not in feasible_faults(scene):
        raise InvalidInputError(f"The fault {kind!r} is not possible on this scene; possible: {', '.join(feasible_faults(scene))}.")
    if kind in ("wrong_word", "missing_word"):
        assert scene.word is not None
        if kind == "missing_word":
            return Scene(scene.objects, None), Defect(kind, detail=f'the word "{scene.word}" is missing')
        i = rng.randrange(len(scene.word))
        letter = rng.choice([c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c != scene.word[i]])
        word = scene.word[:i] + letter + scene.word[i + 1:]
        return Scene(scene.objects, word), Defect(kind, detail=f'the word reads "{word}" instead of "{scene.word}"')
    free = [p for p in POSITIONS if scene.at(p) is None]
    if kind == "extra_object":
        extra = random_object(rng, rng.choice(free))
        return Scene(scene.objects + (extra,), scene.word), Defect(kind, detail=f"an extra {describe(extra, article=False)}")
    candidates = [o for o in scene.objects if o.position not in avoid]
    if not candidates or (kind == "missing_object" and len(scene.objects) < 2):
        raise InvalidInputError(f"The fault {kind!r} needs an object outside {list(avoid)}; the scene has none.")
    obj = rng.choice(candidates)
    name = describe(obj, article=False)
    if kind == "missing_object":
        return _swap(scene, obj, None), Defect(kind, detail=f"the {name} is missing")
    if kind == "wrong_colour":
        colour = rng.choice([c for c in COLOURS if c != obj.colour])
        new = ShapeObject(obj.shape, colour, obj.size, obj.position)
        return _swap(scene, obj, new), Defect(kind, detail=f"the {name} is {colour}")
    if kind == "wrong_shape":
        shape = rng.choice([s for s in SHAPES if s != obj.shape])
        new = ShapeObject(shape, obj.colour, obj.size, obj.position)
        return _swap(scene, obj, new), Defect(kind, detail=f"the {name} is a {shape}")
    if kind == "wrong_size":
        size = "small" if obj.size == "large" else "large"
        new = ShapeObject(obj.shape, obj.colour, size, obj.position)
        return _swap(scene, obj, new), Defect(kind, detail=f"the {name} is {size}")
    position = rng.choice(free)
    new = ShapeObject(obj.shape, obj.colour, obj.size, position)
    return _swap(scene, obj, new), Defect(kind, detail=f"the {name} is at the {position}")


def _broken_share(scene: Scene, spec: PromptSpec) -> float:
    return sum(c.share for c in check_relations(spec, [(o.colour, o.shape, o.position) for o in scene.objects]))


def relation_moves(scene: Scene, spec: PromptSpec, *, avoid: Sequence[str] = ()) -> list[tuple[ShapeObject, str]]:
    """The moves of one object of a related group (not in ``avoid``) to a free cell that break
    the relations of ``spec`` further, as (object, new position)."""
    related = {(spec.objects[g[0]].colour, spec.objects[g[0]].shape) for r in spec.relations for g in (r.first, r.second)}
    now = _broken_share(scene, spec)
    free = [p for p in POSITIONS if scene.at(p) is None]
    return [
        (obj, cell) for obj in scene.objects if (obj.colour, obj.shape) in related and obj.position not in avoid
        for cell in free
        if _broken_share(_swap(scene, obj, ShapeObject(obj.shape, obj.colour, obj.size, cell)), spec) > now
    ]


def break_relation(scene: Scene, spec: PromptSpec, rng: random.Random, *, avoid: Sequence[str] = ()) -> tuple[Scene, Defect]:
    """``scene`` with one related object moved so that a relation of ``spec`` breaks (further),
    and the ``broken_relation`` defect. Raises ``InvalidInputError`` when no such move exists."""
    moves = relation_moves(scene, spec, avoid=avoid)
    if not moves:
        raise InvalidInputError("No move of a related object outside the avoided cells breaks a relation of this scene.")
    obj, cell = rng.choice(moves)
    moved = _swap(scene, obj, ShapeObject(obj.shape, obj.colour, obj.size, cell))
    return moved, Defect("broken_relation", detail=f"the {describe(obj, article=False)} is moved to the {cell}, breaking a relation")


def apply_edit_fault(
    source: Scene, target: Scene, kind: str, rng: random.Random, *, avoid: Sequence[str] = ()
) -> tuple[Scene, Defect]:
    """What an edit model drew instead of ``target``: the source unchanged (``edit_not_applied``)
    or the target plus a change the instruction did not ask for (``unrequested_change``), which
    never touches what the edit changed nor the positions in ``avoid``."""
    if kind == "edit_not_applied":
        return source, Defect(kind, detail="the requested edit was not made")
    if kind != "unrequested_change":
        raise InvalidInputError(f"Unknown edit fault {kind!r}; use one of {', '.join(EDIT_FAULTS)}.")
    kinds = unrequested_change_kinds(source, target, avoid)
    if not kinds:
        raise InvalidInputError("No unrequested change is possible: the edit touches every object and the word.")
    touched = {o.position for o in set(source.objects) ^ set(target.objects)} | set(avoid)
    changed, fault = apply_fault(target, rng.choice(kinds), rng, avoid=sorted(touched))
    return changed, Defect(kind, detail=f"unrequested change: {fault.detail}")


def unrequested_change_kinds(source: Scene, target: Scene, avoid: Sequence[str] = ()) -> list[str]:
    """The scene faults an ``unrequested_change`` can use: attribute changes of objects the edit
    leaves alone (and not in ``avoid``), and a wrong word when the edit keeps the word."""
    touched = {o.position for o in set(source.objects) ^ set(target.objects)} | set(avoid)
    kinds = ["wrong_colour", "wrong_shape", "wrong_size"] if any(o.position not in touched for o in target.objects) else []
    if target.word and target.word == source.word:
        kinds.append("wrong_word")
    return kinds


# -- image defects ----------------------------------------------------------------------------


def random_jitter(scene: Scene, rng: random.Random, severity: float) -> dict[str, ObjectJitter]:
    """Per-object shift (up to 1.5 px at severity 1, on a 64 image), scale (up to 8 %) and tint."""
    return {
        o.position: ObjectJitter(
            dx=rng.uniform(-1.5, 1.5) * severity,
            dy=rng.uniform(-1.5, 1.5) * severity,
            scale=1 + rng.uniform(-0.08, 0.08) * severity,
            tint=tuple(round(rng.uniform(-14, 14) * severity) for _ in range(3)),  # type: ignore[arg-type]
        )
        for o in scene.objects
    }


def _blend(array: np.ndarray, alpha: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None]
    return array * (1 - a) + np.asarray(colour, dtype=np.float32) * a


def _object_alpha(obj: ShapeObject, size: int) -> np.ndarray:
    return shape_mask(obj.shape, cell_centre(obj.position, size), object_extent(obj.size, size), size)


def _stroke(size: int, start: tuple[float, float], end: tuple[float, float], width: float) -> np.ndarray:
    """Anti-aliased coverage of a thick line segment."""
    k = 4
    canvas = Image.new("L", (size * k, size * k), 0)
    ImageDraw.Draw(canvas).line([(start[0] * k, start[1] * k), (end[0] * k, end[1] * k)], fill=255, width=max(1, round(width * k)))
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _damaged_object(scene: Scene, rng: random.Random) -> ShapeObject:
    """The object a shape defect hits: a large one when there is one (damage to a small shape is
    barely visible at 64x64)."""
    return rng.choice([o for o in scene.objects if o.size == "large"] or list(scene.objects))


def _broken(array: np.ndarray, scene: Scene, rng: random.Random, severity: float, background: Sequence[int]) -> np.ndarray:
    obj = _damaged_object(scene, rng)
    size = array.shape[0]
    cx, cy = cell_centre(obj.position, size)
    r = object_extent(obj.size, size)
    angle = rng.uniform(0, np.pi)
    dx, dy = np.cos(angle) * r, np.sin(angle) * r
    width = (1.2 + 1.3 * severity) * size / 64 * (1.0 if obj.size == "large" else 0.7)
    cut = _stroke(size, (cx - dx, cy - dy), (cx + dx, cy + dy), width) * (_object_alpha(obj, size) > 0)
    return _blend(array, cut, background)


def _merged(array: np.ndarray, scene: Scene, rng: random.Random, severity: float) -> np.ndarray:
    """Join two neighbouring objects with a bridge, each half in the colour of its end."""
    pairs = [
        (a, b) for a in scene.objects for b in scene.objects
        if POSITIONS.index(b.position) - POSITIONS.index(a.position) in (1, 3)
        and (POSITIONS.index(a.position) % 3 != 2 or POSITIONS.index(b.position) - POSITIONS.index(a.position) == 3)
    ]
    if not pairs:
        raise InvalidInputError("A merged-shapes defect needs two objects in neighbouring cells; this scene has none.")
    a, b = rng.choice(pairs)
    size = array.shape[0]
    width = (1.5 + 1.5 * severity) * size / 64
    (ax, ay), (bx, by) = cell_centre(a.position, size), cell_centre(b.position, size)
    middle = ((ax + bx) / 2, (ay + by) / 2)
    outside = (1 - _object_alpha(a, size)) * (1 - _object_alpha(b, size))
    array = _blend(array, _stroke(size, (ax, ay), middle, width) * outside, COLOURS[a.colour])
    return _blend(array, _stroke(size, middle, (bx, by), width) * outside, COLOURS[b.colour])


def _colour_bleed(array: np.ndarray, scene: Scene, rng: random.Random, severity: float) -> np.ndarray:
    """Tint one side of an object (a large one when there is one) with a distant colour."""
    obj = _damaged_object(scene, rng)
    size = array.shape[0]
    own = np.asarray(COLOURS[obj.colour], dtype=np.float32)
    other = rng.choice([c for c in COLOURS if np.linalg.norm(np.asarray(COLOURS[c]) - own) > _BLEED_DISTANCE])
    ys, xs = np.mgrid[0:size, 0:size]
    cx, cy = cell_centre(obj.position, size)
    angle = rng.uniform(0, 2 * np.pi)
    side = ((xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)) > 0.15 * object_extent(obj.size, size)
    amount = 0.3 + 0.2 * severity
    return _blend(array, _object_alpha(obj, size) * side * amount, COLOURS[other])


def _smudge(array: np.ndarray, scene: Scene, rng: random.Random, severity: float) -> np.ndarray:
    size = array.shape[0]
    occupied = np.zeros((size, size), dtype=np.float32)
    for obj in scene.objects:
        occupied = np.maximum(occupied, _object_alpha(obj, size))
    radius = (1.6 + 1.4 * severity) * size / 64
    for _ in range(200):
        x, y = rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, 0.8 * size - radius - 1)
        blob = np.zeros((size, size), dtype=np.float32)
        for _lobe in range(3):
            lx, ly = x + rng.uniform(-radius, radius) * 0.6, y + rng.uniform(-radius, radius) * 0.6
            blob = np.maximum(blob, shape_mask("circle", (lx, ly), radius * rng.uniform(1.0, 1.6), size))
        grown = np.asarray(Image.fromarray((blob > 0).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(7))) > 0
        if not (grown & (occupied > 0)).any():
            return _blend(array, blob, SMUDGE_COLOUR)
    raise InvalidInputError("No free space for a smudge in this scene.")


def render_with_defects(
    scene: Scene,
    defects: Sequence[Defect],
    rng: random.Random,
    size: int = 64,
    *,
    background: tuple[int, int, int] = BACKGROUND,
) -> Image.Image:
    """Render ``scene`` (already carrying its scene faults) with the image defects in ``defects``.

    Scene and edit faults in ``defects`` are ignored here: apply them to the scene first. The
    order is fixed whatever the list order: jitter at render time, then shape damage (broken,
    merged, colour bleed, smudge), then blur, then noise. Raises ``InvalidInputError`` when a
    defect is impossible on this scene (no neighbouring objects to merge, no room to smudge).
    """
    by_kind = {d.kind: d.severity for d in defects if not d.is_scene_fault}
    jitter = random_jitter(scene, rng, by_kind["jitter"]) if "jitter" in by_kind else None
    array = np.asarray(render(scene, size, background=background, jitter=jitter), dtype=np.float32)
    if "broken" in by_kind:
        array = _broken(array, scene, rng, by_kind["broken"], background)
    if "merged" in by_kind:
        array = _merged(array, scene, rng, by_kind["merged"])
    if "colour_bleed" in by_kind:
        array = _colour_bleed(array, scene, rng, by_kind["colour_bleed"])
    if "smudge" in by_kind:
        array = _smudge(array, scene, rng, by_kind["smudge"])
    image = Image.fromarray(np.clip(array.round(), 0, 255).astype(np.uint8), "RGB")
    if "blur" in by_kind:
        image = image.filter(ImageFilter.GaussianBlur((0.5 + 1.1 * by_kind["blur"]) * size / 64))
    if "noise" in by_kind:
        sigma = 5 + 15 * by_kind["noise"]
        noisy = np.asarray(image, dtype=np.float32) + np.random.default_rng(rng.getrandbits(32)).normal(0, sigma, (size, size, 3))
        image = Image.fromarray(np.clip(noisy.round(), 0, 255).astype(np.uint8), "RGB")
    return image


def feasible_image_defects(scene: Scene) -> list[str]:
    """The image defects that can be applied to ``scene`` (merging needs neighbouring objects)."""
    indices = {POSITIONS.index(o.position) for o in scene.objects}
    neighbours = any(i + 3 in indices or (i % 3 != 2 and i + 1 in indices) for i in indices)
    return [k for k in IMAGE_DEFECTS if k != "merged" or neighbours]


def degrade(scene: Scene, rng: random.Random, size: int = 64, *, strength: float = 1.0) -> Image.Image:
    """The robustness rendering of the analyzer benchmark: ``scene`` with random blur, noise and
    jitter, each at a random severity up to ``strength``."""
    defects = [Defect(kind, rng.uniform(0.05, 1.0) * strength) for kind in ("blur", "noise", "jitter")]
    return render_with_defects(scene, defects, rng, size)

