"""The shapes world: scenes, prompt grammar, edits and the renderer."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.shapes.world import (
    COLOURS,
    EDIT_KINDS,
    POSITIONS,
    SHAPES,
    ObjectSpec,
    PromptSpec,
    Scene,
    ShapeObject,
    ObjectJitter,
    cell_centre,
    detailed_prompt,
    edit_instruction,
    parse_edit,
    parse_prompt,
    random_edit,
    random_scene,
    read_edit,
    render,
    short_prompt,
)

RED_CIRCLES = Scene(
    (
        ShapeObject("circle", "red", "large", "top left"),
        ShapeObject("square", "blue", "small", "centre"),
        ShapeObject("circle", "red", "small", "bottom right"),
    ),
    word="AB",
)


def test_world_constants_cover_the_brief():
    assert len(SHAPES) >= 4 and {"circle", "square", "triangle"} <= set(SHAPES)
    assert len(COLOURS) >= 6
    assert len(POSITIONS) == 9 and POSITIONS[0] == "top left" and POSITIONS[4] == "centre"


def test_scene_keeps_grid_order():
    scene = Scene((ShapeObject("star", "green", "small", "bottom"), ShapeObject("circle", "red", "large", "top")))
    assert [o.position for o in scene.objects] == ["top", "bottom"]


@pytest.mark.parametrize(
    "objects, word",
    [
        ((), None),
        ((ShapeObject("circle", "red", "large", "top"), ShapeObject("star", "blue", "small", "top")), None),
        ((ShapeObject("circle", "red", "large", "top"),), "ABCD"),
        ((ShapeObject("circle", "red", "large", "top"),), "ab"),
    ],
)
def test_scene_rejects_invalid(objects, word):
    with pytest.raises(InvalidInputError):
        Scene(objects, word)


def test_shape_object_rejects_unknown_colour():
    with pytest.raises(InvalidInputError, match="colour"):
        ShapeObject("circle", "magenta", "large", "top")


def test_short_prompt_counts_by_colour_and_shape():
    assert short_prompt(RED_CIRCLES) == 'two red circles and a blue square with the word "AB"'


def test_detailed_prompt_pins_size_and_position():
    assert detailed_prompt(RED_CIRCLES) == (
        "a large red circle at the top left, a small blue square in the centre and "
        'a small red circle at the bottom right with the word "AB"'
    )


def test_short_prompt_uses_an_before_vowels():
    scene = Scene((ShapeObject("star", "orange", "small", "left"),))
    assert short_prompt(scene) == "an orange star"


def test_parse_prompt_short_form_leaves_size_and_position_open():
    spec = parse_prompt(short_prompt(RED_CIRCLES))
    assert spec.word == "AB"
    assert sorted(spec.objects, key=repr) == sorted(
        [ObjectSpec("circle", "red"), ObjectSpec("circle", "red"), ObjectSpec("square", "blue")], key=repr
    )


def test_parse_prompt_round_trips_detailed_form_of_random_scenes():
    rng = random.Random(3)
    for _ in range(200):
        scene = random_scene(rng, word_prob=0.5)
        expected = tuple(ObjectSpec(o.shape, o.colour, o.size, o.position) for o in scene.objects)
        assert parse_prompt(detailed_prompt(scene)) == PromptSpec(expected, scene.word)


def test_parse_prompt_round_trips_short_form_counts():
    rng = random.Random(4)
    for _ in range(200):
        scene = random_scene(rng)
        spec = parse_prompt(short_prompt(scene))
        assert sorted((o.colour, o.shape) for o in spec.objects) == sorted((o.colour, o.shape) for o in scene.objects)
        assert all(o.size is None and o.position is None for o in spec.objects)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A big red circle in the center.", PromptSpec((ObjectSpec("circle", "red", "large", "centre"),))),
        ("an image of 2 blue stars", PromptSpec((ObjectSpec("star", "blue"),) * 2)),
        ('a green square, with the word "ok"', PromptSpec((ObjectSpec("square", "green"),), "OK")),
    ],
)
def test_parse_prompt_accepts_paraphrases(text, expected):
    assert parse_prompt(text) == expected


@pytest.mark.parametrize("text", ["a cat on a sofa", "", "two red circles at the top left", 'with the word "AB"'])
def test_parse_prompt_rejects_what_it_cannot_read(text):
    with pytest.raises(InvalidInputError):
        parse_prompt(text)


def test_random_scene_respects_limits():
    rng = random.Random(5)
    scenes = [random_scene(rng, max_objects=2, word_prob=0.0) for _ in range(100)]
    assert all(1 <= len(s.objects) <= 2 and s.word is None for s in scenes)
    assert {len(s.objects) for s in scenes} == {1, 2}


def test_random_edit_target_matches_parse_edit_for_every_kind():
    rng = random.Random(6)
    seen = set()
    for _ in range(400):
        scene = random_scene(rng, word_prob=0.5)
        edit = random_edit(scene, rng)
        seen.add(edit.kind)
        assert edit.target != scene
        assert 1 <= len(edit.target.objects) <= 4
        assert parse_edit(edit.instruction, scene) == edit.target
        assert read_edit(edit.instruction).kind == edit.kind  # the kind is readable without the source
    assert seen == set(EDIT_KINDS)


def test_read_edit_separates_the_named_object_from_the_change():
    request = read_edit("Make the small red circle at the top left blue, keeping everything else unchanged.")
    assert (request.kind, request.ref, request.colour) == (
        "recolour", ObjectSpec("circle", "red", "small", "top left"), "blue")
    assert read_edit("move the red circle to the centre").position == "centre"
    assert read_edit("make the red circle smaller").size == "small"
    assert read_edit("add a large green star at the top").added == ObjectSpec("star", "green", "large", "top")
    assert read_edit('change the word to "ab"').word == "AB" and read_edit("remove the word").word is None
    with pytest.raises(InvalidInputError, match="one object with its size and position"):
        read_edit("add a green star")


def test_parse_edit_moves_named_object():
    target = parse_edit("Move the red circle at the top left to the top right, keeping everything else unchanged.", RED_CIRCLES)
    assert target.at("top left") is None
    assert target.at("top right") == ShapeObject("circle", "red", "large", "top right")
    assert target.word == "AB" and len(target.objects) == 3


@pytest.mark.parametrize(
    "instruction, message",
    [
        ("make the red circle green", "ambiguous"),
        ("remove the green star", "not in the source"),
        ("add a small green star in the centre", "already holds"),
        ("paint it black", "Could not read"),
    ],
)
def test_parse_edit_explains_refusals(instruction, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_edit(instruction, RED_CIRCLES)


def test_render_is_deterministic_rgb_at_both_sizes():
    for size in (64, 128):
        a, b = render(RED_CIRCLES, size), render(RED_CIRCLES, size)
        assert a.mode == "RGB" and a.size == (size, size)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_render_puts_colours_in_their_cells():
    pixels = np.asarray(render(RED_CIRCLES, 64)).astype(int)
    for obj in RED_CIRCLES.objects:
        x, y = cell_centre(obj.position, 64)
        assert np.abs(pixels[int(y), int(x)] - COLOURS[obj.colour]).max() <= 2
    empty_x, empty_y = cell_centre("top right", 64)
    assert np.abs(pixels[int(empty_y), int(empty_x)] - 245).max() <= 2


def test_render_draws_word_only_when_asked():
    without = Scene(RED_CIRCLES.objects)
    band = slice(52, 64)
    dark = lambda img: int((np.asarray(img)[band].max(axis=2) < 100).sum())  # noqa: E731
    assert dark(render(without)) == 0
    assert dark(render(RED_CIRCLES)) > 20


def test_render_rejects_tiny_size():
    with pytest.raises(InvalidInputError, match="at least"):
        render(RED_CIRCLES, 8)


def test_edit_instruction_explicit_names_positions_and_round_trips():
    rng = random.Random(8)
    for _ in range(200):
        scene = random_scene(rng, word_prob=0.5)
        edit = random_edit(scene, rng)
        explicit = edit_instruction(scene, edit.target, explicit=True)
        assert explicit.endswith(", keeping everything else unchanged")
        assert parse_edit(explicit, scene) == edit.target


def test_edit_instruction_refuses_two_changes():
    two = Scene((ShapeObject("circle", "green", "large", "top left"), ShapeObject("square", "red", "small", "centre")))
    with pytest.raises(InvalidInputError, match="more than one"):
        edit_instruction(RED_CIRCLES, two)


def test_render_jitter_moves_and_tints_only_the_named_object():
    plain = np.asarray(render(RED_CIRCLES)).astype(int)
    jittered = np.asarray(render(RED_CIRCLES, jitter={"centre": ObjectJitter(dx=2, tint=(0, 0, -40))})).astype(int)
    changed_rows, changed_cols = np.nonzero(np.abs(plain - jittered).max(axis=2))
    x, y = cell_centre("centre", 64)
    assert len(changed_rows) > 0
    assert np.abs(changed_cols - x).max() < 10 and np.abs(changed_rows - y).max() < 10
