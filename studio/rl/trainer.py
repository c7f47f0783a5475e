"""One DiffusionNFT step: sample groups with the old policy while the critic scores the previous
batch, turn rewards into [0, 1] weights, train once over the samples, move the old policy
toward the current one. ``NFTTrainer`` also holds what a checkpoint needs to resume exactly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from models.base import Critic
from models.errors import ConfigError, JobError
from models.types import CritiqueRequest
from studio.rl.advantages import compute_advantages, solved_groups
from studio.rl.anchor import SEED_OFFSET, AnchorPool, anchor_loss, best_of_groups, make_pool
from studio.rl.config import RLConfig
from studio.rl.data import PromptItem, PromptSource
from studio.rl.distributed import Ranks
from studio.rl.flow import Cond, FlowModel, Params
from studio.rl.nft import draw_times, nft_loss
from studio.rl.reward import RewardQueue, Scored
from studio.rl.weights import blend, make_trainable, old_policy_decay, snapshot

logger = logging.getLogger(__name__)


@dataclass
class Rollout:
    """A step's samples: clean latents, their conditioning (and the unconditional one when they
    were drawn with true CFG), group keys and rewards."""

    x0: torch.Tensor
    cond: Cond
    keys: list[tuple[str, str | None]]
    scored: list[Scored]
    uncond: Cond | None = None


class NFTTrainer:
    """DiffusionNFT over a ``FlowModel`` with a critic's reward.

    :param prompts: where training prompts come from (its state is part of a checkpoint).
    :param ranks: this process among several training processes (``studio.rl.distributed``).
    """

    def __init__(self, config: RLConfig, model: FlowModel, critic: Critic, prompts: PromptSource,
                 ranks: Ranks = Ranks()) -> None:
        self.config, self.model, self.critic, self.prompts, self.ranks = config, model, critic, prompts, ranks
        self.policy = config.scoring_policy()
        if config.finetune == "full" and model.dtype != torch.float32:
            raise ConfigError(f"finetune='full' trains every weight in float32, but the model runs in {model.dtype}; "
                              "set dtype 'fp32' (or use LoRA).")
        self.trainable = make_trainable(model.transformer, finetune=config.finetune, rank=config.lora_rank,
                                        alpha=config.lora_alpha, targets=list(config.lora_targets), seed=config.seed)
        self.base = snapshot(self.trainable)
        self.old = snapshot(self.trainable)
        self.ema = snapshot(self.trainable)
        self.optimizer = torch.optim.AdamW(self.trainable.values(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.retired: set[tuple[str, str | None]] = set()
        self.anchor: AnchorPool | None = None

    # -- one step -------------------------------------------------------------------------------

    def run_step(self) -> dict[str, float]:
        """Sample, score, train; return the step's metrics (``train/...`` and ``time/...``)."""
        started = time.perf_counter()
        items = self.ranks.shard(self.prompts.draw(self.config.prompts_per_step, self.retired))
        rollout, timing = self.rollout(items)
        keys, scored = self.ranks.gather(rollout.keys), self.ranks.gather(rollout.scored)  # every rank's
        metrics = self._reward_metrics(scored)
        advantages = compute_advantages(keys, [s.reward for s in scored],
                                        std_scope=self.config.std_scope, clip=self.config.adv_clip)
        if all(w is None for w in advantages.weight):
            raise JobError(f"Step {self.step + 1}: no group had two scored images ({advantages.failed} critiques "
                           f"failed of {len(keys)}); check the critic.")
        newly = solved_groups(advantages.groups, mean_above=self.config.retire_mean, std_below=self.config.retire_std)
        self.retired.update(newly)  # type: ignore[arg-type]
        train_started = time.perf_counter()
        metrics.update(self.train(rollout, advantages.weight))
        metrics["time/training"] = time.perf_counter() - train_started
        self.step += 1
        blend(self.old, self.trainable, old_policy_decay(self.step, self.config.old_decay_rate,
                                                         self.config.old_decay_max))
        metrics.update({
            "train/critic_failures": float(advantages.failed), "train/undetermined": float(advantages.undetermined),
            "train/retired": float(len(self.retired)), **timing,
            "time/step": time.perf_counter() - started,
        })
        return metrics

    def draw_anchor(self, items: list[PromptItem]) -> AnchorPool:
        """The anchor pool: a group per item drawn by the base model (with noise of the anchor's
        own seed), the best-rewarded image of each kept (``studio.rl.anchor``)."""
        noise = torch.Generator().manual_seed(self.config.seed + SEED_OFFSET)
        rollout, _ = self.rollout(items, params=self.base, generator=noise)
        chosen = best_of_groups(rollout.keys, rollout.scored)
        size = self.config.group_size
        return make_pool(self.model, items, rollout.x0[chosen], [i // size for i in chosen],
                         [rollout.scored[i].reward for i in chosen], self.config.anchor_guided)  # type: ignore[misc]

    def rollout(self, items: list[PromptItem], params: Params | None = None,
                generator: torch.Generator | None = None) -> tuple[Rollout, dict[str, float]]:
        """Draw ``group_size`` images per item with the old policy (or ``params``; noise from the
        trainer's generator or ``generator``); the critic scores each batch on its own thread while
        the next batch is drawn (``overlap_reward``)."""
        cfg, model = self.config, self.model
        params = self.old if params is None else params
        generator = self.generator if generator is None else generator
        rewards = RewardQueue(self.critic, self.policy, overlap=cfg.overlap_reward, batch_size=cfg.critic_batch)
        x0s: list[torch.Tensor] = []
        conds: list[Cond] = []
        unconds: list[Cond] = []
        keys: list[tuple[str, str | None]] = []
        sampling = 0.0
        try:
            for start in range(0, len(items), cfg.sample_batch):
                chunk_started = time.perf_counter()
                chunk = items[start : start + cfg.sample_batch]
                sources = [it.source_image() for it in chunk] if model.task == "edit" else None
                cond = model.encode([it.prompt for it in chunk], sources).repeat(cfg.group_size)
                uncond = None
                if model.uses_cfg:
                    uncond = model.encode([model.negative_prompt] * len(chunk), sources).repeat(cfg.group_size)
                noise = model.noise(len(chunk) * cfg.group_size, generator)
                x0 = model.sample(cond, noise, cfg.sampling_steps, params, uncond)
                images = model.decode(x0)
                sampling += time.perf_counter() - chunk_started
                first = len(keys)
                requests = []
                for i, image in enumerate(images):
                    item = chunk[i // cfg.group_size]
                    keys.append(item.key)
                    source = sources[i // cfg.group_size] if sources is not None else None
                    requests.append(CritiqueRequest(model.task, item.prompt, image, source))
                rewards.submit(list(range(first, len(keys))), requests)
                x0s.append(x0)
                conds.append(cond)
                if uncond is not None:
                    unconds.append(uncond)
            scored = rewards.collect(list(range(len(keys))))
        finally:
            rewards.close()
        timing = {"time/sampling": sampling, "time/reward": rewards.busy_seconds, "time/reward_wait": rewards.wait_seconds}
        guided = Cond.cat(unconds) if unconds and cfg.guided_loss else None
        return Rollout(torch.cat(x0s), Cond.cat(conds), keys, scored, guided), timing

    def train(self, rollout: Rollout, weights: list[float | None]) -> dict[str, float]:
        """``train_epochs`` passes over the samples with a weight, each in a new order, ``train_batch``
        per update, each update with fresh times and noise (with ``group_noise``: whole groups per
        update, one time and noise per group); the means of the updates' loss, KL and gradient norm.
        ``weights`` cover every rank's samples in rank order (this rank's rollout holds its share):
        every rank draws the same order, times and noise and trains the members of each batch it
        holds, so the pass is the one-process pass on all samples."""
        held = range(self.ranks.rank * len(rollout.keys), (self.ranks.rank + 1) * len(rollout.keys))
        usable = [i for i, w in enumerate(weights) if w is not None]
        keys = self.ranks.gather(rollout.keys) if self.config.group_noise else rollout.keys  # every rank's
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i in usable if self.config.group_noise else []:
            groups.setdefault(keys[i], []).append(i)
        group_of = {i: g for g, members in enumerate(groups.values()) for i in members}
        totals: dict[str, float] = {}
        batches = 0
        for _ in range(self.config.train_epochs):
            if self.config.group_noise:
                members = list(groups.values())
                order = [i for g in torch.randperm(len(members), generator=self.generator).tolist() for i in members[g]]
                times, noises = draw_times(len(members), self.generator), self.model.noise(len(members), self.generator)
            else:
                order = [usable[j] for j in torch.randperm(len(usable), generator=self.generator).tolist()]
            for start in range(0, len(order), self.config.train_batch):
                batch = order[start : start + self.config.train_batch]
                if self.config.group_noise:
                    shared = torch.tensor([group_of[i] for i in batch])
                    t, noise = times[shared], noises[shared]
                else:
                    t, noise = draw_times(len(batch), self.generator), self.model.noise(len(batch), self.generator)
                rows = torch.tensor([j for j, i in enumerate(batch) if i in held], dtype=torch.long)
                index = torch.tensor([batch[j] - held.start for j in rows.tolist()], dtype=torch.long)
                uncond = rollout.uncond.select(index) if rollout.uncond is not None else None
                parts = self.update(rollout.cond.select(index), rollout.x0[index.to(rollout.x0.device)],
                                    torch.tensor([weights[batch[j]] for j in rows.tolist()]), t[rows], noise[rows],
                                    uncond)
                batches += 1
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value
        return {k: v / max(batches, 1) for k, v in totals.items()}

    def update(self, cond: Cond, x0: torch.Tensor, weight: torch.Tensor, t: torch.Tensor,
               noise: torch.Tensor, uncond: Cond | None = None) -> dict[str, float]:
        """One optimizer update on one batch (gradient clipping, then the EMA follows); ``uncond``:
        the loss is on the guided velocity. With several processes the batch is the union of every
        rank's part (this rank's may be empty): each loss is weighted by its part's share and the
        gradients summed, so the update and the returned means are those of one process on the
        whole batch."""
        cfg = self.config
        share = len(weight) / self.ranks.total(len(weight))
        self.optimizer.zero_grad(set_to_none=True)
        parts = {"train/loss": 0.0, "train/policy_loss": 0.0, "train/kl": 0.0}
        if len(weight):
            result = nft_loss(self.model, cond, x0, weight, t, noise, old=self.old, base=self.base, beta=cfg.beta,
                              kl_weight=cfg.kl_weight, uncond=uncond)
            (result.loss * share).backward()
            parts = {"train/loss": share * float(result.loss.detach()), "train/policy_loss": share * result.policy,
                     "train/kl": share * result.kl}
        if self.anchor is not None:
            parts["train/anchor"] = self._anchor_update()
            parts["train/loss"] += cfg.anchor_weight * parts["train/anchor"]
        self.ranks.sum_gradients(list(self.trainable.values()))
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), cfg.max_grad_norm)
        self.optimizer.step()
        blend(self.ema, self.trainable, cfg.ema_decay)
        return {**{name: self.ranks.total(value) for name, value in parts.items()}, "train/grad_norm": float(grad_norm)}

    def _anchor_update(self) -> float:
        """Backpropagate the anchor term on ``anchor_batch`` pool images (every rank the same
        images, each its share of the gradient); this rank's share of its loss."""
        cfg = self.config
        index = torch.randint(len(self.anchor), (cfg.anchor_batch,), generator=self.generator)  # type: ignore[arg-type]
        t, noise = draw_times(cfg.anchor_batch, self.generator), self.model.noise(cfg.anchor_batch, self.generator)
        base = self.base if cfg.anchor_term == "kl" else None
        loss = anchor_loss(self.model, self.anchor, index, t, noise, base)  # type: ignore[arg-type]
        (cfg.anchor_weight * loss / self.ranks.world).backward()
        return float(loss.detach()) / self.ranks.world

    def _reward_metrics(self, scored: list[Scored]) -> dict[str, float]:
        valid = [s for s in scored if s.reward is not None]
        metrics: dict[str, float] = {}
        if valid:
            metrics["train/reward"] = sum(s.reward for s in valid) / len(valid)  # type: ignore[misc]
            for key in sorted({k for s in valid for k in s.dimensions}):
                values = [s.dimensions[key] for s in valid if key in s.dimensions]
                metrics[f"train/{key}"] = sum(values) / len(values)
        for s in scored:
            if s.failure is not None:
                logger.warning("critique failed (excluded from its group): %s", s.failure)
        return metrics

    # -- checkpoint state -------------------------------------------------------------------------

    def weight_sets(self) -> dict[str, dict[str, torch.Tensor]]:
        """The four weight sets a checkpoint stores."""
        return {"current": {n: p.detach() for n, p in self.trainable.items()}, "old": self.old, "ema": self.ema,
                "base": self.base}

    def state(self) -> dict[str, Any]:
        """JSON-ready run state: retired groups and the prompt source's state."""
        return {"retired": [list(k) for k in sorted(self.retired, key=str)], "prompts": self.prompts.state()}

    def restore(self, weights: dict[str, dict[str, torch.Tensor]], torch_state: dict[str, Any],
                state: dict[str, Any]) -> None:
        """Load a checkpoint written from ``weight_sets`` / ``state``."""
        with torch.no_grad():
            for name, param in self.trainable.items():
                param.copy_(weights["current"][name])
        self.old, self.ema, self.base = weights["old"], weights["ema"], weights["base"]
        self.optimizer.load_state_dict(torch_state["optimizer"])
        self.generator.set_state(torch_state["generator"])
        self.step = int(state["step"])
        self.retired = {(k[0], k[1]) for k in state["retired"]}
        self.prompts.load_state(state["prompts"])
