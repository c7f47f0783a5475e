"""The shapes world: scenes, the prompt grammar, edit instructions and the renderer.

A scene is 1-4 coloured shapes on a plain background, each in its own cell of a 3x3 grid, plus an
optional word of 1-3 capital letters drawn in a band below the grid with the font shipped in
``assets/fonts``. Prompts come in a *short* form ("two red circles and a blue square") and a
*detailed* form that pins sizes and positions ("a large red circle at the top left and a small
blue square in the centre"); ``parse_prompt`` reads both. Edit instructions ("move the blue square
to the top right") are generated with their exact target scene by ``random_edit``, read without a
source by ``read_edit`` and applied to a source scene by ``parse_edit``.

Rendering is deterministic: a scene always gives the same pixels. Defects and noise live in
``models.shapes.defects``. The geometry helpers (``cell_centre``, ``object_extent``,
``shape_mask``, ``letter_mask``) are public so that the analyzer can draw templates with exactly
the renderer's geometry.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.errors import InvalidInputError
from models.shapes import relations
from models.shapes.relations import RELATIONS

logger = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 70),
    "blue": (40, 90, 220),
    "yellow": (240, 205, 30),
    "purple": (140, 60, 175),
    "orange": (245, 135, 25),
}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)
CONTENT_WORDS: tuple[str, ...] = (*SHAPES, *COLOURS, *SIZES, *dict.fromkeys(w for p in POSITIONS for w in p.split()))
"""The single words that say what a scene holds (a tokenizer can keep each one token)."""
OBJECT_WORDS: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
"""Each colour-shape pair as one phrase (a tokenizer can keep each one token, so that which colour goes
with which shape is in the token, not in its neighbour)."""
INK: tuple[int, int, int] = (30, 30, 30)
BACKGROUND: tuple[int, int, int] = (245, 245, 245)
MAX_WORD_LETTERS = 3
MIN_IMAGE_SIZE = 32

FONT_PATH = Path(__file__).resolve().parents[2] / "assets" / "fonts" / "DejaVuSans-Bold.ttf"

# Layout, as fractions of the image side: the grid fills the top, the word band the bottom.
GRID_HEIGHT = 0.80
_EXTENT = {"small": 0.13, "large": 0.22}  # side of a shape's bounding box
_FONT_SIZE = 0.19
_SLOT_WIDTH = 0.18
WORD_PROB = 0.3  # share of random scenes that carry a word
_SUPERSAMPLE = 4
STAR_INNER = 0.45  # a star's inner radius as a share of its outer radius

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORD_RE = re.compile(r"^[A-Z]{1,3}$")


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: a shape of one colour and size in one grid cell."""

    shape: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.shape, SHAPES, "shape"),
            (self.colour, tuple(COLOURS), "colour"),
            (self.size, SIZES, "size"),
            (self.position, POSITIONS, "position"),
        ):
            if value not in allowed:
                raise InvalidInputError(f"Unknown {what} {value!r}; the shapes world knows {', '.join(allowed)}.")


@dataclass(frozen=True)
class Scene:
    """A full scene: 1 to 9 objects (random scenes have at most 4), at most one per grid cell,
    kept in grid order, and an optional word of 1-3 capital letters."""

    objects: tuple[ShapeObject, ...]
    word: str | None = None

    def __post_init__(self) -> None:
        objects = tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position)))
        if not objects:
            raise InvalidInputError("A scene needs at least one object; got none.")
        cells = [o.position for o in objects]
        if len(set(cells)) != len(cells):
            taken = sorted({c for c in cells if cells.count(c) > 1})
            raise InvalidInputError(f"Two objects share a grid cell ({', '.join(taken)}); each cell holds one object.")
        if self.word is not None and not _WORD_RE.match(self.word):
            raise InvalidInputError(f"The word must be 1-3 capital letters A-Z; got {self.word!r}.")
        object.__setattr__(self, "objects", objects)

    def at(self, position: str) -> ShapeObject | None:
        """The object in cell ``position``, or ``None`` when the cell is empty."""
        return next((o for o in self.objects if o.position == position), None)


@dataclass(frozen=True)
class ObjectSpec:
    """An object as a prompt asks for it; ``size`` and ``position`` are ``None`` when unsaid."""

    shape: str
    colour: str
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class Relation:
    """A spatial relation a prompt asks for between two groups of its objects: ``first`` and
    ``second`` are indices into ``PromptSpec.objects``; ``kind`` is one of ``RELATIONS`` (their
    meaning on the grid: ``models.shapes.relations``)."""

    kind: str
    first: tuple[int, ...]
    second: tuple[int, ...]


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: the objects (one entry per object), the word, if any, and the
    relations between groups of objects ("two red circles above a blue square")."""

    objects: tuple[ObjectSpec, ...]
    word: str | None = None
    relations: tuple[Relation, ...] = ()


@dataclass(frozen=True)
class Edit:
    """An edit instruction over a source scene, with its exact ``target`` scene.

    ``kind`` is one of ``EDIT_KINDS``."""

    instruction: str
    kind: str
    target: Scene


EDIT_KINDS: tuple[str, ...] = ("recolour", "remove", "add", "move", "resize", "word")


@dataclass(frozen=True)
class ObjectJitter:
    """A small deviation of one object from its exact rendering (defects, robustness tests):
    a pixel shift, a scale factor on its extent and an RGB tint added to its colour."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    tint: tuple[int, int, int] = (0, 0, 0)


# -- geometry ---------------------------------------------------------------------------------


def cell_centre(position: str, size: int) -> tuple[float, float]:
    """Pixel centre ``(x, y)`` of grid cell ``position`` in a ``size`` x ``size`` image."""
    row, col = divmod(POSITIONS.index(position), 3)
    cell_h = GRID_HEIGHT * size / 3
    return ((col + 0.5) * size / 3, (row + 0.5) * cell_h)


def object_extent(size_name: str, size: int) -> float:
    """Side in pixels of the bounding box of a ``size_name`` object in a ``size`` image."""
    return _EXTENT[size_name] * size


def _shape_points(shape: str, cx: float, cy: float, r: float, star_inner: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = 0.88 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else star_inner * r
            angle = np.pi * i / 5 - np.pi / 2
            points.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle) + 0.1 * r))
        return points
    raise InvalidInputError(f"Unknown shape {shape!r}; the shapes world knows {', '.join(SHAPES)}.")


def shape_mask(
    shape: str, centre: tuple[float, float], extent: float, size: int, *, star_inner: float = STAR_INNER
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (``size`` x ``size`` float array) of ``shape`` whose
    bounding box of side ``extent`` is centred on ``centre``. ``star_inner`` is a star's inner
    radius over its outer one (the renderer's ``STAR_INNER``; about 0.81 draws the pentagon
    around the star, as a decoder that rounds off a small star's points does)."""
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, r = centre[0] * k, centre[1] * k, extent * k / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, star_inner), fill=255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


@lru_cache(maxsize=8)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    if not FONT_PATH.is_file():
        raise FileNotFoundError(f"The shapes-world font is missing: expected {FONT_PATH}.")
    return ImageFont.truetype(str(FONT_PATH), pixels)


def word_slots(length: int, size: int) -> list[float]:
    """x centres of the letter slots of a ``length``-letter word (letters sit in fixed slots)."""
    slot = _SLOT_WIDTH * size
    return [size / 2 + (i - (length - 1) / 2) * slot for i in range(length)]


def word_baseline(size: int) -> float:
    """y of the baseline of the word in a ``size`` image (capitals are centred in the band)."""
    band_top = GRID_HEIGHT * size
    cap_height = 0.73 * _FONT_SIZE * size
    return band_top + ((1 - GRID_HEIGHT) * size + cap_height) / 2


@lru_cache(maxsize=512)
def letter_mask(letter: str, slot: int, length: int, size: int) -> np.ndarray:
    """Anti-aliased coverage of capital ``letter`` in slot ``slot`` of a ``length``-letter word.
    The returned array is shared (cached): do not modify it."""
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    x = word_slots(length, size)[slot] * k
    draw.text((x, word_baseline(size) * k), letter, fill=255, font=_font(round(_FONT_SIZE * size * k)), anchor="ms")
    mask = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
    mask.flags.writeable = False
    return mask


def word_mask(word: str, size: int) -> np.ndarray:
    """Coverage in [0, 1] of the whole ``word``."""
    total = np.zeros((size, size), dtype=np.float32)
    for i, letter in enumerate(word):
        total = np.maximum(total, letter_mask(letter, i, len(word), size))
    return total


# -- rendering --------------------------------------------------------------------------------


def check_size(size: int) -> None:
    """Raise ``InvalidInputError`` unless ``size`` is a usable image side."""
    if not isinstance(size, int) or size < MIN_IMAGE_SIZE:
        raise InvalidInputError(f"Shapes-world images are at least {MIN_IMAGE_SIZE} pixels wide; got {size!r}. Use 64 or 128.")


def render(
    scene: Scene,
    size: int = 64,
    *,
    background: tuple[int, int, int] = BACKGROUND,
    jitter: Mapping[str, ObjectJitter] | None = None,
) -> Image.Image:
    """Draw ``scene`` as an RGB ``size`` x ``size`` image.

    :param jitter: optional ``ObjectJitter`` per object position (the defects module uses it);
        rendering is deterministic for given arguments.
    """
    check_size(size)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = background
    for obj in scene.objects:
        cx, cy = cell_centre(obj.position, size)
        j = (jitter or {}).get(obj.position, ObjectJitter())
        extent = object_extent(obj.size, size) * j.scale
        alpha = shape_mask(obj.shape, (cx + j.dx, cy + j.dy), extent, size)[..., None]
        colour = np.clip(np.asarray(COLOURS[obj.colour], dtype=np.float32) + j.tint, 0, 255)
        canvas = canvas * (1 - alpha) + colour * alpha
    if scene.word:
        alpha = word_mask(scene.word, size)[..., None]
        canvas = canvas * (1 - alpha) + np.asarray(INK, dtype=np.float32) * alpha
    return Image.fromarray(np.clip(canvas.round(), 0, 255).astype(np.uint8), "RGB")


# -- random scenes ----------------------------------------------------------------------------


def random_word(rng: random.Random) -> str:
    """A random word of 1-3 capital letters."""
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, MAX_WORD_LETTERS)))


def random_object(rng: random.Random, position: str) -> ShapeObject:
    """A random shape, colour and size in cell ``position``."""
    return ShapeObject(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), rng.choice(SIZES), position)


def random_scene(rng: random.Random, *, max_objects: int = 4, word_prob: float = WORD_PROB) -> Scene:
    """A random scene of 1 to ``max_objects`` objects in distinct cells; with probability
    ``word_prob`` it carries a word."""
    if not 1 <= max_objects <= len(POSITIONS):
        raise InvalidInputError(f"max_objects must be between 1 and {len(POSITIONS)}; got {max_objects}.")
    positions = rng.sample(POSITIONS, rng.randint(1, max_objects))
    word = random_word(rng) if rng.random() < word_prob else None
    return Scene(tuple(random_object(rng, p) for p in positions), word)


# -- the prompt grammar -----------------------------------------------------------------------

_POSITION_PHRASES = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "centre": "in the centre", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}
_POSITION_SYNONYMS = {
    **{p: p for p in POSITIONS},
    "center": "centre", "middle": "centre",
    "upper left": "top left", "upper right": "top right", "lower left": "bottom left", "lower right": "bottom right",
    "top centre": "top", "top center": "top", "top middle": "top",
    "bottom centre": "bottom", "bottom center": "bottom", "bottom middle": "bottom",
    "centre left": "left", "center left": "left", "middle left": "left",
    "centre right": "right", "center right": "right", "middle right": "right",
}
_SIZE_SYNONYMS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _word_suffix(word: str | None) -> str:
    return f' with the word "{word}"' if word else ""


def position_phrase(position: str) -> str:
    """How prompts say where an object is: "at the top left", "in the centre", ..."""
    return _POSITION_PHRASES[position]


def describe(obj: ShapeObject | ObjectSpec, *, article: bool = True) -> str:
    """An object with every attribute it has: "a large red circle at the top left" (without
    the leading "a"/"an" when ``article`` is false)."""
    size = f"{obj.size} " if obj.size else ""
    where = f" {position_phrase(obj.position)}" if obj.position else ""
    noun = f"{size}{obj.colour} {obj.shape}"
    return (_article(noun) if article else noun) + where


def short_prompt(scene: Scene) -> str:
    """The short form: objects counted by colour and shape, e.g. "two red circles and a blue square"."""
    counts: dict[tuple[str, str], int] = {}
    for obj in scene.objects:
        counts[(obj.colour, obj.shape)] = counts.get((obj.colour, obj.shape), 0) + 1
    return _join([_counted(f"{colour} {shape}", n) for (colour, shape), n in counts.items()]) + _word_suffix(scene.word)


def _counted(noun: str, n: int) -> str:
    """"a red circle", "two red circles"."""
    return _article(noun) if n == 1 else f"{_NUMBERS[n]} {noun}s"


def detailed_prompt(scene: Scene | PromptSpec) -> str:
    """The detailed form: every object with its size and position, e.g. "a large red circle at
    the top left and a small blue square in the centre". A ``PromptSpec`` is written with
    whatever attributes it pins."""
    return _join([describe(o) for o in scene.objects]) + _word_suffix(scene.word)


_COLOUR_RE = "|".join(COLOURS)
_SHAPE_RE = "|".join(SHAPES)
_SIZE_RE = "|".join(_SIZE_SYNONYMS)
_POS_RE = "|".join(sorted(_POSITION_SYNONYMS, key=len, reverse=True))
_COUNT_RE = "|".join(("a", "an", *_NUMBERS[1:], "[1-9]"))
_GROUP = rf"(?P<count>{_COUNT_RE})\s+(?:(?P<size>{_SIZE_RE})\s+)?(?P<colour>{_COLOUR_RE})\s+(?P<shape>{_SHAPE_RE})(?:e?s)?"
_ITEM = re.compile(rf"^{_GROUP}(?:\s+(?:at|on|in)\s+the\s+(?P<position>{_POS_RE}))?$")
_GROUP_ONLY = re.compile(rf"^{_GROUP}$")
_WORD_CLAUSE = re.compile(
    r"[\s,]*(?:with|and)\s+the\s+(?:word|text|letters?)\s+[\"'“”‘’]?(?P<word>[A-Za-z]{1,3})[\"'“”‘’]?"
    r"(?:\s+(?:written|drawn)?\s*(?:below|underneath|at the bottom))?",
    re.IGNORECASE,
)
_LEAD = re.compile(r"^(?:an?\s+)?(?:image|picture|drawing|scene)\s+(?:of|with)\s+", re.IGNORECASE)
_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")
_RELATION_SYNONYMS = {
    **{r: r for r in RELATIONS},
    "under": "below", "beneath": "below", "underneath": "below",
    "to the left of": "left of", "on the left of": "left of", "to the right of": "right of", "on the right of": "right of",
    "beside": "next to",
}
_REL_RE = "|".join(sorted(_RELATION_SYNONYMS, key=len, reverse=True))
_RELATION_WORD = re.compile(rf"(?<!\w)(?:{_REL_RE})(?!\w)")
_RELATION_CLAUSE = re.compile(rf"^(?P<first>.+?)\s+(?P<relation>{_REL_RE})\s+(?P<second>.+)$")
_PLAIN_GROUP = re.sub(r"\(\?P<\w+>", "(?:", _GROUP)
_UNKNOWN_RELATION = re.compile(rf"^{_PLAIN_GROUP}\s+(?P<middle>.+?)\s+{_PLAIN_GROUP}$")
_RELATIONS_NOTE = (
    "Relations the shapes world reads: \"above\", \"below\", \"left of\", \"right of\" and \"next to\", between two "
    "groups such as \"two red circles above a blue square\"."
)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().rstrip(".!").strip())


def _count(word: str) -> int:
    if word in ("a", "an"):
        return 1
    return int(word) if word.isdigit() else _NUMBERS.index(word)


def _group_objects(match: re.Match[str]) -> list[ObjectSpec]:
    """The objects of one counted group ("two small red circles"), with the position it names."""
    position = _POSITION_SYNONYMS[match.group("position")] if match.groupdict().get("position") else None
    size = _SIZE_SYNONYMS[match.group("size")] if match.group("size") else None
    return [ObjectSpec(match.group("shape"), match.group("colour"), size, position)] * _count(match.group("count"))


def _unreadable(part: str, text: str) -> InvalidInputError:
    """The error for a clause that is neither objects nor a relation between two groups."""
    unknown = _UNKNOWN_RELATION.match(part)
    if unknown:
        return InvalidInputError(
            f"Could not read the relation {unknown.group('middle')!r} in the prompt {text!r}. {_RELATIONS_NOTE}"
        )
    return InvalidInputError(
        f"Could not read {part!r} in the prompt {text!r} as shapes-world objects. Write objects like "
        f"\"two red circles\" or \"a small blue square at the top left\" (shapes: {', '.join(SHAPES)}; "
        f"colours: {', '.join(COLOURS)}), or a relation like \"two red circles above a blue square\"."
    )


def _relation_groups(part: str, text: str) -> tuple[str, list[ObjectSpec], list[ObjectSpec]] | None:
    """A clause read as "GROUP RELATION GROUP": (relation, first objects, second objects), or
    ``None`` when it names no relation. Raises ``InvalidInputError`` when a relation's sides are
    not plain groups or the clause chains relations."""
    words = _RELATION_WORD.findall(part)
    clause = _RELATION_CLAUSE.match(part)
    if not words or not clause:
        return None
    if len(words) > 1:
        raise InvalidInputError(
            f"{part!r} in the prompt {text!r} chains {len(words)} relations; a clause relates two groups once. "
            "Write e.g. \"a red circle above a blue square and a green star left of a yellow triangle\"."
        )
    sides = []
    for side in (clause.group("first"), clause.group("second")):
        group = _GROUP_ONLY.match(side)
        if not group:
            raise InvalidInputError(
                f"Could not read {side!r} as one side of the relation in {text!r}: each side is a group such as "
                "\"two red circles\" or \"a small blue square\", without a grid position. " + _RELATIONS_NOTE
            )
        sides.append(_group_objects(group))
    return _RELATION_SYNONYMS[clause.group("relation")], sides[0], sides[1]


def parse_prompt(text: str) -> PromptSpec:
    """Read a short or detailed prompt, or one with relations, back into a ``PromptSpec``
    (inverse of ``short_prompt``, ``detailed_prompt`` and ``relation_prompt``). The short form
    leaves sizes and positions ``None``.

    A clause "GROUP RELATION GROUP" ("two red circles above a blue square"; relations: above,
    below, left of, right of, next to, and "under", "beneath", "to the left of", "beside") adds
    both groups' objects and a ``Relation`` between them. In a prompt with relations, a colour
    and shape named in a relation is named once, and the relations must fit the 3x3 grid.

    Raises ``InvalidInputError`` naming the part that could not be read.
    """
    body = _normalise(text)
    word = None
    clause = _WORD_CLAUSE.search(body)
    if clause:
        word = clause.group("word").upper()
        body = (body[: clause.start()] + body[clause.end():]).strip(" ,")
    body = _LEAD.sub("", body).lower()
    if not body:
        raise InvalidInputError(f"The prompt {text!r} names no objects. Write e.g. \"a large red circle at the top left\".")
    objects: list[ObjectSpec] = []
    asked: list[Relation] = []
    groups: list[tuple[tuple[int, ...], bool]] = []  # each counted group's object indices, and whether it is related
    for part in _SPLIT.split(body):
        part = part.strip()
        match = _ITEM.match(part)
        if match:
            found = _group_objects(match)
            if len(found) > 1 and found[0].position:
                raise InvalidInputError(f"{part!r} puts {len(found)} objects in one cell; give each object its own position.")
            groups.append((tuple(range(len(objects), len(objects) + len(found))), False))
            objects += found
            continue
        related = _relation_groups(part, text)
        if related is None:
            raise _unreadable(part, text)
        kind, first, second = related
        indices = []
        for side in (first, second):
            indices.append(tuple(range(len(objects), len(objects) + len(side))))
            groups.append((indices[-1], True))
            objects += side
        asked.append(Relation(kind, indices[0], indices[1]))
    if len(objects) > len(POSITIONS):
        raise InvalidInputError(f"The prompt asks for {len(objects)} objects; the 3x3 grid holds at most 9.")
    spec = PromptSpec(tuple(objects), word, tuple(asked))
    if asked:
        _check_relations(spec, groups, text)
    return spec


def _kind(obj: ObjectSpec | ShapeObject) -> tuple[str, str]:
    return obj.colour, obj.shape


def _check_relations(spec: PromptSpec, groups: list[tuple[tuple[int, ...], bool]], text: str) -> None:
    """Refuse relations whose groups cannot be told apart by colour and shape, or that no layout
    of the grid satisfies."""
    related = {_kind(spec.objects[g[0]]) for g, is_related in groups if is_related}
    for kind in related:
        if sum(_kind(spec.objects[g[0]]) == kind for g, _ in groups) > 1:
            raise InvalidInputError(
                f"The prompt {text!r} names {kind[0]} {kind[1]}s in more than one group; in a prompt with relations "
                "each colour and shape is named once (\"two red circles above a blue square\"), so that the groups can "
                "be told apart in the image."
            )
    if arrange_spec(spec) is None:
        raise InvalidInputError(
            f"No layout of the 3x3 grid satisfies {text!r}: each object takes its own cell, \"above\"/\"below\" need "
            "every object of one group in a higher row than every object of the other, \"left of\"/\"right of\" a "
            "column further left, \"next to\" a shared cell edge."
        )


def _relation_triples(spec: PromptSpec) -> list[relations.RelationTriple]:
    return [(r.kind, r.first, r.second) for r in spec.relations]


def arrange_spec(spec: PromptSpec, preferred: Mapping[int, str] | None = None) -> tuple[str, ...] | None:
    """A position for each object of ``spec`` (in order) that keeps the positions the prompt
    names and satisfies every relation, moving as few objects as possible away from
    ``preferred`` (object index -> position, e.g. where an image put them); ``None`` when no
    layout does. Objects without a preference go to the centre first, then in grid order."""
    fixed = {i: POSITIONS.index(o.position) for i, o in enumerate(spec.objects) if o.position}
    cells = relations.arrange(
        len(spec.objects), _relation_triples(spec), fixed=fixed,
        preferred={i: POSITIONS.index(p) for i, p in (preferred or {}).items() if i not in fixed},
    )
    return None if cells is None else tuple(POSITIONS[c] for c in cells)


def arranged_scene(spec: PromptSpec, placed: Mapping[int, ShapeObject] | None = None) -> Scene | None:
    """``spec`` as a full scene laid out by ``arrange_spec``: objects an image ``placed`` (object
    index -> what was drawn) keep their cell where the relations allow; sizes as asked, else as
    drawn, else large. ``None`` when no layout satisfies the relations."""
    placed = dict(placed or {})
    cells = arrange_spec(spec, {i: o.position for i, o in placed.items()})
    if cells is None:
        return None
    return Scene(tuple(
        ShapeObject(s.shape, s.colour, s.size or (placed[i].size if i in placed else "large"), cell)
        for i, (s, cell) in enumerate(zip(spec.objects, cells))
    ), spec.word)


def group_phrase(spec: PromptSpec, indices: tuple[int, ...], *, definite: bool = False) -> str:
    """A group of ``spec``'s objects as a prompt says it: "two red circles", "a small blue
    square", or with ``definite`` "the red circles"."""
    obj = spec.objects[indices[0]]
    noun = f"{obj.size + ' ' if obj.size else ''}{obj.colour} {obj.shape}"
    if definite:
        return f"the {noun}" + ("s" if len(indices) > 1 else "")
    return _counted(noun, len(indices))


@dataclass(frozen=True)
class RelationCheck:
    """How badly the objects seen break one relation of a request: ``share`` in [0, 1] (0: it
    holds) and the culprits as positions (see ``models.shapes.relations.broken``)."""

    relation: Relation
    share: float
    culprits: tuple[tuple[str | None, str | None], ...]


def check_relations(spec: PromptSpec, seen: Iterable[tuple[str, str, str]]) -> list[RelationCheck]:
    """Judge every relation of ``spec`` on the objects seen, given as (colour, shape, position):
    a group is every seen object of its colour and shape (``parse_prompt`` makes them unique)."""
    seen = list(seen)
    checks = []
    for relation in spec.relations:
        cells = [
            [POSITIONS.index(p) for c, s, p in seen if (c, s) == _kind(spec.objects[group[0]])]
            for group in (relation.first, relation.second)
        ]
        share, culprits = relations.broken(relation.kind, cells[0], cells[1])
        named = tuple(tuple(None if c is None else POSITIONS[c] for c in pair) for pair in culprits)
        checks.append(RelationCheck(relation, share, named))  # type: ignore[arg-type]
    return checks


def relation_prompt(scene: Scene, rng: random.Random) -> str | None:
    """A prompt with one relation that ``scene`` satisfies, its other objects counted as in the
    short form: "two red circles above a blue square and a green star". ``None`` when no two
    groups of the scene (same colour and shape) stand in any relation."""
    groups: dict[tuple[str, str], list[int]] = {}
    for obj in scene.objects:
        groups.setdefault(_kind(obj), []).append(POSITIONS.index(obj.position))
    options = [
        (a, kind, b) for a in groups for b in groups if a != b
        for kind in RELATIONS if relations.broken(kind, groups[a], groups[b])[0] == 0
    ]
    if not options:
        return None
    a, kind, b = rng.choice(options)
    counted = {k: _counted(f"{k[0]} {k[1]}", len(cells)) for k, cells in groups.items()}
    clause = f"{counted[a]} {kind} {counted[b]}"
    return _join([clause, *(counted[k] for k in groups if k not in (a, b))]) + _word_suffix(scene.word)


# -- edits ------------------------------------------------------------------------------------


def refer(obj: ShapeObject, scene: Scene) -> str:
    """The shortest unambiguous way to name ``obj`` in ``scene``: "the red circle", or with its
    position when another object has the same colour and shape."""
    twins = [o for o in scene.objects if (o.colour, o.shape) == (obj.colour, obj.shape)]
    base = f"the {obj.colour} {obj.shape}"
    return base if len(twins) == 1 else f"{base} {position_phrase(obj.position)}"


def _replace(scene: Scene, old: ShapeObject, new: ShapeObject | None) -> Scene:
    objects = tuple(o for o in scene.objects if o != old) + ((new,) if new else ())
    return Scene(objects, scene.word)


def random_edit(scene: Scene, rng: random.Random, *, max_objects: int = 4) -> Edit:
    """A random feasible edit of ``scene`` (recolour, remove, add, move, resize or word), with its
    instruction text and exact target. The target keeps 1 to ``max_objects`` objects."""
    free = [p for p in POSITIONS if scene.at(p) is None]
    kinds = ["recolour", "resize", "word"]
    if len(scene.objects) > 1:
        kinds.append("remove")
    if free:
        kinds.append("move")
        if len(scene.objects) < max_objects:
            kinds.append("add")
    kind = rng.choice(kinds)
    obj = rng.choice(scene.objects)
    if kind == "recolour":
        colour = rng.choice([c for c in COLOURS if c != obj.colour])
        target = _replace(scene, obj, ShapeObject(obj.shape, colour, obj.size, obj.position))
    elif kind == "resize":
        size = "large" if obj.size == "small" else "small"
        target = _replace(scene, obj, ShapeObject(obj.shape, obj.colour, size, obj.position))
    elif kind == "remove":
        target = _replace(scene, obj, None)
    elif kind == "move":
        target = _replace(scene, obj, ShapeObject(obj.shape, obj.colour, obj.size, rng.choice(free)))
    elif kind == "add":
        target = Scene(scene.objects + (random_object(rng, rng.choice(free)),), scene.word)
    elif scene.word and rng.random() < 0.25:
        target = Scene(scene.objects, None)
    else:
        word = random_word(rng)
        while word == scene.word:
            word = random_word(rng)
        target = Scene(scene.objects, word)
    return Edit(edit_instruction(scene, target), kind, target)


def edit_instruction(source: Scene, target: Scene, *, explicit: bool = False) -> str:
    """The instruction that turns ``source`` into ``target`` when they differ by one edit.

    Plain: objects are named as briefly as is unambiguous ("make the red circle blue").
    ``explicit``: every object is named with its position and the instruction ends with
    ", keeping everything else unchanged" (what a critic writes as a refined request).
    Raises ``InvalidInputError`` when the two scenes differ by more than one edit.
    """
    def name(obj: ShapeObject) -> str:
        return f"the {obj.colour} {obj.shape} {position_phrase(obj.position)}" if explicit else refer(obj, source)

    gone = [o for o in source.objects if o not in target.objects]
    new = [o for o in target.objects if o not in source.objects]
    text: str | None = None
    if not gone and not new and source.word != target.word:
        if target.word is None:
            text = "remove the word"
        else:
            text = f'change the word to "{target.word}"' if source.word else f'add the word "{target.word}"'
    elif source.word == target.word and len(gone) == 1 and not new:
        text = f"remove {name(gone[0])}"
    elif source.word == target.word and len(new) == 1 and not gone:
        text = f"add {describe(new[0])}"
    elif source.word == target.word and len(gone) == 1 and len(new) == 1:
        old, now = gone[0], new[0]
        if (old.shape, old.colour, old.size) == (now.shape, now.colour, now.size):
            text = f"move {name(old)} to the {now.position}"
        elif (old.shape, old.size, old.position) == (now.shape, now.size, now.position):
            text = f"make {name(old)} {now.colour}"
        elif (old.shape, old.colour, old.position) == (now.shape, now.colour, now.position):
            text = f"make {name(old)} {'bigger' if now.size == 'large' else 'smaller'}"
    if text is None:
        raise InvalidInputError("The two scenes differ by more than one recolour, removal, addition, move, resize or word change.")
    return f"{text}, keeping everything else unchanged" if explicit else text


_REF = rf"the\s+(?:(?P<size>{_SIZE_RE})\s+)?(?P<colour>{_COLOUR_RE})\s+(?P<shape>{_SHAPE_RE})(?:\s+(?:at|on|in)\s+the\s+(?P<where>{_POS_RE}))?"
_EDIT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("resize", re.compile(rf"^(?:make|turn)\s+{_REF}\s+(?P<change>bigger|larger|smaller|small|large|big)$")),
    ("recolour", re.compile(rf"^(?:make|turn|colour|color|recolour|recolor|paint)\s+{_REF}\s+(?:to\s+|into\s+)?(?P<colour_new>{_COLOUR_RE})$")),
    ("remove", re.compile(rf"^(?:remove|delete|erase)\s+{_REF}$")),
    ("move", re.compile(rf"^move\s+{_REF}\s+(?:to|into)\s+the\s+(?P<to>{_POS_RE})$")),
    ("add", re.compile(rf"^add\s+(?P<item>(?:a|an)\s+.+)$")),
    ("word", re.compile(r"^(?:change|replace|set)\s+the\s+(?:word|text)\s+(?:to|with)\s+[\"'“”]?(?P<word>[a-z]{1,3})[\"'“”]?$")),
    ("word", re.compile(r"^(?:add|write)\s+the\s+(?:word|text)\s+[\"'“”]?(?P<word>[a-z]{1,3})[\"'“”]?$")),
    ("word", re.compile(r"^(?:remove|delete|erase)\s+the\s+(?:word|text)$")),
)
_KEEP_TAIL = re.compile(
    r"[\s,;]*(?:and\s+)?(?:keep(?:ing)?|leave|leaving)\s+(?:everything|all)\s+else\s+(?:unchanged|the same|as it is|as is)$"
)


@dataclass(frozen=True)
class EditRequest:
    """What an edit instruction asks for, read without its source scene.

    ``kind`` is one of ``EDIT_KINDS``; ``ref`` is the object it names (removals, moves, recolours
    and resizes; its size and position ``None`` when unsaid); ``added`` the new object of an
    addition. ``colour``, ``size`` and ``position`` are the new colour, size or cell of a recolour,
    a resize or a move; ``word`` the new word of a word change (``None``: remove the word)."""

    kind: str
    ref: ObjectSpec | None = None
    added: ObjectSpec | None = None
    colour: str | None = None
    size: str | None = None
    position: str | None = None
    word: str | None = None


def read_edit(instruction: str) -> EditRequest:
    """The ``EditRequest`` of an instruction written by ``random_edit`` (or a common paraphrase,
    with an optional ", keeping everything else unchanged"). Raises ``InvalidInputError`` when the
    instruction cannot be read, or an addition does not give one object with its size and cell."""
    text = _KEEP_TAIL.sub("", _normalise(instruction).lower())
    for kind, pattern in _EDIT_PATTERNS:
        match = pattern.match(text)
        if match:
            break
    else:
        raise InvalidInputError(
            f"Could not read the edit instruction {instruction!r}. Use one of: \"make the red circle blue\", "
            "\"remove the red circle\", \"add a small green star at the bottom right\", \"move the red circle to the "
            "top left\", \"make the red circle bigger\", 'change the word to \"AB\"', \"remove the word\"."
        )
    groups = match.groupdict()
    if kind == "word":
        return EditRequest(kind, word=groups["word"].upper() if groups.get("word") else None)
    if kind == "add":
        spec = parse_prompt(groups["item"])
        if len(spec.objects) != 1 or spec.objects[0].size is None or spec.objects[0].position is None:
            raise InvalidInputError(f"{instruction!r}: say one object with its size and position, e.g. \"add a small green star at the bottom right\".")
        return EditRequest(kind, added=spec.objects[0])
    ref = ObjectSpec(
        groups["shape"], groups["colour"],
        _SIZE_SYNONYMS[groups["size"]] if groups["size"] else None,
        _POSITION_SYNONYMS[groups["where"]] if groups["where"] else None,
    )
    if kind == "move":
        return EditRequest(kind, ref, position=_POSITION_SYNONYMS[groups["to"]])
    if kind == "resize":
        return EditRequest(kind, ref, size="small" if groups["change"] in ("smaller", "small") else "large")
    if kind == "recolour":
        return EditRequest(kind, ref, colour=groups["colour_new"])
    return EditRequest(kind, ref)


def _resolve(request: EditRequest, source: Scene, instruction: str) -> ShapeObject:
    ref = request.ref
    found = [
        o for o in source.objects
        if (o.colour, o.shape) == (ref.colour, ref.shape)
        and (ref.position is None or o.position == ref.position)
        and (ref.size is None or o.size == ref.size)
    ]
    if not found:
        raise InvalidInputError(f"The instruction {instruction!r} refers to an object that is not in the source image ({describe(ref)!r}).")
    if len(found) > 1:
        cells = ", ".join(o.position for o in found)
        raise InvalidInputError(f"The instruction {instruction!r} is ambiguous: {len(found)} objects match ({cells}). Name the position too.")
    return found[0]


def parse_edit(instruction: str, source: Scene) -> Scene:
    """The exact target scene of ``instruction`` applied to ``source``.

    Reads the instruction with ``read_edit``. Raises ``InvalidInputError`` when the instruction
    cannot be read, names an object that is missing or ambiguous, or leads to an impossible scene
    (an occupied cell, no objects left).
    """
    request = read_edit(instruction)
    if request.kind == "word":
        return Scene(source.objects, request.word)
    if request.kind == "add":
        new = request.added
        if source.at(new.position) is not None:
            raise InvalidInputError(f"{instruction!r}: the {new.position} cell already holds {describe(source.at(new.position))}.")
        return Scene(source.objects + (ShapeObject(new.shape, new.colour, new.size, new.position),), source.word)
    obj = _resolve(request, source, instruction)
    if request.kind == "remove":
        if len(source.objects) == 1:
            raise InvalidInputError(f"{instruction!r} would leave the scene empty; a scene keeps at least one object.")
        return _replace(source, obj, None)
    if request.kind == "move":
        to = request.position
        if to != obj.position and source.at(to) is not None:
            raise InvalidInputError(f"{instruction!r}: the {to} cell already holds {describe(source.at(to))}.")
        return _replace(source, obj, ShapeObject(obj.shape, obj.colour, obj.size, to))
    if request.kind == "resize":
        return _replace(source, obj, ShapeObject(obj.shape, obj.colour, request.size, obj.position))
    return _replace(source, obj, ShapeObject(obj.shape, request.colour, obj.size, obj.position))
