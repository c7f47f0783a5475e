"""bench.parrot_plot: rows from different bases stay apart, in the table and on the plot."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

import pytest

from bench.parrot_plot import base_name, latest_rows, only_bases, plot, table


def _row(variant: str, base: str | None, pairs: int, correct: int) -> dict:
    row = {"variant": variant, "pairs": pairs, "train": {"step": 100},
           "heldout": {"n": 95, "answered": 95, "correct": correct, "accuracy": round(correct / 95, 4),
                       "verdicts": {"tie": 95 - correct, "A": correct, "B": 0, "failed": 0}},
           "noisy_teacher_heldout": {"n": 95, "answered": 95, "correct": 79, "accuracy": 0.8316}}
    if base is not None:
        row["base"] = base
    return row


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_base_is_named_by_its_folder_and_no_base_is_random_init():
    assert base_name({"base": "/tmp/lead/reads-0/model"}) == "reads-0"
    assert base_name({"base": "runs/shapes-vlm/model"}) == "shapes-vlm"
    assert base_name({"base": "runs/my-base"}) == "my-base"
    assert base_name({"base": "random init"}) == base_name({}) == "random init"


def test_rows_from_two_bases_are_two_lines_and_a_later_row_of_one_base_replaces_only_its_own(tmp_path):
    older = _write(tmp_path / "old.jsonl", [_row("parrot", "runs/shapes-vlm/model", 1000, 24),
                                             _row("parrot", None, 1000, 0)])
    newer = _write(tmp_path / "new.jsonl", [_row("parrot", "/tmp/lead/reads-0/model", 1000, 50),
                                             _row("parrot", "runs/shapes-vlm/model", 1000, 30)])
    rows = latest_rows([older, newer])
    assert {key: row["heldout"]["correct"] for key, row in rows.items()} == {
        ("parrot", "shapes-vlm", 1000): 30, ("parrot", "random init", 1000): 0, ("parrot", "reads-0", 1000): 50}
    text = table(rows)
    assert "| parrot | reads-0 | 1000 | 0.53 (50/95) | 95/95 | 45 / 50 / 0 |" in text
    assert "| parrot | shapes-vlm | 1000 | 0.32 (30/95) |" in text and "| parrot | random init | 1000 |" in text


def test_each_base_is_drawn_in_its_own_shade_of_the_variants_colour(tmp_path):
    rows = latest_rows([_write(tmp_path / "r.jsonl", [
        _row("parrot", None, 250, 10), _row("parrot", None, 1000, 20),
        _row("parrot", "/tmp/lead/reads-0/model", 1000, 50), _row("bt", "/tmp/lead/reads-0/model", 1000, 5)])])
    out = tmp_path / "plot.png"
    plot(rows, out)
    colours = {colour for _, colour in Image.open(out).convert("RGB").getcolors(1 << 20)}
    assert (200, 60, 30) in colours  # parrot from random init: the variant's colour
    assert (110, 33, 16) in colours  # parrot from the second base: the same colour, darker
    assert (22, 49, 110) in colours and (40, 90, 200) not in colours  # bt only from the second base


def test_a_fourth_base_has_its_own_shade_too(tmp_path):
    """Bases after the third are no longer drawn in the third's shade."""
    rows = latest_rows([_write(tmp_path / "r.jsonl", [
        _row("parrot", None, 1000, 10), _row("parrot", "/tmp/a/model", 1000, 20),
        _row("parrot", "/tmp/b/model", 1000, 30), _row("parrot", "/tmp/c/model", 1000, 40)])])
    out = tmp_path / "plot.png"
    plot(rows, out)
    colours = {colour for _, colour in Image.open(out).convert("RGB").getcolors(1 << 20)}
    third = tuple(int(c + (255 - c) * 0.45) for c in (200, 60, 30))
    assert third in colours and (160, 48, 24) in colours  # the third base lighter, the fourth a little darker


def test_the_plot_can_keep_only_some_bases_and_a_misspelt_base_is_an_error(tmp_path):
    rows = latest_rows([_write(tmp_path / "r.jsonl", [
        _row("parrot", None, 1000, 0), _row("parrot", "runs/captions/model", 1000, 44),
        _row("bt", "runs/checks-described/model", 4000, 33)])])
    kept = only_bases(rows, ["captions", "checks-described"])
    assert sorted(kept) == [("bt", "checks-described", 4000), ("parrot", "captions", 1000)]
    assert only_bases(rows, None) == rows
    with pytest.raises(SystemExit, match="checks-describd"):
        only_bases(rows, ["checks-describd"])
