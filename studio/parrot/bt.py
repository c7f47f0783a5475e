"""PARROT's baseline: a scalar Bradley-Terry reward model trained on the preference labels alone.

It reads the same labelled pairs as the PARROT stages (the ``rationales.jsonl`` that ``generate``
wrote: request, images and label; the teacher's critiques are ignored) and trains
``models.critic.bt_reward.BTRewardModel`` with the loss ``-log sigmoid(r_winner - r_loser)``.
Pairs labelled tie or both-bad carry no order and are left out (counted). The backbone is the
same tiny Qwen3-VL as the distilled student's (or any Qwen-VL checkpoint as ``base``), with a
protocol tokenizer learnt from the requests. The result, ``model/``, scores images as a critic:
``--critic bt:runs/.../model``.

    python -m studio parrot bt --rationales runs/gen/rationales.jsonl --max-minutes 20 --run-dir runs/bt
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModelForImageTextToText, get_scheduler

from models.critic.bt_reward import BTRewardModel, reward_inputs, save_reward_model
from models.critic.critic_transformers import load_processor
from models.critic.protocol_tokenizer import train_protocol_tokenizer
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import ConfigError, InvalidInputError
from models.images import prepare_image
from studio.config import _check_choice, _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.distill import TINY_BASE
from studio.parrot.pretrain import parameter_groups
from studio.parrot.rationale import read_rationales

logger = logging.getLogger(__name__)


@dataclass
class BTConfig:
    """A scalar Bradley-Terry reward model trained on the pairs' labels alone."""

    rationales: str = field(default="", metadata={"help": "the rationales.jsonl written by generate (its pairs and labels)"})
    base: str = field(default=TINY_BASE, metadata={"help": "backbone checkpoint (Qwen-VL folder or hub id), or tiny-qwen3vl"})
    tiny_hidden_size: int = field(default=256, metadata={"help": "tiny-qwen3vl: text and vision width"})
    tiny_layers: int = field(default=4, metadata={"help": "tiny-qwen3vl: language model layers"})
    tiny_patch_size: int = field(default=8, metadata={"help": "tiny-qwen3vl: image patch side in pixels (8 or 16)"})
    tiny_vocab_size: int = field(default=2048, metadata={"help": "tiny-qwen3vl: the request tokenizer's vocabulary"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (linear decay)"})
    vision_learning_rate: float = field(default=3e-4, metadata={
        "help": "the vision tower's peak learning rate (faster washes small objects out: docs/parrot.md)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    batch_size: int = field(default=8, metadata={"help": "pairs per step"})
    epochs: int = field(default=100, metadata={"help": "passes over the pairs (unless max_steps)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0: epochs x steps per epoch"})
    max_minutes: float = field(default=0.0, metadata={"help": "end training (and save) after this long; 0: no limit"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and the tiny backbone"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        if not self.rationales:
            raise ConfigError("rationales: give the rationales.jsonl that generate wrote.")
        _check_choice("device", self.device, ("cpu", "cuda"))
        _check_choice("tiny_patch_size", self.tiny_patch_size, (8, 16))
        _check_float("learning_rate", self.learning_rate, low=0)
        _check_float("vision_learning_rate", self.vision_learning_rate, low=0)
        _check_float("max_minutes", self.max_minutes, low=0)
        for name, low in (("tiny_hidden_size", 16), ("tiny_layers", 1), ("tiny_vocab_size", 512), ("warmup_steps", 0),
                          ("batch_size", 1), ("epochs", 1), ("max_steps", 0), ("seed", 0)):
            _check_int(name, getattr(self, name), low=low)


@dataclass
class OrderedPair:
    """One labelled pair as training input: the request, the preferred and the other image."""

    prompt: str
    winner: Image.Image
    loser: Image.Image
    source: Image.Image | None = None


def ordered_pairs(path: Path) -> tuple[list[OrderedPair], dict[str, int]]:
    """The pairs of a rationales file with a decisive label (one per pair id, images loaded), and
    the counts of those left out by label."""
    pairs, skipped, seen = [], {"tie": 0, "both_bad": 0}, set()
    for rationale in read_rationales(path):
        if rationale.pair_id in seen:
            continue
        seen.add(rationale.pair_id)
        if rationale.label not in ("A", "B"):
            skipped[rationale.label] = skipped.get(rationale.label, 0) + 1
            continue
        images = {key: None if rel is None else prepare_image(path.parent / rel, what=f"pair image {rel}")
                  for key, rel in rationale.images.items()}
        winner, loser = ("a", "b") if rationale.label == "A" else ("b", "a")
        pairs.append(OrderedPair(rationale.prompt, images[winner], images[loser], images.get("source")))
    return pairs, skipped


def run(config: BTConfig, ctx: JobContext) -> dict[str, Any]:
    """Train the reward model; save ``model/``; report the loss and the result."""
    run_dir = Path(ctx.run_dir)
    pairs, skipped = ordered_pairs(Path(config.rationales))
    if not pairs:
        raise InvalidInputError(f"{config.rationales} has no pair labelled A or B; a Bradley-Terry model needs an order.")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    base = _base_folder(config, run_dir, [p.prompt for p in pairs])
    processor = load_processor(str(base))
    model = BTRewardModel(AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32)).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.learning_rate, config.vision_learning_rate),
                                  weight_decay=0.0)
    per_epoch = -(-len(pairs) // config.batch_size)
    total = config.max_steps or config.epochs * per_epoch
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total)
    summary: dict[str, Any] = {"stage": "bt", "pairs": len(pairs), "skipped": skipped, "total_steps": total}
    model.train()
    started, step, loss_value, status = time.perf_counter(), 0, None, "done"
    while step < total:
        loss_value, accuracy = _train_step(model, optimizer, scheduler, processor, _batch(pairs, step, config), device)
        step += 1
        ctx.metric(step, "loss", loss_value)
        ctx.metric(step, "train_order_accuracy", accuracy)
        ctx.progress(step, total, f"loss {loss_value:.4f}")
        if ctx.should_stop():
            status = "stopped"
            break
        if config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes:
            summary["time_limit_reached"] = True
            break
    folder = save_reward_model(model, processor, run_dir / "model")
    ctx.artifact("reward model", folder, "critic")
    summary.update(status=status, step=step, epochs_seen=round(step / per_epoch, 2), last_loss=loss_value,
                   train_seconds=round(time.perf_counter() - started, 1), model=str(folder))
    ctx.result(summary)
    return summary


def _batch(pairs: list[OrderedPair], step: int, config: BTConfig) -> list[OrderedPair]:
    """The pairs of global step ``step``: epoch ``e`` visits them in the order of ``Random(seed + e)``."""
    per_epoch = -(-len(pairs) // config.batch_size)
    epoch, position = divmod(step, per_epoch)
    order = list(range(len(pairs)))
    random.Random(config.seed + epoch).shuffle(order)
    return [pairs[i] for i in order[position * config.batch_size:(position + 1) * config.batch_size]]


def _train_step(model: BTRewardModel, optimizer: Any, scheduler: Any, processor: Any, batch: list[OrderedPair],
                device: torch.device) -> tuple[float, float]:
    """One step of the Bradley-Terry loss; (the loss, the share of pairs already ordered right)."""
    items = [(p.prompt, image, p.source) for p in batch for image in (p.winner, p.loser)]
    rewards = model(reward_inputs(processor, items, device)).view(-1, 2)
    margin = rewards[:, 0] - rewards[:, 1]
    loss = -F.logsigmoid(margin).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item(), (margin > 0).float().mean().item()


def _base_folder(config: BTConfig, run_dir: Path, prompts: list[str]) -> Path:
    """The backbone: ``config.base``, or a tiny Qwen3-VL (with a tokenizer learnt from the
    requests) built once in the run folder."""
    if config.base != TINY_BASE:
        return Path(config.base)
    folder = run_dir / "base"
    if not (folder / "config.json").is_file():
        tokenizer = train_protocol_tokenizer(prompts, vocab_size=config.tiny_vocab_size)
        build_tiny_qwen3vl(folder, seed=config.seed, hidden_size=config.tiny_hidden_size,
                           num_layers=config.tiny_layers, patch_size=config.tiny_patch_size, tokenizer=tokenizer)
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.bt --config FILE [flags]``."""
    return run_kind(BTConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
