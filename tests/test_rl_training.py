"""The DiffusionNFT trainer on tiny pipelines built from configs (FLUX, FLUX-Kontext, SD3,
Qwen-Image, Qwen-Image-Edit) and on the shipped shapes-world generator: a training step changes only the LoRA
weights and lowers the loss; the exported LoRA loads into the studio's generator; resume
reproduces the next step; a stop request checkpoints; a job killed with SIGKILL resumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bench.rl_curves import PANEL_H, draw, logged_panels, read_series
from models.errors import ConfigError
from models.generator_diffusers import DiffusersGenerator
from models.types import CritiqueRequest, GenerationRequest
from studio.jobs.config import parse_config
from studio.jobs.context import RecordingContext
from studio.rl.config import RLConfig
from studio.rl.nft import nft_loss
from studio.rl.anchor import ANCHOR_FILE, anchor_items, anchor_loss, load_pool, save_pool
from studio.rl.reward import score_results
from studio.rl.train import build_critic, load_flow_model, run
from studio.rl.trainer import NFTTrainer, Rollout
from studio.rl.weights import export_lora
from studio.ui.jobs_adapt import metrics_frame
from tests.generator_helpers import save_tiny_flux
from tests.rl_helpers import save_tiny_qwenimage, save_tiny_sd3, tiny_qwenimage_edit_flow

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rl_pipelines")
    flux, kontext = save_tiny_flux(root / "flux", root / "kontext")
    return {"flux": flux, "kontext": kontext, "sd3": save_tiny_sd3(root / "sd3"),
            "qwen": save_tiny_qwenimage(root / "qwen"), "qwen_edit": root / "qwen_edit"}


def _tiny_config(folder: Path) -> RLConfig:
    return RLConfig(model=str(folder), resolution=32, sampling_steps=2, lora_rank=4, lora_alpha=4,
                    learning_rate=1e-3, group_size=2, train_batch=4, kl_weight=1e-4)


def _frozen(pipe) -> dict[str, torch.Tensor]:
    """Every weight of the pipeline's networks except the LoRA adapters."""
    out = {}
    for part in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"):
        module = getattr(pipe, part, None)
        if module is not None:
            out |= {f"{part}.{n}": p.detach().clone() for n, p in module.named_parameters() if "lora_" not in n}
    return out


def _prepared(folders: dict[str, Path], kind: str, **settings: object) -> tuple[NFTTrainer, Rollout, list[float]]:
    config = dataclasses.replace(_tiny_config(folders[kind]), **settings)
    # the tiny Qwen-Image-Edit pipeline lives in memory only (see tests.rl_helpers)
    model = tiny_qwenimage_edit_flow(folders[kind]) if kind == "qwen_edit" else load_flow_model(config)
    trainer = NFTTrainer(config, model, critic=None, prompts=None)  # type: ignore[arg-type]
    prompts = ["a red circle", "a blue square"]
    sources = None
    if model.task == "edit":
        sources = [Image.new("RGB", (32, 32), (220, 30, 30)), Image.new("RGB", (32, 32), (30, 30, 220))]
    cond = model.encode(prompts, sources).repeat(2)
    x0 = model.sample(cond, model.noise(4, torch.Generator().manual_seed(3)), config.sampling_steps, trainer.old)
    keys = [(p, None) for p in prompts for _ in range(2)]
    return trainer, Rollout(x0, cond, keys, scored=[]), [1.0, 0.0, 0.75, 0.25]


@pytest.mark.parametrize("kind", ["flux", "kontext", "sd3", "qwen", "qwen_edit"])
def test_one_training_step_changes_only_the_lora_weights_and_lowers_the_loss(folders, kind):
    trainer, rollout, weights = _prepared(folders, kind)
    model = trainer.model
    t = torch.tensor([0.3, 0.5, 0.7, 0.9])
    noise = model.noise(4, torch.Generator().manual_seed(7))

    def fixed_batch_loss() -> float:
        with torch.no_grad():
            return float(nft_loss(model, rollout.cond, rollout.x0, torch.tensor(weights), t, noise, old=trainer.old,
                                  base=trainer.base, beta=1.0, kl_weight=1e-4).loss)

    frozen = _frozen(model.pipe)
    lora_before = {n: p.detach().clone() for n, p in trainer.trainable.items()}
    before = fixed_batch_loss()
    metrics = trainer.update(rollout.cond, rollout.x0, torch.tensor(weights), t, noise)
    after = fixed_batch_loss()

    assert all("lora_" in n for n in trainer.trainable) and trainer.trainable
    assert after < before, (before, after)
    assert metrics["train/grad_norm"] > 0
    changed = [n for n, p in trainer.trainable.items() if not torch.equal(p, lora_before[n])]
    assert changed
    for name, tensor in _frozen(model.pipe).items():
        assert torch.equal(tensor, frozen[name]), f"{name} changed"


def test_the_exported_lora_loads_into_the_studio_generator(folders, tmp_path):
    trainer, rollout, weights = _prepared(folders, "flux")
    for _ in range(3):
        trainer.train(rollout, weights)
    lora = export_lora(trainer.model.pipe, {n: p.detach() for n, p in trainer.trainable.items()}, tmp_path / "lora")
    request = GenerationRequest(task="t2i", prompt="a red circle", steps=2, width=32, height=32)
    base = DiffusersGenerator(model=str(folders["flux"])).generate(request).images[0]
    tuned = DiffusersGenerator(model=str(folders["flux"]), lora=str(lora.parent)).generate(request)
    assert tuned.settings["lora"] == str(lora.parent)
    assert np.abs(np.asarray(base, dtype=int) - np.asarray(tuned.images[0], dtype=int)).max() > 0


def _shapes_config(**changes: object) -> RLConfig:
    config = RLConfig(model="assets/shapes-t2i", prompts_per_step=2, group_size=2, sample_batch=2, train_batch=2,
                      sampling_steps=2, eval_prompts=1, eval_every=0, checkpoint_every=1, lora_rank=2,
                      lora_alpha=2, max_steps=2, learning_rate=1e-3)
    return dataclasses.replace(config, **changes)


def _step_metric(ctx: RecordingContext, step: int, name: str) -> float:
    return next(v for s, n, v in ctx.metrics if s == step and n == name)


@pytest.mark.parametrize("anchor", [0, 2], ids=["plain", "anchor"])
def test_resume_reproduces_the_next_step_exactly(tmp_path, anchor):
    straight = RecordingContext(tmp_path / "straight")
    run(_shapes_config(anchor_prompts=anchor), straight)
    first, resumed = RecordingContext(tmp_path / "resumed"), RecordingContext(tmp_path / "resumed", resuming=True)
    run(_shapes_config(max_steps=1, anchor_prompts=anchor), first)
    with pytest.raises(ConfigError, match="already has a checkpoint"):
        run(_shapes_config(), RecordingContext(tmp_path / "resumed"))  # not asked to resume
    summary = run(_shapes_config(anchor_prompts=anchor), resumed)
    assert (tmp_path / "resumed" / ANCHOR_FILE).is_file() == bool(anchor)
    assert any(n == "train/anchor" for _, n, _ in resumed.metrics) == bool(anchor)

    assert summary["steps"] == 2 and [s for s, *_ in resumed.steps] == [2]
    for name in ("current", "old", "ema"):
        a = load_file(str(tmp_path / "straight/checkpoints/step_000002" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "resumed/checkpoints/step_000002" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    for metric in ("train/loss", "train/reward") + (("train/anchor",) if anchor else ()):
        assert _step_metric(straight, 2, metric) == _step_metric(resumed, 2, metric)
    assert any(kind == "lora" for _, _, kind in resumed.artifacts)
    assert {"eval/reward", "eval/check_short", "eval/check_detailed", "monitor/alert"} <= {n for _, n, _ in straight.metrics}


def test_the_anchor_pool_holds_the_base_models_best_detailed_drawings_and_the_anchor_pulls_to_them(tmp_path):
    config = _shapes_config(anchor_prompts=3, anchor_weight=5.0, anchor_batch=3, group_size=3)
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, build_critic(config.critic), prompts=None)  # type: ignore[arg-type]
    items = anchor_items(config.data, model.task, config.anchor_form, config.anchor_prompts, config.seed)
    pool = trainer.draw_anchor(items)
    assert {it.form for it in items} == {"detailed"} and len(pool) == 3 and pool.items == [0, 1, 2]
    critic, policy = build_critic(config.critic), config.scoring_policy()
    kept = score_results(critic.critique([CritiqueRequest("t2i", items[i].prompt, image)
                                          for i, image in zip(pool.items, model.decode(pool.x0))]), policy)
    assert [s.reward for s in kept] == pytest.approx(pool.rewards)  # the kept image is the one scored
    save_pool(tmp_path / ANCHOR_FILE, pool)
    again = load_pool(tmp_path / ANCHOR_FILE, model, items, guided=True)
    assert torch.equal(again.x0, pool.x0) and again.rewards == pool.rewards
    # the shapes generator samples with true CFG: the term is on the guided velocity unless asked otherwise
    assert model.uses_cfg and pool.uncond is not None and again.uncond is not None
    assert load_pool(tmp_path / ANCHOR_FILE, model, items, guided=False).uncond is None

    trainer.anchor = pool
    index, t, noise = torch.arange(3), torch.tensor([0.3, 0.5, 0.8]), model.noise(3, torch.Generator().manual_seed(1))
    fixed = lambda: float(anchor_loss(model, pool, index, t, noise).detach())  # noqa: E731
    drift = lambda: float(anchor_loss(model, pool, index, t, noise, trainer.base).detach())  # noqa: E731
    before = fixed()
    assert drift() == 0.0  # the 'kl' term is zero at the base
    # weight 0.5 with the old policy equal to the current one: the DiffusionNFT term has no
    # gradient, so whatever moves comes from the anchor
    cond = model.encode(["a red circle", "a blue square"])
    x0 = model.sample(cond, model.noise(2, torch.Generator().manual_seed(2)), 2, trainer.old)
    metrics = [trainer.update(cond, x0, torch.tensor([0.5, 0.5]), torch.tensor([0.4, 0.6]),
                              model.noise(2, torch.Generator().manual_seed(3))) for _ in range(3)]
    assert fixed() < before and all(m["train/anchor"] > 0 for m in metrics)
    assert metrics[0]["train/loss"] == pytest.approx(metrics[0]["train/policy_loss"] + 1e-4 * metrics[0]["train/kl"]
                                                     + 5.0 * metrics[0]["train/anchor"])

    # the 'kl' term: once the model has drifted (above), it pulls back to the base there
    trainer.config = dataclasses.replace(config, anchor_term="kl")
    drifted = drift()
    for _ in range(3):
        trainer.update(cond, x0, torch.tensor([0.5, 0.5]), torch.tensor([0.4, 0.6]),
                       model.noise(2, torch.Generator().manual_seed(3)))
    assert 0 < drift() < drifted


class StopAfterOneStep(RecordingContext):
    def should_stop(self) -> bool:
        return bool(self.steps)


def test_a_stop_request_checkpoints_and_exports_nothing(tmp_path):
    ctx = StopAfterOneStep(tmp_path / "run")
    summary = run(_shapes_config(max_steps=5, checkpoint_every=10), ctx)
    assert summary["stopped"] and summary["steps"] == 1
    assert (tmp_path / "run/checkpoints/step_000001/current.safetensors").is_file()
    assert "lora" not in summary and not (tmp_path / "run/lora").exists()


@pytest.mark.parametrize("budget", ["max_minutes", "max_cpu_minutes"])
def test_a_time_budget_ends_the_run_with_an_evaluation_and_the_export(tmp_path, budget):
    ctx = RecordingContext(tmp_path / "run")
    summary = run(_shapes_config(max_steps=50, **{budget: 1e-6}), ctx)
    assert summary["steps"] == 1 and not summary["stopped"] and "lora" in summary
    assert summary["cpu_minutes"] > 0 and _step_metric(ctx, 1, "time/cpu_minutes") > 0
    assert any(s == 1 and n == "eval/reward" for s, n, _ in ctx.metrics)
    # the monitor's curves: overall, one per dimension the reward counts (no Image Faithfulness in t2i) and
    # one per prompt form of the held-out set, each on the Training tab's curves
    alerts = {n for s, n, _ in ctx.metrics if s == 1 and n.startswith("monitor/")}
    assert alerts == {"monitor/alert", "monitor/alert_text_faithfulness", "monitor/alert_physical_quality",
                      "monitor/alert_text_rendering", "monitor/alert_form_detailed", "monitor/alert_form_short"}
    assert {"eval/reward_short", "eval/reward_detailed"} <= {n for s, n, _ in ctx.metrics if s == 1}
    curves = metrics_frame([{"step": s, "name": n, "value": v} for s, n, v in ctx.metrics])
    assert alerts <= set(curves["metric"])
    assert (tmp_path / "run/checkpoints/step_000001").is_dir()


def test_a_full_fine_tune_exports_a_pipeline_folder_the_studio_loads(tmp_path):
    summary = run(_shapes_config(finetune="full", max_steps=1), RecordingContext(tmp_path / "run"))
    folder = Path(summary["pipeline"])
    assert (folder / "studio_defaults.json").is_file()
    tuned = DiffusersGenerator(model=str(folder))
    shipped = DiffusersGenerator(model="assets/shapes-t2i")
    assert tuned.call_defaults().steps == shipped.call_defaults().steps
    changed = [n for n, p in tuned.pipeline.transformer.named_parameters()
               if not torch.equal(p, dict(shipped.pipeline.transformer.named_parameters())[n])]
    assert changed
    image = tuned.generate(GenerationRequest(task="t2i", prompt="a red circle", steps=2)).images[0]
    assert image.size == (64, 64)


def test_a_job_killed_mid_run_resumes_from_its_checkpoint(tmp_path):
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from studio.jobs.config import save_config

    config = _shapes_config(max_steps=3, threads=1)
    config_file = save_config(config, tmp_path / "rl.json")
    command = [sys.executable, "-m", "studio.rl.train", "--config", str(config_file), "--run-dir", str(tmp_path / "run")]
    latest = tmp_path / "run/checkpoints/latest"
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not latest.is_file() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait()
    killed_at = int(latest.read_text().split("_")[1])
    assert 1 <= killed_at < 3 and job.returncode == -signal.SIGKILL

    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert result["steps"] == 3
    assert f"(step {killed_at})" in again.stderr
    steps_run = {int(step) for step in re.findall(r"step (\d+): train/loss = ", again.stderr)}
    assert steps_run == set(range(killed_at + 1, 4))


def test_a_scalar_reward_model_trains_and_the_monitor_still_checks_it(tmp_path):
    ctx = RecordingContext(tmp_path / "run")
    summary = run(_shapes_config(max_steps=1, critic={"backend": "tests.rl_helpers:ScalarStubCritic"}), ctx)
    names = {n for _, n, _ in ctx.metrics}
    assert summary["steps"] == 1 and summary["critic_failures"] == 0 and "lora" in summary
    assert {"train/reward", "eval/reward", "eval/check", "monitor/alert"} <= names
    assert not any(n.endswith("text_faithfulness") for n in names)  # no per-dimension curves to draw
    assert 0 < _step_metric(ctx, 1, "train/reward") < 1
    curves = read_series(tmp_path / "run")  # the run folder's metrics.jsonl, as bench.rl_curves draws it
    assert [step for step, _ in curves["eval/check_detailed"]] == [0, 1]
    assert curves["train/reward"] == [(1, _step_metric(ctx, 1, "train/reward"))]
    drawn = [name for name, _ in logged_panels([("run", curves)])]  # no empty panel for an unscored dimension
    assert "eval/text_faithfulness" not in drawn and {"eval/check_short", "monitor/alert"} <= set(drawn)
    assert Image.open(draw([("run", curves)], tmp_path / "curves.png")).size[1] == 20 + 2 * PANEL_H


def test_train_epochs_make_that_many_passes_over_the_step_samples(folders):
    trainer, rollout, weights = _prepared(folders, "flux")
    trainer.config = dataclasses.replace(trainer.config, train_batch=3, train_epochs=2)
    trainer.train(rollout, [weights[0], None, weights[2], weights[3]])  # 3 usable images, one update per pass
    steps = {int(state["step"]) for state in trainer.optimizer.state.values()}
    assert steps == {2}


def test_group_noise_updates_whole_groups_with_one_time_and_noise_each(folders):
    trainer, rollout, weights = _prepared(folders, "flux")  # keys: two groups of two images
    trainer.config = dataclasses.replace(trainer.config, train_batch=2, train_epochs=2, group_noise=True)
    seen = []
    trainer.update = lambda cond, x0, weight, t, noise, uncond=None: seen.append((x0, t, noise)) or {}  # type: ignore[method-assign]
    trainer.train(rollout, weights)
    assert len(seen) == 4  # two groups per pass, two passes
    for x0, t, noise in seen:
        group = [i for i in range(4) if any(torch.equal(rollout.x0[i], row) for row in x0)]
        assert group in ([0, 1], [2, 3])  # one group per update
        assert t[0] == t[1] and torch.equal(noise[0], noise[1])  # shared by the group's images
    assert seen[0][1][0] != seen[2][1][0]  # a fresh draw each pass
    with pytest.raises(ConfigError, match="multiple"):
        dataclasses.replace(trainer.config, train_batch=3).validate()


def test_gradient_checkpointing_recomputes_the_blocks_and_makes_the_same_update(folders):
    t = torch.tensor([0.3, 0.5, 0.7, 0.9])
    updated, block_calls = [], []
    for checkpointing in (False, True):
        trainer, rollout, weights = _prepared(folders, "flux", gradient_checkpointing=checkpointing)
        block = trainer.model.transformer.transformer_blocks[0]
        calls = []
        block.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))
        trainer.update(rollout.cond, rollout.x0, torch.tensor(weights), t, trainer.model.noise(4, torch.Generator().manual_seed(7)))
        updated.append({n: p.detach().clone() for n, p in trainer.trainable.items()})
        block_calls.append(calls.count(True))  # passes with gradients: the live policy, then its recomputation
    assert block_calls == [1, 2]
    for name, tensor in updated[0].items():
        torch.testing.assert_close(updated[1][name], tensor, rtol=1e-5, atol=1e-6)


def test_offloaded_text_encoders_wait_on_the_cpu_and_visit_the_device_to_encode(folders, monkeypatch):
    model = load_flow_model(dataclasses.replace(_tiny_config(folders["flux"]), offload_text_encoders=True))
    encoders = model.text_encoders()
    assert len(encoders) == 2 and all(next(e.parameters()).device.type == "cpu" for e in encoders)
    moves: list[tuple[int, str]] = []
    for index, encoder in enumerate(encoders):
        to = encoder.to
        monkeypatch.setattr(encoder, "to", lambda device, _to=to, _i=index: moves.append((_i, str(device))) or _to(device))
    cond = model.encode(["a red circle"])
    assert moves == [(0, str(model.device)), (1, str(model.device)), (0, "cpu"), (1, "cpu")]
    assert all(v.device == model.device for v in cond.batched.values())
    plain = load_flow_model(_tiny_config(folders["flux"])).encode(["a red circle"])
    for name, value in plain.batched.items():
        torch.testing.assert_close(cond.batched[name], value)


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "docs").glob("rl_*.json")), ids=lambda p: p.name)
def test_every_documented_rl_config_is_valid(path):
    config = parse_config(RLConfig, ["--config", str(path)])
    assert config.model
    if config.model.startswith("assets/"):  # a shipped base: the config runs on a fresh clone
        assert (path.parent.parent / config.model / "model_index.json").is_file()
