"""Time per DiffusionNFT step, split into sampling, reward and training, with the critic's calls
overlapped with sampling (on) or made after each batch (off), against a critic with a set latency.

The critic is the shapes-world critic behind a fixed delay per call (a remote server's answer
time: the delay sleeps, it does not use this machine's CPU). Steps alternate on, off, on, off,
... on the same trainer; the medians are printed as one JSON line with the bound the overlap
should meet: step <= 1.1 x (max(sampling, reward) + training); the exit status is 1 when it does not.

Run from the repository root:
    python -m bench.rl_step [--repeats 3] [--prompts 6] [--group 4] [--latency auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from typing import Any, Sequence

import torch

from models.shapes.critic_shapes import ShapesCritic
from models.types import CritiqueRequest, CritiqueResult
from studio.rl.config import RLConfig
from studio.rl.data import ShapesPrompts
from studio.rl.train import load_flow_model
from studio.rl.trainer import NFTTrainer


class LatencyCritic:
    """A critic that answers ``latency`` seconds after each call (then scores with ``inner``)."""

    def __init__(self, inner: Any, latency: float) -> None:
        self.inner, self.latency, self.name = inner, latency, f"latency{latency:.2f}s:{inner.name}"

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        time.sleep(self.latency)
        return self.inner.critique(requests)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="assets/shapes-t2i", help="generator pipeline folder")
    parser.add_argument("--repeats", type=int, default=3, help="steps per mode (alternating on/off)")
    parser.add_argument("--prompts", type=int, default=6, help="prompts per step (one sampling batch each)")
    parser.add_argument("--group", type=int, default=4, help="images per prompt")
    parser.add_argument("--sampling-steps", type=int, default=10, help="Euler steps per image")
    parser.add_argument("--latency", default="auto",
                        help="seconds per critic call, or 'auto': the measured sampling time of one batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = RLConfig(model=args.model, prompts_per_step=args.prompts, group_size=args.group, sample_batch=1,
                      critic_batch=args.group, train_batch=args.group, sampling_steps=args.sampling_steps,
                      lora_rank=8, lora_alpha=16)
    model = load_flow_model(config)
    critic = LatencyCritic(ShapesCritic(), 0.0)
    trainer = NFTTrainer(config, model, critic, ShapesPrompts(model.task, seed=config.seed))
    warm = trainer.run_step()  # warm-up, also measures one batch's sampling time
    critic.latency = float(args.latency) if args.latency != "auto" else warm["time/sampling"] / args.prompts
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(args.repeats):
        for overlap in (True, False):
            trainer.config = dataclasses.replace(config, overlap_reward=overlap)
            rows[overlap].append(trainer.run_step())
    report: dict[str, Any] = {"latency_per_call": round(critic.latency, 3), "critic_calls_per_step": args.prompts,
                              "images_per_step": args.prompts * args.group, "repeats": args.repeats}
    for overlap, label in ((True, "overlap_on"), (False, "overlap_off")):
        med = {k.split("/")[1]: statistics.median(r[k] for r in rows[overlap])
               for k in ("time/sampling", "time/reward", "time/reward_wait", "time/training", "time/step")}
        bound = max(med["sampling"], med["reward"]) + med["training"]
        report[label] = {**{k: round(v, 2) for k, v in med.items()}, "bound": round(bound, 2),
                         "step_over_bound": round(med["step"] / bound, 3)}
    report["overlap_speedup"] = round(report["overlap_off"]["step"] / report["overlap_on"]["step"], 3)
    report["meets_1_1_bound"] = report["overlap_on"]["step_over_bound"] <= 1.1
    print(json.dumps(report))
    return 0 if report["meets_1_1_bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
