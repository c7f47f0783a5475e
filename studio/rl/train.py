"""The RL job kind: DiffusionNFT fine-tuning of a generator with the critic as reward.

    python -m studio.rl.train --config FILE [--max-steps 50 ...] [--run-dir DIR] [--resume]
    python -m studio rl --config FILE --run-dir DIR
    accelerate launch --multi_gpu --num_processes N -m studio.rl.train --config FILE --run-dir DIR
    torchrun --nproc_per_node N -m studio.rl.train --config FILE --run-dir DIR   # N CPU processes (gloo)

``run(config, ctx)`` is what the job runner calls; it reports metrics (the Training tab's curves:
``train/*``, ``eval/*``, ``time/*``, ``monitor/alert``), sample grids and the exported LoRA to
``ctx``, and appends each report to ``metrics.jsonl`` in the run folder (one JSON object a line:
``{"step": N, name: value, ...}``; ``bench.rl_curves`` draws them). It checkpoints every
``checkpoint_every`` steps and when asked to stop, and continues from the run folder's latest
checkpoint when started again with ``--resume`` (a run folder that already has a checkpoint is
refused without it). Under ``accelerate launch`` (or ``torchrun``) the processes share each step's
prompts and average their gradients (``studio.rl.distributed``); only rank 0 evaluates and writes
the run folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from models.critic.scoring import ALL_DIMENSION_KEYS
from models.errors import ConfigError
from models.generator_diffusers import DEFAULTS_FILE, DiffusersGenerator
from models.registry import load_backend
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.rl.anchor import ANCHOR_FILE, AnchorPool, anchor_items, load_pool, save_pool
from studio.rl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from studio.rl.config import RLConfig
from studio.rl.data import eval_items, prompt_source
from studio.rl.distributed import Ranks
from studio.rl.evaluate import HackingMonitor, append_grid_row, check_flags, evaluate
from studio.rl.flow import FlowModel, flow_model
from studio.rl.trainer import NFTTrainer
from studio.rl.weights import export_lora, export_pipeline

logger = logging.getLogger(__name__)

#: The kind's config class (it lives in studio.rl.config, so the job registry is told).
CONFIG = RLConfig
DEFAULT_SIZE = 512
METRICS_FILE = "metrics.jsonl"


def load_flow_model(config: RLConfig) -> FlowModel:
    """The generator pipeline of ``config.model`` as a ``FlowModel`` with the model's own
    defaults (guidance, size, prompt length) unless the config sets them."""
    generator = DiffusersGenerator(model=config.model, device=config.device, dtype=config.dtype)
    if config.offload_text_encoders:  # load on the CPU, then only the transformer and the VAE go to the device
        device = generator.device
        generator = DiffusersGenerator(model=config.model, device="cpu", dtype=generator.dtype_name)
        for part in ("transformer", "vae"):
            getattr(generator.pipeline, part).to(device)
    pipe = generator.pipeline
    if config.gradient_checkpointing:
        if not getattr(pipe.transformer, "_supports_gradient_checkpointing", False):
            raise ConfigError(f"gradient_checkpointing is on, but {type(pipe.transformer).__name__} does not support it.")
        pipe.transformer.enable_gradient_checkpointing()
    defaults = generator.call_defaults()
    side = config.resolution
    size = (side, side) if side else (defaults.width or DEFAULT_SIZE, defaults.height or DEFAULT_SIZE)
    guidance = config.guidance if config.guidance is not None else defaults.guidance
    return flow_model(pipe, size=size, guidance=guidance, max_sequence_length=defaults.max_sequence_length,
                      negative_prompt=defaults.negative_prompt, offload_text_encoders=config.offload_text_encoders)


def build_critic(spec: dict[str, Any]) -> Any:
    """A critic backend from its spec (``{"backend": ..., **options}``)."""
    options = {k: v for k, v in spec.items() if k != "backend"}
    return load_backend("critic", spec["backend"], **options)


def run(config: RLConfig, ctx: JobContext) -> dict[str, Any]:
    """Train for ``config.max_steps`` steps, ``config.max_minutes`` of wall time or
    ``config.max_cpu_minutes`` of CPU time (resuming when the run folder has a checkpoint); returns
    (and reports) the summary."""
    if config.threads:
        torch.set_num_threads(config.threads)
    ranks = Ranks.from_env()
    model = load_flow_model(config)
    critic = build_critic(config.critic)
    check_critic = build_critic(config.check_critic) if config.check_critic else None
    try:
        return _train(config, ctx, model, critic, check_critic, ranks)
    finally:
        for backend in (critic, check_critic):
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        ranks.close()


def _train(config: RLConfig, ctx: JobContext, model: FlowModel, critic: Any, check_critic: Any,
           ranks: Ranks) -> dict[str, Any]:
    run_dir = Path(ctx.run_dir)
    shapes = config.data == "shapes" and config.eval_data is None
    prompts = prompt_source(config.data, model.task, config.prompt_form, config.seed)
    held_out = eval_items(config.data, config.eval_data, model.task, config.eval_prompts)
    trainer = NFTTrainer(config, model, critic, prompts, ranks)
    policy = config.scoring_policy()
    monitor = HackingMonitor(config.alert_tolerance, p=config.alert_p,
                             dimensions=tuple(key for key in ALL_DIMENSION_KEYS if policy.weight(key) > 0))
    history: dict[str, Any] = {"first_eval": None, "alerts": [], "critic_failures": 0}
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None and not ctx.resuming:
        raise ConfigError(f"The run folder {run_dir} already has a checkpoint ({checkpoint.name}); pass --resume "
                          "to continue it, or start a new run folder.")
    if checkpoint is not None:
        weights, torch_state, state = load_checkpoint(checkpoint, model.device)
        trainer.restore(weights, torch_state, state)
        monitor.restore(state.get("monitor", {}))
        history = state.get("history", history)
        logger.info("resumed from %s (step %d)", checkpoint, trainer.step)

    def report(metrics: dict[str, float]) -> None:
        if not ranks.is_main:
            return
        for name, value in metrics.items():
            ctx.metric(trainer.step, name, value)
        with (run_dir / METRICS_FILE).open("a") as f:
            f.write(json.dumps({"step": trainer.step, **metrics}) + "\n")

    def do_eval() -> None:
        if not ranks.is_main:
            return
        result = evaluate(model, held_out, trainer.ema, steps=config.sampling_steps, critic=critic,
                          policy=trainer.policy, shapes=shapes, check_critic=check_critic)
        alerts = monitor.update(result.metrics, check_flags(held_out, result.checks))
        result.metrics.update(monitor.metrics(alerts))
        if alerts:
            history["alerts"].append(trainer.step)
            logger.warning("reward-hacking alert at step %d: %s (a reward rose while a check fell; form_<f>: "
                           "that form's check fell)", trainer.step, ", ".join(alerts))
        report(result.metrics)
        grid = append_grid_row(run_dir / "samples_over_time.png", result.images)
        ctx.artifact("samples_over_time", grid, "image")
        history["first_eval"] = history["first_eval"] or result.metrics
        history["last_eval"] = result.metrics

    def do_checkpoint() -> None:
        if not ranks.is_main:
            return
        state = {**trainer.state(), "monitor": monitor.state(), "history": history}
        folder = save_checkpoint(run_dir, trainer.step, trainer.weight_sets(), trainer.optimizer, trainer.generator,
                                 state)
        ctx.artifact("checkpoint", folder, "checkpoint")

    started, cpu_started, cpu_before = time.monotonic(), time.process_time(), history.get("cpu_seconds", 0.0)
    if config.anchor_prompts:
        trainer.anchor = _anchor_pool(config, trainer, run_dir, resumed=checkpoint is not None, is_main=ranks.is_main)
    if trainer.step == 0:
        do_eval()
    stopped = False
    while trainer.step < config.max_steps:
        if ranks.most(ctx.should_stop()):  # any rank asked to stop: all stop
            stopped = True
            break
        metrics = trainer.run_step()
        history["critic_failures"] += int(metrics["train/critic_failures"])
        history["cpu_seconds"] = cpu_before + time.process_time() - cpu_started
        metrics["time/cpu_minutes"] = history["cpu_seconds"] / 60
        report(metrics)
        if ranks.is_main:
            ctx.progress(trainer.step, config.max_steps,
                         f"reward {metrics.get('train/reward', float('nan')):.3f}, loss {metrics['train/loss']:.4f}")
        out_of_time = (bool(config.max_minutes) and time.monotonic() - started > config.max_minutes * 60) or (
            bool(config.max_cpu_minutes) and history["cpu_seconds"] > config.max_cpu_minutes * 60)
        out_of_time = bool(ranks.most(out_of_time))
        last = trainer.step == config.max_steps or out_of_time
        if last or (config.eval_every and trainer.step % config.eval_every == 0):
            do_eval()
        if last or trainer.step % config.checkpoint_every == 0:
            do_checkpoint()
        if out_of_time:
            logger.info("the time budget is spent after step %d (%.1f CPU minutes)", trainer.step,
                        history["cpu_seconds"] / 60)
            break
    if stopped:
        do_checkpoint()
    summary = {"steps": trainer.step, "stopped": stopped, "first_eval": history["first_eval"],
               "last_eval": history.get("last_eval"), "alerts": history["alerts"],
               "critic_failures": history["critic_failures"], "retired": len(trainer.retired),
               "cpu_minutes": round(history.get("cpu_seconds", 0.0) / 60, 2)}
    if not stopped and ranks.is_main:
        summary.update(export(config, model, trainer, run_dir, ctx))
    ctx.result(summary)
    return summary


def _anchor_pool(config: RLConfig, trainer: NFTTrainer, run_dir: Path, *, resumed: bool, is_main: bool) -> AnchorPool:
    """A new run's base model draws the anchor pool, written to the run folder; a resumed run reads it."""
    items = anchor_items(config.data, trainer.model.task, config.anchor_form, config.anchor_prompts, config.seed)
    path = run_dir / ANCHOR_FILE
    if resumed:
        return load_pool(path, trainer.model, items, config.anchor_guided)
    started = time.monotonic()
    pool = trainer.draw_anchor(items)
    if is_main:
        save_pool(path, pool)
    logger.info("anchor pool: %d of %d prompts' best base drawings (mean reward %.3f) in %.0f s", len(pool),
                len(items), sum(pool.rewards) / len(pool), time.monotonic() - started)
    return pool


def export(config: RLConfig, model: FlowModel, trainer: NFTTrainer, run_dir: Path, ctx: JobContext) -> dict[str, str]:
    """Write the EMA weights where the studio loads them: a LoRA (``--t2i-lora`` / ``--edit-lora``)
    or, for a full fine-tune, a whole pipeline folder (``--t2i`` / ``--edit``)."""
    if config.finetune == "lora":
        path = export_lora(model.pipe, trainer.ema, run_dir / "lora")
        ctx.artifact("lora", path, "lora")
        return {"lora": str(path)}
    folder = export_pipeline(model.pipe, trainer.ema, run_dir / "pipeline")
    defaults = Path(config.model) / DEFAULTS_FILE
    if defaults.is_file():
        shutil.copy(defaults, folder / DEFAULTS_FILE)
    ctx.artifact("pipeline", folder, "model")
    return {"pipeline": str(folder)}


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.rl.train --config FILE [flags] [--run-dir DIR] [--resume]`` (the job runner
    adds ``--job-id ID --job-store DB``); the summary is the last stdout line."""
    return run_kind(RLConfig, run, argv)


#: A resumed job continues from the run folder's latest checkpoint.
RESUMABLE = True

if __name__ == "__main__":
    raise SystemExit(main())
