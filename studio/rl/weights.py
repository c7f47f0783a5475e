"""The trainable weights and their three companions: the old (sampling) policy, the EMA used for
evaluation and export, and the base model the KL-like term holds on to.

With LoRA only the adapter tensors are trainable; with ``finetune="full"`` (tiny models) every
transformer weight is. Either way each companion is a name -> tensor dict of the same entries,
small for LoRA, so the base model costs nothing extra: it is the adapters as initialised (B = 0).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from models.errors import ConfigError

Params = dict[str, torch.Tensor]
logger = logging.getLogger(__name__)


def make_trainable(transformer: torch.nn.Module, *, finetune: str, rank: int, alpha: int, targets: list[str],
                   seed: int) -> dict[str, torch.nn.Parameter]:
    """Freeze ``transformer`` and add what trains (seeded LoRA adapters, or every weight for
    ``finetune="full"``); return the trainable parameters by name, kept in float32."""
    transformer.requires_grad_(False)
    if finetune == "lora":
        from peft import LoraConfig

        present = {name.rsplit(".", 1)[-1] for name, _ in transformer.named_modules()}
        present |= {".".join(name.rsplit(".", 2)[-2:]) for name, _ in transformer.named_modules()}
        wanted = [t for t in targets if t in present]
        if not wanted:
            raise ConfigError(f"None of lora_targets {targets} is a module of this transformer.")
        torch.manual_seed(seed)
        transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                           target_modules=wanted))
    else:
        transformer.requires_grad_(True)
    trainable = {n: p for n, p in transformer.named_parameters() if p.requires_grad}
    for p in trainable.values():
        p.data = p.data.float()
    count = sum(p.numel() for p in trainable.values())
    logger.info("%s: %d trainable tensors, %.2fM weights", finetune, len(trainable), count / 1e6)
    return trainable


def snapshot(params: dict[str, torch.Tensor]) -> Params:
    """Detached copies of ``params``."""
    return {n: p.detach().clone() for n, p in params.items()}


@torch.no_grad()
def blend(target: Params, source: dict[str, torch.Tensor], decay: float) -> None:
    """``target <- decay * target + (1 - decay) * source``, in place."""
    for name, tensor in target.items():
        tensor.mul_(decay).add_(source[name].detach(), alpha=1.0 - decay)


def old_policy_decay(step: int, rate: float, maximum: float) -> float:
    """How much the old policy keeps of itself after ``step``: ``min(rate * step, maximum)``
    (0: the old policy becomes the current one)."""
    return min(rate * step, maximum)


def lora_state(transformer: torch.nn.Module, params: Params) -> dict[str, torch.Tensor]:
    """The peft LoRA state dict of ``transformer`` with ``params`` as its adapter values."""
    from peft.utils import get_peft_model_state_dict

    state = transformer.state_dict()
    state.update({n: t.detach().to(state[n].dtype) for n, t in params.items()})
    return get_peft_model_state_dict(transformer, state_dict=state)


def export_lora(pipe: Any, params: Params, folder: Path) -> Path:
    """Save ``params`` (LoRA) the way ``pipe.load_lora_weights`` and the studio's ``--t2i-lora`` /
    ``--edit-lora`` read them; returns the ``.safetensors`` file."""
    folder.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(folder, transformer_lora_layers=lora_state(pipe.transformer, params))
    return folder / "pytorch_lora_weights.safetensors"


def export_pipeline(pipe: Any, params: Params, folder: Path) -> Path:
    """Save the whole pipeline with ``params`` as its transformer weights (full fine-tune): a
    folder the studio loads with ``--t2i`` / ``--edit``."""
    named = dict(pipe.transformer.named_parameters())
    live = {n: named[n].data for n in params}
    try:
        for n, t in params.items():
            named[n].data = t.to(live[n].dtype)
        pipe.save_pretrained(folder)
    finally:
        for n, t in live.items():
            named[n].data = t
    return folder
