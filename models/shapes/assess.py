"""Compare what a request asks for with what the analyzer saw, as graded findings per dimension.

This is the judgement of the shapes-world reference critic, kept apart from the text it writes
(``models.shapes.critic_shapes``). A finding is a deduction on the 1-4 scale with a short concrete
sentence naming the object; a dimension's score is 4 minus its deductions, kept in [1, 4].

Text Faithfulness follows the rubric's levels by the share of the request that is wrong: every
requested object counts as one unit and each failure costs a share of its unit -- missing 1.0, a
wrong colour or shape 0.6, a wrong position 0.5, a wrong size 0.4 (one object's failures together
at most 1.0), an extra object 0.5, unrequested text 0.4 -- and the deduction is 3 times the
shares' sum over the units. So an image showing nothing that was asked for scores 1 (whatever the
request), every object right scores 4, and one of four objects missing scores 3.25. A relation
between two groups ("two red circles above a blue square") is one more unit, and a broken one
costs the share of it that is broken (``models.shapes.relations.broken``: the share of object
pairs in the wrong order, or of objects with no neighbour for "next to"); its refined request
pins positions that satisfy every relation, moving as few objects as possible. An edit is
judged the same way: the units of Text Faithfulness are the cells (and the word) the edit changes,
and an edit that was not made costs all of them; the units of Image Faithfulness are what the
edit must keep (the untouched source objects, and the word unless the edit changes it).

Physical and Visual Quality (in points): blur and noise graded by their measured strength, a
broken or merged shape 0.75 each, a smudge 0.6, colour bleeding 0.6 to 0.8, a misshapen object
0.5. Text Rendering (in points): a missing word 3.0, a misspelt word 3.0 times the share of wrong
letters.

Nothing made, little to credit: the rubric asks of Physical and Visual Quality whether the image
(t2i) or the edited region (edit) is well made, so an empty canvas (no object, no word) and an
edit that was not made (the cells and word it changes show the source) lose 2 points there
(``NOTHING_MADE``) instead of scoring "no noticeable flaws": otherwise a reward built on the mean
of the dimensions would pay 0.5 for drawing nothing and 0.67 for leaving the source alone. Not
the full 3 points, so that drawing defects still order two unmade results. Image Faithfulness
of an unmade edit stays 4, as its level sentence says (everything not asked to change is kept).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from models.shapes.analyzer import AnalyzedObject, AnalyzedScene, Artifacts
from models.shapes.world import (
    POSITIONS,
    SIZES,
    ObjectSpec,
    PromptSpec,
    RelationCheck,
    Scene,
    ShapeObject,
    arrange_spec,
    arranged_scene,
    check_relations,
    describe,
    detailed_prompt,
    edit_instruction,
    group_phrase,
    position_phrase,
)
from models.types import IMAGE_FAITHFULNESS, PHYSICAL_QUALITY, TEXT_FAITHFULNESS, TEXT_RENDERING, Task

logger = logging.getLogger(__name__)

# Shares of one requested object (or kept object, or edited cell) that each failure costs.
MISSING, EXTRA, WRONG_COLOUR, WRONG_SHAPE, WRONG_POSITION, WRONG_SIZE = 1.0, 0.5, 0.6, 0.6, 0.5, 0.4
UNREQUESTED_TEXT = 0.4
# Deductions in points on the 1-4 scale.
BROKEN, MERGED, SMUDGE, MISSHAPEN, BLEED = 0.75, 0.75, 0.6, 0.5, 0.6
BLEED_START = 0.07  # share of an object's pixels in a foreign colour before it counts
BLUR_START, NOISE_START = 0.5, 3.0  # measured blur (px) and noise (levels) a clean image stays under
MISSING_WORD = 3.0
NOTHING_MADE = 2.0  # Physical Quality deduction for an empty canvas or an edit not made
RIGHT, WRONG = " is drawn", " is wrong"  # an object's verdict, right after its name in a verdict list
SEEN_OPEN, SEEN_CLOSE, SEEN_NOTHING = " (seen: ", ")", "nothing"  # a sighting, between a name and its verdict


@dataclass(frozen=True)
class ObjectVerdict:
    """One requested object's item of a verdict list: ``asked`` (as the request words it), whether
    it is ``right`` (drawn as asked), and ``seen``: what the image shows in its place, worded with
    the attributes the request gives ("small yellow triangle at the bottom left"; ``SEEN_NOTHING``
    when it is missing; "" when unknown)."""

    asked: str
    right: bool
    seen: str = ""

    def text(self, *, sighted: bool = False) -> str:
        """"the purple star is drawn", or ``sighted`` "the purple star (seen: red star) is wrong"."""
        return sighting_prefix(self.asked, self.seen if sighted else "") + (RIGHT if self.right else WRONG)


def sighting_prefix(asked: str, seen: str = "") -> str:
    """A verdict list's item up to its verdict: "the purple star", or with ``seen`` "the purple star (seen: red star)"."""
    return f"the {asked}{SEEN_OPEN}{seen}{SEEN_CLOSE}" if seen else f"the {asked}"


@dataclass(frozen=True)
class Finding:
    """One observed failure: the dimension it lowers, by how much (1-4 scale) and why."""

    dimension: str
    severity: float
    text: str


@dataclass
class Assessment:
    """The critic's judgement of one image: findings, scores (``None`` = N/A), what was asked,
    and the refined request in the generator's prompt language."""

    task: Task
    requested: str
    findings: list[Finding]
    scores: dict[str, float | None]
    praise: dict[str, str]
    refined_request: str
    failed_share: float = 0.0  # t2i: the share of requested objects missing or drawn with a wrong shape or colour
    verdicts: tuple[ObjectVerdict, ...] = ()
    """t2i: each object the request names once, whether it is drawn as asked and what is seen in its place, in its order."""

    def about(self, dimension: str) -> list[Finding]:
        """The findings of one dimension, worst first."""
        return sorted((f for f in self.findings if f.dimension == dimension), key=lambda f: -f.severity)


def _cost(spec: ObjectSpec, obj: AnalyzedObject) -> float:
    cost = WRONG_COLOUR * (spec.colour != obj.colour) + WRONG_SHAPE * (spec.shape != obj.shape)
    cost += WRONG_SIZE * (spec.size is not None and spec.size != obj.size)
    return cost + WRONG_POSITION * (spec.position is not None and spec.position != obj.position)


def match(
    specs: tuple[ObjectSpec, ...], objects: tuple[AnalyzedObject, ...]
) -> tuple[list[tuple[ObjectSpec, AnalyzedObject]], list[ObjectSpec], list[AnalyzedObject]]:
    """The cheapest pairing of requested objects with seen ones: (pairs, missing, extra).

    Pairing an object costs its attribute mismatches; leaving a request unmatched costs a missing
    object, leaving a seen object unmatched an extra one. Exact, by dynamic programming over the
    set of seen objects already used."""

    @lru_cache(maxsize=None)
    def best(i: int, used: int) -> tuple[float, tuple[int | None, ...]]:
        if i == len(specs):
            return EXTRA * (len(objects) - bin(used).count("1")), ()
        cost, rest = best(i + 1, used)
        options = [(MISSING + cost, (None, *rest))]
        for j, obj in enumerate(objects):
            if not used >> j & 1:
                cost, rest = best(i + 1, used | 1 << j)
                options.append((_cost(specs[i], obj) + cost, (j, *rest)))
        return min(options, key=lambda option: option[0])

    choice = best(0, 0)[1]
    pairs = [(s, objects[j]) for s, j in zip(specs, choice) if j is not None]
    missing = [s for s, j in zip(specs, choice) if j is None]
    taken = {j for j in choice if j is not None}
    extra = [o for j, o in enumerate(objects) if j not in taken]
    return pairs, missing, extra


def _mismatches(spec: ObjectSpec, obj: AnalyzedObject) -> list[tuple[float, str]]:
    """What is wrong with ``obj`` as the requested ``spec``: (share of its unit, sentence) each,
    scaled down together so that one object's failures cost at most a missing object."""
    where = position_phrase(obj.position)
    found = []
    if spec.shape != obj.shape:
        found.append((WRONG_SHAPE, f"the {spec.colour} {spec.shape} {where} is drawn as a {obj.shape}"))
    if spec.colour != obj.colour:
        found.append((WRONG_COLOUR, f"the {spec.shape} {where} is {obj.colour} instead of {spec.colour}"))
    if spec.size is not None and spec.size != obj.size:
        found.append((WRONG_SIZE, f"the {spec.colour} {spec.shape} {where} is {obj.size} instead of {spec.size}"))
    if spec.position is not None and spec.position != obj.position:
        found.append(
            (WRONG_POSITION, f"the {spec.colour} {spec.shape} is {where} instead of {position_phrase(spec.position)}")
        )
    total = sum(share for share, _ in found)
    if total > MISSING:
        found = [(share * MISSING / total, text) for share, text in found]
    return found


def _missing_text(spec: ObjectSpec) -> str:
    """The Text Faithfulness finding for a requested object nothing in the image matches."""
    return f"the {describe(spec, article=False)} is missing"


def checked_objects(spec: PromptSpec, seen: AnalyzedScene) -> dict[ObjectSpec, tuple[tuple[str, ...], str]]:
    """Each object the request names once (an object of "two red circles" is not one thing to check),
    in its order, with (what is wrong with it in ``assess_t2i``'s words: missing, or a wrong shape,
    colour, size or position of the seen object matched to it, empty when it is drawn as asked; its
    sighting: that seen object worded with just the attributes the request gives, "small yellow triangle
    at the bottom left" for "small purple triangle at the bottom left", "red star" for "green star", so
    a right object's sighting repeats its name, ``SEEN_NOTHING`` when it is missing), from one matching.
    Relations, extra objects and the word belong to no single object."""
    pairs, missing, _ = match(spec.objects, seen.objects)
    drawn = dict(pairs)
    once = [s for s in dict.fromkeys(spec.objects) if spec.objects.count(s) == 1]

    def checked(asked: ObjectSpec) -> tuple[tuple[str, ...], str]:
        if asked in missing:
            return (_missing_text(asked),), SEEN_NOTHING
        obj = drawn[asked]
        sighting = describe(ObjectSpec(obj.shape, obj.colour, obj.size if asked.size else None,
                                       obj.position if asked.position else None), article=False)
        return tuple(text for _, text in _mismatches(asked, obj)), sighting

    return {s: checked(s) for s in once}


def object_findings(spec: PromptSpec, seen: AnalyzedScene) -> dict[ObjectSpec, tuple[str, ...]]:
    """What is wrong with each object the request names once in ``seen`` (``checked_objects``)."""
    return {s: problems for s, (problems, _) in checked_objects(spec, seen).items()}


def object_verdicts(spec: PromptSpec, seen: AnalyzedScene) -> tuple[ObjectVerdict, ...]:
    """Each object the request names once, in its order, with its verdict and sighting in ``seen``."""
    return tuple(ObjectVerdict(describe(s, article=False), not problems, sighting)
                 for s, (problems, sighting) in checked_objects(spec, seen).items())


def verdict_list(verdicts: Iterable[ObjectVerdict], *, sighted: bool = False) -> str:
    """Each object named with its verdict right after it, joined by "; ": "the purple star is drawn;
    the red circle is wrong"; ``sighted``: with what is seen in its place between them ("the red
    circle (seen: red square) is wrong")."""
    return "; ".join(v.text(sighted=sighted) for v in verdicts)


def _deduction(dimension: str, share: float, units: int, text: str) -> Finding:
    """A finding that costs ``share`` of one of the ``units`` a dimension is graded over: the
    whole 1-4 range (3 points) spread evenly over the units."""
    return Finding(dimension, round(3.0 * share / max(1, units), 2), text)


def _quality(artifacts: Artifacts, objects: tuple[AnalyzedObject, ...]) -> list[Finding]:
    key = PHYSICAL_QUALITY.key
    found: list[Finding] = []
    if artifacts.blur > BLUR_START:
        found.append(Finding(key, round(min(1.5, 0.9 * (artifacts.blur - BLUR_START)), 2), f"the edges are blurred (about {artifacts.blur:.1f} px)"))
    if artifacts.noise > NOISE_START:
        found.append(Finding(key, round(min(1.2, (artifacts.noise - NOISE_START) / 12), 2), f"the image is grainy (noise about {artifacts.noise:.0f} levels)"))
    for obj in objects:
        name = f"the {obj.colour} {obj.shape} {position_phrase(obj.position)}"
        if obj.fragments > 1:
            found.append(Finding(key, BROKEN, f"{name} is broken into {obj.fragments} pieces"))
        if obj.impurity > BLEED_START:
            found.append(Finding(key, round(BLEED + 0.5 * min(obj.impurity - BLEED_START, 0.4), 2), f"another colour bleeds into {name}"))
        if obj.fit < 0.6 and obj.fragments == 1:
            found.append(Finding(key, MISSHAPEN, f"{name} is misshapen"))
    if artifacts.merged:
        found.append(Finding(key, MERGED * artifacts.merged, f"{artifacts.merged} pair(s) of neighbouring shapes are merged into one blob"))
    if artifacts.smudges:
        found.append(Finding(key, SMUDGE * artifacts.smudges, f"{artifacts.smudges} smudge(s) of no requested colour"))
    return found


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _word(requested: str | None, seen: AnalyzedScene) -> list[Finding]:
    """Text Rendering findings for the word ``requested`` (none when no word is asked for)."""
    if requested is None:
        return []
    key = TEXT_RENDERING.key
    if seen.word is None:
        return [Finding(key, MISSING_WORD, f'the word "{requested}" is missing')]
    if seen.word != requested:
        wrong = _edit_distance(seen.word, requested) / max(len(seen.word), len(requested))
        return [Finding(key, round(3.0 * wrong, 2), f'the word reads "{seen.word}" instead of "{requested}"')]
    return []


def _score(findings: list[Finding], dimension: str) -> float:
    total = sum(f.severity for f in findings if f.dimension == dimension)
    return round(max(1.0, min(4.0, 4.0 - total)) * 20) / 20


def _object_list(objects: tuple[ObjectSpec, ...] | tuple[ShapeObject, ...]) -> str:
    names = [describe(o) for o in objects]
    if not names:
        return "nothing"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _word_clause(word: str | None) -> str:
    return f' with the word "{word}"' if word else " and no text"


def _relation_text(spec: PromptSpec, check: RelationCheck) -> str:
    """A broken relation in words, naming one culprit: "the red circles should be above the blue
    square, but the red circle at the bottom left is not above the blue square in the centre"."""
    relation = check.relation
    first, second = spec.objects[relation.first[0]], spec.objects[relation.second[0]]
    a, b = check.culprits[0]
    if relation.kind == "next to":
        lonely, other = (first, second) if a is not None else (second, first)
        detail = f"the {lonely.colour} {lonely.shape} {position_phrase(a or b)} has no {other.colour} {other.shape} beside it"
    else:
        detail = (f"the {first.colour} {first.shape} {position_phrase(a)} is not {relation.kind} "
                  f"the {second.colour} {second.shape} {position_phrase(b)}")
    return (f"{group_phrase(spec, relation.first, definite=True)} should be {relation.kind} "
            f"{group_phrase(spec, relation.second, definite=True)}, but {detail}")


def _relations_said(spec: PromptSpec) -> str:
    """The relations asked for: "the red circles above the blue square", or "" without relations."""
    return "; ".join(f"{group_phrase(spec, r.first, definite=True)} {r.kind} {group_phrase(spec, r.second, definite=True)}"
                     for r in spec.relations)


def assess_t2i(spec: PromptSpec, seen: AnalyzedScene, *, resize_failed: bool = False,
               move_failed: bool = False) -> Assessment:
    """Judge a generated image (analyzed as ``seen``) against the request ``spec``.

    ``resize_failed``: the refined request asks for each object drawn with a wrong shape or
    colour at the other size; ``move_failed``: in another free cell, where the request leaves
    its position open (see ``_pinned``)."""
    key, units = TEXT_FAITHFULNESS.key, len(spec.objects) + len(spec.relations)
    pairs, missing, extra = match(spec.objects, seen.objects)
    findings = [_deduction(key, MISSING, units, _missing_text(s)) for s in missing]
    findings += [_deduction(key, EXTRA, units, f"there is an extra {describe(o.as_object(), article=False)}") for o in extra]
    findings += [_deduction(key, share, units, text) for s, o in pairs for share, text in _mismatches(s, o)]
    checks = check_relations(spec, [(s.colour, s.shape, o.position) for s, o in pairs])
    findings += [_deduction(key, c.share, units, _relation_text(spec, c)) for c in checks if c.share > 0]
    if spec.word is None and seen.word:
        findings.append(_deduction(key, UNREQUESTED_TEXT, units, f'the image shows the word "{seen.word}" that was not asked for'))
    findings += _word(spec.word, seen) + _quality(seen.artifacts, seen.objects)
    if not seen.objects and seen.word is None:
        findings.append(Finding(PHYSICAL_QUALITY.key, NOTHING_MADE, "the canvas is empty: nothing is drawn whose quality could be credited"))
    scores = {d: _score(findings, d) for d in (key, PHYSICAL_QUALITY.key)}
    scores[TEXT_RENDERING.key] = _score(findings, TEXT_RENDERING.key) if spec.word else None
    related = _relations_said(spec)
    requested = f"The request asks for {_object_list(spec.objects)}{f' ({related})' if related else ''}{_word_clause(spec.word)}."
    held = f"; {related}, as asked" if related else ""
    praise = {
        key: f"All {len(spec.objects)} requested object(s) are there as asked: {_object_list(tuple(o.as_object() for _, o in pairs))}{held}.",
        TEXT_RENDERING.key: f'The word "{spec.word}" is drawn and spelled correctly.' if spec.word else "The request asks for no text.",
    }
    failed = len(missing) + sum(_drawn_wrong(s, o) for s, o in pairs)
    refined = detailed_prompt(_pinned(spec, pairs, missing, resize_failed=resize_failed, move_failed=move_failed))
    return Assessment("t2i", requested, findings, scores, {**praise, **_clean_praise()}, refined,
                      failed / len(spec.objects), object_verdicts(spec, seen))


def _clean_praise() -> dict[str, str]:
    return {PHYSICAL_QUALITY.key: "Clean shapes with sharp edges: no blur, noise, smudges, broken or merged shapes."}


def _pinned(
    spec: PromptSpec, pairs: list[tuple[ObjectSpec, AnalyzedObject]], missing: list[ObjectSpec], *, resize_failed: bool,
    move_failed: bool = False,
) -> Scene:
    """The requested scene with every size and position pinned: kept from the image where an
    object was placed (its attributes corrected to the request), chosen for missing ones. With
    relations, the positions satisfy every relation, moving as few placed objects as possible.
    With ``resize_failed`` an object drawn with a wrong shape or colour is asked for at the other
    size (unless the request fixes its size): the same wording failed once, and with the same
    seed a changed clause makes the generator draw that object anew while the objects already
    right stay (``bench.refinement_gain``'s diagnostics). With ``move_failed`` such an object whose
    position the request leaves open is asked for, at its drawn size, in the next free cell after
    its own (in grid order) instead; with relations, in the first such cell where a layout that
    satisfies them keeps it away from its drawn cell, else resized in place."""
    if spec.relations:
        return _arranged(spec, pairs, resize_failed=resize_failed, move_failed=move_failed)
    taken: dict[str, ShapeObject] = {}
    moved = [(s, o) for s, o in pairs
             if move_failed and s.position is None and _drawn_wrong(s, o)]
    for s, o in pairs:
        position = s.position or o.position
        if (s, o) in moved:
            continue
        if position not in taken:
            taken[position] = ShapeObject(s.shape, s.colour, _size(s, o, resize_failed), position)
        else:
            missing = missing + [s]
    for s, o in moved:
        free = [p for p in _cells_after(o.position) if p not in taken]
        cell = free[0] if free else o.position
        taken.setdefault(cell, ShapeObject(s.shape, s.colour, s.size or o.size, cell))
    for s in missing:
        free = [p for p in (s.position, "centre", *POSITIONS) if p and p not in taken]
        if free:
            taken[free[0]] = ShapeObject(s.shape, s.colour, s.size or "large", free[0])
    return Scene(tuple(taken.values()), spec.word)


def _drawn_wrong(asked: ObjectSpec, drawn: AnalyzedObject) -> bool:
    """Whether the object matched to ``asked`` was drawn with another shape or colour."""
    return (asked.shape, asked.colour) != (drawn.shape, drawn.colour)


def _size(asked: ObjectSpec, drawn: AnalyzedObject, resize_failed: bool) -> str:
    """The size a refined request gives a drawn object: as asked, else as drawn, else (with
    ``resize_failed``, for an object drawn with a wrong shape or colour) the other size."""
    if asked.size:
        return asked.size
    if resize_failed and _drawn_wrong(asked, drawn):
        return SIZES[1 - SIZES.index(drawn.size)]
    return drawn.size


def _cells_after(position: str) -> tuple[str, ...]:
    """The other cells, in grid order starting after ``position`` (and wrapping round)."""
    start = POSITIONS.index(position)
    return POSITIONS[start + 1:] + POSITIONS[:start]


def _arranged(spec: PromptSpec, pairs: list[tuple[ObjectSpec, AnalyzedObject]], *, resize_failed: bool,
              move_failed: bool = False) -> Scene:
    """The requested scene laid out by ``arranged_scene``, each drawn object preferring its cell
    (sizes as ``_size`` gives them); with ``move_failed`` a wrongly drawn object whose position is
    open prefers the first free cell after its own that a layout satisfying the relations keeps
    it in, away from its drawn cell (at its drawn size), and is resized in place when none does."""
    placed: dict[int, ShapeObject] = {}
    moved: list[tuple[int, ObjectSpec, AnalyzedObject]] = []
    for s, o in pairs:
        index = next(i for i, asked in enumerate(spec.objects) if asked == s and i not in placed
                     and all(i != m for m, _, _ in moved))
        if move_failed and s.position is None and _drawn_wrong(s, o):
            moved.append((index, s, o))
        else:
            placed[index] = ShapeObject(o.shape, o.colour, _size(s, o, resize_failed), o.position)
    for index, s, o in moved:
        taken = {p.position for p in placed.values()}
        for cell in (c for c in _cells_after(o.position) if c not in taken):
            trial = {**placed, index: ShapeObject(o.shape, o.colour, s.size or o.size, cell)}
            cells = arrange_spec(spec, {i: p.position for i, p in trial.items()})
            if cells is not None and cells[index] != o.position:
                placed = trial
                break
        else:
            placed[index] = ShapeObject(o.shape, o.colour, _size(s, o, resize_failed), o.position)
    scene = arranged_scene(spec, placed)
    if scene is None:  # parse_prompt refuses requests no layout satisfies
        raise ValueError(f"no layout satisfies the relations of {spec}")
    return scene


def _edit_word(before: str | None, after: str | None, seen: AnalyzedScene, tf_units: int, imf_units: int) -> list[Finding]:
    """Word findings of an edit: a word edit that was not made (Text Faithfulness), an
    unrequested word change (Image Faithfulness), and the rendering of the word asked for."""
    tf, imf = TEXT_FAITHFULNESS.key, IMAGE_FAITHFULNESS.key
    rendering = _word(after, seen)
    if after != before:
        if seen.word == before:
            return [_deduction(tf, MISSING, tf_units, "the word was not changed as asked")] + rendering
        if after is None and seen.word:
            return [_deduction(tf, EXTRA, tf_units, f'the word "{seen.word}" should have been removed')]
        return rendering
    if seen.word == after:
        return []
    if after is None:
        return [_deduction(imf, UNREQUESTED_TEXT, imf_units, f'unrequested change: the word "{seen.word}" was added')]
    if seen.word is None:
        return [_deduction(imf, MISSING, imf_units, f'unrequested change: the word "{after}" was removed')] + rendering
    return [_deduction(imf, WRONG_COLOUR, imf_units, f'unrequested change: the word now reads "{seen.word}"')] + rendering


def _not_made(source: Scene, touched: set[str], word_edited: bool, seen: AnalyzedScene) -> bool:
    """Whether the image shows the source where the edit acts: every cell it changes as in the
    source, and the source's word when it changes the word (changes elsewhere do not count)."""
    at = {o.position: o.as_object() for o in seen.objects}
    cells_kept = all(at.get(p) == source.at(p) for p in touched)
    return cells_kept and (not word_edited or seen.word == source.word)


def assess_edit(instruction: str, source: Scene, target: Scene, seen: AnalyzedScene) -> Assessment:
    """Judge an edited image (analyzed as ``seen``) made from ``source`` for ``instruction``,
    whose exact result is ``target``. Failures where the edit acts lower Text Faithfulness, graded
    over the cells (and the word) the edit changes; changes elsewhere lower Image Faithfulness,
    graded over what the edit must keep. An edit that was not made at all scores 1."""
    tf, imf = TEXT_FAITHFULNESS.key, IMAGE_FAITHFULNESS.key
    touched = {p for p in POSITIONS if source.at(p) != target.at(p)}
    word_edited = source.word != target.word
    tf_units = max(1, len(touched) + word_edited)
    imf_units = max(1, sum(o.position not in touched for o in source.objects) + (not word_edited and source.word is not None))
    specs = tuple(ObjectSpec(o.shape, o.colour, o.size, o.position) for o in target.objects)
    pairs, missing, extra = match(specs, seen.objects)
    findings: list[Finding] = []
    for s in missing:
        if s.position in touched:
            findings.append(_deduction(tf, MISSING, tf_units, f"the {describe(s, article=False)} asked for is not there"))
        else:
            findings.append(_deduction(imf, MISSING, imf_units, f"the {describe(s, article=False)} of the source image is gone"))
    for o in extra:
        name = describe(o.as_object(), article=False)
        if o.position in touched and o.as_object() in source.objects:
            findings.append(_deduction(tf, MISSING, tf_units, f"the {name} is still there"))
        elif o.position in touched:
            findings.append(_deduction(tf, EXTRA, tf_units, f"there is an unrequested {name}"))
        else:
            findings.append(_deduction(imf, EXTRA, imf_units, f"there is an unrequested {name}"))
    for s, o in pairs:
        problems = _mismatches(s, o)
        if not problems:
            continue
        if s.position in touched or o.position in touched:
            if o.as_object() in source.objects:
                name = describe(o.as_object(), article=False)
                findings.append(_deduction(tf, tf_units, tf_units, f"the edit was not made: the {name} is unchanged"))
            else:
                findings += [_deduction(tf, share, tf_units, text) for share, text in problems]
        else:
            findings += [_deduction(imf, share, imf_units, f"unrequested change: {text}") for share, text in problems]
    findings += _edit_word(source.word, target.word, seen, tf_units, imf_units) + _quality(seen.artifacts, seen.objects)
    if target != source and _not_made(source, touched, word_edited, seen):
        findings.append(Finding(PHYSICAL_QUALITY.key, NOTHING_MADE, "the edit was not made: there is no edited region whose quality could be credited"))
    scores: dict[str, float | None] = {d: _score(findings, d) for d in (tf, imf, PHYSICAL_QUALITY.key)}
    scores[TEXT_RENDERING.key] = _score(findings, TEXT_RENDERING.key) if target.word else None
    requested = (
        f"The instruction asks to {instruction.rstrip('.')}. The source image shows {_object_list(source.objects)}"
        f"{_word_clause(source.word)}; the edited image should show {_object_list(target.objects)}{_word_clause(target.word)}."
    )
    done = edit_instruction(source, target) if target != source else "nothing needed changing"
    praise = {
        tf: f"The edit is made exactly as asked: {done}.",
        imf: "Everything the instruction does not mention is kept as in the source image.",
        TEXT_RENDERING.key: f'The word "{target.word}" is drawn and spelled correctly.' if target.word else "The request asks for no text.",
        **_clean_praise(),
    }
    refined = edit_instruction(source, target, explicit=True) if target != source else instruction
    return Assessment("edit", requested, findings, scores, praise, refined)
