"""The reference critic grades faithfulness by the share of the request that is wrong: an image
showing nothing that was asked for scores 1, loses to a real attempt and is not curated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.world import Scene, ShapeObject, detailed_prompt, render
from models.types import CritiqueRequest, PairRequest
from studio.cli import main
from studio.services import Services
from studio.store import SessionStore

FOUR = Scene(
    (
        ShapeObject("circle", "red", "large", "top left"),
        ShapeObject("square", "blue", "small", "top right"),
        ShapeObject("triangle", "green", "large", "bottom left"),
        ShapeObject("star", "yellow", "large", "bottom right"),
    )
)
BLANKS = {"blank": Image.new("RGB", (64, 64), "white"), "1x1": Image.new("RGB", (1, 1), "white")}


@pytest.fixture(scope="module")
def critic() -> ShapesCritic:
    return ShapesCritic()


def _critique(critic: ShapesCritic, prompt: str, image: Image.Image, task: str = "t2i", source: Image.Image | None = None):
    (result,) = critic.critique([CritiqueRequest(task, prompt, image, source)])  # type: ignore[arg-type]
    assert result.ok, result
    return result


@pytest.mark.parametrize("name", sorted(BLANKS))
def test_nothing_drawn_scores_the_lowest_faithfulness(critic, name):
    result = _critique(critic, "a red circle", BLANKS[name])
    assert result.scores["text_faithfulness"] == 1.0
    assert "missing" in result.justifications["text_faithfulness"]


@pytest.mark.parametrize("name", sorted(BLANKS))
def test_an_empty_canvas_earns_no_quality_credit(critic, name):
    """Drawing nothing must not pay: 0.11 instead of 0.5 for "no noticeable flaws"."""
    result = _critique(critic, 'a red circle with the word "OK"', BLANKS[name])
    assert result.scores["physical_quality"] == 2.0 and "empty" in result.justifications["physical_quality"]
    assert ScoringPolicy.default().score(result) == ScoringPolicy.rl_reward().score(result) == pytest.approx(1 / 9)
    clean_wrong = _critique(critic, "a red circle", render(Scene((ShapeObject("square", "blue", "large", "centre"),))))
    assert clean_wrong.scores["physical_quality"] == 4.0  # a drawn but wrong object keeps its quality credit


@pytest.mark.parametrize("name", sorted(BLANKS))
def test_a_real_attempt_beats_a_blank_image_in_both_orders(critic, name):
    attempt = render(Scene((ShapeObject("circle", "blue", "large", "centre"),)))  # right shape, wrong colour
    policy = ScoringPolicy.default()
    ab, ba = critic.judge(
        [PairRequest("t2i", "a red circle", BLANKS[name], attempt), PairRequest("t2i", "a red circle", attempt, BLANKS[name])]
    )
    assert policy.pairwise_winner(ab) == "B" and policy.pairwise_winner(ba) == "A"


def test_curate_drops_a_blank_image_and_keeps_the_right_one(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    BLANKS["blank"].save(folder / "a_blank.png")
    BLANKS["1x1"].save(folder / "b_tiny.png")
    render(Scene((ShapeObject("circle", "red", "large", "centre"),))).save(folder / "c_right.png")
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(), t2i_generator=None,
                        edit_generator=None, rewriter=None)
    status = main(["curate", str(folder), "--prompt", "a red circle", "--min-score", "0.7", "--no-progress"],
                  services=services)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [(Path(line["image"]).name, line["kept"]) for line in lines] == [
        ("a_blank.png", False), ("b_tiny.png", False), ("c_right.png", True)]


def test_each_missing_object_costs_its_share_of_the_request(critic):
    prompt = detailed_prompt(FOUR)
    scores = []
    for kept in range(5):
        shown = FOUR.objects[:kept]
        image = render(Scene(shown)) if shown else BLANKS["blank"]
        scores.append(_critique(critic, prompt, image).scores["text_faithfulness"])
    assert scores == [1.0, 1.75, 2.5, 3.25, 4.0]


def test_a_wrong_object_never_costs_more_than_a_missing_one(critic):
    wrong = Scene((ShapeObject("square", "blue", "large", "top left"),) + FOUR.objects[1:])  # colour and shape wrong
    missing = Scene(FOUR.objects[1:])
    prompt = detailed_prompt(FOUR)
    judged = _critique(critic, prompt, render(wrong))
    assert judged.scores["text_faithfulness"] == _critique(critic, prompt, render(missing)).scores["text_faithfulness"] == 3.25
    assert "drawn as a square" in judged.justifications["text_faithfulness"]


def test_an_unmade_edit_scores_one_and_a_blank_edit_loses_the_source(critic):
    source = Scene(FOUR.objects[:3])
    source_image = render(source)
    instruction = "make the blue square orange"
    unmade = _critique(critic, instruction, source_image, "edit", source_image)
    assert unmade.scores["text_faithfulness"] == 1.0 and unmade.scores["image_faithfulness"] == 4.0
    blank = _critique(critic, instruction, BLANKS["blank"], "edit", source_image)
    assert blank.scores["text_faithfulness"] == 1.0 and blank.scores["image_faithfulness"] == 1.0
    one_lost = Scene((ShapeObject("square", "orange", "small", "top right"), FOUR.objects[2]))
    half = _critique(critic, instruction, render(one_lost), "edit", source_image)
    assert half.scores["text_faithfulness"] == 4.0 and half.scores["image_faithfulness"] == 2.5


def test_an_unmade_edit_earns_no_quality_credit_and_loses_to_a_weak_attempt(critic):
    """Leaving the source alone keeps everything (Image Faithfulness 4, as the rubric says) but
    has no edited region to credit, so it scores below an attempt that got the colour wrong, and
    above an unmade edit that also changed something else."""
    source = Scene(FOUR.objects[:3])
    source_image = render(source)
    instruction = "make the blue square orange"
    unmade = _critique(critic, instruction, source_image, "edit", source_image)
    assert unmade.scores["physical_quality"] == 2.0 and "not made" in unmade.justifications["physical_quality"]
    assert ScoringPolicy.default().score(unmade) == pytest.approx(4 / 9)  # was 0.67
    assert ScoringPolicy.rl_reward().score(unmade) == pytest.approx(1 / 6)  # was 0.5
    extra = Scene(source.objects + (ShapeObject("star", "purple", "small", "bottom"),))
    unmade_and_more = _critique(critic, instruction, render(extra), "edit", source_image)
    assert unmade_and_more.scores["physical_quality"] == 2.0  # the edited cell still shows the source
    assert ScoringPolicy.default().score(unmade_and_more) < ScoringPolicy.default().score(unmade)
    wrong_colour = Scene((FOUR.objects[0], ShapeObject("square", "red", "small", "top right"), FOUR.objects[2]))
    attempt = _critique(critic, instruction, render(wrong_colour), "edit", source_image)
    assert attempt.scores["physical_quality"] == 4.0
    assert ScoringPolicy.default().score(attempt) > ScoringPolicy.default().score(unmade) + 0.3
    nothing_to_do = _critique(critic, "make the blue square blue", source_image, "edit", source_image)
    assert nothing_to_do.scores["physical_quality"] == 4.0  # an edit that asks for no change is made by keeping it
