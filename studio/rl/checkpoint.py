"""Checkpoints of an RL run: trainable weights and their old/EMA/base companions (safetensors),
the optimizer, the prompt sampler's and the noise generator's state, the step, the retired
prompts and the monitor's baseline. ``latest`` names the newest complete one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.errors import JobError

WEIGHT_SETS = ("current", "old", "ema", "base")


def checkpoint_dir(run_dir: Path) -> Path:
    """The folder holding a run's checkpoints."""
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, step: int, weights: dict[str, dict[str, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, generator: torch.Generator, state: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write checkpoint ``step`` (atomically: a temporary folder renamed), point ``latest`` at it
    and keep only the ``keep`` newest."""
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in WEIGHT_SETS:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights[name].items()}, str(tmp / f"{name}.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "generator": generator.get_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (root / "latest").write_text(final.name, encoding="utf-8")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir``, or ``None``."""
    pointer = checkpoint_dir(run_dir) / "latest"
    if not pointer.is_file():
        return None
    folder = checkpoint_dir(run_dir) / pointer.read_text(encoding="utf-8").strip()
    if not (folder / "state.json").is_file():
        raise JobError(f"The latest checkpoint {folder} is incomplete; delete {pointer} to start over.")
    return folder


def load_checkpoint(folder: Path, device: torch.device | str) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]]:
    """(weight sets, optimizer + generator state, run state) of a checkpoint folder."""
    weights = {name: load_file(str(folder / f"{name}.safetensors"), device=str(device)) for name in WEIGHT_SETS}
    torch_state = torch.load(folder / "optimizer.pt", map_location=device, weights_only=False)
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return weights, torch_state, state
