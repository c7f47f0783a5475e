"""The Training tab's view of a PARROT filter job's rationales (``studio.ui.rationales_adapt``):
pages of pairs with their images, label, re-predicted preference, and critique or rejection reason."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from models.errors import InvalidInputError, NotFoundError
from studio.jobs.context import RecordingContext
from studio.parrot import filter as parrot_filter, generate
from studio.ui import rationales_adapt
from tests.parrot_helpers import SPEC, write_pairs

PAIRS = [("a red circle", "A"), ("a blue square", "B"), ("two red circles, contrary", "A"),
         ("a green star, garbage", "B"), ("a yellow star <script>alert(1)</script>", "A"), ("a big circle", "tie")]


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a filter job over six scripted rationales: 4 kept, 2 rejected."""
    tmp = tmp_path_factory.mktemp("rationales")
    gen = RecordingContext(tmp / "gen")
    generate.run(generate.GenerateConfig(source="jsonl", pairs=str(write_pairs(tmp, PAIRS)), teacher=SPEC, draws=1), gen)
    out = RecordingContext(tmp / "filter")
    parrot_filter.run(parrot_filter.FilterConfig(rationales=str(gen.run_dir / "rationales.jsonl")), out)
    return out.run_dir


def test_only_a_filter_job_has_rationale_files(filtered):
    files = rationales_adapt.filter_files({"kind": "parrot-filter", "folder": str(filtered)})
    assert files == {"kept": filtered / "kept.jsonl", "rejected": filtered / "rejected.jsonl"}
    assert rationales_adapt.filter_files({"kind": "eval", "folder": str(filtered)}) is None


def test_pages_are_read_by_offset_and_clamped(filtered):
    path = filtered / "kept.jsonl"
    first = rationales_adapt.read_page(path, 1, size=3)
    assert (first.total, first.pages, first.page) == (4, 2, 1)
    assert [r.pair_id for r in first.rationales] == ["p0", "p1", "p4"]
    last = rationales_adapt.read_page(path, 99, size=3)
    assert (last.page, [r.pair_id for r in last.rationales]) == (2, ["p5"])
    assert rationales_adapt.read_page(path, -5, size=3).page == 1


def test_a_grown_file_is_indexed_again(filtered, tmp_path):
    path = tmp_path / "kept.jsonl"
    lines = (filtered / "kept.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2]), encoding="utf-8")
    assert rationales_adapt.read_page(path, 1).total == 2
    path.write_text("".join(lines) + "\n", encoding="utf-8")  # a blank line is no record
    assert rationales_adapt.read_page(path, 1).total == 4


def test_kept_rows_show_the_images_label_prediction_and_critiques(filtered):
    found = rationales_adapt.read_page(filtered / "kept.jsonl", 1)
    page = rationales_adapt.page_html(found, filtered, "kept")
    assert "Kept: 4 rationale(s), page 1 of 1." in page
    rows = page.split("<tr class='rationale-row'>")[1:]
    assert len(rows) == 4
    assert "Label: <b class='rationale-label'>A</b>" in rows[0]
    assert "Re-predicted: <b class='rationale-predicted'>A</b>" in rows[0]
    assert "Text Faithfulness 3.50" in rows[0] and "justifications" in rows[0]
    # both images inline, the labelled one framed, each decodable to the image the pair saved
    images = re.findall(r"<img src='data:image/png;base64,([^']+)' alt='image (A|B)'", rows[0])
    assert [name for _, name in images] == ["A", "B"]
    assert "rationale-image rationale-chosen" in rows[0].split("alt='image A'")[0]
    decoded = Image.open(io.BytesIO(base64.b64decode(images[0][0]))).convert("RGB")
    saved = Image.open(filtered / found.rationales[0].images["a"]).convert("RGB")
    assert decoded.tobytes() == saved.resize(decoded.size).tobytes()
    # the request is text, never markup
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_rejected_rows_say_why(filtered):
    page = rationales_adapt.page_html(rationales_adapt.read_page(filtered / "rejected.jsonl", 1), filtered, "rejected")
    assert "Rejected: 2 rationale(s)" in page and "Why rejected" in page
    assert "<b>scores_disagree</b>: its own scores re-predict another preference than the label" in page
    assert "Re-predicted: <b class='rationale-predicted'>B</b>" in page  # p2: label A, scores say B
    assert "<b>malformed</b>: a critique did not parse" in page
    assert "I rather like this picture." in page  # the unparsed teacher text, folded


def test_a_missing_file_or_a_bad_record_is_named(filtered, tmp_path):
    with pytest.raises(NotFoundError, match="No rationale file"):
        rationales_adapt.read_page(tmp_path / "kept.jsonl", 1)
    bad = tmp_path / "rejected.jsonl"
    bad.write_text((filtered / "kept.jsonl").read_text(encoding="utf-8") + '{"pair_id": "x"}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="record 5"):
        rationales_adapt.read_page(bad, 2, size=4)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert "No kept rationales." in rationales_adapt.page_html(rationales_adapt.read_page(empty, 1), tmp_path, "kept")
