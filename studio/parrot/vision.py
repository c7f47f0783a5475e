"""Supervised pretraining of a shapes VLM's vision tower, before any text (issue 16).

A real VLM's vision encoder is pretrained on its own before the language model learns to read
it. The shapes-world bases of ``parrot pretrain`` trained the tower only through captions and
one-word answers, and never kept an image flaw in their visual tokens (``docs/parrot.md``, ninth
to twelfth steps). This stage trains the tower and its patch mergers directly: linear heads on the
flattened visual tokens (the merger's output, which the language model reads) predict each grid
cell's shape and colour (or "empty"), the render's flaw kind and the word's letters, from fresh
renders with their known scenes (never the scenes of the held-out renders). It builds the base as ``parrot pretrain`` does (a protocol
tokenizer that also knows the request task and the flaw and word questions, a tiny Qwen3-VL of
the given sizes); the language model stays untrained. It reports, every ``eval_every`` steps,
the heads' accuracy on held-out renders (the same renders ``parrot pretrain`` is scored on), and
saves ``model/`` (a ``save_pretrained`` folder for ``parrot pretrain --init DIR --freeze-vision``)
with ``vision_heads.safetensors`` and ``vision.json`` beside it. It keeps no checkpoints: the
default run takes about 9 CPU minutes, so a stopped one is run again.

    python -m studio parrot vision --run-dir runs/shapes-vision   # 1,500 steps, ~9 CPU minutes
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from models.shapes.world import COLOURS, POSITIONS, SHAPES
from studio.config import _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.captions import FLAWS, NO_FLAW, CaptionSample, caption_samples
from studio.parrot.pretrain import BaseSizes, PretrainConfig, build_base, heldout_split, parameter_groups

KINDS: tuple[str, ...] = (NO_FLAW, *FLAWS)
LETTERS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # index 0: no letter in that slot
WORD_SLOTS = 3
HEADS_FILE = "vision_heads.safetensors"
REPORT_FILE = "vision.json"


@dataclass
class VisionConfig(BaseSizes):
    """Pretrain a tiny Qwen3-VL's vision tower on shapes-world renders with supervised heads."""

    batch_size: int = field(default=64, metadata={"help": "renders per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (one cycle: warm-up, cosine)"})
    warmup_share: float = field(default=0.05, metadata={"help": "share of the steps warming up"})
    max_steps: int = field(default=1500, metadata={"help": "optimizer steps (the schedule's length)"})
    max_minutes: float = field(default=0.0, metadata={"help": "end training after this long; 0: no limit"})
    eval_every: int = field(default=100, metadata={"help": "score the heads on the held-out renders every this "
                                                           "many steps"})
    eval_images: int = field(default=400, metadata={"help": "held-out renders scored"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        self.base_config().validate()
        _check_float("warmup_share", self.warmup_share, low=0, high=0.5)
        for name, low in (("batch_size", 1), ("max_steps", 2), ("eval_every", 1), ("eval_images", 1)):
            _check_int(name, getattr(self, name), low=low)

    def base_config(self) -> PretrainConfig:
        """The ``parrot pretrain`` settings that build this base (sizes, tokenizer, renders): its
        tokenizer learns the request task and the flaw and word questions too, for the stages after."""
        shared = {f.name: getattr(self, f.name) for f in fields(BaseSizes)}
        return PretrainConfig(**shared, request_tasks=0.25, flaw_questions=0.25, restate_requests=0,
                              learning_rate=self.learning_rate, max_steps=self.max_steps, max_minutes=self.max_minutes,
                              eval_images=self.eval_images)


class VisionHeads(torch.nn.Module):
    """Linear heads on an image's flattened visual tokens: per grid cell its shape and its colour
    (class 0: empty), the flaw kind, and per word slot its letter (class 0: none)."""

    def __init__(self, tokens: int, width: int) -> None:
        super().__init__()
        features = tokens * width
        self.shape = torch.nn.Linear(features, len(POSITIONS) * (1 + len(SHAPES)))
        self.colour = torch.nn.Linear(features, len(POSITIONS) * (1 + len(COLOURS)))
        self.flaw = torch.nn.Linear(features, len(KINDS))
        self.word = torch.nn.Linear(features, WORD_SLOTS * len(LETTERS))

    def forward(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head for ``visual`` (images x tokens x width): ``shape`` and ``colour``
        (images x cells x classes), ``flaw`` (images x kinds), ``word`` (images x slots x letters)."""
        flat = visual.flatten(1)
        cells = len(POSITIONS)
        return {"shape": self.shape(flat).view(len(flat), cells, -1),
                "colour": self.colour(flat).view(len(flat), cells, -1),
                "flaw": self.flaw(flat), "word": self.word(flat).view(len(flat), WORD_SLOTS, -1)}


def scene_targets(samples: list[CaptionSample]) -> dict[str, torch.Tensor]:
    """The classes ``VisionHeads`` should predict for ``samples``, from their known scenes."""
    shapes, colours, words = [], [], []
    for sample in samples:
        cells = [sample.scene.at(position) for position in POSITIONS]
        shapes.append([0 if o is None else 1 + SHAPES.index(o.shape) for o in cells])
        colours.append([0 if o is None else 1 + list(COLOURS).index(o.colour) for o in cells])
        words.append([LETTERS.index(letter) for letter in (sample.scene.word or "").ljust(WORD_SLOTS)])
    return {"shape": torch.tensor(shapes), "colour": torch.tensor(colours),
            "flaw": torch.tensor([KINDS.index(s.flaw) for s in samples]), "word": torch.tensor(words)}


def visual_tokens(model: Any, processor: Any, samples: list[CaptionSample]) -> torch.Tensor:
    """The merged visual tokens the language model reads for each of ``samples`` (images x
    tokens x width), with gradients when enabled."""
    inputs = processor.image_processor(images=[s.image for s in samples], return_tensors="pt")
    return torch.stack(list(model.model.get_image_features(inputs["pixel_values"],
                                                           inputs["image_grid_thw"]).pooler_output))


def head_losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The cross-entropy of each head (averaged over its cells or slots)."""
    return {name: torch.nn.functional.cross_entropy(logits[name].reshape(-1, logits[name].shape[-1]),
                                                    targets[name].reshape(-1)) for name in logits}


@torch.no_grad()
def head_scores(model: Any, processor: Any, heads: VisionHeads, truth: list[CaptionSample]) -> dict[str, Any]:
    """The heads' accuracy on ``truth``: ``cell_shape`` and ``cell_colour`` (over all cells, empty
    ones included), ``objects`` (an object's cell read with both its shape and colour right),
    ``flaw`` and the flaw per true kind, ``word`` (all three slots right)."""
    right: dict[str, list[bool]] = {"cell_shape": [], "cell_colour": [], "objects": [], "flaw": [], "word": []}
    per_kind: dict[str, list[bool]] = {kind: [] for kind in KINDS}
    for start in range(0, len(truth), 100):
        samples = truth[start:start + 100]
        logits, targets = heads(visual_tokens(model, processor, samples)), scene_targets(samples)
        guess = {name: value.argmax(-1) for name, value in logits.items()}
        shape_ok, colour_ok = guess["shape"] == targets["shape"], guess["colour"] == targets["colour"]
        right["cell_shape"] += shape_ok.flatten().tolist()
        right["cell_colour"] += colour_ok.flatten().tolist()
        right["objects"] += (shape_ok & colour_ok)[targets["shape"] > 0].tolist()
        flaw_ok = (guess["flaw"] == targets["flaw"]).tolist()
        right["flaw"] += flaw_ok
        right["word"] += (guess["word"] == targets["word"]).all(-1).tolist()
        for sample, ok in zip(samples, flaw_ok):
            per_kind[sample.flaw].append(ok)
    return {**{name: round(sum(v) / len(v), 4) for name, v in right.items()},
            "flaw_kinds": {kind: round(sum(v) / len(v), 3) for kind, v in per_kind.items() if v}}


def run(config: VisionConfig, ctx: JobContext) -> dict[str, Any]:
    """Build the base, train its vision tower with ``VisionHeads`` on fresh renders, score the
    heads on held-out renders along the way, save ``model/`` and the heads."""
    run_dir = Path(ctx.run_dir)
    folder = run_dir / "model"
    base = config.base_config()
    torch.manual_seed(config.seed)
    requests, truth, exclude = heldout_split(base)
    model, processor = build_base(base, folder, requests)
    vision = parameter_groups(model, 0.0, 0.0)[0]["params"]
    model.requires_grad_(False)
    for param in vision:
        param.requires_grad_(True)
    draw = caption_samples(random.Random(config.seed + 1), size=config.image_size, flaw_prob=config.flaw_prob,
                           exclude=exclude)
    tokens = visual_tokens(model, processor, truth[:1]).shape[1:]
    heads = VisionHeads(tokens[0], tokens[1])
    params = vision + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                    total_steps=config.max_steps, pct_start=config.warmup_share)
    summary: dict[str, Any] = {"stage": "vision", "parameters": sum(p.numel() for p in model.parameters()),
                               "vision_parameters": sum(p.numel() for p in vision), "visual_tokens": tokens[0],
                               "excluded_heldout_scenes": len(exclude - requests), "timeline": []}
    started, step, losses = time.perf_counter(), 0, {"total": math.nan}
    model.train()
    while step < config.max_steps:
        samples = [next(draw) for _ in range(config.batch_size)]
        parts = head_losses(heads(visual_tokens(model, processor, samples)), scene_targets(samples))
        loss = sum(parts.values())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        losses = {"total": loss.item(), **{name: value.item() for name, value in parts.items()}}
        for name, value in losses.items():
            ctx.metric(step, f"loss/{name}" if name != "total" else "loss", value)
        ctx.progress(step, config.max_steps, f"loss {losses['total']:.4f}")
        out_of_time = bool(config.max_minutes) and time.perf_counter() - started > 60 * config.max_minutes
        stop = ctx.should_stop()
        if step % config.eval_every == 0 or step == config.max_steps or out_of_time or stop:
            model.eval()
            scores = head_scores(model, processor, heads, truth)
            model.train()
            summary["timeline"].append({"step": step, **scores})
            for name in ("cell_shape", "cell_colour", "objects", "flaw", "word"):
                ctx.metric(step, f"heldout/{name}", scores[name])
        if stop:
            summary["status"] = "stopped"
            break
        if out_of_time:
            summary["time_limit_reached"] = True
            break
    summary.update(step=step, last_loss=losses, train_seconds=round(time.perf_counter() - started, 1),
                   heldout=summary["timeline"][-1] if summary["timeline"] else {})
    model.requires_grad_(True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in heads.state_dict().items()}, str(run_dir / HEADS_FILE))
    (run_dir / REPORT_FILE).write_text(json.dumps({"config": asdict(config), **summary}, indent=2), encoding="utf-8")
    ctx.artifact("shapes VLM base with a pretrained vision tower", folder, "model")
    summary.setdefault("status", "done")
    summary["model"] = str(folder)
    ctx.result(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.vision --config FILE [flags]``."""
    return run_kind(VisionConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
