"""PARROT's Bradley-Terry baseline: it learns from the labels alone, and its folder is a scoring critic."""

from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from models.critic.bt_reward import load_reward_model
from models.critic.critic_bt import BTCritic
from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.registry import load_backend
from models.types import Critique, CritiqueRequest, PairRequest
from studio.jobs.context import RecordingContext
from studio.options import add_backend_options, config_from_args
from studio.parrot import bt, generate
from tests.parrot_helpers import SPEC, write_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny reward model trained 6 steps on three labelled pairs (and a tie, left out)."""
    root = tmp_path_factory.mktemp("bt")
    pairs = write_pairs(root, [("a red circle", "A"), ("a blue square", "B"), ("a red star", "A"), ("a dot", "tie")])
    gen = RecordingContext(root / "gen")
    generate.run(generate.GenerateConfig(source="jsonl", pairs=str(pairs), teacher=SPEC, draws=1), gen)
    ctx = RecordingContext(root / "bt")
    config = bt.BTConfig(rationales=str(gen.run_dir / "rationales.jsonl"), tiny_hidden_size=64, tiny_layers=2,
                         tiny_vocab_size=600, learning_rate=3e-3, warmup_steps=0, batch_size=8, max_steps=6)
    return bt.run(config, ctx), ctx


def test_bradley_terry_training_lowers_the_loss_on_the_labels_and_leaves_ties_out(trained):
    summary, ctx = trained
    assert (summary["status"], summary["pairs"], summary["skipped"]["tie"], summary["step"]) == ("done", 3, 1, 6)
    losses = [value for _, name, value in ctx.metrics if name == "loss"]
    assert losses[-1] < losses[0]
    assert ("reward model", ctx.run_dir / "model", "critic") in ctx.artifacts


def test_the_vision_tower_trains_at_its_own_learning_rate(trained, tmp_path):
    """With vision_learning_rate 0 the saved model keeps the base's vision tower while the rest moves."""
    from safetensors.torch import load_file

    _, ctx = trained
    config = bt.BTConfig(rationales=str(ctx.run_dir.parent / "gen" / "rationales.jsonl"), tiny_hidden_size=64,
                         tiny_layers=2, tiny_vocab_size=600, learning_rate=3e-3, vision_learning_rate=0.0,
                         warmup_steps=0, batch_size=8, max_steps=2)
    summary = bt.run(config, RecordingContext(tmp_path / "bt"))
    base = load_file(str(tmp_path / "bt" / "base" / "model.safetensors"))
    saved = load_file(str(summary["model"] + "/model.safetensors"))
    vision = [name for name in base if ".visual." in f".{name}"]
    assert vision and all(torch.equal(saved[name], base[name]) for name in vision)
    assert any(not torch.equal(saved[name], base[name]) for name in base if name not in vision)
    with pytest.raises(ConfigError, match="vision_learning_rate"):
        bt.BTConfig(rationales="r.jsonl", vision_learning_rate=-1.0).validate()


def test_a_fresh_head_passes_the_first_gradient_to_the_backbone(trained):
    """A zero head would be a saddle: no gradient reaches the backbone and the loss sits at ln 2."""
    from transformers import AutoModelForImageTextToText

    from models.critic.bt_reward import BTRewardModel, reward_inputs
    from models.critic.critic_transformers import load_processor

    base = trained[1].run_dir / "base"
    torch.manual_seed(0)
    model = BTRewardModel(AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32))
    red, blue = Image.new("RGB", (64, 64), (220, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 220))
    rewards = model(reward_inputs(load_processor(str(base)), [("a red square", red, None), ("a red square", blue, None)]))
    (-torch.nn.functional.logsigmoid(rewards[0] - rewards[1])).backward()
    assert rewards[0] != rewards[1]
    backbone = [p.grad for p in model.vlm.parameters() if p.grad is not None]
    assert backbone and sum(float(g.abs().sum()) for g in backbone) > 0


def test_the_reward_folder_scores_images_as_a_critic_without_a_rationale(trained):
    summary, _ = trained
    critic = load_backend("critic", "bt", model=summary["model"])
    red, blue = Image.new("RGB", (64, 64), (200, 40, 40)), Image.new("RGB", (64, 64), (40, 40, 200))
    [critique] = critic.critique([CritiqueRequest("t2i", "a red circle", red)])
    assert isinstance(critique, Critique) and 0 < critique.overall < 1
    assert critique.scores["text_faithfulness"] == critique.scores["physical_quality"]  # one scalar
    assert critique.scores["text_rendering"] is None and critique.refined_request is None
    [judgement] = critic.judge([PairRequest("t2i", "a red circle", red, blue)])
    rewards = critic.rewards([CritiqueRequest("t2i", "a red circle", image) for image in (red, blue)])
    assert judgement.overall_winner == ("A" if rewards[0] > rewards[1] else "B")


def test_critic_bt_folder_on_the_command_line_builds_the_scoring_critic(trained):
    summary, _ = trained
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    spec = config_from_args(parser.parse_args(["--critic", f"bt:{summary['model']}"])).critic
    assert spec == {"backend": "bt", "model": summary["model"]}
    with pytest.raises(ConfigError, match="only scores"):
        config_from_args(parser.parse_args(["--critic", f"bt:{summary['model']}", "--critic-4bit"]))


def test_a_folder_that_is_not_a_reward_model_and_labels_without_order_are_clear_errors(trained, tmp_path):
    summary, ctx = trained
    with pytest.raises(NotFoundError, match="not a Bradley-Terry reward model"):
        load_reward_model(ctx.run_dir / "base")
    with pytest.raises(NotFoundError):
        BTCritic(model=str(tmp_path))
    pairs = write_pairs(tmp_path, [("a dot", "tie")])
    gen = RecordingContext(tmp_path / "gen")
    generate.run(generate.GenerateConfig(source="jsonl", pairs=str(pairs), teacher=SPEC, draws=1), gen)
    with pytest.raises(InvalidInputError, match="no pair labelled A or B"):
        bt.run(bt.BTConfig(rationales=str(gen.run_dir / "rationales.jsonl")), RecordingContext(tmp_path / "bt"))
