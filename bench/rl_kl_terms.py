"""How strong is the KL term against the policy term? The gradient norms of the two parts of the
DiffusionNFT loss on one step's samples, at the weights of an RL run's checkpoint (drifted from the
base, so the KL term has a gradient): for choosing ``kl_weight``.

    python -m bench.rl_kl_terms --config docs/rl_shapes_proof_short.json RUN_DIR/checkpoints/step_000171

One rollout of the config's prompts x images from the checkpoint's current weights (the reference
critic's reward, advantages as the trainer makes them), then for ``--draws`` draws of training
time and noise: the policy term's gradient norm (``kl_weight`` 0), the KL term's at weight 1 and
their cosine; and the norm of the mean policy gradient over the draws (the part the draws agree
on). With AdamW the update follows the gradient's direction, so the KL term matters once
``kl_weight x |g_kl|`` is comparable to the policy gradient.

Without a checkpoint it measures at the base model (the KL term is then 0). With
``--anchor-prompts N`` the base draws the anchor pool (``studio.rl.anchor``) and each draw also
gives the anchor term's gradient norm at weight 1 on ``anchor_batch`` pool images, and the last line
the norm of its mean over the draws (far below a single draw's when the term is mostly noise):

    python -m bench.rl_kl_terms --config docs/rl_shapes_continued.json --anchor-prompts 16 --no-anchor-guided
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from studio.jobs.config import config_from_dict, load_config_values
from studio.rl.advantages import compute_advantages
from studio.rl.anchor import anchor_items, anchor_loss
from studio.rl.checkpoint import load_checkpoint
from studio.rl.config import RLConfig
from studio.rl.data import ShapesPrompts
from studio.rl.nft import draw_times, nft_loss
from studio.rl.train import build_critic, load_flow_model
from studio.rl.trainer import NFTTrainer, Rollout


def term_gradient(trainer: NFTTrainer, rollout: Rollout, weights: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                  kl_weight: float) -> tuple[torch.Tensor, float]:
    """The flattened gradient of the loss with ``kl_weight`` for one draw, and the batch's mean KL."""
    for p in trainer.trainable.values():
        p.grad = None
    result = nft_loss(trainer.model, rollout.cond, rollout.x0, weights, t, noise, old=trainer.old, base=trainer.base,
                      beta=trainer.config.beta, kl_weight=kl_weight,
                      uncond=rollout.uncond)
    result.loss.backward()
    return torch.cat([p.grad.flatten() for p in trainer.trainable.values() if p.grad is not None]).clone(), result.kl


def anchor_gradient(trainer: NFTTrainer, generator: torch.Generator) -> torch.Tensor:
    """The flattened gradient of the anchor term at weight 1 on ``anchor_batch`` random pool images."""
    for p in trainer.trainable.values():
        p.grad = None
    n = trainer.config.anchor_batch
    index = torch.randint(len(trainer.anchor), (n,), generator=generator)  # type: ignore[arg-type]
    anchor_loss(trainer.model, trainer.anchor, index, draw_times(n, generator),  # type: ignore[arg-type]
                trainer.model.noise(n, generator)).backward()
    return torch.cat([p.grad.flatten() for p in trainer.trainable.values() if p.grad is not None]).clone()


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per draw and one for the mean policy gradient."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, nargs="?",
                        help="a checkpoint folder of an RL run (step_NNNNNN); none: the base model")
    parser.add_argument("--config", required=True, help="the run's config JSON")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anchor-prompts", type=int, default=0, help="also measure the anchor term on this many prompts")
    parser.add_argument("--anchor-guided", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    values = {**load_config_values(args.config), "anchor_prompts": args.anchor_prompts,
              "anchor_guided": args.anchor_guided}
    config: RLConfig = config_from_dict(RLConfig, values)
    torch.set_num_threads(1)
    model = load_flow_model(config)
    trainer = NFTTrainer(config, model, build_critic(config.critic), ShapesPrompts("t2i", config.prompt_form, args.seed))
    if args.checkpoint is not None:
        trainer.restore(*load_checkpoint(args.checkpoint, model.device))
    if config.anchor_prompts:
        trainer.anchor = trainer.draw_anchor(anchor_items(config.data, model.task, config.anchor_form,
                                                          config.anchor_prompts, config.seed))
    rollout, _ = trainer.rollout(trainer.prompts.draw(config.prompts_per_step, set()))
    advantages = compute_advantages(rollout.keys, [s.reward for s in rollout.scored], std_scope=config.std_scope,
                                    clip=config.adv_clip)
    weights = torch.tensor([0.5 if w is None else w for w in advantages.weight])
    generator = torch.Generator().manual_seed(args.seed + 1)
    policy_grads, anchor_grads = [], []
    for draw in range(args.draws):
        t, noise = draw_times(len(weights), generator), model.noise(len(weights), generator)
        policy, _ = term_gradient(trainer, rollout, weights, t, noise, 0.0)
        total, kl = term_gradient(trainer, rollout, weights, t, noise, 1.0)
        policy_grads.append(policy)
        kl_grad = total - policy
        line = {"draw": draw, "kl": round(kl, 4), "policy_grad_norm": float(policy.norm()),
                "kl_grad_norm_at_weight_1": float(kl_grad.norm()),
                "cosine": round(float(torch.nn.functional.cosine_similarity(policy, kl_grad, dim=0)), 3)}
        if trainer.anchor is not None:
            anchor_grads.append(anchor_gradient(trainer, generator))
            line["anchor_grad_norm_at_weight_1"] = float(anchor_grads[-1].norm())
        print(json.dumps(line))
    summary = {"step": trainer.step, "mean_policy_grad_norm": float(torch.stack(policy_grads).mean(dim=0).norm())}
    if anchor_grads:
        summary["mean_anchor_grad_norm"] = float(torch.stack(anchor_grads).mean(dim=0).norm())
    print(json.dumps({**summary, "load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
