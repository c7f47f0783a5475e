"""Does DiffusionNFT learn at all? A short run on the shapes generator with an easy reward that has
headroom (the image's mean redness), and the reward on held-out prompts before and after.

    python -m bench.rl_sanity [--cpu-minutes 4 --learning-rate 1e-3 --reward top_share] [--guided-loss]

The reward is a stub scalar critic (``RednessCritic``: every critique carries only ``overall``),
so the check is the algorithm, not the critic: a policy trained on it must make held-out images
redder. Prints the held-out mean and median redness of the shipped model and of the EMA weights
after training (same prompts, same seeds), and the run's CPU time and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image

from models.shapes.world import BACKGROUND
from models.types import Critique, CritiqueRequest


def redness(image: Image.Image) -> float:
    """Mean over pixels of ``max(0, R - (G + B) / 2) / 255``: 0 for grey or blue, 1 for pure red."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return float(np.clip(rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2, 0, None).mean() / 255)


class RednessCritic:
    """A scalar stub critic: each critique scores no dimension and carries the image's redness as
    ``overall`` (the RL reward path reads it as a scalar reward model's score)."""

    name = "redness-stub"

    def __init__(self, **_: Any) -> None:
        pass

    def critique(self, requests: list[CritiqueRequest]) -> list[Critique]:
        return [Critique(r.task, {}, {}, None, None, None, None, redness(r.image), "") for r in requests]



def ink(image: Image.Image) -> np.ndarray:
    """Per-pixel ink: how much darker than the shapes world's canvas each pixel is, in [0, 1]."""
    canvas = float(np.mean(BACKGROUND))
    return np.clip(1.0 - np.asarray(image.convert("L"), dtype=np.float32) / canvas, 0.0, 1.0)


def top_share(image: Image.Image) -> float:
    """The share of the image's ink in its top half (0.5 for a balanced drawing, 1 when everything
    is drawn at the top; 0.5 for a blank image). Short prompts leave the places of the shapes free,
    so a policy can raise it."""
    drawn = ink(image)
    total = float(drawn.sum())
    return 0.5 if total <= 0 else float(drawn[: drawn.shape[0] // 2].sum()) / total


class TopShareCritic(RednessCritic):
    """``RednessCritic`` with the image's ``top_share`` as its score."""

    name = "top-share-stub"

    def critique(self, requests: list[CritiqueRequest]) -> list[Critique]:
        return [Critique(r.task, {}, {}, None, None, None, None, top_share(r.image), "") for r in requests]


REWARDS = {"top_share": (TopShareCritic, top_share), "redness": (RednessCritic, redness)}


def heldout_short_items(n: int) -> list[Any]:
    """The first ``n`` held-out shapes scenes as short prompts (never drawn for training)."""
    from studio.rl.data import eval_items

    return [it for it in eval_items("shapes", None, "t2i", n) if it.form == "short"]


def measure(model: Any, items: list[Any], params: Any, score: Any, steps: int) -> list[float]:
    """The reward of one image per item, drawn with ``params`` from the evaluation's fixed seeds."""
    from studio.rl.evaluate import draw_images

    return [score(image) for image in draw_images(model, items, params, steps)]


def summary(name: str, values: list[float]) -> str:
    """``name: mean M, median D (n N)``."""
    return f"{name}: mean {statistics.mean(values):.4f}, median {statistics.median(values):.4f} (n {len(values)})"


def main(argv: list[str] | None = None) -> int:
    """Train for ``--cpu-minutes`` (or ``--steps``) with the stub reward; print held-out rewards."""
    import torch

    from studio.rl.config import RLConfig
    from studio.rl.data import ShapesPrompts
    from studio.rl.train import load_flow_model
    from studio.rl.trainer import NFTTrainer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward", choices=sorted(REWARDS), default="top_share")
    parser.add_argument("--steps", type=int, default=200, help="at most this many steps")
    parser.add_argument("--cpu-minutes", type=float, default=5.0, help="stop after the step that passes this")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--std-scope", choices=("group", "global"), default="group")
    parser.add_argument("--guidance", type=float, default=None, help="sampling guidance (default: the model's)")
    parser.add_argument("--heldout", type=int, default=32, help="held-out short prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guided-loss", action="store_true",
                        help="the loss on the guided (CFG) velocity the sampler used (guided_loss on)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    critic_class, score = REWARDS[args.reward]
    config = RLConfig(critic={"backend": f"bench.rl_sanity:{critic_class.__name__}"}, prompt_form="short",
                      prompts_per_step=8, group_size=8, sample_batch=8, train_batch=8,
                      train_epochs=args.train_epochs, learning_rate=args.learning_rate, std_scope=args.std_scope,
                      guidance=args.guidance, seed=args.seed, threads=1, guided_loss=args.guided_loss)
    config.validate()
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, critic_class(), ShapesPrompts("t2i", "short", args.seed))
    items = heldout_short_items(args.heldout)
    before = measure(model, items, trainer.base, score, config.sampling_steps)
    started, cpu_started = time.monotonic(), time.process_time()
    while trainer.step < args.steps and time.process_time() - cpu_started < args.cpu_minutes * 60:
        metrics = trainer.run_step()
        print(f"step {trainer.step}: train reward {metrics['train/reward']:.4f}", flush=True)
    cpu = (time.process_time() - cpu_started) / 60
    wall = (time.monotonic() - started) / 60
    after = measure(model, items, trainer.ema, score, config.sampling_steps)
    wins = sum(a > b for a, b in zip(after, before)) / len(items)
    print(json.dumps({"reward": args.reward, "steps": trainer.step, "learning_rate": args.learning_rate,
                      "train_epochs": args.train_epochs, "std_scope": args.std_scope, "guidance": model.guidance,
                      "guided_loss": config.guided_loss,
                      "cpu_minutes": round(cpu, 2), "wall_minutes": round(wall, 2),
                      "load_average": os.getloadavg()[0]}))
    print(summary("held-out before (shipped)", before))
    print(summary("held-out after (EMA)", after))
    print(f"after - before: mean {statistics.mean(after) - statistics.mean(before):+.4f}, "
          f"after higher on {wins:.0%} of the prompts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
