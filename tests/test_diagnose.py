"""Diagnose one image or a batch, and export the table."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from models.errors import InvalidInputError
from models.types import CritiqueRequest
from studio.diagnose import BatchItem, diagnose, diagnose_many, load_batch, write_csv
from tests.studio_fakes import ScriptedCritic, make_services

RED = Image.new("RGB", (16, 16), (255, 0, 0))


def test_diagnose_returns_chart_summary_and_refined_request(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([{"text_faithfulness": 3.0, "physical_quality": 2.0}]))
    result = diagnose(CritiqueRequest("t2i", "a red square", RED), services)
    assert result.chart == [("Text Faithfulness", 3.0), ("Physical and Visual Quality", 2.0), ("Text Rendering", None)]
    assert result.score == pytest.approx((2.5 - 1) / 3)
    assert (result.summary, result.refined_request, result.ok) == ("ok", "a red square v1", True)
    assert services.store.get_critique(result.critique_id).scores["text_faithfulness"] == 3.0


def test_diagnose_failure_is_not_scored(tmp_path):
    services = make_services(tmp_path, ScriptedCritic(["no dimension parsed"]))
    result = diagnose(CritiqueRequest("t2i", "a red square", RED), services)
    assert (result.ok, result.score, result.summary) == (False, None, None)
    assert all(score is None for _, score in result.chart)


def test_diagnose_edit_charts_four_dimensions_and_needs_source(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([{"text_faithfulness": 3.0, "image_faithfulness": 4.0}]))
    with pytest.raises(InvalidInputError, match="source image"):
        diagnose(CritiqueRequest("edit", "make it blue", RED), services)
    result = diagnose(CritiqueRequest("edit", "make it blue", RED, source_image=RED), services)
    assert [heading for heading, _ in result.chart][1] == "Image Faithfulness"
    assert services.critic.seen[0].source_image is not None


def test_diagnose_many_batches_calls_and_reports_unreadable_files(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    critic = ScriptedCritic([{"text_faithfulness": 3.0}, "garbage", {"text_faithfulness": 2.0}])
    services = make_services(tmp_path, critic)
    progress = []
    rows = list(diagnose_many(load_batch(folder, prompt="a red square"), services, batch_size=4,
                              on_progress=lambda done, total: progress.append((done, total))))
    assert [r.name for r in rows] == ["broken.png", "img0.png", "img1.png", "img2.png", "img3.png", "img4.png"]
    assert critic.calls == [3, 2]
    assert progress == [(4, 6), (6, 6)]
    broken, first, second = rows[:3]
    assert not broken.ok and "not an image" in broken.failure
    assert (first.ok, first.scores["text_faithfulness"]) == (True, 3.0)
    assert (second.ok, second.score, second.failure) == (False, None, "garbage")


def test_load_batch_from_csv_and_jsonl(tmp_path):
    RED.save(tmp_path / "a.png")
    (tmp_path / "pairs.csv").write_text("prompt,image\na red square,a.png\n")
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"prompt": "make it blue", "image": "a.png", "source_image": "a.png", "task": "edit"}) + "\n"
    )
    (item,) = load_batch(tmp_path / "pairs.csv")
    assert (item.prompt, item.image, item.task) == ("a red square", tmp_path / "a.png", "t2i")
    (edit,) = load_batch(tmp_path / "pairs.jsonl")
    assert (edit.task, edit.source_image) == ("edit", tmp_path / "a.png")


def test_load_batch_needs_a_prompt_and_columns(tmp_path):
    RED.save(tmp_path / "a.png")
    with pytest.raises(InvalidInputError, match="needs a prompt"):
        load_batch(tmp_path)
    (tmp_path / "bad.csv").write_text("text,file\nx,a.png\n")
    with pytest.raises(InvalidInputError, match="row 1"):
        load_batch(tmp_path / "bad.csv")
    assert [i.name for i in load_batch([tmp_path / "a.png"], prompt="p")] == ["a.png"]


def test_write_csv_exports_the_table(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([{"text_faithfulness": 3.5, "physical_quality": 3.0}]))
    rows = list(diagnose_many([BatchItem("x.png", "t2i", "a red square", RED)], services))
    path = write_csv(rows, tmp_path / "table.csv")
    (record,) = list(csv.DictReader(path.open()))
    assert (record["name"], record["text_faithfulness"], record["ok"]) == ("x.png", "3.5", "True")
    assert record["image_faithfulness"] == "" and record["failure"] == ""
