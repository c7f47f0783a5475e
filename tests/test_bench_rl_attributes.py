"""``bench.rl_attributes``: what a generator drew, attribute by attribute, against the scene asked for."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.rl_attributes import attribute_rates, main
from models.errors import ConfigError
from models.shapes import world
from models.shapes.world import Scene, ShapeObject
from studio.rl.data import PromptItem
from tests.rl_helpers import untrained_shapes_comparison

SCENE = Scene((ShapeObject("circle", "red", "small", "top left"), ShapeObject("star", "blue", "large", "centre")), "AB")


def items(form: str) -> list[PromptItem]:
    prompt = world.detailed_prompt(SCENE) if form == "detailed" else world.short_prompt(SCENE)
    return [PromptItem(prompt, form=form, target=SCENE)]


def test_the_scene_asked_for_scores_every_attribute_right() -> None:
    rates = attribute_rates(items("detailed"), [world.render(SCENE)])
    assert rates["object_found"] == rates["object_exact"] == rates["object_position_shape_colour"] == 1.0
    assert rates["exact"] == rates["count"] == rates["word"] == 1.0
    assert rates["object_shape"] == rates["object_colour"] == 1.0
    assert rates["extra"] == 0.0 and rates["objects"] == 2 and rates["large_share"] == 0.5
    assert not [k for k in rates if k.startswith("drawn_as/")]


def test_a_small_object_drawn_large_loses_only_its_size() -> None:
    drawn = replace(SCENE, objects=(replace(SCENE.objects[0], size="large"), SCENE.objects[1]))
    rates = attribute_rates(items("detailed"), [world.render(drawn)])
    assert rates["object_found"] == rates["object_position_shape_colour"] == 1.0
    assert rates["object_exact"] == 0.5 and rates["exact"] == 0.0
    assert rates["large_share"] == 1.0 and rates["word"] == 1.0


def test_a_short_prompt_leaves_size_and_position_free_but_counts_a_missing_word() -> None:
    moved = Scene((ShapeObject("circle", "red", "large", "bottom right"), ShapeObject("star", "blue", "large", "top")), None)
    rates = attribute_rates(items("short"), [world.render(moved)])
    assert rates["object_found"] == 1.0 and "object_exact" not in rates
    assert rates["word"] == 0.0 and rates["exact"] == 0.0 and rates["count"] == 1.0


def test_a_star_drawn_as_a_circle_is_counted_as_that_confusion() -> None:
    drawn = replace(SCENE, objects=(SCENE.objects[0], replace(SCENE.objects[1], shape="circle")))
    rates = attribute_rates(items("detailed"), [world.render(drawn)])
    assert rates["object_shape"] == 0.5 and rates["object_colour"] == 1.0
    assert rates["drawn_as/star->circle"] == 1.0


def test_ink_in_a_colour_the_prompt_does_not_name_lowers_the_colour_match() -> None:
    right = attribute_rates(items("short"), [world.render(SCENE)])["colour_match"]
    drawn = replace(SCENE, objects=(SCENE.objects[0], replace(SCENE.objects[1], colour="green")))
    wrong = attribute_rates(items("short"), [world.render(drawn)])["colour_match"]
    assert right > wrong + 0.3


def test_against_compares_the_configs_generator_with_another_folder(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``--against FOLDER``: the config's generator and another folder draw the same held-out
    prompts, each with its own weights, and the rows name each folder."""
    other, config = untrained_shapes_comparison(tmp_path)
    assert main(["--config", str(config), "--against", other, "--n", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    drawn = {(r["form"], r["weights"]): r for r in rows if "weights" in r}
    assert set(drawn) == {(f, w) for f in ("detailed", "short") for w in ("assets/shapes-t2i", other)}
    assert drawn[("detailed", "assets/shapes-t2i")]["object_found"] > drawn[("detailed", other)]["object_found"]
    for argv in ([str(tmp_path), "--against", other], []):  # a run folder and --against, or neither
        with pytest.raises(ConfigError, match="exactly one of them"):
            main(["--config", str(config), *argv])
