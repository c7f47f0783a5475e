"""Does the critic's reward separate a group's images the way the analyzer does?

DiffusionNFT learns only from differences *within* a group (the advantage is the reward minus
its group's mean). This draws ``--group`` images per prompt from a generator (the old policy's
deterministic sampler, as the trainer does), scores them with the shapes critic's RL reward and
with the analyzer's exact-scene check, and prints one JSON line per prompt form:

- ``reward_std``: the mean within-group std of the reward (0: nothing to learn from);
- ``spread``: the share of groups whose reward is not the same for every image (std > 0);
- ``mixed_groups``: groups holding both exact and wrong images (the only ones the check can rank);
- ``ranked``: in those groups, the probability that an exact image out-rewards a wrong one
  (ties count half; 0.5 = the reward does not see exactness; 1 = it always does);
- ``exact``: the exact-scene rate of all the images;
- ``per_dimension``: the same std and ranking for each dimension's 1-4 score alone (which
  dimensions carry the exactness signal and which only add within-group noise).

Run from the repository root:
    python -m bench.rl_reward_signal [--prompts 12] [--group 8] [--form both] [--model assets/shapes-t2i]
    python -m bench.rl_reward_signal --critic '{"backend": "bt", "model": DIR}'   # another reward (a scalar one)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import torch

from models.shapes.analyzer import analyze
from models.shapes.critic_shapes import ShapesCritic
from studio.rl.config import RLConfig
from studio.rl.data import ShapesPrompts
from studio.rl.evaluate import shapes_check
from studio.rl.train import build_critic, load_flow_model
from studio.rl.trainer import NFTTrainer


def pairwise_rank(rewards: list[float], exact: list[bool]) -> tuple[float, int]:
    """(wins + ties / 2, pairs) of exact images against wrong ones of the same group (a NaN, a
    missing score, takes part in no pair)."""
    wins, pairs = 0.0, 0
    for r_ok, ok in zip(rewards, exact):
        for r_bad, bad in zip(rewards, exact):
            if ok and not bad and not math.isnan(r_ok) and not math.isnan(r_bad):
                pairs += 1
                wins += 1.0 if r_ok > r_bad else 0.5 if r_ok == r_bad else 0.0
    return wins, pairs


def signal(values: list[float | None], exact: list[bool], groups: list[slice]) -> dict[str, float | int | None]:
    """Mean within-group std of ``values`` (missing ones left out), the share of groups whose std
    is above 0, the groups with both exact and wrong images, and the exact-over-wrong ranking
    probability in them."""
    stds, wins, pairs, mixed = [], 0.0, 0, 0
    for part in groups:
        present = [v for v in values[part] if v is not None]
        stds.append(statistics.pstdev(present) if len(present) > 1 else 0.0)
        w, p = pairwise_rank([v if v is not None else float("nan") for v in values[part]], exact[part])
        wins, pairs, mixed = wins + w, pairs + p, mixed + (p > 0)
    return {"std": float(f"{statistics.mean(stds):.3g}"), "spread": round(sum(s > 1e-9 for s in stds) / len(stds), 3),
            "mixed_groups": mixed, "ranked": round(wins / pairs, 3) if pairs else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="assets/shapes-t2i", help="generator pipeline folder")
    parser.add_argument("--prompts", type=int, default=12, help="training prompts per form")
    parser.add_argument("--group", type=int, default=8, help="images per prompt")
    parser.add_argument("--form", choices=("short", "detailed", "both"), default="both")
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--critic", type=json.loads, default=None,
                        help="critic spec (JSON) whose RL reward to measure; default: the shapes reference critic")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    forms = ("short", "detailed") if args.form == "both" else (args.form,)
    for form in forms:
        config = RLConfig(model=args.model, prompt_form=form, group_size=args.group, sample_batch=4,
                          finetune="full", sampling_steps=args.sampling_steps)
        model = load_flow_model(config)
        critic = ShapesCritic() if args.critic is None else build_critic(args.critic)
        trainer = NFTTrainer(config, model, critic, ShapesPrompts("t2i", form, seed=1))
        items = trainer.prompts.draw(args.prompts, set())
        rollout, _ = trainer.rollout(items)
        images = model.decode(rollout.x0)
        flags = [shapes_check(items[i // args.group], analyze(im)) for i, im in enumerate(images)]
        groups = [slice(g * args.group, (g + 1) * args.group) for g in range(len(items))]
        overall = [s.reward for s in rollout.scored]
        dims = sorted({k for s in rollout.scored for k in s.dimensions})
        line = {"form": form, "prompts": len(items), "group": args.group,
                "reward_mean": round(statistics.mean(r for r in overall if r is not None), 4),
                **signal(overall, flags, groups), "exact": round(sum(flags) / len(flags), 3),
                "per_dimension": {d: signal([s.dimensions.get(d) for s in rollout.scored], flags, groups) for d in dims}}
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
