"""PARROT generation, filtering and export on a handful of pairs."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from PIL import Image

from models.critic.critic_transformers import QWEN_CHAT_TEMPLATE
from models.critic.parser import parse_critique
from models.critic.prompts import build_pointwise_prompt
from models.errors import ConfigError, InvalidInputError
from models.types import CritiqueRequest
from studio.cli import main as studio_main
from studio.jobs.context import RecordingContext
from studio.parrot import export, filter as parrot_filter, generate
from studio.parrot.anchoring import anchored_prompt
from studio.parrot.examples import IMAGE_TOKEN, sharegpt_to_messages
from studio.parrot.pairs import read_jsonl_pairs, shapes_pairs
from studio.parrot.rationale import read_rationales
from tests.parrot_helpers import SPEC, write_pairs

PAIRS = [("a red circle", "A"), ("a blue square", "B"), ("two red circles, contrary", "A"),
         ("a green star, garbage", "B"), ("a yellow star, down", "A"), ("a big circle", "tie")]


def _generate(tmp_path: Path, **options) -> tuple[RecordingContext, dict]:
    ctx = RecordingContext(tmp_path / "gen")
    return ctx, generate.run(generate.GenerateConfig(**options), ctx)


def _filter(tmp_path: Path, rationales: Path, **options) -> tuple[Path, dict]:
    ctx = RecordingContext(tmp_path / "filter")
    return ctx.run_dir, parrot_filter.run(parrot_filter.FilterConfig(rationales=str(rationales), **options), ctx)


def test_a_teacher_answering_against_the_label_is_filtered_out_and_failures_are_counted(tmp_path):
    pairs = write_pairs(tmp_path, PAIRS)
    ctx, summary = _generate(tmp_path, source="jsonl", pairs=str(pairs), teacher=SPEC, draws=2, samples=1)
    assert (summary["pairs"], summary["rationales"]) == (6, 6)
    rationales = {r.pair_id: r for r in read_rationales(ctx.run_dir / "rationales.jsonl")}
    assert rationales["p0"].a.parsed["scores"]["text_faithfulness"] == 3.5  # the label A explained
    assert rationales["p3"].a.failure.startswith("malformed")
    assert rationales["p3"].a.raw == "I rather like this picture."
    assert rationales["p4"].a.failure.startswith("teacher failed")

    out, result = _filter(tmp_path, ctx.run_dir / "rationales.jsonl")
    assert result["reasons"] == {"scores_disagree": 1, "malformed": 1, "teacher_failed": 1}
    assert (result["kept"], result["acceptance_rate"]) == (3, 0.5)
    kept = {r.pair_id for r in read_rationales(out / "kept.jsonl")}
    assert kept == {"p0", "p1", "p5"}
    rejected = {r.pair_id: r.extra for r in read_rationales(out / "rejected.jsonl")}
    assert rejected["p2"] == {"reason": "scores_disagree", "predicted": "B"}
    # images stay reachable from the filter's own folder
    kept_images = [path for r in read_rationales(out / "kept.jsonl") for path in r.images.values() if path]
    assert kept_images and all((out / path).is_file() for path in kept_images)


def test_filter_settings_drop_ties_and_both_bad_and_limit_samples_per_pair(tmp_path):
    pairs = write_pairs(tmp_path, [("a red circle", "A"), ("a big circle", "tie"), ("two stars", "both_bad")])
    ctx, _ = _generate(tmp_path, source="jsonl", pairs=str(pairs), teacher=SPEC, draws=3, samples=3)
    rationales = list(read_rationales(ctx.run_dir / "rationales.jsonl"))
    assert len(rationales) == 9 and {r.agreeing for r in rationales} == {9}
    _, kept_all = _filter(tmp_path / "all", ctx.run_dir / "rationales.jsonl", samples_per_pair=3)
    assert (kept_all["kept"], kept_all["pairs_kept"]) == (9, 3)  # both-bad: both scores below bad_threshold
    _, result = _filter(tmp_path, ctx.run_dir / "rationales.jsonl", ties="drop", both_bad="drop", samples_per_pair=2)
    assert result["reasons"] == {"tie_dropped": 3, "both_bad_dropped": 3, "over_sample_limit": 1}
    assert result["kept"] == 2


def test_a_stopped_generation_resumes_without_redoing_pairs(tmp_path):
    class StopAfterFirstBatch(RecordingContext):
        def should_stop(self) -> bool:
            return True

    options = dict(count=4, batch_pairs=2, draws=1)
    first = generate.run(generate.GenerateConfig(**options), StopAfterFirstBatch(tmp_path))
    with pytest.raises(ConfigError, match="pass --resume"):
        generate.run(generate.GenerateConfig(**options), RecordingContext(tmp_path))
    second = generate.run(generate.GenerateConfig(**options), RecordingContext(tmp_path, resuming=True))
    assert (first["pairs"], second["resumed_pairs"], second["pairs"]) == (2, 2, 2)
    ids = [r.pair_id for r in read_rationales(tmp_path / "rationales.jsonl")]
    assert len(ids) == len(set(ids)) == 4


def test_anchoring_selects_noisy_shapes_critiques_that_agree_with_the_label(tmp_path):
    """The noisy reference critic cannot read the label: anchoring draws several critiques per
    image and keeps a combination whose scores re-predict it. Without anchoring some disagree."""
    teacher = {"backend": "shapes", "perception_noise": 0.35, "seed": 3}
    common = dict(count=12, seed=5, flip_rate=0.0, teacher=teacher)
    anchored_ctx, anchored = _generate(tmp_path / "anchored", draws=4, **common)
    plain_ctx, plain = _generate(tmp_path / "plain", draws=1, anchoring=False, **common)
    _, kept_anchored = _filter(tmp_path / "anchored", anchored_ctx.run_dir / "rationales.jsonl")
    _, kept_plain = _filter(tmp_path / "plain", plain_ctx.run_dir / "rationales.jsonl")
    assert anchored["not_agreeing"] < 12 and kept_anchored["kept"] == 12 - anchored["not_agreeing"]
    assert kept_plain["kept"] < kept_anchored["kept"]


def test_a_label_blind_rejudgement_rejects_flipped_labels(tmp_path):
    """Every label flipped: the noisy teacher still finds agreeing perceptions for most, the exact
    reference critic judging label-blind rejects every decisive one."""
    ctx, _ = _generate(tmp_path, count=6, seed=2, flip_rate=1.0, draws=6,
                       teacher={"backend": "shapes", "perception_noise": 0.4, "seed": 1})
    _, result = _filter(tmp_path, ctx.run_dir / "rationales.jsonl", rejudge={"backend": "shapes"})
    assert result["kept"] == 0
    assert result["reasons"].get("rejudge_disagrees", 0) >= 1


def test_the_anchoring_prompt_is_the_studio_prompt_plus_the_other_image_and_the_verdict():
    image, other = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    request = CritiqueRequest("t2i", "a red circle", image)
    plain = build_pointwise_prompt(request)
    prompt = anchored_prompt(request, other, "worse")
    assert prompt.messages[0] == plain.messages[0]
    assert prompt.messages[1]["content"][: len(plain.messages[1]["content"])] == plain.messages[1]["content"]
    assert prompt.images == [image, other]
    text = "".join(p.get("text", "") for p in prompt.messages[1]["content"])
    assert "preferred the other candidate to the image you are judging" in text
    assert "Do not quote or mention the verdict" in text
    unanchored = anchored_prompt(request, other, None).messages[1]["content"]
    assert "raters" not in "".join(p.get("text", "") for p in unanchored)


def test_shapes_pairs_flip_the_requested_share_of_labels_and_keep_the_truth():
    pairs = list(shapes_pairs(200, seed=1, flip_rate=0.25))
    flipped = sum(p.label != p.truth for p in pairs)
    assert 30 <= flipped <= 70
    again = shapes_pairs(3, seed=1, flip_rate=0.0)  # the flip rate does not change the images
    assert [p.image_a.tobytes() for p in again] == [p.image_a.tobytes() for p in pairs[:3]]


def test_bad_pairs_files_and_settings_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "image_a": "a.png", "image_b": "b.png", "label": "C"}) + "\n")
    with pytest.raises(InvalidInputError, match="line 1: unknown label 'C'"):
        list(read_jsonl_pairs(bad))
    with pytest.raises(ConfigError, match="samples must be between 1 and 2"):
        generate.GenerateConfig(draws=2, samples=3).validate()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        generate.GenerateConfig(teacher={"backend": "openai", "api_key": "sk-secret"}).validate()


def test_export_loads_with_datasets_and_renders_exactly_the_critic_prompt(tmp_path):
    datasets = pytest.importorskip("datasets")
    pairs = write_pairs(tmp_path, [("a red circle", "A"), ("a blue square", "B"), ("a big circle", "B")])
    gen, _ = _generate(tmp_path, source="jsonl", pairs=str(pairs), teacher=SPEC, draws=1)
    out, _ = _filter(tmp_path, gen.run_dir / "rationales.jsonl")
    ctx = RecordingContext(tmp_path / "dataset")
    summary = export.run(export.ExportConfig(kept=str(out / "kept.jsonl"), eval_fraction=0.34), ctx)
    assert (summary["train_examples"], summary["eval_examples"]) == (8, 4)  # 2 pointwise + 2 pairwise per pair
    info = json.loads((ctx.run_dir / "dataset_info.json").read_text())
    assert info["parrot"]["formatting"] == "sharegpt" and info["parrot_eval"]["file_name"] == "eval.json"
    rows = datasets.load_dataset("json", data_files=str(ctx.run_dir / "train.json"), split="train")
    assert rows.column_names == ["messages", "images"] and len(rows) == 8
    for row in rows:
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        assert user.count(IMAGE_TOKEN) == len(row["images"]) and len(row["images"]) in (1, 2)
        assert all((ctx.run_dir / path).is_file() for path in row["images"])
    # the pointwise example's prompt renders exactly as the critic backends render their prompt
    first = json.loads((ctx.run_dir / "train.json").read_text())[0]
    messages, answer = sharegpt_to_messages(first)
    image = Image.open(ctx.run_dir / first["images"][0])
    sent = build_pointwise_prompt(CritiqueRequest("t2i", "a red circle", image)).messages
    from jinja2 import Template

    render = Template(QWEN_CHAT_TEMPLATE).render
    assert render(messages=messages, add_generation_prompt=True) == render(messages=sent, add_generation_prompt=True)
    assert parse_critique(answer, "t2i").warnings == []
    ab, ba = (json.loads((ctx.run_dir / "train.json").read_text())[i]["messages"][-1]["content"] for i in (2, 3))
    winners = [text.rsplit("# Overall Winner: ", 1)[1] for text in (ab, ba)]
    assert sorted(winners) == ["A", "B"]  # the swapped order names the other position


def test_cli_runs_a_stage_and_prints_its_result_last(tmp_path):
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = studio_main(["parrot", "generate", "--count", "2", "--draws", "2", "--run-dir", str(tmp_path)])
    assert status == 0
    result = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert (result["stage"], result["pairs"]) == ("generate", 2)
    assert json.loads((tmp_path / "config.json").read_text())["draws"] == 2
    assert studio_main(["parrot", "filter", "--run-dir", str(tmp_path)]) == 2  # no --rationales: explained
