"""Several training processes (``accelerate launch`` or ``torchrun``): which one this is, the step's
prompts shared out, and what must agree across them.

``Ranks.from_env()`` reads ``RANK`` / ``WORLD_SIZE`` (both launchers set them) and joins the
process group (NCCL on CUDA, gloo on the CPU); one process (the default ``Ranks()``) does no
communication at all. Every rank draws the same prompts and keeps its own contiguous share; the
rewards are gathered so that the advantages, retirement and metrics are the single-process ones on
every rank; each update's gradients are summed over ranks with every rank's loss weighted by its
share of the batch, so the update equals one process's update on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from models.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` training processes."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Ranks":
        """The launcher's ranks (joining the process group), or a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder (metrics, samples, checkpoints, the export)."""
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This rank's contiguous share of ``items`` (the same list on every rank)."""
        if len(items) % self.world:
            raise ConfigError(f"prompts_per_step ({len(items)}) must be a multiple of the number of training "
                              f"processes ({self.world}).")
        share = len(items) // self.world
        return items[self.rank * share : (self.rank + 1) * share]

    def gather(self, values: list[T]) -> list[T]:
        """Every rank's ``values`` concatenated in rank order (picklable objects)."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, values)
        return [v for part in parts for v in part]

    def total(self, value: float) -> float:
        """The sum of ``value`` over ranks."""
        return self._reduce(value, "SUM")

    def most(self, value: float) -> float:
        """The largest ``value`` of any rank (``True`` on any rank: ``most(flag) == 1``)."""
        return self._reduce(value, "MAX")

    def _reduce(self, value: float, op: str) -> float:
        if self.world == 1:
            return float(value)
        import torch.distributed as dist

        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
        return float(tensor.item())

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its sum over ranks (a rank without one contributes zeros)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()

    def _device(self) -> torch.device:
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
