"""One JSONL reader for votes, PARROT pairs and rationales, and RL prompts: its errors name the line."""

from __future__ import annotations

import pytest

from models.errors import InvalidInputError, NotFoundError
from studio.jsonl import read_jsonl_records


def test_records_skip_blank_lines_and_say_where_they_come_from(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert list(read_jsonl_records(path)) == [("rows.jsonl line 1", {"a": 1}), ("rows.jsonl line 4", {"a": 2})]


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\n{oops\n', "rows.jsonl line 2 is not valid JSON"),
    ('[1, 2]\n', "rows.jsonl line 1 must be a JSON object, got list"),
])
def test_a_bad_line_is_named(tmp_path, text, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message):
        list(read_jsonl_records(path))


def test_a_missing_file_says_what_it_should_hold(tmp_path):
    with pytest.raises(NotFoundError, match="No pairs file at"):
        list(read_jsonl_records(tmp_path / "nope.jsonl", what="pairs"))
