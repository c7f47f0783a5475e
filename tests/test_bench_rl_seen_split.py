"""``bench.rl_seen_split``: a generator's held-out short-prompt accuracy, split by whether the
shipped generator trained on the prompt's text."""

from __future__ import annotations

import json

import pytest

from bench.heldout import shipped
from bench.rl_seen_split import main
from models.shapes import world
from models.shapes.train_generator import heldout_scenes


def test_the_split_counts_every_held_out_prompt_once(capsys: pytest.CaptureFixture[str]) -> None:
    n = 12
    assert main(["--t2i", "assets/shapes-t2i", "--n", str(n)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    seen = shipped("t2i", "assets")
    expected_seen = sum(seen.is_seen(s, world.short_prompt(s)) for s in heldout_scenes(n))
    assert 0 < expected_seen < n  # both groups are present, so the split is tested
    assert (row["seen"][1], row["unseen"][1]) == (expected_seen, n - expected_seen)
    assert row["lora"] is None and row["exact"] == round((row["seen"][0] + row["unseen"][0]) / n, 3)


def test_more_scenes_than_rl_leaves_out_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--t2i", "assets/shapes-t2i", "--n", "201"])
