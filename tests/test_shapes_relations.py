"""Relations in the shapes world ("two red circles above a blue square"): the grammar reads them,
the reference critic judges them on the grid, and its refined request pins positions that
satisfy them, in the detailed form the generators were trained on."""

from __future__ import annotations

import random

import pytest

from models.errors import InvalidInputError
from models.shapes import relations, world
from models.shapes.analyzer import analyze
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.world import ObjectSpec, Relation, Scene, ShapeObject, parse_prompt, render
from models.types import CritiqueRequest

RED, BLUE = ObjectSpec("circle", "red"), ObjectSpec("square", "blue")


@pytest.mark.parametrize(
    "text, kind",
    [
        ("a red circle above a blue square", "above"),
        ("a red circle below a blue square", "below"),
        ("a red circle under a blue square", "below"),
        ("a red circle left of a blue square", "left of"),
        ("a red circle to the left of a blue square", "left of"),
        ("a red circle right of a blue square", "right of"),
        ("a red circle on the right of a blue square", "right of"),
        ("a red circle next to a blue square", "next to"),
        ("a red circle beside a blue square", "next to"),
    ],
)
def test_each_relation_is_read_between_its_two_objects(text, kind):
    assert parse_prompt(text) == world.PromptSpec((RED, BLUE), None, (Relation(kind, (0,), (1,)),))


def test_plural_groups_sizes_other_objects_and_a_word():
    spec = parse_prompt('Two red circles above a small blue square, a green star and the word "ab"')
    assert spec.objects == (RED, RED, ObjectSpec("square", "blue", "small"), ObjectSpec("star", "green"))
    assert spec.relations == (Relation("above", (0, 1), (2,)),) and spec.word == "AB"
    spec = parse_prompt("a yellow triangle next to three purple diamonds")
    assert spec.relations == (Relation("next to", (0,), (1, 2, 3)),)
    assert world.group_phrase(spec, (1, 2, 3)) == "three purple diamonds"


@pytest.mark.parametrize(
    "text, message",
    [
        ("a red circle on top of a blue square", "Could not read the relation 'on top of'.*above.*next to"),
        ("a red circle between two blue squares", "Could not read the relation 'between'"),
        ("a red circle above a blue square below a green star", "chains 2 relations"),
        ("a red circle at the top above a blue square", "without a grid position"),
        ("a red circle above a red circle", "names red circles in more than one group"),
        ("a red circle above a blue square and a red circle", "names red circles in more than one group"),
        ("four red circles above four blue squares", "No layout of the 3x3 grid satisfies"),
        ("five red circles next to a blue square", "No layout of the 3x3 grid satisfies"),
        ("a red circle above", "Could not read 'a red circle above'.*relation like"),
    ],
)
def test_unreadable_or_impossible_relations_are_refused_with_what_went_wrong(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_prompt(text)


def test_relations_on_the_grid():
    # cells in reading order: 0 top left ... 4 centre ... 8 bottom right
    assert relations.broken("above", [0, 2], [4]) == (0.0, [])  # any column, a row higher
    assert relations.broken("above", [0, 5], [4]) == (0.5, [(5, 4)])  # one circle of two is lower
    assert relations.broken("above", [3], [4])[0] == 1.0  # same row is not above
    assert relations.broken("left of", [0, 6], [2])[0] == 0.0 and relations.broken("right of", [0], [2])[0] == 1.0
    assert relations.broken("next to", [1, 3], [4])[0] == 0.0  # edge neighbours
    assert relations.broken("next to", [0], [4]) == (1.0, [(0, None), (None, 4)])  # a diagonal is not next to
    assert relations.broken("above", [], [4]) == (0.0, [])  # nothing drawn: judged as missing, not here


def test_arrangement_keeps_what_it_can_and_named_positions():
    spec = parse_prompt("a red circle above a blue square and a green star at the top left")
    cells = world.arrange_spec(spec, preferred={0: "centre", 1: "top"})
    assert cells[2] == "top left" and cells[0] == "centre"  # named position fixed, one object moved
    assert world.check_relations(spec, [(o.colour, o.shape, p) for o, p in zip(spec.objects, cells)])[0].share == 0


def test_relation_prompts_written_for_random_scenes_hold_in_them():
    rng = random.Random(3)
    written = 0
    for _ in range(200):
        scene = world.random_scene(rng)
        text = world.relation_prompt(scene, rng)
        if text is None:
            continue
        written += 1
        spec = parse_prompt(text)
        assert len(spec.relations) == 1 and len(spec.objects) == len(scene.objects) and spec.word == scene.word
        seen = [(o.colour, o.shape, o.position) for o in scene.objects]
        assert all(check.share == 0 for check in world.check_relations(spec, seen))
    assert written > 100


PROMPT = "two red circles above a blue square"
BROKEN = Scene((ShapeObject("circle", "red", "large", "top left"), ShapeObject("circle", "red", "large", "bottom left"),
                ShapeObject("square", "blue", "large", "centre")))
KEPT = Scene((ShapeObject("circle", "red", "large", "top left"), ShapeObject("circle", "red", "large", "top right"),
              ShapeObject("square", "blue", "large", "centre")))


def _critique(prompt: str, scene: Scene):
    return ShapesCritic().critique([CritiqueRequest("t2i", prompt, render(scene))])[0]


def test_the_critic_names_a_broken_relation_and_refines_into_positions_that_satisfy_it():
    broken, kept = _critique(PROMPT, BROKEN), _critique(PROMPT, KEPT)
    assert kept.scores["text_faithfulness"] == 4.0 and "above the blue square, as asked" in kept.justifications["text_faithfulness"]
    # one of the two circle-square pairs is in the wrong order: half of one of 4 units
    assert broken.scores["text_faithfulness"] == pytest.approx(4 - 3 * 0.5 / 4, abs=0.05)
    assert ("the red circles should be above the blue square, but the red circle at the bottom left is not above the "
            "blue square in the centre") in broken.justifications["text_faithfulness"].lower()
    refined = broken.refined_request
    assert "above" not in refined and "at the top left" in refined  # the detailed form, the good circle kept
    shown = analyze(render(world.Scene(tuple(ShapeObject(o.shape, o.colour, o.size, o.position)
                                             for o in parse_prompt(refined).objects))))
    checks = world.check_relations(parse_prompt(PROMPT), [(o.colour, o.shape, o.position) for o in shown.objects])
    assert checks[0].share == 0


def test_a_fully_broken_relation_fails_the_threshold_and_next_to_names_the_lonely_object():
    flipped = _critique("a red circle above a blue square", Scene((ShapeObject("circle", "red", "large", "bottom"),
                                                                   ShapeObject("square", "blue", "large", "top"))))
    assert flipped.scores["text_faithfulness"] == 3.0  # 1 of 3 units wrong
    apart = _critique("a red circle next to a blue square", Scene((ShapeObject("circle", "red", "large", "top left"),
                                                                   ShapeObject("square", "blue", "large", "bottom right"))))
    assert "the red circle at the top left has no blue square beside it" in apart.justifications["text_faithfulness"]
    assert apart.scores["text_faithfulness"] == 3.0


def test_a_wrongly_drawn_object_moves_to_a_cell_that_keeps_the_relation():
    """The critic's move_failed with a relation: the purple circle (asked red) goes to the next free
    cell where the circles stay above the square; the right objects keep their cells."""
    drawn = Scene((ShapeObject("circle", "red", "large", "top left"), ShapeObject("circle", "purple", "large", "left"),
                   ShapeObject("square", "blue", "large", "bottom")))
    refined = parse_prompt(_critique(PROMPT, drawn).refined_request).objects
    cells = {(o.colour, o.shape, o.position) for o in refined}
    assert ("red", "circle", "top left") in cells and ("blue", "square", "bottom") in cells
    moved = next(o for o in refined if o.shape == "circle" and o.position != "top left")
    assert moved.position == "centre" and moved.size == "large"  # the first cell after "left", at its drawn size
    assert world.check_relations(parse_prompt(PROMPT), [(o.colour, o.shape, o.position) for o in refined])[0].share == 0
    # without move_failed it stays in its cell at the other size
    kept = parse_prompt(ShapesCritic(move_failed=False).critique(
        [CritiqueRequest("t2i", PROMPT, render(drawn))])[0].refined_request).objects
    assert ("circle", "red", "small", "left") in {(o.shape, o.colour, o.size, o.position) for o in kept}
