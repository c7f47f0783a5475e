"""Shapes-world captions: the pretraining task of the small VLM base that PARROT students start from.

A sample is a fresh random scene rendered as the preference pairs render theirs (light jitter,
and at ``flaw_prob`` one image defect such as blur or a smudge) with its caption in the world's
own prompt words: every object with size, colour, shape and position, the word, then the flaw,
e.g. ``a large red circle at the top left and a small blue star in the centre with the word "AB";
flaw: blur``. Scenes whose detailed or short prompt is a held-out request of the PARROT bench are
never drawn (excluded by text; the curriculum's easy stages by detailed prompt only, see
``CURRICULUM``), so pretraining cannot have seen a held-out scene description.

Two aids to learning to see from random weights (docs/parrot.md, fourth measurement): easier
scenes (``SceneStage``: one object seen close up, then fewer and larger objects) for a
curriculum, and **cell questions** ("What is at the top left?" -> "a large red circle at the top
left" or "nothing"). One aid to reading the prompt (docs/parrot.md, sixth step): **request tasks**,
whose prompt carries a shapes-world request (``request_texts``) and whose answer restates it word
for word on its first line before the caption (``request_question``, ``request_answer``);
``restated_share`` scores that first line. One aid to seeing flaws and words (docs/parrot.md, eighth
step): **flaw and word questions** ("What flaw does the image have?" -> "blur" / "none"; "What word
is written?" -> "AB" / "none"), whose one-token answers put the whole loss on what a caption says
in its last token or two (``ask_flaw_or_word``, scored by ``question_scores``). One aid to
comparing a request with an image (docs/parrot.md, fourteenth step): **request checks**, whose
prompt carries a request and whose image is drawn for it as a preference pair draws its images
(``request_checks``: sometimes right, sometimes with a missing, extra or wrongly drawn object, a
flaw), answered with what in the image differs from the request in the reference critic's words, or
"nothing" (``request_check``, scored by ``request_check_scores``). The same comparison one object at
a time (docs/parrot.md, sixteenth step): **object checks** ask whether one object the request names
is drawn as asked ("Is the small blue square in the centre drawn as asked?" -> "yes" / "no: the
square in the centre is green instead of blue"; ``object_checks``, scored by ``object_check_scores``).

``caption_scores`` reads generated captions back with the world's prompt parser and scores them
per attribute against the true scenes, with the flaw per true kind (``flaw_kind_scores``) and the
word per letter (``letter_share``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from models.errors import InvalidInputError
from models.shapes.analyzer import analyze
from models.shapes.assess import ObjectVerdict, assess_t2i, checked_objects, sighting_prefix, verdict_list
from models.shapes.defects import IMAGE_DEFECTS, Defect, feasible_image_defects, render_with_defects
from models.shapes.pairs import make_pair
from models.shapes.world import (
    COLOURS, POSITIONS, SIZES, Scene, cell_centre, describe, detailed_prompt, parse_prompt, position_phrase, random_scene,
    short_prompt,
)
from models.types import TEXT_FAITHFULNESS
from studio.parrot.pairs import shapes_pairs

CAPTION_REQUEST = "Describe the image: each shape's size, colour, shape and position, the word, and any flaw."
FLAW_SEPARATOR = "; flaw: "
NO_FLAW = "none"
FLAWS: tuple[str, ...] = tuple(k for k in IMAGE_DEFECTS if k != "jitter")
_JITTER = Defect("jitter", 0.3)  # the nuisance every pair image carries
NOTHING = "nothing"
INSTRUCTION_PREFIX = "User Instruction: "  # the protocol templates' request line
REQUEST_TASK = "Restate the instruction word for word, then describe the image."
FLAW_QUESTION = "What flaw does the image have?"
WORD_QUESTION = "What word is written?"
NO_WORD = "none"
REQUEST_CHECK = "What in the image differs from the instruction?"
CHECK_SEPARATOR = "; "
DIFFERENCES_PREFIX = "Differences: "  # after a described check's description
OBJECT_CHECK = "Is the {} drawn as asked?"
YES = "yes"
NO_PREFIX = "no: "
VERDICT_QUESTION = "Which requested objects are drawn as asked?"
PAIR_VERDICT_QUESTION = "Which requested objects are drawn as asked in each image?"
EMPTY_IMAGE = "an empty image"


@dataclass(frozen=True)
class SceneStage:
    """Which scenes a stage draws: up to ``max_objects`` objects (all large when ``large_only``,
    all in the centre cell when ``centred``), a word with ``word_prob``, a flaw with ``flaw_prob``
    (``None``: the sampler's own). ``zoom`` > 1: the stage's images start seen that much closer
    (``zoom_in``) and zoom out to the true render by the stage's end. ``flaws``: the flaw kinds it
    draws (``None``: every feasible one). Held-out requests are excluded by detailed prompt, and by
    short prompt too when ``exclude_short``."""

    max_objects: int = 4
    large_only: bool = False
    word_prob: float = 0.3
    flaw_prob: float | None = None
    exclude_short: bool = True
    centred: bool = False
    zoom: float = 1.0
    flaws: tuple[str, ...] | None = None


FULL = SceneStage()
# The curriculum's stages before the full distribution: one large object in the centre seen from
# 3x closer (it covers about a third of the frame, which a model from random weights reads within ~50 steps, where
# an object of true size stays unread after 350; docs/parrot.md, fourth measurement) zooming out
# to its true size, then one large object anywhere, then up to two objects. They exclude held-out
# requests by detailed prompt only: 25 of the 30 one-object short prompts ("a red circle") are
# held-out requests, which would leave five colour-shape pairs to learn from.
CURRICULUM: tuple[SceneStage, ...] = (
    SceneStage(1, large_only=True, word_prob=0.0, flaw_prob=0.0, exclude_short=False, centred=True, zoom=3.0),
    SceneStage(1, large_only=True, word_prob=0.0, flaw_prob=0.0, exclude_short=False),
    SceneStage(2, word_prob=0.3, exclude_short=False),
)
# The scenes flaw and word questions ask about once the curriculum is over: every scene, with a
# word twice as often as not (the captions' 0.3 would leave most word questions answered "none").
QUESTION_SCENES = replace(FULL, word_prob=0.6)
# Flaw questions seen close up (``--flaw-zoom``, ``--flaw-warmup``): one large centred object seen 3x
# closer and zooming out, as the curriculum's first stage did for objects, flawed at the sampler's
# own share (clean otherwise: always flawed, "none" was never a trained answer and a base trained on
# them called clean images "broken"; docs/parrot.md, eleventh step). Only the flaws that stay in that
# crop: a smudge lies outside any object (mostly outside the crop), a bridge needs two.
FLAW_CLOSE_UP = SceneStage(1, large_only=True, word_prob=0.0, exclude_short=False, centred=True,
                           zoom=3.0, flaws=("blur", "noise", "colour_bleed", "broken"))


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
    return set(heldout_request_list(count, seed))


def heldout_request_list(count: int, seed: int) -> list[str]:
    """The distinct request texts of the first ``count`` known-truth pairs of ``seed``, in order."""
    return list(dict.fromkeys(pair.prompt for pair in shapes_pairs(count, seed=seed, flip_rate=0.0)))


def caption_samples(
    rng: random.Random, *, size: int = 64, flaw_prob: float = 0.5, exclude: set[str] = frozenset(),
    stage: SceneStage = FULL,
) -> Iterator[CaptionSample]:
    """Fresh captioned renders of ``stage``'s scenes, without end; a scene whose detailed or short
    prompt is in ``exclude`` is drawn again."""
    flaw_prob = flaw_prob if stage.flaw_prob is None else stage.flaw_prob
    if not 0 <= flaw_prob <= 1:
        raise InvalidInputError(f"flaw_prob must be between 0 and 1; got {flaw_prob!r}.")
    while True:
        scene = random_scene(rng, max_objects=stage.max_objects, word_prob=stage.word_prob)
        if stage.large_only or stage.centred:
            scene = Scene(tuple(replace(o, size="large" if stage.large_only else o.size,
                                        position="centre" if stage.centred else o.position)
                                for o in scene.objects), scene.word)
        if detailed_prompt(scene) in exclude or (stage.exclude_short and short_prompt(scene) in exclude):
            continue
        options = [k for k in feasible_image_defects(scene) if k in (stage.flaws or FLAWS)]
        flaw = rng.choice(options) if rng.random() < flaw_prob else NO_FLAW
        defects = [_JITTER] + ([Defect(flaw, rng.uniform(0.5, 1.0))] if flaw != NO_FLAW else [])
        yield CaptionSample(render_with_defects(scene, defects, rng, size), caption(scene, flaw), scene, flaw)


def zoom_in(sample: CaptionSample, zoom: float) -> CaptionSample:
    """``sample`` seen ``zoom`` times closer: the square of side ``size / zoom`` around the centre
    cell's centre (moved inside the image where it would cross an edge), scaled back to the full
    size; its caption is unchanged (meant for a scene whose objects are all in the centre cell)."""
    if zoom < 1:
        raise InvalidInputError(f"zoom must be at least 1; got {zoom!r}.")
    size = sample.image.width
    side = size / zoom
    x, y = (min(max(c - side / 2, 0.0), size - side) for c in cell_centre("centre", size))
    box = (x, y, x + side, y + side)
    return replace(sample, image=sample.image.resize((size, size), Image.Resampling.BICUBIC, box=box))


def cell_question(position: str) -> str:
    """The question about one grid cell: "What is at the top left?"."""
    return f"What is {position_phrase(position)}?"


def cell_answer(scene: Scene, position: str) -> str:
    """What is in cell ``position``, as the caption says it ("a large red circle at the top
    left"), or "nothing"."""
    return next((describe(o) for o in scene.objects if o.position == position), NOTHING)


def ask_cell(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A cell question about ``scene`` and its answer: about one of its objects half the time,
    else about a cell drawn uniformly (mostly empty ones)."""
    if rng.random() < 0.5:
        position = rng.choice(scene.objects).position
    else:
        position = rng.choice(POSITIONS)
    return cell_question(position), cell_answer(scene, position)


def ask_flaw_or_word(sample: CaptionSample, rng: random.Random) -> tuple[str, str]:
    """A short question about ``sample`` and its answer, at even odds: its flaw ("blur", ... or
    "none") or its word (the letters, or "none")."""
    if rng.random() < 0.5:
        return FLAW_QUESTION, sample.flaw
    return WORD_QUESTION, sample.scene.word or NO_WORD


def request_texts(rng: random.Random, exclude: set[str] = frozenset()) -> Iterator[str]:
    """Fresh shapes-world requests drawn as the preference pairs draw theirs (a random scene's short
    or detailed prompt, at even odds), without end; one in ``exclude`` is drawn again."""
    while True:
        scene = random_scene(rng)
        request = short_prompt(scene) if rng.random() < 0.5 else detailed_prompt(scene)
        if request not in exclude:
            yield request


def request_question(request: str) -> str:
    """The prompt text of a request task: the request on the protocol's instruction line, then the task."""
    return f"{INSTRUCTION_PREFIX}{request}\n{REQUEST_TASK}"


def request_answer(request: str, caption_text: str) -> str:
    """A request task's answer: the instruction line restated word for word, then the image's caption."""
    return f"{INSTRUCTION_PREFIX}{request}\n{caption_text}"


def restated_share(answers: Sequence[str], requests: Sequence[str]) -> float:
    """The share of ``answers`` whose first line restates their request word for word (as
    ``request_answer`` writes it)."""
    if not answers or len(answers) != len(requests):
        raise InvalidInputError(f"Need one answer per request; got {len(answers)} answers for {len(requests)} requests.")
    hits = sum(a.strip().partition("\n")[0] == f"{INSTRUCTION_PREFIX}{r}" for a, r in zip(answers, requests))
    return round(hits / len(answers), 4)


def flaw_kind_scores(predicted: Sequence[str], truth: Sequence[CaptionSample]) -> dict[str, float]:
    """The share of images named with their flaw, per true flaw kind ("none" included), for the
    kinds present in ``truth``, in ``(NO_FLAW, *FLAWS)`` order."""
    if len(predicted) != len(truth):
        raise InvalidInputError(f"Need one flaw per image; got {len(predicted)} for {len(truth)} images.")
    hits: dict[str, list[bool]] = {}
    for guess, sample in zip(predicted, truth):
        hits.setdefault(sample.flaw, []).append(guess.strip() == sample.flaw)
    return {k: round(sum(hits[k]) / len(hits[k]), 4) for k in (NO_FLAW, *FLAWS) if k in hits}


def letter_share(predicted: Sequence[str | None], truth: Sequence[CaptionSample]) -> float | None:
    """Of the letters of the true words (images without one aside), the share the predicted word
    has in the same place (``None`` predicts no word); ``None`` when no image has a word."""
    if len(predicted) != len(truth):
        raise InvalidInputError(f"Need one word per image; got {len(predicted)} for {len(truth)} images.")
    right = total = 0
    for guess, sample in zip(predicted, truth):
        word = sample.scene.word or ""
        total += len(word)
        right += sum(a == b for a, b in zip(word, guess or ""))
    return round(right / total, 4) if total else None


def question_scores(flaw_answers: Sequence[str], word_answers: Sequence[str],
                    truth: Sequence[CaptionSample]) -> dict[str, Any]:
    """Accuracy of the answers to the flaw and the word question about each of ``truth``'s images:
    ``flaw`` and ``flaw_kinds`` (per true kind), ``word`` (the word or its absence) and ``letters``."""
    if not truth:
        raise InvalidInputError("No answers to score.")
    words = [None if a.strip() == NO_WORD else a.strip() for a in word_answers]
    if len(words) != len(truth):
        raise InvalidInputError(f"Need one word answer per image; got {len(words)} for {len(truth)} images.")
    kinds = flaw_kind_scores(flaw_answers, truth)
    return {"images": len(truth),
            "flaw": round(sum(a.strip() == s.flaw for a, s in zip(flaw_answers, truth)) / len(truth), 4),
            "flaw_kinds": kinds,
            "word": round(sum(w == s.scene.word for w, s in zip(words, truth)) / len(truth), 4),
            "letters": letter_share(words, truth)}


def caption_scores(predicted: Sequence[str], truth: Iterable[CaptionSample]) -> dict[str, Any]:
    """Per-attribute accuracy of ``predicted`` captions against the samples they describe.

    ``exact``: the whole caption right; ``scene``: objects and word right (flaw aside);
    ``parsed``: the share the world's prompt parser could read; per true object (a caption that
    does not parse gets every attribute wrong): ``object`` (an object where it is), ``shape``,
    ``colour``, ``size``; per image: ``count``, ``word`` (the word or its absence), ``flaw``;
    ``flaw_kinds``: ``flaw`` per true kind (``flaw_kind_scores``); ``letters``: the true words'
    letters in place (``letter_share``; ``None`` without words).
    """
    totals = dict.fromkeys(("exact", "scene", "parsed", "count", "word", "flaw"), 0)
    per_object = dict.fromkeys(("object", "shape", "colour", "size"), 0)
    images = objects = 0
    samples, flaws, words = [], [], []
    for text, sample in zip(predicted, truth, strict=True):
        images += 1
        objects += len(sample.scene.objects)
        body, _, flaw = text.strip().partition(FLAW_SEPARATOR)
        samples.append(sample)
        flaws.append(flaw)
        words.append(None)
        totals["exact"] += text.strip() == sample.caption
        totals["scene"] += body == detailed_prompt(sample.scene)
        totals["flaw"] += flaw == sample.flaw
        try:
            spec = parse_prompt(body)
        except InvalidInputError:
            continue
        totals["parsed"] += 1
        words[-1] = spec.word
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
    scores: dict[str, Any] = {"images": images, "objects": objects}
    scores.update({k: round(v / images, 4) for k, v in totals.items()})
    scores.update({k: round(v / max(objects, 1), 4) for k, v in per_object.items()})
    scores.update(flaw_kinds=flaw_kind_scores(flaws, samples), letters=letter_share(words, samples))
    return scores


@dataclass(frozen=True)
class RequestCheck:
    """A text-to-image request, an image drawn for it, what in the image differs from it
    (``request_check``, worst first; empty when the image is faithful) and what the image
    shows (``description``: the detailed prompt of the scene the analyzer reads in it)."""

    request: str
    image: Image.Image
    differences: tuple[str, ...]
    description: str = ""

    @property
    def answer(self) -> str:
        """The check's answer: the differences joined by "; ", or "nothing"."""
        return CHECK_SEPARATOR.join(self.differences) or NOTHING

    @property
    def described_answer(self) -> str:
        """The answer after the description of what the image shows, then "Differences: ", so a
        model can compare the request with its own words instead of with the pixels."""
        return f"{self.description}\n{DIFFERENCES_PREFIX}{self.answer}"


def request_check(request: str, image: Image.Image) -> RequestCheck:
    """``image`` checked against the text-to-image ``request`` by one reading of the analyzer: the
    reference critic's Text Faithfulness findings without perception noise (a missing, extra or
    wrongly drawn object, a wrong place or size the request pins, a broken relation), worst first
    and in its own words, and the detailed prompt of the scene read (or "an empty image")."""
    seen = analyze(image)
    judged = assess_t2i(parse_prompt(request), seen)
    return RequestCheck(request, image, tuple(f.text for f in judged.about(TEXT_FAITHFULNESS.key)),
                        scene_description(seen))


def scene_description(seen: Any) -> str:
    """What an analyzer reading (``analyze``) shows, as the detailed prompt of its scene, or
    ``EMPTY_IMAGE`` when it finds no object."""
    return detailed_prompt(seen.to_scene()) if seen.objects else EMPTY_IMAGE


def request_checks(rng: random.Random, *, size: int = 64, exclude: set[str] = frozenset(),
                   faithful: float | None = None) -> Iterator[RequestCheck]:
    """Fresh request checks without end: a known-truth text-to-image pair's request (short or
    detailed; one in ``exclude`` is drawn again) and one of its two images at even odds, so about
    a third show a fault the request can see and the rest are faithful, with their differences.
    With ``faithful`` a share, each check first draws whether its image is faithful at that rate,
    then draws pairs until one of its images is (so faults can be made commoner than pairs make them)."""
    drawn = _pair_images(rng, size, exclude)
    while True:
        wanted = None if faithful is None else rng.random() < faithful
        for request, image in drawn:
            check = request_check(request, image)
            if wanted is None or wanted == (not check.differences):
                break
        yield check


def _pair_images(rng: random.Random, size: int, exclude: set[str]) -> Iterator[tuple[str, Image.Image]]:
    """Fresh known-truth text-to-image pairs' requests (one in ``exclude`` is drawn again), each
    with one of its two images at even odds."""
    while True:
        pair = make_pair(rng, "t2i", size=size)
        if pair.prompt not in exclude:
            yield pair.prompt, pair.image_a if rng.random() < 0.5 else pair.image_b


def request_check_question(request: str) -> str:
    """The prompt text of a request check: the request on the protocol's instruction line, then the question."""
    return f"{INSTRUCTION_PREFIX}{request}\n{REQUEST_CHECK}"


def request_check_scores(answers: Sequence[str], truth: Sequence[RequestCheck]) -> dict[str, Any]:
    """How well ``answers`` check their requests: ``exact`` (the whole answer right), ``flags``
    (says "nothing" exactly when the image is faithful; ``flag_prior`` is what always answering
    the commoner one gets), and over the named differences ``recall`` (true ones named) and
    ``precision`` (named ones true)."""
    if not truth or len(answers) != len(truth):
        raise InvalidInputError(f"Need one answer per check; got {len(answers)} answers for {len(truth)} checks.")
    exact = flags = named = matched = 0
    for answer, check in zip(answers, truth):
        answer = answer.rsplit(DIFFERENCES_PREFIX, 1)[-1]  # a described answer is scored on its differences
        said = {d.strip() for d in answer.strip().split(CHECK_SEPARATOR)} - {NOTHING, ""}
        exact += answer.strip() == check.answer
        flags += bool(said) == bool(check.differences)
        named += len(said)
        matched += len(said & set(check.differences))
    faithful = sum(not c.differences for c in truth) / len(truth)
    total_true = sum(len(c.differences) for c in truth)
    return {"checks": len(truth), "exact": round(exact / len(truth), 4), "flags": round(flags / len(truth), 4),
            "flag_prior": round(max(faithful, 1 - faithful), 4),
            "recall": round(matched / total_true, 4) if total_true else None,
            "precision": round(matched / named, 4) if named else None}


@dataclass(frozen=True)
class ObjectCheck:
    """One object a text-to-image request asks for (``asked``, as the request words it), an image
    drawn for the request, and what is wrong with that object in it (``object_findings``: missing,
    or a wrong shape, colour, size or position; empty when it is drawn as asked)."""

    request: str
    image: Image.Image
    asked: str
    problems: tuple[str, ...]
    before: tuple[ObjectVerdict, ...] = ()
    """The objects the request names once before this one, each with its verdict and sighting."""
    seen: str = ""
    """What the image shows in this object's place (``models.shapes.assess.object_sightings``)."""

    @property
    def question(self) -> str:
        """The prompt text: the request on the protocol's instruction line, then the one-object question."""
        return f"{INSTRUCTION_PREFIX}{self.request}\n{OBJECT_CHECK.format(self.asked)}"

    @property
    def verdict_question(self) -> str:
        """The prompt text of the verdict list this object is one item of: the request's instruction
        line, then ``VERDICT_QUESTION``."""
        return f"{INSTRUCTION_PREFIX}{self.request}\n{VERDICT_QUESTION}"

    @property
    def verdict(self) -> ObjectVerdict:
        """This object's item of its image's verdict list."""
        return ObjectVerdict(self.asked, not self.problems, self.seen)

    def verdict_prefix(self, *, sighted: bool = False) -> str:
        """The verdict list up to this object's verdict: the verdicts ``before`` it, then "the" and its
        name (``sighted``: every item with its sighting, this one's too)."""
        return verdict_prefix(self.before, self.asked, self.seen if sighted else "", sighted=sighted)

    @property
    def answer(self) -> str:
        """"yes", or "no: " and the problems joined by "; "."""
        return f"{NO_PREFIX}{CHECK_SEPARATOR.join(self.problems)}" if self.problems else YES


def object_checks_in(request: str, image: Image.Image) -> list[ObjectCheck]:
    """A check of each object ``request`` names once against ``image``, by one reading of the analyzer."""
    checks: list[ObjectCheck] = []
    for asked, (problems, sighting) in checked_objects(parse_prompt(request), analyze(image)).items():
        before = tuple(c.verdict for c in checks)
        checks.append(ObjectCheck(request, image, describe(asked, article=False), problems, before, sighting))
    return checks


def verdict_prefix(before: Sequence[ObjectVerdict], asked: str, seen: str = "", *, sighted: bool = False) -> str:
    """A verdict list up to ``asked``'s verdict: the verdicts ``before`` it (``sighted``: with their
    sightings), then "the", its name and, given, what is ``seen`` in its place."""
    return verdict_list(before, sighted=sighted) + (CHECK_SEPARATOR if before else "") + sighting_prefix(asked, seen)


def object_verdicts(rng: random.Random, *, size: int = 64, exclude: set[str] = frozenset(),
                    faithful: float | None = None) -> Iterator[list[ObjectCheck]]:
    """Fresh verdict lists without end: a known-truth pair's request (not in ``exclude``) and one of
    its images as ``request_checks`` draws them, with a check of every object the request names once,
    in the request's order (about 85% of them drawn as asked); images whose request names no object
    once are skipped. With ``faithful`` a share, each list first draws whether every object in it is
    drawn as asked at that rate, then draws images until one is so (or has some object wrong)."""
    drawn = _pair_images(rng, size, exclude)
    while True:
        wanted = None if faithful is None else rng.random() < faithful
        for request, image in drawn:
            checks = object_checks_in(request, image)
            if checks and (wanted is None or wanted == all(not c.problems for c in checks)):
                yield checks
                break


def verdict_answer(checks: Sequence[ObjectCheck], *, described: bool = False, sighted: bool = False) -> str:
    """The whole verdict list of one image's ``checks`` (``object_checks_in``); ``described``: after
    a line with what the image shows (``scene_description``), so the verdicts compare the request
    with the model's own words; ``sighted``: each object's sighting between its name and its verdict."""
    listed = verdict_list((c.verdict for c in checks), sighted=sighted)
    return f"{scene_description(analyze(checks[0].image))}\n{listed}" if described and checks else listed


@dataclass(frozen=True)
class PairVerdicts:
    """Both images of a known-truth pair with the sighted verdict list of each (``object_checks_in``)."""

    request: str
    image_a: Image.Image
    image_b: Image.Image
    checks_a: tuple[ObjectCheck, ...]
    checks_b: tuple[ObjectCheck, ...]

    @property
    def answer(self) -> str:
        """"Image A: <its sighted verdict list>. Image B: <B's>.", as a sighting teacher's Text
        Faithfulness justifications open (``ShapesCritic(object_sightings=True)``)."""
        return (f"Image A: {verdict_answer(self.checks_a, sighted=True)}. "
                f"Image B: {verdict_answer(self.checks_b, sighted=True)}.")


def pair_verdicts(rng: random.Random, *, size: int = 64, exclude: set[str] = frozenset()) -> Iterator[PairVerdicts]:
    """Fresh known-truth text-to-image pairs (a request in ``exclude`` is drawn again; one that names
    no object once is skipped), both images with their sighted verdict lists."""
    while True:
        pair = make_pair(rng, "t2i", size=size)
        if pair.prompt in exclude:
            continue
        checks_a, checks_b = object_checks_in(pair.prompt, pair.image_a), object_checks_in(pair.prompt, pair.image_b)
        if checks_a:
            yield PairVerdicts(pair.prompt, pair.image_a, pair.image_b, tuple(checks_a), tuple(checks_b))


def verdict_start(check: ObjectCheck, *, described: bool = False, sighted: bool = False) -> str:
    """``verdict_answer`` up to ``check``'s verdict (its ``verdict_prefix``, after the description line if ``described``)."""
    prefix = check.verdict_prefix(sighted=sighted)
    return f"{scene_description(analyze(check.image))}\n{prefix}" if described else prefix


def fault_kind(check: ObjectCheck) -> str:
    """What is first wrong with ``check``'s object: "missing", "shape", "colour", "size" or
    "position" (from the critic's wording, ``models.shapes.assess``); "none" when nothing is."""
    if not check.problems:
        return "none"
    problem = check.problems[0]
    if problem.endswith(" is missing"):
        return "missing"
    if " is drawn as a" in problem:
        return "shape"
    wanted = problem.rpartition(" instead of ")[2]
    return "colour" if wanted in COLOURS else "size" if wanted in SIZES else "position"


def object_checks(rng: random.Random, *, size: int = 64, exclude: set[str] = frozenset(),
                  faithful: float | None = None) -> Iterator[ObjectCheck]:
    """Fresh one-object checks without end: a known-truth pair's request and image as
    ``request_checks`` draws them, and one of the objects the request names once. With
    ``faithful`` a share, each check first draws whether its object is drawn as asked at that rate,
    then draws images until one has such an object (pairs' images get ~85% of their objects right)."""
    drawn = _pair_images(rng, size, exclude)
    while True:
        wanted = None if faithful is None else rng.random() < faithful
        for request, image in drawn:
            candidates = [c for c in object_checks_in(request, image) if wanted is None or wanted == (not c.problems)]
            if candidates:
                break
        yield rng.choice(candidates)


def object_check_scores(answers: Sequence[str], truth: Sequence[ObjectCheck]) -> dict[str, Any]:
    """How well ``answers`` check one object each: ``flags`` (says yes exactly when the object is
    drawn as asked; ``flag_prior`` is what always giving the commoner answer gets), ``balanced``
    (the mean of the flags' accuracy on right and on faulty objects: 0.5 for any constant answer),
    ``faults_found`` (faulty objects answered "no") and ``exact`` (the whole answer right). An answer
    that starts with neither "yes" nor "no" is ``unreadable`` and counts wrong either way."""
    if not truth or len(answers) != len(truth):
        raise InvalidInputError(f"Need one answer per check; got {len(answers)} answers for {len(truth)} checks.")
    said = [YES if a.strip().startswith(YES) else NO_PREFIX if a.strip().startswith(NO_PREFIX.strip()) else None
            for a in answers]
    faulty = [bool(c.problems) for c in truth]
    right = [s == (NO_PREFIX if f else YES) for s, f in zip(said, faulty)]
    on_faulty = [r for r, f in zip(right, faulty) if f]
    on_fine = [r for r, f in zip(right, faulty) if not f]
    share = sum(faulty) / len(truth)
    recalls = [sum(group) / len(group) for group in (on_faulty, on_fine) if group]
    return {"checks": len(truth), "faulty": sum(faulty), "unreadable": said.count(None),
            "flags": round(sum(right) / len(truth), 4),
            "flag_prior": round(max(share, 1 - share), 4), "balanced": round(sum(recalls) / len(recalls), 4),
            "faults_found": round(sum(on_faulty) / len(on_faulty), 4) if on_faulty else None,
            "exact": round(sum(a.strip() == c.answer for a, c in zip(answers, truth)) / len(truth), 4)}
