"""PARROT distillation of a tiny Qwen3-VL student: loss, the saved critic, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from models.critic.critic_transformers import TransformersCritic
from models.errors import ConfigError
from models.types import CritiqueRequest
from studio.jobs.context import RecordingContext
from studio.parrot import distill
from studio.parrot.examples import sharegpt_to_messages
from studio.parrot.student_data import load_split
from tests.parrot_helpers import scripted_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A sharegpt dataset of three pairs' pointwise examples (one pair held out)."""
    return scripted_dataset(tmp_path_factory.mktemp("parrot"), ["pointwise"], eval_fraction=0.34)[1]


def _config(dataset: Path, **options) -> distill.DistillConfig:
    settings = dict(dataset=str(dataset), device="cpu", learning_rate=3e-3, save_steps=1, eval_limit=1)
    return distill.DistillConfig(**{**settings, **options})


class StopAfter(RecordingContext):
    """A job context whose stop button is pressed after ``steps`` training steps."""

    def __init__(self, run_dir: Path, steps: int) -> None:
        super().__init__(run_dir)
        self.steps_before_stop = steps

    def should_stop(self) -> bool:
        return sum(1 for _, name, _ in self.metrics if name == "loss") >= self.steps_before_stop


def test_distillation_lowers_the_loss_and_saves_a_folder_that_loads_as_a_critic(dataset, tmp_path):
    ctx = RecordingContext(tmp_path / "run")
    summary = distill.run(_config(dataset, max_steps=50, max_minutes=1e-4), ctx)  # the budget ends it after step 1
    assert (summary["status"], summary["step"], summary["time_limit_reached"]) == ("done", 1, True)
    assert summary["eval_loss"] < summary["eval_loss_start"]
    assert ("critic", ctx.run_dir / "critic", "critic") in ctx.artifacts
    critic = TransformersCritic(model=str(ctx.run_dir / "critic"), max_new_tokens=8, temperature=0)
    [result] = critic.critique([CritiqueRequest("t2i", "a red circle", Image.new("RGB", (64, 64), "red"))])
    assert critic.completer.stats.new_tokens > 0  # it loaded and wrote (one step cannot write a critique yet)
    [record] = load_split(dataset, "parrot")[:1]
    processor = critic.completer.processor
    prompt = processor.apply_chat_template(sharegpt_to_messages(record)[0], tokenize=False)
    assert len(processor.tokenizer(prompt)["input_ids"]) * 4 < len(prompt)  # its own protocol tokenizer
    critic.close()


def test_a_distillation_killed_mid_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_run_ends(
    dataset, tmp_path, monkeypatch
):
    whole = RecordingContext(tmp_path / "whole")
    distill.run(_config(dataset, max_steps=2), whole)
    crashed = RecordingContext(tmp_path / "crashed")
    train_step = distill._train_step

    def dies_in_step_2(*args, **kwargs):
        if args[4] == 1:  # the step index: the second step
            raise RuntimeError("killed")
        return train_step(*args, **kwargs)

    monkeypatch.setattr(distill, "_train_step", dies_in_step_2)
    with pytest.raises(RuntimeError, match="killed"):
        distill.run(_config(dataset, max_steps=2), crashed)
    monkeypatch.setattr(distill, "_train_step", train_step)
    assert [p.name for p in sorted((crashed.run_dir / "checkpoints").iterdir())] == ["step-0000001"]
    assert not (crashed.run_dir / "critic").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        distill.run(_config(dataset, max_steps=2), RecordingContext(crashed.run_dir))
    again = RecordingContext(crashed.run_dir, resuming=True)
    second = distill.run(_config(dataset, max_steps=2), again)
    assert (second["status"], second["resumed_from_step"]) == ("done", 1)
    assert [step for step, name, _ in again.metrics if name == "loss"] == [2]  # step 1 was not redone
    expected = load_file(whole.run_dir / "critic" / "model.safetensors")
    resumed = load_file(crashed.run_dir / "critic" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert all(torch.allclose(expected[k], resumed[k], atol=1e-6) for k in expected)


def test_lora_trains_only_adapters_stops_when_asked_and_merges_them_into_a_plain_checkpoint(dataset, tmp_path):
    config = _config(dataset, method="lora", lora_r=4, max_steps=2, eval_limit=0, save_steps=10)
    stopped = distill.run(config, StopAfter(tmp_path / "lora", steps=1))
    assert (stopped["status"], stopped["step"]) == ("stopped", 1)  # cancelled: checkpointed at once
    ctx = RecordingContext(tmp_path / "lora", resuming=True)
    summary = distill.run(config, ctx)
    assert (summary["status"], summary["resumed_from_step"]) == ("done", 1)
    state = torch.load(ctx.run_dir / "checkpoints" / "step-0000001" / "state.pt", weights_only=False)
    assert state["model"] and all("lora_" in name for name in state["model"])
    merged = load_file(ctx.run_dir / "critic" / "model.safetensors")
    base = load_file(ctx.run_dir / "base" / "model.safetensors")
    assert not any("lora" in key for key in merged)
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    targets = {k for k in base if "language_model" in k and k.rsplit(".", 2)[-2].endswith("_proj")}
    assert changed == targets  # every adapted layer, nothing else
    assert all(torch.equal(base[k], merged[k]) for k in base if ".visual." in f".{k}")


def test_qlora_keeps_learning_after_an_evaluation_pass(dataset, tmp_path):
    """An eval pass without autograd must not stall 4-bit training on the CPU (see _eval_loss)."""
    ctx = RecordingContext(tmp_path / "qlora")
    summary = distill.run(_config(dataset, method="qlora", lora_r=4, max_steps=1), ctx)
    assert summary["status"] == "done" and summary["eval_loss_start"] is not None
    state = torch.load(ctx.run_dir / "checkpoints" / "step-0000001" / "state.pt", weights_only=False)["model"]
    moved = {name for name, value in state.items() if "lora_B" in name and value.abs().max() > 0}
    assert moved == {name for name in state if "lora_B" in name} and len(moved) == 14  # 7 layers x 2 blocks
    assert (ctx.run_dir / "critic" / "model.safetensors").is_file()


def test_the_vision_tower_trains_at_its_own_learning_rate(dataset, tmp_path):
    """Adam's first step moves each weight by its group's rate: the tower (blocks and merger) by
    vision_learning_rate, the language model by learning_rate."""
    ctx = RecordingContext(tmp_path / "run")
    summary = distill.run(_config(dataset, max_steps=1, freeze_vision=False, learning_rate=3e-3,
                                  vision_learning_rate=1e-4, eval_limit=0), ctx)
    base = load_file(ctx.run_dir / "base" / "model.safetensors")
    saved = load_file(Path(summary["critic"]) / "model.safetensors")

    def largest_step(names: list[str]) -> float:
        return max(float((saved[n] - base[n]).abs().max()) for n in names)

    vision = [n for n in base if ".visual." in f".{n}"]
    blocks, merger = [n for n in vision if "merger" not in n], [n for n in vision if "merger" in n]
    rest = [n for n in base if n not in vision]
    assert blocks and merger and rest
    assert largest_step(blocks) == pytest.approx(1e-4, rel=0.05)
    assert largest_step(merger) == pytest.approx(1e-4, rel=0.05)
    assert largest_step(rest) == pytest.approx(3e-3, rel=0.05)
    with pytest.raises(ConfigError, match="vision_learning_rate"):
        _config(dataset, vision_learning_rate=-1.0).validate()
