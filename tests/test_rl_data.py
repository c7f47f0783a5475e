"""RL prompt data: JSONL rows with their errors, shapes-world prompts that are never held out,
sampler state that resumes the same draws, retirement skipping."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from models.errors import ConfigError, InvalidInputError, JobError, NotFoundError
from models.shapes import world
from models.shapes.train_generator import heldout_scenes
from studio.rl.data import HELDOUT_SCENES, JsonlPrompts, ShapesPrompts, eval_items, read_jsonl


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_rows_with_sources_resolve_relative_paths_and_key_by_source(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    path = _write(tmp_path / "edits.jsonl", [{"prompt": "make it blue", "source_image": "a.png"},
                                             {"prompt": "make it blue", "source_image": "b.png"}])
    items = read_jsonl(path, "edit")
    assert [it.source_path for it in items] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert items[0].key != items[1].key and items[0].source_image().size == (8, 8)


@pytest.mark.parametrize("rows, task, error, message", [
    (["{not json"], "t2i", InvalidInputError, "edits.jsonl line 1 is not valid JSON"),
    ([{"prompt": "  "}], "t2i", InvalidInputError, "no \"prompt\""),
    ([{"prompt": "make it blue"}], "edit", InvalidInputError, "needs a \"source_image\""),
    ([{"prompt": "a cat", "source_image": "a.png"}], "t2i", InvalidInputError, "text-to-image"),
    ([{"prompt": "make it blue", "source_image": "missing.png"}], "edit", NotFoundError, "no source image"),
])
def test_bad_jsonl_rows_name_the_line(tmp_path, rows, task, error, message):
    with pytest.raises(error, match=message):
        read_jsonl(_write(tmp_path / "edits.jsonl", rows), task)


def test_jsonl_source_resumes_the_same_draws_and_skips_retired_prompts(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": f"prompt {i}"} for i in range(5)])
    source = JsonlPrompts(path, "t2i", seed=3)
    source.draw(3, set())
    state = json.loads(json.dumps(source.state()))
    expected = [it.prompt for it in source.draw(4, set())]
    again = JsonlPrompts(path, "t2i", seed=99)
    again.load_state(state)
    assert [it.prompt for it in again.draw(4, set())] == expected
    retired = {("prompt 0", None), ("prompt 1", None)}
    assert all(it.key not in retired for it in source.draw(6, retired))
    with pytest.raises(JobError, match="retired"):
        source.draw(1, {(f"prompt {i}", None) for i in range(5)})


def test_shapes_prompts_never_draw_a_held_out_scene_and_resume():
    source = ShapesPrompts("t2i", "both", seed=0)
    held_out = set(heldout_scenes())
    items = source.draw(300, set())
    assert not any(it.target in held_out for it in items)
    # a short prompt names only shapes and colours: other scenes share a held-out scene's text,
    # and those are left out too (the random stream does draw such texts, so this can fail)
    held_out_texts = {world.short_prompt(s) for s in held_out}
    rng = random.Random(0)
    assert any(world.short_prompt(world.random_scene(rng)) in held_out_texts for _ in range(1000))
    short = ShapesPrompts("t2i", "short", seed=0).draw(1000, set())
    assert not {it.prompt for it in short} & held_out_texts
    assert {it.form for it in items} == {"short", "detailed"}
    state = source.state()
    expected = [it.prompt for it in source.draw(5, set())]
    again = ShapesPrompts("t2i", "both", seed=1)
    again.load_state(json.loads(json.dumps(state)))
    assert [it.prompt for it in again.draw(5, set())] == expected


def test_shapes_edits_carry_their_source_and_target():
    item = ShapesPrompts("edit", seed=0).draw(1, set())[0]
    assert item.source_scene is not None and item.target is not None and item.source_image().size == (64, 64)
    held = eval_items("shapes", None, "edit", 3)
    assert len(held) == 3 and all(it.source_id for it in held)
    assert [it.form for it in eval_items("shapes", None, "t2i", 2)] == ["short", "short", "detailed", "detailed"]
    # scenes past the ones training leaves out are not held out: asking for them is an error
    assert len(eval_items("shapes", None, "t2i", HELDOUT_SCENES)) == 2 * HELDOUT_SCENES
    with pytest.raises(ConfigError, match="kept out of RL training"):
        eval_items("shapes", None, "t2i", HELDOUT_SCENES + 1)
