"""PARROT generation from preference benchmarks in their published layouts and from the studio's votes.

The fixtures are ``tests.eval_fixtures``' five colour pairs; the scripted teacher explains each
label, so every rationale carries the benchmark's (human) label and its images.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from PIL import Image

from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.types import PairRequest
from studio.cli import main as studio_main
from studio.jobs.context import RecordingContext
from studio.judge import record_vote
from studio.parrot import generate
from studio.parrot.rationale import read_rationales
from studio.store import SessionStore
from tests.eval_fixtures import DECISIVE, PAIRS, WRITERS, genai_t2i, png, struct, write_parquet
from tests.parrot_helpers import SPEC

LABELS = [label for _, _, label, _, _ in PAIRS]


def _generate(tmp_path: Path, **options) -> tuple[Path, dict]:
    ctx = RecordingContext(tmp_path / "gen")
    return ctx.run_dir, generate.run(generate.GenerateConfig(teacher=SPEC, draws=1, **options), ctx)


@pytest.mark.parametrize(("layout", "task", "labels"), [
    ("genai-bench-t2i", "t2i", LABELS),
    ("genai-bench-edit", "edit", LABELS),
    ("editreward-bench", "edit", LABELS),
    ("mmrb2-edit", "edit", [label for _, _, label, _, _ in DECISIVE]),
])
def test_benchmark_rows_become_rationales_with_their_labels_and_images(tmp_path, layout, task, labels):
    data = WRITERS[layout](tmp_path / "data")
    run_dir, summary = _generate(tmp_path, source="benchmark", data=str(data))
    assert (summary["pairs"], summary["rationales"], summary["skipped_rows"]) == (len(labels), len(labels), 0)
    rationales = list(read_rationales(run_dir / "rationales.jsonl"))
    assert [r.label for r in rationales] == labels
    assert {r.task for r in rationales} == {task}
    assert all(r.truth is None for r in rationales)  # human labels, not known truth
    first = rationales[0]
    assert first.pair_id.endswith("-00000") and first.a.parsed is not None
    saved = {key: Image.open(run_dir / path).convert("RGB").getpixel((0, 0)) for key, path in first.images.items() if path}
    assert saved["a"] == (220, 30, 30)  # the first pair's image A is red in every layout
    assert ("source" in saved) == (task == "edit")


def test_benchmark_count_limits_the_rows_and_resume_continues(tmp_path):
    data = WRITERS["genai-bench-t2i"](tmp_path / "data")
    _, first = _generate(tmp_path, source="benchmark", data=str(data), count=2)
    assert first["pairs"] == 2
    ctx = RecordingContext(tmp_path / "gen", resuming=True)
    second = generate.run(generate.GenerateConfig(source="benchmark", data=str(data), teacher=SPEC, draws=1), ctx)
    assert (second["resumed_pairs"], second["pairs"]) == (2, 3)
    assert [r.label for r in read_rationales(ctx.run_dir / "rationales.jsonl")] == LABELS


def test_an_unreadable_row_is_skipped_and_counted_not_the_run(tmp_path):
    records = [{"prompt": f"a red square {i}", "left_image": struct("red"), "right_image": struct("blue"),
                "vote_type": "leftvote"} for i in range(3)]
    records[1]["right_image"] = {"bytes": b"not a png", "path": None}
    data = write_parquet(records, tmp_path / "data" / "broken.parquet")
    run_dir, summary = _generate(tmp_path, source="benchmark", data=str(data))
    assert (summary["pairs"], summary["skipped_rows"]) == (2, 1)
    assert "row 1" in summary["first_skipped"] and "image B" in summary["first_skipped"]
    assert [r.pair_id[-5:] for r in read_rationales(run_dir / "rationales.jsonl")] == ["00000", "00002"]


def test_votes_from_the_store_become_rationales(tmp_path):
    store = SessionStore(tmp_path / "store" / "studio.db")
    for i, (a, b, label, ma, mb) in enumerate(PAIRS):
        images = [Image.open(io.BytesIO(png(colour))).convert("RGB") for colour in (a, b)]
        record_vote(store, PairRequest("t2i", f"a red square {i}", *images), label, model_a=ma, model_b=mb)
    store.close()
    run_dir, summary = _generate(tmp_path, source="votes", store=str(tmp_path / "store"))
    assert summary["pairs"] == 5
    assert (run_dir / "votes" / "votes.jsonl").is_file()  # History's export, kept beside the rationales
    rationales = list(read_rationales(run_dir / "rationales.jsonl"))
    assert [r.label for r in rationales] == LABELS
    assert rationales[3].prompt == "a red square 3" and rationales[0].pair_id == "studio-votes-00000"


def test_votes_need_a_store_with_votes(tmp_path):
    with pytest.raises(NotFoundError, match="No session store"):
        _generate(tmp_path, source="votes", store=str(tmp_path / "nowhere"))
    SessionStore(tmp_path / "empty" / "studio.db").close()
    with pytest.raises(InvalidInputError, match="no votes"):
        _generate(tmp_path, source="votes", store=str(tmp_path / "empty"))


def test_benchmark_source_needs_data_and_a_known_layout():
    with pytest.raises(ConfigError, match="--data"):
        generate.GenerateConfig(source="benchmark").validate()
    with pytest.raises(ConfigError, match="layout"):
        generate.GenerateConfig(source="benchmark", data="x.parquet", layout="imagenet").validate()


def test_cli_generates_from_a_benchmark_folder(tmp_path):
    genai_t2i(tmp_path / "data")
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = studio_main(["parrot", "generate", "--source", "benchmark", "--data", str(tmp_path / "data"),
                              "--layout", "genai-bench-t2i", "--teacher", json.dumps(SPEC), "--draws", "1",
                              "--run-dir", str(tmp_path / "run")])
    assert status == 0
    assert json.loads(stdout.getvalue().strip().splitlines()[-1])["pairs"] == 5
