"""``bench.rl_heldout``: held-out exact-scene accuracy before and after, with paired per-scene differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.rl_heldout import main, paired_rows
from tests.rl_helpers import untrained_shapes_comparison


def test_paired_rows_per_run_and_pooled_over_runs() -> None:
    before = [True, False, False, True]
    rows = paired_rows("short", before, {"seed 0": [True, True, False, True], "seed 1": [True, True, True, False]})
    assert [r["tuned"] for r in rows] == ["seed 0", "seed 1", "pooled over 2 runs"]
    assert rows[0]["paired_exact"]["difference_points"] == 25.0 and rows[0]["paired_exact"]["lost"] == 0
    assert (rows[1]["paired_exact"]["gained"], rows[1]["paired_exact"]["lost"]) == (2, 1)
    # per scene, the share of runs right: 1, 1, 0.5, 0.5 against 1, 0, 0, 1
    assert rows[2]["paired_exact"]["difference_points"] == 25.0
    assert (rows[2]["paired_exact"]["gained"], rows[2]["paired_exact"]["lost"]) == (2, 1)
    assert len(paired_rows("short", before, {"one run": before})) == 1  # nothing to pool


def test_against_pairs_each_scene_before_and_after(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped generator against an untrained one on the same held-out scenes and seeds: the
    paired rows count the scenes gained and lost in agreement with the rates of each check (the
    analyzer's exact scene, its objects alone, the independent reader); against itself nothing is
    gained or lost."""
    other, config = untrained_shapes_comparison(tmp_path)
    assert main(["--config", str(config), "--against", other, "--n", "6"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    exact = {(r["form"], r["weights"]): r for r in rows if "exact" in r}
    # the analyzer's exact scene, its objects without the word, and the reader that shares no code with it
    for check in ("exact", "objects", "independent"):
        paired = {r["form"]: r[f"paired_{check}"] for r in rows if f"paired_{check}" in r}
        assert set(paired) == {"detailed", "short"}
        for form, result in paired.items():
            n = exact[(form, other)]["n"]
            assert result["n"] == n
            change = round((exact[(form, other)][check] - exact[(form, "assets/shapes-t2i")][check]) * n)
            assert result["gained"] - result["lost"] == change
    # the same folder on both sides draws the same images from the same seeds: nothing changes
    assert main(["--config", str(config), "--against", "assets/shapes-t2i", "--n", "6"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for check in ("paired_exact", "paired_objects", "paired_independent"):
        assert [(r[check]["gained"], r[check]["lost"]) for r in rows if check in r] == [(0, 0)] * 2


def test_the_objects_check_leaves_out_only_the_word() -> None:
    """A drawing with the right objects and a wrong word fails the exact check and passes the
    objects check; a wrong object fails both."""
    from bench.generator_accuracy import objects_only_match, short_match
    from models.shapes import world
    from models.shapes.analyzer import analyze

    scene = world.Scene((world.ShapeObject("circle", "red", "large", "top left"),
                         world.ShapeObject("star", "blue", "small", "bottom right")), "CAT")
    found = analyze(world.render(scene))
    other_word = world.short_prompt(world.Scene(scene.objects, "DOG"))
    assert short_match(world.short_prompt(scene), found) and objects_only_match(world.short_prompt(scene), found)
    assert not short_match(other_word, found) and objects_only_match(other_word, found)
    wrong = world.short_prompt(world.Scene((scene.objects[0], world.ShapeObject("star", "green", "small", "bottom right")), "CAT"))
    assert not objects_only_match(wrong, found)
