"""Training checkpoints of the distillation: the trainable weights, optimizer and scheduler state,
the step and the random state, written atomically so that a job killed while saving leaves the
previous checkpoint intact."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

STATE_FILE, META_FILE = "state.pt", "trainer_state.json"


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    meta: dict[str, Any], keep: int) -> Path:
    """Write ``folder/step-<step>`` and delete all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{step:07d}"
    partial = folder / f".partial-{step:07d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    trainable = {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}
    torch.save({
        "model": trainable, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
    }, partial / STATE_FILE)
    (partial / META_FILE).write_text(json.dumps({"step": step, **meta}, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def checkpoints(folder: Path) -> list[Path]:
    """The complete checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file() and (p / META_FILE).is_file())


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore a checkpoint into ``model``, ``optimizer`` and ``scheduler``; return its metadata."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    missing = set(state["model"]) - {name for name, _ in model.named_parameters()}
    if missing:
        raise RuntimeError(f"The checkpoint {path} has weights the model lacks: {sorted(missing)[:5]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return json.loads((path / META_FILE).read_text(encoding="utf-8"))
