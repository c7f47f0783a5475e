"""What the shapes world reads (``studio.grammar``): requests it cannot read are refused before
anything is generated, with a message saying what it reads; its example requests all read."""

from __future__ import annotations

import json

import pytest

from models.errors import InvalidInputError
from models.shapes import world
from models.shapes.critic_shapes import ShapesCritic
from studio import grammar
from studio.cli import main
from studio.config import LoopSettings
from studio.loop import RefineRequest, refine, resume
from studio.services import Lazy, Services
from studio.store import SessionStore
from tests.studio_fakes import ScriptedCritic, ShapesRenderer, SquaresGenerator, good

UNREADABLE = "a cat playing the piano"


@pytest.fixture
def shapes(tmp_path) -> Services:
    return Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(),
                    t2i_generator=SquaresGenerator(), edit_generator=SquaresGenerator())


def test_an_unreadable_prompt_is_refused_with_what_the_world_reads(shapes):
    with pytest.raises(InvalidInputError) as refused:
        grammar.check_request(shapes, "t2i", UNREADABLE)
    message = str(refused.value)
    assert message.startswith("The shapes world cannot read this prompt")
    assert "'a cat playing the piano'" in message and "circle" in message and "top left" in message
    with pytest.raises(InvalidInputError, match="cannot read this edit instruction.*make the red circle blue"):
        grammar.check_request(shapes, "edit", "make it look nicer")


def test_readable_requests_and_other_critics_pass(shapes, tmp_path):
    grammar.check_request(shapes, "t2i", "two red circles and a small blue square at the top left")
    grammar.check_request(shapes, "t2i", "two red circles above a blue square")
    grammar.check_request(shapes, "edit", "move the red circle to the top left")
    lazy = Services(store=shapes.store, critic=Lazy(ShapesCritic, "shapes", {"backend": "shapes"}))
    assert grammar.shapes_world(lazy) and not lazy.critic.loaded  # told without loading the critic
    other = Services(store=shapes.store, critic=ScriptedCritic([good()]))
    assert not grammar.shapes_world(other)
    grammar.check_request(other, "t2i", UNREADABLE)  # a critic that reads any text


def test_examples_are_written_by_the_grammar_and_read_back():
    prompts = grammar.example_prompts()
    assert len(set(prompts)) == 4 and any("with the word" in p for p in prompts)
    assert any(world.parse_prompt(p).relations for p in prompts)  # a relation example
    assert "above, below, left of, right of, next to" in grammar.vocabulary("t2i")
    for prompt in prompts:
        world.parse_prompt(prompt)
    for scene, instruction in grammar.example_edits():
        world.parse_edit(instruction, scene)


def test_cli_refine_refuses_an_unreadable_prompt_before_generating(shapes, capsys):
    status = main(["refine", UNREADABLE, "--no-progress"], services=shapes)
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert "The shapes world cannot read this prompt" in captured.err and "critic_failed" not in captured.err
    assert shapes.t2i_generator.requests == [] and shapes.store.search_sessions() == []


def _relation_session(tmp_path, capsys) -> tuple[ShapesRenderer, list[dict]]:
    """The README's first example, with a generator that ignores relations (it fills the grid in
    reading order, so "two red circles above a blue square" comes out as one row)."""
    renderer = ShapesRenderer(faulty_calls=0)
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(), t2i_generator=renderer)
    status = main(["refine", RELATION, "--rounds", "3", "--no-progress"], services=services)
    assert status == 0
    return renderer, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _relation_holds(prompt: str) -> bool:
    spec = world.parse_prompt(prompt)
    assert not spec.relations and all(o.position for o in spec.objects)  # the detailed form the generator reads
    seen = [(o.colour, o.shape, o.position) for o in spec.objects]
    return world.check_relations(world.parse_prompt(RELATION), seen)[0].share == 0


RELATION = "two red circles above a blue square"


def test_cli_refine_of_a_relation_prompt_generates_round_1_from_positions_that_satisfy_it(tmp_path, capsys):
    renderer, lines = _relation_session(tmp_path, capsys)
    assert lines[0]["prompt"] == RELATION  # the session keeps the request as the user wrote it
    assert _relation_holds(renderer.requests[0].prompt)
    stopped = lines[-1]
    assert stopped["event"] == "Stopped" and stopped["reason"] == "thresholds_met" and stopped["best"]["round"] == 1


def test_generator_prompt_translates_relations_only(shapes):
    translated = grammar.generator_prompt(shapes, "t2i", RELATION)
    assert translated is not None and _relation_holds(translated)
    assert grammar.generator_prompt(shapes, "t2i", "two red circles and a blue square") is None
    assert grammar.generator_prompt(shapes, "t2i", UNREADABLE) is None
    assert grammar.generator_prompt(shapes, "edit", "move the red circle to the top left") is None
    other = Services(store=shapes.store, critic=ScriptedCritic([good()]))
    assert grammar.generator_prompt(other, "t2i", RELATION) is None


def test_a_relation_session_resumed_before_its_first_round_still_starts_from_positions(tmp_path):
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(),
                        t2i_generator=ShapesRenderer(faulty_calls=0))
    events = refine(RefineRequest("t2i", RELATION), services, LoopSettings())
    session_id = next(events).session_id
    events.close()  # the process stops before round 1
    services.store.close()
    renderer = ShapesRenderer(faulty_calls=0)
    fresh = Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(), t2i_generator=renderer)
    finished = list(resume(session_id, fresh))
    assert _relation_holds(renderer.requests[0].prompt) and finished[-1].reason == "thresholds_met"
