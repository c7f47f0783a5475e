"""The generator accuracy bench: its matchers on known renders, and its report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from bench.generator_accuracy import detailed_match, edit_match, main, object_recall, short_match, word_rates
from models.errors import ConfigError, NotFoundError
from models.shapes import world
from models.shapes.analyzer import analyze

SCENE = world.Scene((world.ShapeObject("circle", "red", "large", "top left"),
                     world.ShapeObject("square", "blue", "small", "centre")), None)
RECOLOURED = world.Scene((world.ShapeObject("circle", "green", "large", "top left"), SCENE.objects[1]), None)
MOVED = world.Scene((world.ShapeObject("circle", "red", "large", "bottom right"), SCENE.objects[1]), None)


def test_matchers_accept_the_requested_scene_and_reject_a_wrong_attribute() -> None:
    short, detailed = world.short_prompt(SCENE), world.detailed_prompt(SCENE)
    assert short_match(short, analyze(world.render(SCENE)))
    assert detailed_match(detailed, analyze(world.render(SCENE)))
    assert not short_match(short, analyze(world.render(RECOLOURED)))
    # the short form leaves positions open, the detailed one pins them
    assert short_match(short, analyze(world.render(MOVED)))
    assert not detailed_match(detailed, analyze(world.render(MOVED)))
    assert object_recall(detailed, analyze(world.render(MOVED))) == (1, 2)
    assert edit_match(SCENE, analyze(world.render(SCENE)))
    assert not edit_match(SCENE, analyze(world.render(RECOLOURED)))


def test_word_rates_count_letters_in_their_slots_on_word_scenes_only() -> None:
    asked = [dataclasses.replace(SCENE, word=w) for w in ("CAT", "OX", "Q")] + [SCENE]
    drawn = [dataclasses.replace(SCENE, word=w) for w in ("CAT", "OXX", "Q")] + [dataclasses.replace(SCENE, word="Z")]
    drawn[0] = dataclasses.replace(SCENE, word="COT")
    found = [analyze(world.render(s)) for s in drawn]
    # CAT drawn COT: 2 of 3 letters; OX drawn OXX: wrong length, no letter; Q right; the word-free scene is left out
    assert word_rates(asked, found) == {"word_exact": round(1 / 3, 3), "letters": round(3 / 6, 3)}


def test_report_splits_detailed_accuracy_by_object_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--n", "6", "--steps", "2", "--batch", "6"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 6 and report["steps"] == 2
    from bench.generator_accuracy import heldout_scenes
    # held-out lists grow by appending, so --offset 6 reads scenes the first 6 never include
    assert heldout_scenes(8)[:6] == heldout_scenes(6) and not set(heldout_scenes(8)[6:]) & set(heldout_scenes(6))
    for key in ("short_accuracy", "detailed_accuracy", "edit_success", "detailed_object_recall", "short_letters"):
        assert 0.0 <= report[key] <= 1.0, key
    by_objects = report["detailed_accuracy_by_objects"]
    assert set(by_objects) <= {"1", "2", "3", "4"} and by_objects
    assert all(0.0 <= v <= 1.0 for v in by_objects.values())


def test_one_task_is_measured_from_its_folder_alone(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.shapes.train_generator import EDIT_FOLDER

    (tmp_path / EDIT_FOLDER).symlink_to((Path("assets") / EDIT_FOLDER).resolve())
    assert main(["--assets", str(tmp_path), "--tasks", "edit", "--n", "3", "--steps", "2",
                 "--grid", str(tmp_path / "grid.png")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= report["edit_success"] <= 1.0 and "short_accuracy" not in report
    assert Image.open(tmp_path / "grid.png").height == 3 * 64  # sources, results, targets
    with pytest.raises(ConfigError, match="--offset at least 0"):
        main(["--assets", str(tmp_path), "--tasks", "edit", "--n", "3", "--offset", "-1"])
    with pytest.raises(ConfigError, match="No pipeline folder at .*shapes-t2i"):
        main(["--assets", str(tmp_path), "--tasks", "t2i", "--n", "3", "--steps", "2"])


def test_word_paths_finds_the_shipped_vae_and_t5_keep_letters(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped generator's VAE gives words back and its T5 tells letters apart: what it loses
    of a word, it loses in the transformer."""
    from bench.word_paths import main as word_paths

    assert word_paths(["--words", "6"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["vae_words_read_back"] == 1.0
    assert report["t5_letter_cosine"] < 0.9 < report["t5_other_cosine"]
    with pytest.raises(NotFoundError, match="not a pipeline folder"):
        word_paths(["--model", "assets"])
