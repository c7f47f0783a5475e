"""Several training processes (``studio.rl.distributed``), two gloo processes on the CPU: a
training pass over samples shared out between them (updates split unevenly, one rank's part of
one update empty) equals one process's pass over all the samples, and both end with the same
weights; a two-process run through ``torchrun`` writes the run folder once and resumes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from models.errors import ConfigError
from studio.rl.config import RLConfig
from studio.rl.distributed import Ranks
from studio.rl.train import load_flow_model
from studio.rl.trainer import NFTTrainer, Rollout
from tests.generator_helpers import save_tiny_flux

def _train(folder: Path, ranks: Ranks) -> dict[str, torch.Tensor]:
    """One training pass of a fresh tiny FLUX trainer over a fixed rollout of four samples, of
    which this rank holds its half (all four with one process): its LoRA before and after, and the
    pass's mean loss and gradient norm. With ``train_batch`` 3 the two updates split 2 + 1 and
    0 + 1 (or 1 + 2 and 1 + 0) between two ranks, whatever the drawn order."""
    torch.set_num_threads(1)
    config = RLConfig(model=str(folder), resolution=32, sampling_steps=2, lora_rank=4, lora_alpha=4,
                      learning_rate=1e-2, train_batch=3, kl_weight=1e-4)
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, critic=None, prompts=None, ranks=ranks)  # type: ignore[arg-type]
    prompts = ["a red circle", "a blue square", "a green star", "a red square"]
    x0 = model.noise(4, torch.Generator().manual_seed(3))
    held = ranks.shard(list(range(4)))
    rollout = Rollout(x0[held], model.encode([prompts[i] for i in held]), [(prompts[i], None) for i in held], [])
    before = {f"before/{n}": p.detach().clone() for n, p in trainer.trainable.items()}
    metrics = trainer.train(rollout, [1.0, 0.0, 0.75, 0.25])
    return {**before, **{n: p.detach().clone() for n, p in trainer.trainable.items()},
            "loss": torch.tensor(metrics["train/loss"]), "grad_norm": torch.tensor(metrics["train/grad_norm"])}


def _worker(rank: int, folder: Path, port: int, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    ranks = Ranks.from_env()
    try:
        save_file(_train(folder, ranks), str(out / f"rank{rank}.safetensors"))
    finally:
        ranks.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_make_the_one_process_training_pass(tmp_path):
    folder, _ = save_tiny_flux(tmp_path / "flux", tmp_path / "kontext")
    single = _train(folder, Ranks())
    mp.spawn(_worker, args=(folder, _free_port(), tmp_path), nprocs=2, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]

    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    assert any(not torch.equal(single[n], single[f"before/{n}"]) for n in single if "lora_" in n and "/" not in n)
    for name, tensor in single.items():  # the same update and loss, and the same weights on both ranks
        assert torch.allclose(ranks[0][name], tensor, atol=1e-6, rtol=1e-4), name
        assert torch.equal(ranks[0][name], ranks[1][name]), name


def test_the_prompts_of_a_step_are_shared_out_in_rank_order():
    items = list(range(6))
    assert [Ranks(r, 3).shard(items) for r in range(3)] == [[0, 1], [2, 3], [4, 5]]
    assert Ranks().shard(items) == items
    with pytest.raises(ConfigError, match="multiple of the number of training processes"):
        Ranks(0, 4).shard(items)


def test_a_two_process_run_writes_the_run_folder_once_and_resumes(tmp_path):
    import json
    import subprocess
    import sys

    from studio.jobs.config import save_config

    def launch(steps: int, *extra: str) -> list[dict]:
        config = RLConfig(model="assets/shapes-t2i", prompts_per_step=2, group_size=2, sample_batch=1, train_batch=2,
                          sampling_steps=2, eval_prompts=1, eval_every=0, checkpoint_every=1, lora_rank=2,
                          lora_alpha=2, max_steps=steps, learning_rate=1e-3, threads=1)
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   str(_free_port()), "-m", "studio.rl.train", "--config", str(save_config(config, tmp_path / "rl.json")),
                   "--run-dir", str(tmp_path / "run"), *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"steps"')]

    summaries = launch(2)
    assert len(summaries) == 2 and all(s["steps"] == 2 for s in summaries)  # two ranks ran both steps
    assert sum("lora" in s for s in summaries) == 1  # rank 0 alone exports
    steps = [json.loads(line)["step"] for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2]  # evaluation, two steps, the last evaluation: written once
    assert [s["steps"] for s in launch(3, "--resume")] == [3, 3]
