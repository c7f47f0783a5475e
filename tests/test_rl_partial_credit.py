"""The mixed RL reward of ``bench.rl_partial_credit``: the critic's reward plus prompt-dependent
partial credit, read by the RL reward path as a scalar."""

from __future__ import annotations

import pytest

from bench.rl_partial_credit import PartialCreditCritic
from bench.rl_sanity import colour_match
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError
from models.shapes import world
from models.types import CritiqueFailure, CritiqueRequest
from studio.rl.reward import score_results

SCENE = world.Scene((world.ShapeObject("circle", "red", "large", "top left"),
                     world.ShapeObject("square", "blue", "small", "centre")))
PROMPT = world.short_prompt(SCENE)
OTHER = "a green star and a yellow triangle"


def _rewards(critic: PartialCreditCritic, prompts: list[str]) -> list[float | None]:
    image = world.render(SCENE)
    requests = [CritiqueRequest("t2i", p, image) for p in prompts]
    return [s.reward for s in score_results(critic.critique(requests), ScoringPolicy.rl_reward())]


def test_the_base_reward_alone_is_the_critics_weighted_reward():
    critic = PartialCreditCritic(weights={"text_faithfulness": 1.0})
    base = critic.base.critique([CritiqueRequest("t2i", p, world.render(SCENE)) for p in (PROMPT, OTHER)])
    expected = [ScoringPolicy(weights={"text_faithfulness": 1.0}).score(c) for c in base]
    assert _rewards(critic, [PROMPT, OTHER]) == pytest.approx(expected)
    assert expected[0] > expected[1]


def test_partial_credit_is_mixed_in_by_weight():
    only_colour = PartialCreditCritic(weights={"text_faithfulness": 1.0}, weight=0.0, terms={"colour_match": 1.0})
    image = world.render(SCENE)
    assert _rewards(only_colour, [PROMPT, OTHER]) == pytest.approx([colour_match(image, PROMPT), 0.0])
    half = PartialCreditCritic(weights={"text_faithfulness": 1.0}, terms={"colour_match": 1.0})
    base = PartialCreditCritic(weights={"text_faithfulness": 1.0})
    assert _rewards(half, [PROMPT])[0] == pytest.approx((_rewards(base, [PROMPT])[0] + colour_match(image, PROMPT)) / 2)


def test_a_failed_base_critique_stays_a_failure(monkeypatch):
    critic = PartialCreditCritic(weights={"text_faithfulness": 1.0}, terms={"colour_match": 1.0})
    monkeypatch.setattr(critic.base, "critique", lambda requests: [CritiqueFailure("timeout") for _ in requests])
    [scored] = score_results(critic.critique([CritiqueRequest("t2i", PROMPT, world.render(SCENE))]),
                             ScoringPolicy.rl_reward())
    assert scored.reward is None and scored.failure == "timeout"


def test_an_image_whose_terms_cannot_be_scored_fails_alone(monkeypatch):
    critic = PartialCreditCritic(weights={"text_faithfulness": 1.0}, terms={"colour_match": 1.0})
    judged = critic.base.critique([CritiqueRequest("t2i", PROMPT, world.render(SCENE))])[0]
    monkeypatch.setattr(critic.base, "critique", lambda requests: [judged for _ in requests])  # judges any prompt
    requests = [CritiqueRequest("t2i", p, world.render(SCENE)) for p in ("a photo of a cat on a sofa", PROMPT)]
    cat, shapes = score_results(critic.critique(requests), ScoringPolicy.rl_reward())
    assert cat.reward is None and "partial credit" in cat.failure and "a photo of a cat" in cat.failure
    assert shapes.reward is not None and shapes.reward > 0


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="Unknown partial-credit"):
        PartialCreditCritic(terms={"sharpness": 1.0})
    with pytest.raises(ConfigError):
        PartialCreditCritic(weight=0.0)
