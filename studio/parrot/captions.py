"""Shapes-world captions: the pretraining task of the small VLM base that PARROT students start from.

A sample is a fresh random scene rendered as the preference pairs render theirs (light jitter,
and at ``flaw_prob`` one image defect such as blur or a smudge) with its caption in the world's
own prompt words: every object with size, colour, shape and position, the word, then the flaw,
e.g. ``a large red circle at the top left and a small blue star in the centre with the word "AB";
flaw: blur``. Scenes whose detailed or short prompt is a held-out request of the PARROT bench are
never drawn (excluded by text), so pretraining cannot have seen a held-out scene.

``caption_scores`` reads generated captions back with the world's prompt parser and scores them
per attribute against the true scenes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from PIL import Image

from models.errors import InvalidInputError
from models.shapes.defects import IMAGE_DEFECTS, Defect, feasible_image_defects, render_with_defects
from models.shapes.world import Scene, detailed_prompt, parse_prompt, random_scene, short_prompt
from studio.parrot.pairs import shapes_pairs

CAPTION_REQUEST = "Describe the image: each shape's size, colour, shape and position, the word, and any flaw."
FLAW_SEPARATOR = "; flaw: "
NO_FLAW = "none"
FLAWS: tuple[str, ...] = tuple(k for k in IMAGE_DEFECTS if k != "jitter")
_JITTER = Defect("jitter", 0.3)  # the nuisance every pair image carries


@dataclass(frozen=True)
class CaptionSample:
    """One rendered scene with its caption; ``flaw`` is an image defect kind or ``"none"``."""

    image: Image.Image
    caption: str
    scene: Scene
    flaw: str


def caption(scene: Scene, flaw: str = NO_FLAW) -> str:
    """The caption of ``scene`` drawn with ``flaw``: its detailed prompt, then the flaw."""
    return f"{detailed_prompt(scene)}{FLAW_SEPARATOR}{flaw}"


def heldout_requests(count: int, seed: int) -> set[str]:
    """The request texts of the first ``count`` known-truth pairs of ``seed`` (the bench's held-out seed)."""
    return {pair.prompt for pair in shapes_pairs(count, seed=seed, flip_rate=0.0)} if count else set()


def caption_samples(
    rng: random.Random, *, size: int = 64, flaw_prob: float = 0.5, exclude: set[str] = frozenset(),
) -> Iterator[CaptionSample]:
    """Fresh captioned renders, without end; a scene whose detailed or short prompt is in ``exclude``
    is drawn again."""
    if not 0 <= flaw_prob <= 1:
        raise InvalidInputError(f"flaw_prob must be between 0 and 1; got {flaw_prob!r}.")
    while True:
        scene = random_scene(rng)
        if detailed_prompt(scene) in exclude or short_prompt(scene) in exclude:
            continue
        options = [k for k in feasible_image_defects(scene) if k in FLAWS]
        flaw = rng.choice(options) if rng.random() < flaw_prob else NO_FLAW
        defects = [_JITTER] + ([Defect(flaw, rng.uniform(0.5, 1.0))] if flaw != NO_FLAW else [])
        yield CaptionSample(render_with_defects(scene, defects, rng, size), caption(scene, flaw), scene, flaw)


def caption_scores(predicted: Sequence[str], truth: Iterable[CaptionSample]) -> dict[str, float | int]:
    """Per-attribute accuracy of ``predicted`` captions against the samples they describe.

    ``exact``: the whole caption right; ``scene``: objects and word right (flaw aside);
    ``parsed``: the share the world's prompt parser could read; per true object (a caption that
    does not parse gets every attribute wrong): ``object`` (an object where it is), ``shape``,
    ``colour``, ``size``; per image: ``count``, ``word`` (the word or its absence), ``flaw``.
    """
    totals = dict.fromkeys(("exact", "scene", "parsed", "count", "word", "flaw"), 0)
    per_object = dict.fromkeys(("object", "shape", "colour", "size"), 0)
    images = objects = 0
    for text, sample in zip(predicted, truth, strict=True):
        images += 1
        objects += len(sample.scene.objects)
        body, _, flaw = text.strip().partition(FLAW_SEPARATOR)
        totals["exact"] += text.strip() == sample.caption
        totals["scene"] += body == detailed_prompt(sample.scene)
        totals["flaw"] += flaw == sample.flaw
        try:
            spec = parse_prompt(body)
        except InvalidInputError:
            continue
        totals["parsed"] += 1
        totals["count"] += len(spec.objects) == len(sample.scene.objects)
        totals["word"] += spec.word == sample.scene.word
        where = {o.position: o for o in spec.objects if o.position}
        for obj in sample.scene.objects:
            guess = where.get(obj.position)
            if guess is not None:
                per_object["object"] += 1
                per_object["shape"] += guess.shape == obj.shape
                per_object["colour"] += guess.colour == obj.colour
                per_object["size"] += guess.size == obj.size
    if not images:
        raise InvalidInputError("No captions to score.")
    scores: dict[str, float | int] = {"images": images, "objects": objects}
    scores.update({k: round(v / images, 4) for k, v in totals.items()})
    scores.update({k: round(v / max(objects, 1), 4) for k, v in per_object.items()})
    return scores
