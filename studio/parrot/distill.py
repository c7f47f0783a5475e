"""PARROT stage 3b, distillation: fine-tune a Qwen-VL student on the exported sharegpt examples.

The student learns to write the critique from the request and the image(s) alone, in exactly the
prompts the critic backends send (``studio.parrot.student_data``). Methods: ``full`` fine-tuning,
``lora`` or ``qlora`` (4-bit language model, bitsandbytes) with peft; the vision tower (the ViT blocks; the
merger that projects into the language model stays trainable) frozen or not. It runs on the CPU,
one GPU, or several through ``accelerate launch -m studio.parrot.distill --config FILE``.

Checkpoints (trainable weights, optimizer, scheduler, step, random state) go to
``checkpoints/`` every ``save_steps`` and when the job is asked to stop; a new run in the same
folder resumes from the newest one. The result is ``critic/``, a ``save_pretrained`` folder (LoRA
merged into the base) that ``--critic FOLDER`` loads through the transformers backend.

    python -m studio.parrot.distill --dataset runs/export --base tiny-qwen3vl --max-steps 200 \
        --run-dir runs/distill
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from transformers import AutoModelForImageTextToText, get_scheduler

from models.critic.critic_transformers import load_processor, resolve_dtype
from models.critic.protocol_tokenizer import sharegpt_texts, template_texts, train_protocol_tokenizer
from models.critic.quantization import quantization_config
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import ConfigError
from studio.config import _check_choice, _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.checkpoints import checkpoints, load_checkpoint, save_checkpoint
from studio.parrot.pretrain import parameter_groups
from studio.parrot.student_data import collate, dataset_entries, encode, load_split

logger = logging.getLogger(__name__)

TINY_BASE = "tiny-qwen3vl"
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_TARGETS = r".*visual\.blocks.*\.(qkv|proj|linear_fc1|linear_fc2)"


@dataclass
class DistillConfig:
    """PARROT distillation: train a student critic on exported sharegpt examples."""

    dataset: str = field(default="", metadata={"help": "the dataset folder written by export"})
    name: str = field(default="parrot", metadata={"help": "the dataset name (its eval split is <name>_eval)"})
    base: str = field(default=TINY_BASE, metadata={"help": "student checkpoint (folder or hub id), or tiny-qwen3vl"})
    tiny_hidden_size: int = field(default=64, metadata={"help": "tiny-qwen3vl: text and vision width"})
    tiny_layers: int = field(default=2, metadata={"help": "tiny-qwen3vl: language model layers"})
    tiny_patch_size: int = field(default=16, metadata={"help": "tiny-qwen3vl: image patch side in pixels (8 or 16)"})
    tiny_tokenizer: Literal["protocol", "bytes"] = field(
        default="protocol", metadata={"help": "tiny-qwen3vl: BPE learnt from the training text and templates "
                                              "(protocol), or one token per byte (bytes)"})
    tiny_vocab_size: int = field(default=2048, metadata={"help": "tiny-qwen3vl: the protocol tokenizer's vocabulary"})
    method: Literal["full", "lora", "qlora"] = field(default="full", metadata={"help": "full, lora or qlora"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    freeze_vision: bool = field(default=True, metadata={"help": "freeze the vision tower's blocks"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (linear decay)"})
    vision_learning_rate: float | None = field(default=None, metadata={
        "help": "the vision tower's peak learning rate (its blocks unless frozen, and the merger); "
                "unset: learning_rate. Slower keeps what a pretrained base learnt to see"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    epochs: int = field(default=1, metadata={"help": "passes over the training split (unless max_steps)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0: epochs x steps per epoch"})
    max_minutes: float = field(default=0.0,
                               metadata={"help": "end training (and save the critic) after this long; 0: no limit"})
    batch_size: int = field(default=1, metadata={"help": "examples per device per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_length: int = field(default=8192, metadata={"help": "longest example in tokens (longer ones are an error)"})
    eval_steps: int = field(default=0, metadata={"help": "eval loss every N steps (0: at the start and end only)"})
    eval_limit: int = field(default=0, metadata={"help": "eval examples used (0: all)"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and the tiny student"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    dtype: Literal["auto", "float32", "bfloat16"] = field(default="auto", metadata={"help": "training dtype"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        if not self.dataset:
            raise ConfigError("dataset: give the folder that export wrote.")
        _check_choice("method", self.method, ("full", "lora", "qlora"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        _check_choice("dtype", self.dtype, ("auto", "float32", "bfloat16"))
        _check_choice("tiny_tokenizer", self.tiny_tokenizer, ("protocol", "bytes"))
        _check_choice("tiny_patch_size", self.tiny_patch_size, (8, 16))
        _check_float("learning_rate", self.learning_rate, low=0)
        if self.vision_learning_rate is not None:
            _check_float("vision_learning_rate", self.vision_learning_rate, low=0)
        _check_float("max_minutes", self.max_minutes, low=0)
        for name, low in (("tiny_hidden_size", 16), ("tiny_layers", 1), ("tiny_vocab_size", 512), ("lora_r", 1),
                          ("lora_alpha", 1),
                          ("warmup_steps", 0), ("epochs", 1), ("max_steps", 0), ("batch_size", 1), ("grad_accum", 1),
                          ("max_length", 16), ("eval_steps", 0), ("eval_limit", 0), ("save_steps", 1),
                          ("keep_checkpoints", 1), ("seed", 0)):
            _check_int(name, getattr(self, name), low=low)


def run(config: DistillConfig, ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) the student; save ``critic/``; report losses and the result."""
    run_dir = Path(ctx.run_dir)
    accelerator = Accelerator(cpu=config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()))
    torch.manual_seed(config.seed)
    train = load_split(Path(config.dataset), config.name)
    evaluation = _eval_split(config)
    if not train:
        raise ConfigError(f"The dataset {config.dataset} has no training examples.")
    base = _base_folder(config, run_dir, accelerator, train)
    processor = load_processor(str(base))
    model = _load_student(config, base, accelerator)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(_parameter_groups(model, config), weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / (config.batch_size * config.grad_accum * accelerator.num_processes))
    total = config.max_steps or config.epochs * steps_per_epoch
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    step, summary = 0, {"stage": "distill", "method": config.method, "train_examples": len(train),
                        "eval_examples": len(evaluation), "total_steps": total}
    found = checkpoints(run_dir / "checkpoints")
    if found and not ctx.resuming:
        raise ConfigError(f"The run folder {run_dir} already has checkpoints; pass --resume to continue it, or "
                          "start a new run folder.")
    if found:
        step = load_checkpoint(found[-1], accelerator.unwrap_model(model), optimizer, scheduler)["step"]
        summary["resumed_from_step"] = step
        logger.info("Resumed from %s (step %d of %d).", found[-1], step, total)
    pad_id = processor.tokenizer.pad_token_id
    batches = _Batches(train, config, accelerator, processor)

    def evaluate(at: int) -> float | None:
        if not evaluation:
            return None
        loss = _eval_loss(model, evaluation, processor, config, pad_id, accelerator)
        ctx.metric(at, "eval_loss", loss)
        return loss

    if step == 0:
        summary["eval_loss_start"] = evaluate(0)
    model.train()
    started, losses = time.perf_counter(), []
    while step < total:
        loss = _train_step(model, optimizer, scheduler, batches, step, config, pad_id, accelerator, trainable)
        step += 1
        losses.append(loss)
        ctx.metric(step, "loss", loss)
        ctx.progress(step, total, f"loss {loss:.4f}")
        if config.eval_steps and step % config.eval_steps == 0 and step < total:
            evaluate(step)
            model.train()
        stop = ctx.should_stop()
        if step % config.save_steps == 0 or stop:
            _save(run_dir, step, model, optimizer, scheduler, config, accelerator)
        if stop and step < total:
            summary.update(status="stopped", step=step, last_loss=loss)
            ctx.result(summary)
            return summary
        if config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes and step < total:
            logger.info("Time budget of %.1f min spent at step %d of %d.", config.max_minutes, step, total)
            summary["time_limit_reached"] = True
            break
    summary.update(
        status="done", step=step, last_loss=losses[-1] if losses else None, eval_loss=evaluate(step),
        train_seconds=round(time.perf_counter() - started, 1),
    )
    critic = run_dir / "critic"
    if accelerator.is_main_process:
        _save_critic(accelerator.unwrap_model(model), config, base, processor, critic)
        ctx.artifact("critic", critic, "critic")
    summary["critic"] = str(critic)
    ctx.result(summary)
    return summary


class _Batches:
    """The micro-batches of training, by global index: epoch ``e`` visits the examples in the order
    of ``random.Random(seed + e)``, so a resumed run continues with the very batches it would have
    seen. Each process takes its own share of every global micro-batch."""

    def __init__(
        self, train: list[dict[str, Any]], config: DistillConfig, accelerator: Accelerator, processor: Any
    ) -> None:
        self.train, self.config, self.processor = train, config, processor
        self.width = config.batch_size * accelerator.num_processes
        self.rank = accelerator.process_index
        self.per_epoch = math.ceil(len(train) / self.width)
        self._orders: dict[int, list[int]] = {}

    def __call__(self, index: int, pad_id: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(index, self.per_epoch)
        if epoch not in self._orders:
            order = list(range(len(self.train)))
            random.Random(self.config.seed + epoch).shuffle(order)
            self._orders = {epoch: order}
        order = self._orders[epoch]
        chunk = order[position * self.width:(position + 1) * self.width]
        size = self.config.batch_size
        share = chunk[self.rank * size:(self.rank + 1) * size] or order[:size]  # a short last chunk
        return collate([encode(self.train[i], self.processor, self.config.max_length) for i in share], pad_id)


def _train_step(model: Any, optimizer: Any, scheduler: Any, batches: _Batches, step: int, config: DistillConfig,
                pad_id: int, accelerator: Accelerator, trainable: list[torch.nn.Parameter]) -> float:
    """One optimizer step over ``grad_accum`` micro-batches; the mean micro-batch loss."""
    total = 0.0
    for micro in range(config.grad_accum):
        batch = {k: v.to(accelerator.device) for k, v in batches(step * config.grad_accum + micro, pad_id).items()}
        sync = accelerator.no_sync(model) if micro < config.grad_accum - 1 else nullcontext()
        with sync:
            loss = model(**batch).loss
            accelerator.backward(loss / config.grad_accum)
        total += loss.item()
    accelerator.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return total / config.grad_accum


def _eval_loss(model: Any, evaluation: list[dict[str, Any]], processor: Any, config: DistillConfig, pad_id: int,
               accelerator: Accelerator) -> float:
    """Mean loss per answer token over the eval examples.

    QLoRA on the CPU evaluates with autograd on: a forward pass without it makes bitsandbytes
    repack its 4-bit weights for inference, after which its backward passes return zero input
    gradients (measured with bitsandbytes 0.50.2), and training would silently stall.
    """
    model.eval()
    cpu_4bit = config.method == "qlora" and accelerator.device.type == "cpu"
    loss_sum, tokens = 0.0, 0
    with torch.enable_grad() if cpu_4bit else torch.no_grad():
        for record in evaluation:
            batch = collate([encode(record, processor, config.max_length)], pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            count = int((batch["labels"][:, 1:] != -100).sum())
            loss_sum += model(**batch).loss.item() * count
            tokens += count
    return loss_sum / max(tokens, 1)


def _eval_split(config: DistillConfig) -> list[dict[str, Any]]:
    if f"{config.name}_eval" not in dataset_entries(Path(config.dataset)):
        return []
    records = load_split(Path(config.dataset), f"{config.name}_eval")
    return records[: config.eval_limit] if config.eval_limit else records


def _base_folder(config: DistillConfig, run_dir: Path, accelerator: Accelerator, train: list[dict[str, Any]]) -> Path:
    """The student's starting checkpoint: ``config.base``, or a tiny Qwen3-VL built once in the run
    folder, with a protocol tokenizer learnt from the prompt templates and the ``train`` examples."""
    if config.base != TINY_BASE:
        return Path(config.base)
    folder = run_dir / "base"
    if accelerator.is_main_process and not (folder / "config.json").is_file():
        tokenizer = None
        if config.tiny_tokenizer == "protocol":
            tokenizer = train_protocol_tokenizer([*template_texts(), *sharegpt_texts(train)],
                                                 vocab_size=config.tiny_vocab_size)
        build_tiny_qwen3vl(folder, seed=config.seed, hidden_size=config.tiny_hidden_size,
                           num_layers=config.tiny_layers, patch_size=config.tiny_patch_size, tokenizer=tokenizer)
    accelerator.wait_for_everyone()
    return folder


def _load_student(config: DistillConfig, base: Path, accelerator: Accelerator) -> Any:
    """The base model with the trainable parts the method asks for."""
    on_cpu = accelerator.device.type == "cpu"
    dtype = torch.float32 if config.dtype == "auto" and on_cpu else resolve_dtype(config.dtype)
    options: dict[str, Any] = {"dtype": dtype}
    if config.method == "qlora":
        quantized = quantization_config("4bit", dtype, source=str(base), on_cpu=on_cpu)
        # the vision tower stays in full precision (small next to the language model, and LoRA on
        # bitsandbytes' 4-bit vision layers fails in their backward on the CPU)
        quantized.llm_int8_skip_modules = [*(quantized.llm_int8_skip_modules or []), r".*\.visual"]
        options["quantization_config"] = quantized
        options["device_map"] = {"": accelerator.device}
    model = AutoModelForImageTextToText.from_pretrained(str(base), **options)
    if config.method == "full":
        for name, param in model.named_parameters():
            param.requires_grad = not (config.freeze_vision and _in_vision_tower(name))
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training  # peft loads only for LoRA

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, _lora_config(config))


def _parameter_groups(model: Any, config: DistillConfig) -> list[dict[str, Any]]:
    """The trainable parameters in one group at ``learning_rate``, or with ``vision_learning_rate``
    set, the vision tower's (``pretrain.parameter_groups``) in a group of their own at that rate."""
    if config.vision_learning_rate is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.learning_rate}]
    groups = parameter_groups(model, config.learning_rate, config.vision_learning_rate)
    trainable = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]
    return [group for group in trainable if group["params"]]


def _lora_config(config: DistillConfig) -> Any:
    from peft import LoraConfig

    targets = LANGUAGE_TARGETS if config.freeze_vision else f"({LANGUAGE_TARGETS})|({VISION_TARGETS})"
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets)


def _in_vision_tower(name: str) -> bool:
    """The ViT's own weights (patch embedding, position embedding, blocks); not the merger that
    projects into the language model."""
    return ".visual." in f".{name}" and "merger" not in name


def _save(run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, config: DistillConfig,
          accelerator: Accelerator) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = save_checkpoint(run_dir / "checkpoints", step, accelerator.unwrap_model(model), optimizer, scheduler,
                               {"method": config.method}, config.keep_checkpoints)
        logger.info("Checkpoint %s", path)


def _save_critic(model: Any, config: DistillConfig, base: Path, processor: Any, folder: Path) -> None:
    """Write the student as a plain checkpoint: LoRA merged (into a full-precision base for QLoRA)."""
    if config.method == "qlora":
        from peft import get_peft_model

        trained = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        model = get_peft_model(AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32),
                               _lora_config(config))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in trained.items():
                params[name].copy_(value.to(params[name].dtype))
    if config.method in ("lora", "qlora"):
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.distill --config FILE [flags]``."""
    return run_kind(DistillConfig, run, argv)


#: A resumed job continues from the run folder's newest checkpoint.
RESUMABLE = True

if __name__ == "__main__":
    raise SystemExit(main())
