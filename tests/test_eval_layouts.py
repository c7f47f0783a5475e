"""Benchmark layouts: every published layout is detected by its columns and read into the same
rows (labels, models, images decoded only when a row is judged), and bad files say what is wrong."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from models.errors import InvalidInputError
from models.types import PairRequest
from studio.evaluation.layouts import detect_layout, load_rows, row_images
from studio.evaluation.shapes_set import generate_records, parse_shapes_spec
from studio.evaluation.shapes_set import main as shapes_set_main
from studio.evaluation.shapes_set import write_parquet as write_shapes
from studio.judge import record_vote
from studio.store import SessionStore
from tests.eval_fixtures import DECISIVE, PAIRS, RGB, WRITERS, genai_t2i, png, struct, write_parquet

BENCHMARK = {"studio-votes-parquet": "studio-votes"}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_auto_detects_each_layout_and_reads_labels_models_and_images(tmp_path, layout):
    path = WRITERS[layout](tmp_path)
    benchmark, rows = load_rows(str(path))
    assert benchmark == BENCHMARK.get(layout, layout)
    expected = DECISIVE if layout.startswith("mmrb2") else PAIRS
    labels = [p[2] for p in expected]
    if layout == "shapes-t2i":  # the shapes layout knows ties, not both-bad
        labels = ["tie" if label == "both_bad" else label for label in labels]
    assert [row.label for row in rows] == labels
    request = row_images(rows[0])
    assert request.image_a.getpixel((0, 0)) == RGB[expected[0][0]]
    assert request.image_b.getpixel((0, 0)) == RGB[expected[0][1]]
    assert (request.source_image is not None) == (layout.endswith("edit") or layout == "editreward-bench")
    if layout != "shapes-t2i":
        assert [(row.model_a, row.model_b) for row in rows] == [(p[3], p[4]) for p in expected]


def test_mmrb2_task_option_and_named_layout(tmp_path):
    path = WRITERS["mmrb2-t2i"](tmp_path)
    assert load_rows(str(path), layout="mmrb2-edit")[0] == "mmrb2-edit"
    assert load_rows(str(path), task="edit")[0] == "mmrb2-edit"
    with pytest.raises(InvalidInputError, match="disagree"):
        load_rows(str(path), layout="mmrb2-t2i", task="edit")


def test_a_folder_of_parquet_files_is_concatenated_in_name_order(tmp_path):
    first = genai_t2i(tmp_path / "a")
    write_parquet([{"prompt": "late", "left_image": struct("red"), "right_image": struct("blue"),
                    "vote_type": "rightvote", "left_model": "x", "right_model": "y"}], tmp_path / "data" / "2.parquet")
    first.rename(tmp_path / "data" / "1.parquet")
    benchmark, rows = load_rows(str(tmp_path / "data"), limit=None)
    assert benchmark == "genai-bench-t2i"
    assert [row.index for row in rows] == list(range(len(PAIRS) + 1))
    assert rows[-1].prompt == "late" and rows[-1].label == "B"


def test_limit_reads_the_first_rows(tmp_path):
    _, rows = load_rows(str(genai_t2i(tmp_path)), limit=2)
    assert [row.label for row in rows] == ["A", "A"]


def test_unknown_columns_name_what_was_found_and_expected(tmp_path):
    path = write_parquet([{"question": "q", "picture": png("red")}], tmp_path / "odd.parquet")
    with pytest.raises(InvalidInputError) as error:
        load_rows(str(path))
    message = str(error.value)
    assert "['picture', 'question']" in message
    assert "genai-bench-t2i: prompt, left_image, right_image" in message and "--layout" in message


def test_an_explicit_layout_names_its_missing_columns(tmp_path):
    path = genai_t2i(tmp_path)
    with pytest.raises(InvalidInputError, match=r"editreward-bench columns \['instruction'"):
        load_rows(str(path), layout="editreward-bench")


def test_an_unknown_label_is_an_error_naming_the_row_and_value(tmp_path):
    path = write_parquet([{"prompt": "p", "left_image": struct("red"), "right_image": struct("blue"),
                           "vote_type": "leftvote"},
                          {"prompt": "p", "left_image": struct("red"), "right_image": struct("blue"),
                           "vote_type": "maybe"}], tmp_path / "bad.parquet")
    with pytest.raises(InvalidInputError, match=r"row 1: vote_type is 'maybe'"):
        load_rows(str(path))


def test_bad_image_bytes_fail_only_their_row(tmp_path):
    path = write_parquet([
        {"prompt": "p", "left_image": struct("red"), "right_image": struct("blue"), "vote_type": "leftvote"},
        {"prompt": "p", "left_image": {"bytes": b"not a png", "path": None}, "right_image": struct("blue"),
         "vote_type": "leftvote"},
    ], tmp_path / "broken.parquet")
    _, rows = load_rows(str(path))
    row_images(rows[0])
    with pytest.raises(InvalidInputError, match=r"row 1 \(1\): image A: .*not an image format"):
        row_images(rows[1])


def test_missing_data_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="No benchmark file or folder"):
        load_rows(str(tmp_path / "nope.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no .parquet files"):
        load_rows(str(tmp_path / "empty"))


def test_detect_layout_prefers_the_vote_export_over_genai_bench():
    assert detect_layout(["prompt", "left_image", "right_image", "vote_type", "task"]) == "studio-votes"
    assert detect_layout(["prompt", "left_image", "right_image", "vote_type"]) == "genai-bench-t2i"


@pytest.mark.parametrize("text", ["shapes:t2i", "shapes:video:3", "shapes:t2i:0", "shapes:t2i:5:seedx"])
def test_bad_shapes_specs_are_refused(text):
    with pytest.raises(InvalidInputError, match="shapes:TASK:N"):
        parse_shapes_spec(text)


def test_a_shapes_set_is_the_same_generated_or_read_back_from_parquet(tmp_path):
    spec = parse_shapes_spec("shapes:edit:6:seed3")
    assert (spec.task, spec.n, spec.seed) == ("edit", 6, 3)
    generated = load_rows("shapes:edit:6:seed3")
    path = write_shapes(spec, tmp_path / "pairs.parquet")
    read_back = load_rows(str(path))
    assert generated[0] == read_back[0] == "shapes-edit"
    assert [(r.row_id, r.prompt, r.label) for r in generated[1]] == [(r.row_id, r.prompt, r.label) for r in read_back[1]]
    assert [r["label"] for r in generate_records(spec, limit=3)] == [r.label for r in generated[1][:3]]
    assert row_images(read_back[1][0]).source_image is not None


def test_shapes_set_command_writes_a_parquet_the_runner_reads(tmp_path, capsys):
    out = tmp_path / "set.parquet"
    assert shapes_set_main(["shapes:t2i:4:seed2", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert load_rows(str(out))[0] == "shapes-t2i"
    assert shapes_set_main(["shapes:t2i", str(out)]) == 2
    assert "shapes:TASK:N" in capsys.readouterr().err


def test_edit_votes_export_carries_the_source_image(tmp_path):
    store = SessionStore(tmp_path / "s" / "studio.db")
    red, blue, grey = (Image.open(io.BytesIO(png(c))).convert("RGB") for c in ("red", "blue", "grey"))
    record_vote(store, PairRequest("edit", "make it red", red, blue, grey), "A")
    path = store.export_votes(tmp_path / "export", format="parquet")
    store.close()
    benchmark, rows = load_rows(str(path))
    request = row_images(rows[0])
    assert benchmark == "studio-votes" and rows[0].task == "edit" and rows[0].label == "A"
    assert request.source_image.getpixel((0, 0)) == (128, 128, 128)
