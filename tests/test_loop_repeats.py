"""Later rounds do work: a round whose prompt was already generated with its seed varies the
seed or re-states the request, and a session with nothing new to try stops and says so."""

from __future__ import annotations

from typing import Any

import pytest

from models.base import GenerationResult
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.world import POSITIONS, Scene, ShapeObject, parse_prompt, render
from models.types import GenerationRequest, Task
from studio.config import LoopSettings
from studio.loop import PromptProposed, RefineRequest, RoundStarted, Stopped, refine
from studio.restate import restate
from studio.services import Services
from studio.store import SessionStore

PROMPT = "a blue square and a red circle"


class FlakyShapes:
    """Draws what a shapes prompt asks for, except that red objects come out purple unless
    ``right(prompt, seed)``: a generator whose failure only a new seed or wording gets past."""

    name = "flaky-shapes"
    tasks: tuple[Task, ...] = ("t2i",)

    def __init__(self, right) -> None:
        self.right = right
        self.requests: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One image per seed ``request.seed + i``."""
        self.requests.append(request)
        seeds = [request.seed + i for i in range(request.num_images)]
        return GenerationResult(images=[self.draw(request.prompt, s) for s in seeds], seeds=seeds, settings={})

    def draw(self, prompt: str, seed: int):
        """The requested scene (free cells filled in grid order), red drawn purple when wrong."""
        spec = parse_prompt(prompt)
        free = iter(p for p in POSITIONS if p not in {o.position for o in spec.objects})
        objects = [ShapeObject(o.shape, o.colour, o.size or "large", o.position or next(free)) for o in spec.objects]
        if not self.right(prompt, seed):
            objects = [ShapeObject(o.shape, "purple", o.size, o.position) if o.colour == "red" else o for o in objects]
        return render(Scene(tuple(objects), spec.word))

    def to_config(self) -> dict[str, Any]:
        """Nothing to rebuild."""
        return {}


def _session(tmp_path, generator: FlakyShapes, **settings) -> list:
    # the critic keeps a failed object's wording, so that its refined request repeats
    critic = ShapesCritic(resize_failed=False, move_failed=False)
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=critic, t2i_generator=generator)
    # round 1 from the short request, each round judged against its own prompt: the refined
    # request then repeats the round's prompt once the layout is pinned
    loop = LoopSettings(plateau_rounds=0, first_prompt="request", judge_against="round", **settings)
    return list(refine(RefineRequest("t2i", PROMPT), services, loop))


def test_a_repeated_prompt_is_drawn_with_a_new_seed(tmp_path):
    generator = FlakyShapes(lambda prompt, seed: seed >= 2000)
    events = _session(tmp_path, generator, max_rounds=4, on_repeat="vary_seed")
    rounds = [e for e in events if isinstance(e, RoundStarted)]
    assert [r.seed for r in rounds] == [0, 0, 2000]  # round 3 repeats round 2's prompt
    assert rounds[1].prompt == rounds[2].prompt != PROMPT
    end = events[-1]
    assert end.reason == "thresholds_met" and end.best.round == 3


def test_restate_puts_the_failed_object_first(tmp_path):
    generator = FlakyShapes(lambda prompt, seed: prompt.startswith("a large red circle"))
    events = _session(tmp_path, generator, max_rounds=4, on_repeat="restate")
    rounds = [e for e in events if isinstance(e, RoundStarted)]
    assert rounds[2].prompt.startswith("a large red circle") and rounds[2].seed == 0
    assert parse_prompt(rounds[2].prompt).objects == tuple(reversed(parse_prompt(rounds[1].prompt).objects))
    note = [e for e in events if isinstance(e, PromptProposed)][1].note
    assert "re-stated" in note
    assert events[-1].reason == "thresholds_met" and events[-1].best.round == 3


@pytest.mark.parametrize("settings", [{"on_repeat": "stop"}, {"on_repeat": "vary_seed", "max_tries_per_prompt": 2}])
def test_a_session_with_nothing_new_to_try_stops_with_its_own_reason(tmp_path, settings):
    generator = FlakyShapes(lambda prompt, seed: False)
    events = _session(tmp_path, generator, max_rounds=6, **settings)
    end = events[-1]
    assert isinstance(end, Stopped) and end.reason == "exhausted" and "Nothing new" in end.message
    expected_rounds = 2 if settings["on_repeat"] == "stop" else 3
    assert end.rounds_done == expected_rounds == len(generator.requests)


def test_restate_keeps_the_request_and_a_trailing_word_clause():
    prompt = 'a large red circle at the top left and a small blue square in the centre with the word "OK"'
    restated = restate(prompt, "the small blue square in the centre is missing")
    assert restated == 'a small blue square in the centre and a large red circle at the top left with the word "OK"'
    assert parse_prompt(restated).word == "OK"
    assert restate(prompt, "the edges are blurred") is None
    assert restate("a red circle", "the red circle is missing") is None


def test_bad_repeat_settings_are_refused():
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="on_repeat"):
        LoopSettings(on_repeat="again")
    with pytest.raises(ConfigError, match="max_tries_per_prompt"):
        LoopSettings(max_tries_per_prompt=-1)


def test_cli_refine_takes_the_repeat_settings(tmp_path, capsys):
    import json

    from studio.cli import main

    generator = FlakyShapes(lambda prompt, seed: False)
    # the critic keeps a failed object's wording, so that its refined request repeats
    critic = ShapesCritic(resize_failed=False, move_failed=False)
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=critic, t2i_generator=generator)
    status = main(["refine", PROMPT, "--rounds", "6", "--plateau", "0", "--on-repeat", "stop", "--first-prompt", "request",
                   "--judge-against", "round", "--no-progress"],
                  services=services)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and lines[-1]["reason"] == "exhausted" and len(generator.requests) == 2


class RecordingCritic(ShapesCritic):
    """The shapes critic, remembering the prompt of every critique request."""

    def __init__(self) -> None:
        super().__init__(resize_failed=False, move_failed=False)
        self.prompts: list[str] = []

    def critique(self, requests):
        self.prompts += [r.prompt for r in requests]
        return super().critique(requests)


@pytest.mark.parametrize("judge_against", ["round", "request"])
def test_rounds_are_judged_against_their_own_prompt_or_the_request(tmp_path, judge_against):
    critic = RecordingCritic()
    generator = FlakyShapes(lambda prompt, seed: seed >= 2000)
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=critic, t2i_generator=generator)
    settings = LoopSettings(plateau_rounds=0, max_rounds=3, judge_against=judge_against, first_prompt="request")
    events = list(refine(RefineRequest("t2i", PROMPT), services, settings))
    round_prompts = [e.prompt for e in events if isinstance(e, RoundStarted)]
    assert critic.prompts == (round_prompts if judge_against == "round" else [PROMPT] * len(round_prompts))
    assert events[-1].best.round == 3  # the right image wins either way
