"""How much of a DiffusionNFT gradient is signal? The cosine between full-step gradients computed
from the same samples and weights with different draws of training time and noise: near 0, the
update follows the draw (noise); near 1, the reward. With per-image draws (the published
estimator) and with one draw per group (``group_noise``).

    python -m bench.rl_gradient_agreement --reward text_faithfulness   # the shapes critic, detailed prompts
    python -m bench.rl_gradient_agreement --reward top_share           # bench.rl_sanity's stub, short prompts
    python -m bench.rl_gradient_agreement --prompt-form short          # the critic on short prompts
    ... --guided-loss          # the loss on the guided (CFG) velocity instead of the conditional branch

One step of 8 prompts x 8 images from the shipped shapes generator, advantages as the trainer
makes them, ``--draws`` gradients per estimator (mean pairwise cosine printed), LoRA at its
initial weights (the gradient of the adapters' B matrices).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics

import torch

from studio.rl.advantages import compute_advantages
from studio.rl.config import RLConfig
from studio.rl.data import ShapesPrompts
from studio.rl.nft import draw_times, nft_loss
from studio.rl.train import build_critic, load_flow_model
from studio.rl.trainer import NFTTrainer, Rollout


def gradient(trainer: NFTTrainer, rollout: Rollout, weights: torch.Tensor, *, per_group: bool,
             generator: torch.Generator) -> torch.Tensor:
    """The flattened gradient of the step's DiffusionNFT loss for one draw of times and noise."""
    model, k = trainer.model, trainer.config.group_size
    n = len(weights)
    if per_group:
        t = draw_times(n // k, generator).repeat_interleave(k)
        noise = model.noise(n // k, generator).repeat_interleave(k, dim=0)
    else:
        t, noise = draw_times(n, generator), model.noise(n, generator)
    for p in trainer.trainable.values():
        p.grad = None
    nft_loss(model, rollout.cond, rollout.x0, weights, t, noise, old=trainer.old, base=None, beta=1.0,
             kl_weight=0.0, uncond=rollout.uncond).loss.backward()
    return torch.cat([p.grad.flatten() for p in trainer.trainable.values() if p.grad is not None])


def main(argv: list[str] | None = None) -> int:
    """Print the mean pairwise cosine of gradient draws for both estimators."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward", choices=("text_faithfulness", "top_share"), default="text_faithfulness")
    parser.add_argument("--prompt-form", choices=("short", "detailed"), default=None,
                        help="the step's prompts (default: detailed for the critic, short for top share)")
    parser.add_argument("--std-scope", choices=("group", "global"), default=None,
                        help="the advantage's std (default: global for the critic, group for top share)")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guided-loss", action="store_true",
                        help="the loss on the guided (CFG) velocity the sampler used (guided_loss on)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.reward == "text_faithfulness":
        config = RLConfig(prompt_form=args.prompt_form or "detailed", weights={"text_faithfulness": 1.0},
                          std_scope=args.std_scope or "global",
                          prompts_per_step=8, sample_batch=8, seed=args.seed, guided_loss=args.guided_loss)
    else:
        config = RLConfig(prompt_form=args.prompt_form or "short", critic={"backend": "bench.rl_sanity:TopShareCritic"},
                          std_scope=args.std_scope or "group",
                          prompts_per_step=8, sample_batch=8, seed=args.seed, guided_loss=args.guided_loss)
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, build_critic(config.critic), ShapesPrompts("t2i", config.prompt_form, args.seed))
    rollout, _ = trainer.rollout(trainer.prompts.draw(config.prompts_per_step, set()))
    advantages = compute_advantages(rollout.keys, [s.reward for s in rollout.scored], std_scope=config.std_scope,
                                    clip=config.adv_clip)
    weights = torch.tensor([0.5 if w is None else w for w in advantages.weight])
    generator = torch.Generator().manual_seed(args.seed + 1)
    row: dict[str, object] = {"reward": args.reward, "prompt_form": config.prompt_form, "std_scope": config.std_scope,
                              "guided_loss": rollout.uncond is not None, "images": len(weights),
                              "weighted": sum(abs(w - 0.5) > 1e-9 for w in weights.tolist())}
    for name, per_group in (("per_image", False), ("per_group", True)):
        draws = [gradient(trainer, rollout, weights, per_group=per_group, generator=generator) for _ in range(args.draws)]
        row[f"cosine_{name}"] = round(statistics.mean(
            float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in itertools.combinations(draws, 2)), 3)
    row["load_average"] = os.getloadavg()[0]
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
