"""Held-out items stay out of training (by scene and by prompt text), the shipped training stream
can be replayed to tell seen evaluation prompts from unseen ones, and the refinement bench's
controls (blind expansion, an independent grader) do what they claim."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from bench.heldout import replay, shipped_steps
from bench.independent_grader import objects_match, read
from bench.refinement_gain import compare, wilson
from models.errors import ConfigError
from models.shapes import world
from models.shapes.expand import expand
from models.shapes.train_generator import ExcludedKeys, SceneStream, StepBatches, TrainConfig, heldout_scenes

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_training_never_draws_a_heldout_scene_or_prompt_text():
    keys = ExcludedKeys.heldout(50)
    stream = SceneStream(0, keys)
    rng = random.Random(1)
    drawn = [stream.scene(rng) for _ in range(600)]
    short_texts = {world.short_prompt(s) for s in heldout_scenes(50)}
    assert not any(s in keys.scenes for s in drawn)
    assert not any(world.short_prompt(s) in short_texts for s in drawn)
    # a scene that is not held out but shares a held-out short prompt is skipped too
    twin = next(s for s in (world.random_scene(random.Random(i)) for i in range(20000))
                if world.short_prompt(s) in short_texts and s not in keys.scenes)
    assert keys.excludes(twin)


def test_heldout_count_is_a_setting_and_checked():
    assert TrainConfig().heldout_n == 400
    with pytest.raises(ConfigError, match="heldout_n"):
        TrainConfig(heldout_n=-1)


def test_replayed_stream_knows_what_a_run_trained_on():
    steps = 3
    seen = replay("t2i", steps)
    cfg = TrainConfig(tasks="t2i", seed=0)
    first = StepBatches(cfg, SceneStream(0, ExcludedKeys(frozenset(heldout_scenes(200)), frozenset())), 0).samples(0)
    assert first.scenes[0] in seen.scenes and len(seen.scenes) <= steps * cfg.batch_t2i
    prompt = next(p for p in first.prompts if p)
    assert seen.is_seen(world.random_scene(random.Random("unrelated")), prompt)
    assert not seen.is_seen(heldout_scenes(1)[0], "a prompt nobody trained on")


def test_shipped_step_counts_come_from_the_folders():
    assert shipped_steps(ASSETS / "shapes-t2i") == 7133
    assert shipped_steps(ASSETS / "shapes-edit") == 12042


def test_blind_expansion_keeps_the_request_and_pins_every_object():
    prompt = 'two red circles and a blue star with the word "OK"'
    texts = {expand(prompt, random.Random(seed)) for seed in range(5)}
    assert len(texts) > 1  # drawn, not fixed
    for text in texts:
        spec = world.parse_prompt(text)
        assert Counter((o.shape, o.colour) for o in spec.objects) == Counter({("circle", "red"): 2, ("star", "blue"): 1})
        assert spec.word == "OK" and all(o.size and o.position for o in spec.objects)


def test_blind_expansion_of_a_relation_prompt_places_the_objects_so_that_it_holds():
    prompt = "two red circles above a blue square"
    for seed in range(10):
        spec = world.parse_prompt(expand(prompt, random.Random(seed)))
        assert not spec.relations and all(o.position for o in spec.objects)
        seen = [(o.colour, o.shape, o.position) for o in spec.objects]
        assert world.check_relations(world.parse_prompt(prompt), seen)[0].share == 0


def test_both_graders_judge_a_relation_on_the_cells_they_read():
    """The analyzer-based matcher and the independent reader: right objects with the relation
    broken do not count as the request."""
    from bench.generator_accuracy import short_match
    from models.shapes.analyzer import analyze

    circle, square = world.ShapeObject("circle", "red", "large", "top"), world.ShapeObject("square", "blue", "small", "bottom")
    kept = world.render(world.Scene((circle, square)))
    flipped = world.render(world.Scene((world.ShapeObject("circle", "red", "large", "bottom left"),
                                        world.ShapeObject("square", "blue", "small", "top"))))
    for prompt in ("a red circle above a blue square", "a blue square below a red circle"):
        assert objects_match(prompt, kept) and short_match(prompt, analyze(kept))
        assert not objects_match(prompt, flipped) and not short_match(prompt, analyze(flipped))
    assert objects_match("a red circle and a blue square", flipped)  # no relation asked: positions free


def test_independent_grader_reads_renders_and_catches_a_wrong_colour():
    rng = random.Random(3)
    for _ in range(20):
        scene = world.random_scene(rng)
        assert sorted(read(world.render(scene))) == sorted((o.shape, o.colour, o.size, o.position) for o in scene.objects)
    scene = world.Scene((world.ShapeObject("star", "yellow", "small", "left"), world.ShapeObject("circle", "red", "large", "top")))
    assert objects_match("a yellow star and a red circle", world.render(scene))
    assert not objects_match("a yellow star and a blue circle", world.render(scene))


def test_wilson_interval_and_paired_compare(tmp_path):
    low, high = wilson(10, 40)
    assert low < 0.25 < high and 0 < low and high < 0.45
    runs = {}
    for arm, grades in (("loop", [True, True, False, True]), ("blind", [True, False, False, False])):
        sessions = [{"prompt": f"p{i}", **{g: [False, False, x] for g in ("analyzer", "analyzer_objects", "independent")}}
                    for i, x in enumerate(grades)]
        runs[arm] = tmp_path / f"{arm}.json"
        runs[arm].write_text(json.dumps({"summary": {"arm": arm}, "sessions": sessions}))
    result = compare(str(runs["loop"]), str(runs["blind"]))
    assert result["analyzer"]["a_minus_b_last_round"]["difference_points"] == 50.0
    assert result["analyzer"]["a_last_minus_a_round_2"]["difference_points"] == 75.0
    both = compare(f"{runs['loop']},{runs['blind']}", f"{runs['loop']},{runs['blind']}")  # several files taken together
    assert both["n"] == 8 and both["analyzer"]["a_minus_b_last_round"]["difference_points"] == 0.0
    with pytest.raises(SystemExit, match="same prompts"):
        compare(str(runs["loop"]), f"{runs['loop']},{runs['blind']}")


def test_loop_diagnostics_redraws_ask_for_the_same_request():
    """The word redraws change only the seed or the wording (the request parses the same), and the
    mostly-wrong redraws keep every requested object, resized or in a fresh layout."""
    from bench.loop_diagnostics import mostly_wrong_variants, word_variants

    prompt = 'a red circle and a blue square with the word "OK"'
    scene = world.Scene((world.ShapeObject("circle", "red", "large", "top"),
                         world.ShapeObject("square", "blue", "small", "left")), "OK")
    asked = Counter((o.shape, o.colour, o.size, o.position) for o in scene.objects)
    words = word_variants(scene, 7)
    assert set(words) == {"word_new_seed", "word_new_seed_2", "word_text_same_seed"}
    for text, seed in words.values():
        spec = world.parse_prompt(text)
        assert Counter((o.shape, o.colour, o.size, o.position) for o in spec.objects) == asked and spec.word == "OK"
    assert len({text for text, _ in words.values()}) == 2 and words["word_text_same_seed"][1] == 7
    redraws = mostly_wrong_variants(prompt, scene, [scene.objects[0]], 7)
    assert "a small red circle at the top" in redraws["mw_resize_same_seed"][0]
    assert redraws["mw_fresh_same_seed"] == (redraws["mw_fresh_new_seed"][0], 7) != redraws["mw_fresh_new_seed"]
    for text, _ in redraws.values():
        assert Counter((o.shape, o.colour) for o in world.parse_prompt(text).objects) == Counter(
            {("circle", "red"): 1, ("square", "blue"): 1})


def test_a_tuned_generator_is_measured_only_on_scenes_rl_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """RL leaves out only the first ``HELDOUT_SCENES`` held-out scenes, so with ``--t2i-lora`` the
    refinement bench refuses to reach past them instead of measuring prompts the tuned generator
    may have trained on; without it the search goes on."""
    import bench.refinement_gain as gain
    from studio.rl.data import HELDOUT_SCENES

    class NothingSeen:
        def is_seen(self, scene: world.Scene, prompt: str) -> bool:
            return False

    monkeypatch.setattr(gain, "shipped", lambda task, assets: NothingSeen())
    prompts, skipped = gain.unseen_prompts(HELDOUT_SCENES, "assets", scenes=HELDOUT_SCENES)
    assert skipped == 0 and prompts == [world.short_prompt(s) for s in heldout_scenes(HELDOUT_SCENES)]
    assert len(gain.unseen_prompts(HELDOUT_SCENES + 1, "assets")[0]) == HELDOUT_SCENES + 1
    with pytest.raises(SystemExit, match="--t2i-lora"):
        gain.main(["--t2i-lora", "runs/any/lora", "--offset", "150", "--n", str(HELDOUT_SCENES - 149)])
