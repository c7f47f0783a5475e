"""Does DiffusionNFT learn at all? A short run on the shapes generator with an easy reward that has
headroom, and the reward on held-out prompts before and after.

    python -m bench.rl_sanity [--cpu-minutes 4 --learning-rate 1e-3 --reward top_share] [--guided-loss]

The reward is a stub scalar critic (every critique carries only ``overall``), so the check is the
algorithm, not the critic. ``redness`` and ``top_share`` ignore the prompt; ``colour_match`` (the
share of the image's coloured ink in the colours the prompt names) and ``shape_match`` (the share
of the analyzer's objects in the shapes it names) depend on it, so it checks
that prompts, images, groups and conditioning stay paired from rollout to update. Prints the
held-out mean and median reward of the shipped model and of the EMA weights after training (same
prompts, same seeds), and the run's CPU time and load average. For a prompt-dependent reward it
also scores each held-out image against *another* held-out prompt (the next one): a policy that
learned the prompt raises its own prompt's score more than the other one's.
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

from models.shapes.world import BACKGROUND, COLOURS, INK, parse_prompt
from models.types import Critique, CritiqueRequest


def redness(image: Image.Image) -> float:
    """Mean over pixels of ``max(0, R - (G + B) / 2) / 255``: 0 for grey or blue, 1 for pure red."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return float(np.clip(rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2, 0, None).mean() / 255)


class RednessCritic:
    """A scalar stub critic: each critique scores no dimension and carries ``score(image, prompt)``
    (here the image's redness) as ``overall`` (the RL reward path reads it as a scalar reward
    model's score)."""

    name = "redness-stub"
    prompt_dependent = False

    def __init__(self, **_: Any) -> None:
        pass

    @staticmethod
    def score(image: Image.Image, prompt: str) -> float:
        """The reward of ``image`` drawn for ``prompt``."""
        return redness(image)

    def critique(self, requests: list[CritiqueRequest]) -> list[Critique]:
        return [Critique(r.task, {}, {}, None, None, None, None, self.score(r.image, r.prompt), "") for r in requests]


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

    @staticmethod
    def score(image: Image.Image, prompt: str) -> float:
        return top_share(image)


_PALETTE = np.asarray([*COLOURS.values(), INK, BACKGROUND], dtype=np.float32)  # colours, then ink, then canvas


def colour_labels(image: Image.Image) -> np.ndarray:
    """Per pixel, the index of the nearest shapes-world colour (``COLOURS`` order), or -1 for a
    pixel nearer the ink (the word) or the canvas."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    nearest = ((rgb[..., None, :] - _PALETTE) ** 2).sum(axis=-1).argmin(axis=-1)
    return np.where(nearest < len(COLOURS), nearest, -1)


def colour_match(image: Image.Image, prompt: str) -> float:
    """The share of the image's coloured pixels whose nearest palette colour is one the prompt
    names (0 when nothing coloured is drawn). Pixel by pixel, so blended edges take the nearest
    colour: the grey edges of the word's letters read as purple or green, orange edges as yellow
    (a drawing of exactly the prompt's scene scores about 0.9 without a word, 0.7 with one). Raises
    ``InvalidInputError`` for a prompt that is not a shapes-world prompt."""
    asked = [i for i, name in enumerate(COLOURS) if name in {o.colour for o in parse_prompt(prompt).objects}]
    labels = colour_labels(image)
    coloured = int((labels >= 0).sum())
    return 0.0 if coloured == 0 else float(np.isin(labels, asked).sum()) / coloured


class ColourMatchCritic(RednessCritic):
    """``RednessCritic`` with ``colour_match``: a reward that depends on the prompt."""

    name = "colour-match-stub"
    prompt_dependent = True

    @staticmethod
    def score(image: Image.Image, prompt: str) -> float:
        return colour_match(image, prompt)


def shape_match(image: Image.Image, prompt: str) -> float:
    """The share of the objects the analyzer finds whose shape is one the prompt names, whatever
    their colour (0 when it finds none). Raises ``InvalidInputError`` for a prompt that is not a
    shapes-world prompt."""
    from models.shapes.analyzer import analyze

    asked = {o.shape for o in parse_prompt(prompt).objects}
    drawn = [o.shape for o in analyze(image).objects]
    return 0.0 if not drawn else sum(shape in asked for shape in drawn) / len(drawn)


class ShapeMatchCritic(RednessCritic):
    """``RednessCritic`` with ``shape_match``: a prompt-dependent reward on shapes, not colours."""

    name = "shape-match-stub"
    prompt_dependent = True

    @staticmethod
    def score(image: Image.Image, prompt: str) -> float:
        return shape_match(image, prompt)


REWARDS: dict[str, type[RednessCritic]] = {"top_share": TopShareCritic, "redness": RednessCritic,
                                           "colour_match": ColourMatchCritic, "shape_match": ShapeMatchCritic}


def heldout_short_items(n: int) -> list[Any]:
    """The first ``n`` held-out shapes scenes as short prompts (never drawn for training)."""
    from studio.rl.data import eval_items

    return [it for it in eval_items("shapes", None, "t2i", n) if it.form == "short"]


def measure(model: Any, items: list[Any], params: Any, score: Any, steps: int) -> tuple[list[float], list[float]]:
    """One image per item, drawn with ``params`` from the evaluation's fixed seeds: its reward for
    its own prompt, and for the next item's prompt (the last item's: the first's)."""
    from studio.rl.evaluate import draw_images

    images = draw_images(model, items, params, steps)
    others = [items[(i + 1) % len(items)].prompt for i in range(len(items))]
    return ([score(image, it.prompt) for image, it in zip(images, items)],
            [score(image, other) for image, other in zip(images, others)])


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
    critic_class = REWARDS[args.reward]
    score = critic_class.score
    config = RLConfig(critic={"backend": f"bench.rl_sanity:{critic_class.__name__}"}, prompt_form="short",
                      prompts_per_step=8, group_size=8, sample_batch=8, train_batch=8,
                      train_epochs=args.train_epochs, learning_rate=args.learning_rate, std_scope=args.std_scope,
                      guidance=args.guidance, seed=args.seed, threads=1, guided_loss=args.guided_loss)
    config.validate()
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, critic_class(), ShapesPrompts("t2i", "short", args.seed))
    items = heldout_short_items(args.heldout)
    before, before_other = measure(model, items, trainer.base, score, config.sampling_steps)
    started, cpu_started = time.monotonic(), time.process_time()
    while trainer.step < args.steps and time.process_time() - cpu_started < args.cpu_minutes * 60:
        metrics = trainer.run_step()
        print(f"step {trainer.step}: train reward {metrics['train/reward']:.4f}", flush=True)
    cpu = (time.process_time() - cpu_started) / 60
    wall = (time.monotonic() - started) / 60
    after, after_other = measure(model, items, trainer.ema, score, config.sampling_steps)
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
    if critic_class.prompt_dependent:
        print(summary("held-out before, each image scored for the next prompt", before_other))
        print(summary("held-out after, each image scored for the next prompt", after_other))
        own = statistics.mean(after) - statistics.mean(before)
        other = statistics.mean(after_other) - statistics.mean(before_other)
        print(f"gain for its own prompt {own:+.4f} against {other:+.4f} for another prompt: "
              f"{own - other:+.4f} of the gain depends on the prompt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
