"""The shapes-world reference critic: graded scores on hand-built cases, parseable critiques,
refined requests in the generator's language, an imperfect-teacher setting."""

from __future__ import annotations

import random

import pytest

from models.critic.parser import parse_critique, parse_pairwise
from models.critic.prompts import build_pointwise_prompt
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError
from models.registry import load_backend
from models.shapes.analyzer import analyze
from models.shapes.critic_shapes import ShapesCritic, ShapesReferenceChat, perturb
from models.shapes.defects import Defect, apply_edit_fault, apply_fault, render_with_defects
from models.shapes.world import Scene, ShapeObject, describe, detailed_prompt, parse_edit, parse_prompt, render, short_prompt
from models.types import CritiqueFailure, CritiqueRequest, PairRequest

SCENE = Scene(
    (
        ShapeObject("circle", "red", "large", "top left"),
        ShapeObject("square", "blue", "small", "centre"),
        ShapeObject("triangle", "green", "large", "bottom right"),
    ),
    word="OK",
)
POLICY = ScoringPolicy.default()


@pytest.fixture(scope="module")
def critic():
    return ShapesCritic()


def _variant(scene: Scene, kinds: list[str], seed: int = 0):
    """Render ``scene`` with the scene faults and image defects named in ``kinds``."""
    rng = random.Random(seed)
    image_defects = []
    for kind in kinds:
        if kind in ("blur", "noise", "broken", "smudge", "colour_bleed", "merged"):
            image_defects.append(Defect(kind, 0.8))
        else:
            scene, _ = apply_fault(scene, kind, rng, avoid=["top left"] if kind != "wrong_colour" else [])
    return render_with_defects(scene, image_defects, rng)


def _overall(critic, prompt, image, task="t2i", source=None):
    (result,) = critic.critique([CritiqueRequest(task, prompt, image, source)])
    assert result.ok, result
    return result


@pytest.mark.parametrize("form", [short_prompt, detailed_prompt])
def test_correct_beats_single_defect_beats_two_defects(critic, form):
    prompt = form(SCENE)
    correct = _overall(critic, prompt, render(SCENE)).overall
    singles = ["wrong_colour", "missing_object", "extra_object", "wrong_word", "blur", "noise", "smudge", "broken"]
    for kind in singles:
        single = _overall(critic, prompt, _variant(SCENE, [kind])).overall
        double = _overall(critic, prompt, _variant(SCENE, [kind, "wrong_shape" if kind != "wrong_colour" else "noise"])).overall
        assert correct > single > double, (kind, correct, single, double)


def test_detailed_prompt_sees_wrong_position_and_size(critic):
    prompt = detailed_prompt(SCENE)
    assert _overall(critic, prompt, _variant(SCENE, ["wrong_position"])).scores["text_faithfulness"] < 4
    assert _overall(critic, prompt, _variant(SCENE, ["wrong_size"])).scores["text_faithfulness"] < 4


def test_short_prompt_leaves_position_open(critic):
    moved = _variant(SCENE, ["wrong_position"])
    assert _overall(critic, short_prompt(SCENE), moved).scores["text_faithfulness"] == 4


def test_critique_names_the_object_and_refines_in_the_detailed_form(critic):
    wrong = Scene((ShapeObject("circle", "purple", "large", "top left"),) + SCENE.objects[1:], SCENE.word)
    result = _overall(critic, short_prompt(SCENE), render(wrong))
    assert "purple instead of red" in result.justifications["text_faithfulness"]
    assert result.warnings == []
    spec = parse_prompt(result.refined_request)
    assert all(o.size and o.position for o in spec.objects)
    # the circle drawn in the wrong colour is asked for in the next free cell, the rest as drawn
    moved = Scene((ShapeObject("circle", "red", "large", "top"),) + SCENE.objects[1:], SCENE.word)
    assert SCENE.objects[0].position == "top left" and spec == parse_prompt(detailed_prompt(moved))


def test_text_rendering_is_na_without_a_requested_word(critic):
    plain = Scene(SCENE.objects)
    result = _overall(critic, detailed_prompt(plain), render(plain))
    assert result.scores["text_rendering"] is None
    assert result.overall == 1.0


def test_unrequested_word_lowers_text_faithfulness(critic):
    plain = Scene(SCENE.objects)
    result = _overall(critic, detailed_prompt(plain), render(SCENE))
    assert result.scores["text_faithfulness"] < 4 and '"OK"' in result.justifications["text_faithfulness"]


def test_edit_critique_separates_the_edit_from_unrequested_changes(critic):
    instruction = "make the blue square yellow"
    target = parse_edit(instruction, SCENE)
    source_image = render(SCENE)
    done = _overall(critic, instruction, render(target), "edit", source_image)
    not_done = _overall(critic, instruction, source_image, "edit", source_image)
    changed, _ = apply_edit_fault(SCENE, target, "unrequested_change", random.Random(3))
    meddled = _overall(critic, instruction, render(changed), "edit", source_image)
    assert done.scores == {"text_faithfulness": 4, "image_faithfulness": 4, "physical_quality": 4, "text_rendering": 4}
    assert not_done.scores["text_faithfulness"] <= 2 and not_done.scores["image_faithfulness"] == 4
    assert meddled.scores["text_faithfulness"] == 4 and meddled.scores["image_faithfulness"] < 4
    assert parse_edit(not_done.refined_request, SCENE) == target
    assert "keeping everything else unchanged" in not_done.refined_request


def test_pointwise_text_round_trips_through_the_parser():
    chat = ShapesReferenceChat()
    request = CritiqueRequest("t2i", short_prompt(SCENE), _variant(SCENE, ["blur", "missing_object"]))
    (text,) = chat.complete([build_pointwise_prompt(request)])
    parsed = parse_critique(text, "t2i")
    assert parsed.warnings == []
    assert parsed.scores["text_faithfulness"] == 3.0 and parsed.scores["physical_quality"] < 4
    assert parsed.analysis and parsed.summary and parsed.refinement_comments


def test_pairwise_judgement_names_the_better_image(critic):
    bad = _variant(SCENE, ["wrong_colour"])
    (ab,) = critic.judge([PairRequest("t2i", detailed_prompt(SCENE), bad, render(SCENE))])
    assert ab.ok and ab.warnings == []
    assert POLICY.pairwise_winner(ab) == "B" and ab.overall_winner == "B"
    assert ab.dimensions["text_faithfulness"].winner == "B"
    assert parse_pairwise(ab.raw, "t2i").dimensions == ab.dimensions


def test_object_verdicts_name_every_requested_object_with_its_verdict_and_change_no_score(critic):
    bad = _variant(SCENE, ["wrong_colour"])
    requests = [PairRequest("t2i", detailed_prompt(SCENE), bad, render(SCENE))]
    (plain,), (listed,) = critic.judge(requests), ShapesCritic(object_verdicts=True).judge(requests)
    assert listed.ok and listed.warnings == [] and listed.overall_winner == plain.overall_winner == "B"
    assert [(d.score_a, d.score_b, d.winner) for d in listed.dimensions.values()] == [
        (d.score_a, d.score_b, d.winner) for d in plain.dimensions.values()]
    for_a, for_b = listed.dimensions["text_faithfulness"].justification.removeprefix("Image A: ").split(" Image B: ")
    wrong = next(o for o in SCENE.objects if f"{o.shape} " in for_a.split(". ", 1)[1])  # the recoloured object
    names = [f"the {o.size} {o.colour} {o.shape} {'at the' if o.position != 'centre' else 'in the'} {o.position}"
             for o in SCENE.objects]
    assert for_b.startswith("; ".join(f"{name} is drawn" for name in names) + ". All 3 requested")
    assert for_a.startswith("; ".join(f"{name} is {'wrong' if o is wrong else 'drawn'}"
                                      for name, o in zip(names, SCENE.objects)) + ". ")
    assert "instead of" in for_a  # the finding still follows its verdict
    with pytest.raises(ConfigError, match="object_verdicts"):
        ShapesCritic(object_verdicts="yes")


def test_object_sightings_say_what_is_in_each_objects_place_before_its_verdict_and_change_no_score(critic):
    bad = _variant(SCENE, ["wrong_colour"])
    requests = [PairRequest("t2i", detailed_prompt(SCENE), bad, render(SCENE))]
    (plain,), (sighted,) = critic.judge(requests), ShapesCritic(object_sightings=True).judge(requests)
    assert sighted.ok and sighted.warnings == []
    assert [(d.score_a, d.score_b, d.winner) for d in sighted.dimensions.values()] == [
        (d.score_a, d.score_b, d.winner) for d in plain.dimensions.values()]
    for_a, for_b = sighted.dimensions["text_faithfulness"].justification.removeprefix("Image A: ").split(" Image B: ")
    names = [describe(o, article=False) for o in SCENE.objects]
    assert for_b.startswith("; ".join(f"the {name} (seen: {name}) is drawn" for name in names) + ". All 3")
    items = for_a.split(". ", 1)[0].split("; ")
    wrong = [item for item in items if item.endswith(" is wrong")]
    assert len(items) == 3 and len(wrong) == 1  # the recoloured object: the same place and shape, another colour
    asked, seen = wrong[0].removeprefix("the ").removesuffix(") is wrong").split(" (seen: ")
    asked_words, seen_words = asked.split(), seen.split()
    assert len(asked_words) == len(seen_words) and sum(a != b for a, b in zip(asked_words, seen_words)) == 1
    with pytest.raises(ConfigError, match="object_sightings"):
        ShapesCritic(object_sightings=1)


def test_non_shapes_prompt_is_a_failure_not_a_score(critic):
    (result,) = critic.critique([CritiqueRequest("t2i", "a cat sleeping on a sofa", render(SCENE))])
    assert isinstance(result, CritiqueFailure)
    assert "cannot judge" in result.reason


def test_perception_noise_misses_or_confuses_objects():
    seen = analyze(render(SCENE))
    rng = random.Random(0)
    noisy = [perturb(seen, 0.5, rng) for _ in range(40)]
    assert any(len(n.objects) < 3 for n in noisy)
    assert any(len(n.objects) == 3 and n.objects != seen.objects for n in noisy)
    assert perturb(seen, 0.0, rng) == seen


def test_noisy_critic_is_seeded():
    image = render(SCENE)
    runs = [
        [r.overall for r in ShapesCritic(perception_noise=0.5, seed=4).critique([CritiqueRequest("t2i", short_prompt(SCENE), image)] * 5)]
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and min(runs[0]) < 1.0


def test_settings_are_checked_and_recorded():
    with pytest.raises(ConfigError, match="perception_noise"):
        ShapesCritic(perception_noise=1.5)
    config = ShapesCritic(perception_noise=0.2, seed=3).to_config()
    assert config == {"perception_noise": 0.2, "seed": 3, "resize_failed": True, "fresh_layout": True, "move_failed": True,
                      "object_verdicts": False, "object_sightings": False, "parse_retries": 1}
    assert load_backend("critic", "shapes", **config).to_config() == config
