"""The shapes VLM base: captions scored per attribute, held-out requests never drawn, and a
pretrained folder that distill and bt start from."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.critic.critic_transformers import load_processor
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import ConfigError, InvalidInputError
from models.shapes.world import detailed_prompt
from studio.jobs.context import RecordingContext
from studio.parrot import bt, distill, pretrain
from studio.parrot.captions import caption_samples, caption_scores, heldout_requests
from studio.parrot.pairs import HELDOUT_SEED
from tests.parrot_helpers import scripted_dataset


def test_captions_are_scored_per_attribute_against_the_scene():
    samples = caption_samples(random.Random(3), flaw_prob=1.0)
    truth = [next(samples) for _ in range(4)]
    assert all(s.flaw != "none" and s.caption.startswith(detailed_prompt(s.scene)) for s in truth)
    assert caption_scores([s.caption for s in truth], truth)["exact"] == 1.0
    first = truth[0].scene.objects[0]
    other = "blue" if first.colour != "blue" else "red"
    wrong_colour = truth[0].caption.replace(f"{first.colour} {first.shape}", f"{other} {first.shape}", 1)
    scores = caption_scores([wrong_colour, "gibberish", truth[2].caption, truth[3].caption], truth)
    assert (scores["exact"], scores["parsed"], scores["scene"]) == (0.5, 0.75, 0.5)
    objects = sum(len(s.scene.objects) for s in truth)
    assert scores["colour"] == round((objects - 1 - len(truth[1].scene.objects)) / objects, 4)
    assert scores["shape"] == round((objects - len(truth[1].scene.objects)) / objects, 4)
    with pytest.raises(InvalidInputError):
        caption_scores([], [])


def test_a_scene_whose_request_is_held_out_is_never_drawn():
    first = next(caption_samples(random.Random(5)))
    again = next(caption_samples(random.Random(5), exclude={detailed_prompt(first.scene)}))
    assert detailed_prompt(again.scene) != detailed_prompt(first.scene)
    held = heldout_requests(50, HELDOUT_SEED)
    assert 40 <= len(held) <= 50  # the bench's held-out requests (a few repeat)
    samples = caption_samples(random.Random(0), exclude=held)
    assert not any(detailed_prompt(next(samples).scene) in held for _ in range(200))


def test_a_bad_pretraining_setting_is_a_clear_error():
    with pytest.raises(ConfigError, match="patch_size"):
        pretrain.PretrainConfig(patch_size=10).validate()
    with pytest.raises(ConfigError, match="flaw_prob"):
        pretrain.PretrainConfig(flaw_prob=1.5).validate()
    with pytest.raises(ConfigError, match="vision_learning_rate"):
        pretrain.PretrainConfig(vision_learning_rate=-1e-3).validate()


def test_the_vision_tower_trains_at_its_own_learning_rate(tmp_path):
    """Pretraining with vision_learning_rate 0 moves the language model but leaves every weight of
    the vision tower (patch embedding, blocks, mergers) as built."""
    ctx = RecordingContext(tmp_path / "run")
    config = pretrain.PretrainConfig(hidden_size=32, layers=1, vision_hidden_size=32, vision_depth=1, vocab_size=600,
                                     tokenizer_pairs=2, batch_size=4, learning_rate=5e-3, vision_learning_rate=0.0,
                                     warmup_steps=0, max_steps=2, eval_images=1, exclude_heldout=20)
    folder = Path(pretrain.run(config, ctx)["model"])
    built = build_tiny_qwen3vl(tmp_path / "built", seed=config.seed, hidden_size=32, num_layers=1,
                               vision_hidden_size=32, vision_depth=1, patch_size=config.patch_size,
                               tokenizer=load_processor(str(folder)).tokenizer)
    trained, initial = load_file(folder / "model.safetensors"), load_file(built / "model.safetensors")
    vision = [name for name in trained if ".visual." in f".{name}"]
    assert any("merger" in name for name in vision) and any("patch_embed" in name for name in vision)
    assert all(torch.equal(trained[name], initial[name]) for name in vision)
    assert any(not torch.equal(trained[name], initial[name]) for name in trained if name not in vision)


def _vocabulary(folder: Path) -> dict[str, int]:
    return json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny base pretrained for 12 captioning steps."""
    ctx = RecordingContext(tmp_path_factory.mktemp("pretrain"))
    config = pretrain.PretrainConfig(hidden_size=32, layers=1, vision_hidden_size=32, vision_depth=1, vocab_size=600,
                                     tokenizer_pairs=4, batch_size=8, learning_rate=5e-3, warmup_steps=0,
                                     max_steps=12, eval_images=2, exclude_heldout=20)
    return pretrain.run(config, ctx), ctx


@pytest.mark.slow
def test_pretraining_lowers_the_caption_loss_and_reports_caption_accuracy(base):
    summary, ctx = base
    losses = [value for _, name, value in ctx.metrics if name == "loss"]
    assert summary["step"] == 12 and min(losses[-3:]) < losses[0]
    report = json.loads((ctx.run_dir / "model" / pretrain.REPORT_FILE).read_text())
    assert report["captions"]["images"] == 2 and 0 <= report["captions"]["colour"] <= 1
    assert report["excluded_requests"] > 0


@pytest.mark.slow
def test_distill_and_bt_start_from_the_pretrained_base_and_keep_its_tokenizer(base, tmp_path):
    folder = Path(base[0]["model"])
    weights = load_file(str(folder / "model.safetensors"))
    vocabulary = _vocabulary(folder)
    rationales, dataset = scripted_dataset(tmp_path, ["pairwise"], eval_fraction=0.0)
    # learning rate 0: one step leaves the weights where they started, so the saved models show where that was
    student = distill.run(distill.DistillConfig(dataset=str(dataset), base=str(folder), learning_rate=0.0,
                                                max_steps=1, device="cpu"), RecordingContext(tmp_path / "student"))
    reward = bt.run(bt.BTConfig(rationales=str(rationales), base=str(folder), learning_rate=0.0,
                                warmup_steps=0, max_steps=1), RecordingContext(tmp_path / "bt"))
    for saved in (Path(student["critic"]), Path(reward["model"])):
        started = load_file(str(saved / "model.safetensors"))
        assert all(torch.equal(started[name], value) for name, value in weights.items())
        assert _vocabulary(saved) == vocabulary
    assert not (tmp_path / "student" / "base").exists() and not (tmp_path / "bt" / "base").exists()
