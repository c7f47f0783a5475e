"""The critique carries what a blind expansion lacks: the loop can start from an expansion of
the request, and the critic's refined request changes the clause of the object that failed
(its size) while keeping the objects that came out right, so that with the same seed the next
round redraws only that object."""

from __future__ import annotations

import random

import pytest

from models.errors import ConfigError, InvalidInputError
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.expand import expand, expansion_rng
from models.shapes.world import Scene, ShapeObject, parse_prompt, render
from models.types import CritiqueRequest
from studio.config import LoopSettings
from studio.loop import RefineRequest, RoundStarted, SessionStarted, refine, resume
from studio.services import Services
from studio.store import SessionStore
from tests.test_loop_repeats import FlakyShapes

PROMPT = "a blue square and a red circle"


def _refined(critic: ShapesCritic, prompt: str, scene: Scene) -> str:
    (result,) = critic.critique([CritiqueRequest("t2i", prompt, render(scene))])
    assert result.ok, result
    return result.refined_request


def test_the_refined_request_resizes_only_the_object_drawn_wrong():
    drawn = Scene((ShapeObject("square", "blue", "large", "top left"), ShapeObject("circle", "purple", "large", "top")))
    resized = parse_prompt(_refined(ShapesCritic(move_failed=False), PROMPT, drawn)).objects
    assert {(o.shape, o.colour, o.size, o.position) for o in resized} == {
        ("square", "blue", "large", "top left"), ("circle", "red", "small", "top")}
    kept = parse_prompt(_refined(ShapesCritic(resize_failed=False, move_failed=False), PROMPT, drawn)).objects
    assert {(o.colour, o.size) for o in kept} == {("blue", "large"), ("red", "large")}
    # a size the user asked for is never changed
    asked = parse_prompt(_refined(ShapesCritic(move_failed=False), "a blue square and a large red circle", drawn)).objects
    assert {(o.colour, o.size) for o in asked} == {("blue", "large"), ("red", "large")}


def test_move_failed_moves_the_wrong_object_to_the_next_free_cell_and_keeps_the_rest():
    drawn = Scene((ShapeObject("square", "blue", "large", "top left"), ShapeObject("circle", "purple", "small", "top")))
    moved = parse_prompt(_refined(ShapesCritic(move_failed=True), PROMPT, drawn)).objects
    assert {(o.shape, o.colour, o.size, o.position) for o in moved} == {
        ("square", "blue", "large", "top left"), ("circle", "red", "small", "top right")}
    # a position the request fixes is kept; the object is resized there instead
    fixed = parse_prompt(_refined(ShapesCritic(move_failed=True), "a blue square and a red circle at the top", drawn)).objects
    assert ("circle", "red", "large", "top") in {(o.shape, o.colour, o.size, o.position) for o in fixed}
    with pytest.raises(ConfigError, match="move_failed"):
        ShapesCritic(move_failed="no")  # type: ignore[arg-type]


def test_resize_failed_is_checked():
    with pytest.raises(ConfigError, match="resize_failed"):
        ShapesCritic(resize_failed="yes")  # type: ignore[arg-type]
    assert ShapesCritic(resize_failed=False).completer.to_config()["resize_failed"] is False


def test_most_objects_failed_gives_a_fresh_expansion_and_a_few_keep_the_layout():
    prompt = "a blue square, a red circle and a large green star at the bottom"
    mostly_wrong = Scene((ShapeObject("square", "purple", "large", "top left"),
                          ShapeObject("circle", "red", "small", "top"),
                          ShapeObject("diamond", "green", "large", "bottom")))
    fresh = ShapesCritic()  # on by default
    texts = {_refined(ShapesCritic(seed=s), prompt, mostly_wrong) for s in range(6)}
    assert len(texts) > 1  # fresh cells and sizes, not the drawn layout
    for text in texts:
        asked = {(o.shape, o.colour) for o in parse_prompt(text).objects}
        assert asked == {("square", "blue"), ("circle", "red"), ("star", "green")}
        # what the request fixes stays fixed
        assert ("star", "green", "large", "bottom") in {(o.shape, o.colour, o.size, o.position)
                                                        for o in parse_prompt(text).objects}
    assert _refined(fresh, prompt, mostly_wrong) == _refined(fresh, prompt, mostly_wrong)  # the same image, the same layout
    # without the setting, or with most objects right, the drawn layout is kept and the failed object resized
    pinned = _refined(ShapesCritic(fresh_layout=False, move_failed=False), prompt, mostly_wrong)
    assert "small blue square at the top left" in pinned and "small red circle at the top" in pinned
    one_wrong = Scene(mostly_wrong.objects[:2] + (ShapeObject("star", "green", "large", "bottom"),))
    assert _refined(fresh, prompt, one_wrong) == _refined(ShapesCritic(fresh_layout=False), prompt, one_wrong)
    # a request no expansion can lay out (two objects fixed in one cell) is still judged, its layout pinned
    crowded = "a red circle at the top and a blue square at the top"
    drawn = Scene((ShapeObject("circle", "green", "large", "top"), ShapeObject("triangle", "blue", "large", "left")))
    assert _refined(fresh, crowded, drawn) == _refined(ShapesCritic(fresh_layout=False), crowded, drawn)
    with pytest.raises(ConfigError, match="fresh_layout"):
        ShapesCritic(fresh_layout=1)  # type: ignore[arg-type]


def test_expansion_keeps_what_the_request_fixes_and_draws_the_rest():
    texts = {expand('a large red circle at the top and two blue stars with the word "OK"', random.Random(s))
             for s in range(6)}
    assert len(texts) > 1
    for text in texts:
        spec = parse_prompt(text)
        assert ("circle", "red", "large", "top") in {(o.shape, o.colour, o.size, o.position) for o in spec.objects}
        assert sorted(o.colour for o in spec.objects) == ["blue", "blue", "red"] and spec.word == "OK"
        assert all(o.size and o.position for o in spec.objects)
    assert expand(PROMPT, expansion_rng(3)) == expand(PROMPT, expansion_rng(3))
    with pytest.raises(InvalidInputError, match="one cell"):
        expand("a red circle at the top and a blue square at the top", random.Random(0))


def _services(tmp_path, generator, critic=None) -> Services:
    return Services(store=SessionStore(tmp_path / "studio.db"), critic=critic or ShapesCritic(), t2i_generator=generator)


def _red_circle_cell(prompt: str) -> str | None:
    return next(o.position for o in parse_prompt(prompt).objects if (o.shape, o.colour) == ("circle", "red"))


def test_an_expanded_session_starts_from_the_detailed_form_and_keeps_the_request(tmp_path):
    first = expand(PROMPT, expansion_rng(5))
    # the red circle comes out purple in round 1's cell, right anywhere else
    generator = FlakyShapes(lambda prompt, seed: _red_circle_cell(prompt) != _red_circle_cell(first))
    services = _services(tmp_path, generator)
    settings = LoopSettings(first_prompt="expanded", judge_against="request", plateau_rounds=0, seed=5)
    events = list(refine(RefineRequest("t2i", PROMPT), services, settings))
    rounds = [e for e in events if isinstance(e, RoundStarted)]
    assert rounds[0].prompt == first != PROMPT
    assert [e for e in events if isinstance(e, SessionStarted)][0].prompt == PROMPT
    end = events[-1]
    # the critic moved the failed circle to another cell and kept the blue square where it was drawn
    assert end.reason == "thresholds_met" and _red_circle_cell(end.best.prompt) != _red_circle_cell(first)
    square = next(o for o in parse_prompt(first).objects if o.shape == "square")
    assert square in parse_prompt(end.best.prompt).objects
    assert services.store.get_session(end.session_id)["prompt"] == PROMPT
    # the seed stays while the failed object's clause changes: only that object is redrawn
    assert len(rounds) == 2 and rounds[0].seed == rounds[1].seed == 5


def test_a_resumed_session_without_rounds_starts_from_the_same_expansion(tmp_path):
    generator = FlakyShapes(lambda prompt, seed: True)
    services = _services(tmp_path, generator)
    settings = LoopSettings(first_prompt="expanded", seed=3)
    stream = refine(RefineRequest("t2i", PROMPT), services, settings)
    started = next(stream)
    next(stream)  # RoundStarted
    stream.close()  # the viewer left before round 1 was done
    events = list(resume(started.session_id, services))
    assert [e for e in events if isinstance(e, RoundStarted)][0].prompt == expand(PROMPT, expansion_rng(3))


def test_an_unreadable_request_is_refused_before_the_session_starts(tmp_path):
    services = _services(tmp_path, FlakyShapes(lambda prompt, seed: True))
    with pytest.raises(InvalidInputError, match="Could not read"):
        refine(RefineRequest("t2i", "a cat on a sofa"), services, LoopSettings(first_prompt="expanded"))
    with pytest.raises(ConfigError, match="first_prompt"):
        LoopSettings(first_prompt="longer")  # type: ignore[arg-type]


def test_the_cli_starts_from_the_expansion(tmp_path, capsys):
    import json

    from studio.cli import main

    services = _services(tmp_path, FlakyShapes(lambda prompt, seed: True))
    status = main(["refine", PROMPT, "--first-prompt", "expanded", "--seed", "5", "--no-progress"], services=services)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [line["prompt"] for line in lines if line["event"] == "RoundStarted"] == [expand(PROMPT, expansion_rng(5))]
