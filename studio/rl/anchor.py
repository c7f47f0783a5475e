"""The anchor: the base model's best drawings of some prompts, replayed during RL.

Before the first step the base model draws a group for each of ``anchor_prompts`` prompts (a
prompt form of its own, e.g. the shapes world's detailed prompts while RL trains on both), the
critic scores them, and the best-rewarded image of each group is kept. Every update then adds
``anchor_weight`` x a supervised flow-matching term on ``anchor_batch`` of those images: the
DiffusionNFT positive term with weight 1 (``x0`` predicted from the current velocity pulled to
the kept image), so the form the RL reward barely defends keeps what the base drew best; or, with
``anchor_term`` 'kl', the KL term against the base model on those images, which is zero at the
base and only resists drift there. With
true CFG the term is on the guided velocity that drew the images (``anchor_guided``): on the
conditional branch alone it teaches that branch the guided samples, and guidance on top of it
then overshoots (docs/rl.md, Session 12).

The pool is written to the run folder (``ANCHOR_FILE``) and read back on resume, so a resumed
run replays the same images.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.errors import JobError
from studio.rl.data import PromptItem, prompt_source
from studio.rl.flow import Cond, FlowModel, Params
from studio.rl.nft import normalised_error
from studio.rl.reward import Scored

ANCHOR_FILE = "anchor_pool.safetensors"
SEED_OFFSET = 7919  # the anchor's prompts and noise are drawn apart from the training ones


@dataclass
class AnchorPool:
    """Replayed images: clean latents, their conditioning, which anchor prompt each drew and its
    reward; ``uncond``: the negative prompt's conditioning when the term is on the guided velocity."""

    x0: torch.Tensor
    cond: Cond
    items: list[int]
    rewards: list[float]
    uncond: Cond | None = None

    def __len__(self) -> int:
        return len(self.items)


def anchor_items(data: str, task: str, form: str, n: int, seed: int) -> list[PromptItem]:
    """The anchor's ``n`` prompts: drawn like training prompts (``form`` for the shapes world),
    from their own seed, so a resumed run draws the same ones."""
    return prompt_source(data, task, form, seed + SEED_OFFSET).draw(n, set())  # type: ignore[arg-type]


def best_of_groups(keys: Sequence[Hashable], scored: Sequence[Scored]) -> list[int]:
    """The index of the best-rewarded image of each group, in the groups' order of first
    appearance; failed critiques are left out, and a group with no scored image is dropped."""
    best: dict[Hashable, int] = {}
    for i, (key, s) in enumerate(zip(keys, scored, strict=True)):
        if s.reward is None:
            continue
        if key not in best or s.reward > scored[best[key]].reward:  # type: ignore[operator]
            best[key] = i
    return list(best.values())


def make_pool(model: FlowModel, items: list[PromptItem], x0: torch.Tensor, chosen_items: list[int],
              rewards: list[float], guided: bool) -> AnchorPool:
    """The pool of ``x0`` (one kept latent per chosen item), with the chosen items' conditioning
    (and, with ``guided`` and true CFG, the negative prompt's)."""
    if not chosen_items:
        raise JobError("No anchor image was scored (every critique of the base model's drawings failed); "
                       "check the critic, or set anchor_prompts to 0.")
    chosen = [items[i] for i in chosen_items]
    sources = [it.source_image() for it in chosen] if model.task == "edit" else None
    cond = model.encode([it.prompt for it in chosen], sources)
    uncond = model.encode([model.negative_prompt] * len(chosen), sources) if guided and model.uses_cfg else None
    return AnchorPool(x0.to(model.device), cond, list(chosen_items), list(rewards), uncond)


def save_pool(path: Path, pool: AnchorPool) -> None:
    """Write the pool's latents, item indices and rewards (safetensors)."""
    save_file({"x0": pool.x0.detach().contiguous().cpu(), "items": torch.tensor(pool.items, dtype=torch.long),
               "rewards": torch.tensor(pool.rewards, dtype=torch.float64)}, str(path))


def load_pool(path: Path, model: FlowModel, items: list[PromptItem], guided: bool) -> AnchorPool:
    """The pool ``save_pool`` wrote, for the same anchor prompts."""
    if not path.is_file():
        raise JobError(f"This run replays an anchor pool, but {path} is missing; start a new run folder.")
    tensors = load_file(str(path))
    chosen = tensors["items"].tolist()
    if chosen and max(chosen) >= len(items):
        raise JobError(f"{path} was drawn for more anchor prompts than the config's {len(items)}; "
                       "resume with the settings the run started with.")
    return make_pool(model, items, tensors["x0"].to(model.dtype), chosen, tensors["rewards"].tolist(), guided)


def anchor_loss(model: FlowModel, pool: AnchorPool, index: torch.Tensor, t: torch.Tensor,
                noise: torch.Tensor, base: Params | None = None) -> torch.Tensor:
    """The anchor term on the pool's images at ``index``, noised to time ``t``, with the current
    velocity (the guided one when the pool has ``uncond``, else the conditional branch).
    Without ``base``: the mean supervised error of each clean latent predicted from it, normalised
    as the DiffusionNFT terms are. With ``base`` (the base model's weights): the mean
    ``|v - v_base|^2``, the KL term of ``nft_loss`` on these images."""
    x0 = pool.x0[index.to(pool.x0.device)]
    t_b = t.to(x0.device, x0.dtype).reshape((-1,) + (1,) * (x0.ndim - 1))
    x_t = (1 - t_b) * x0 + t_b * noise.to(x0.device, x0.dtype)
    cond, uncond = pool.cond.select(index), pool.uncond.select(index) if pool.uncond is not None else None

    def velocity(params: Params | None) -> torch.Tensor:
        v = model.velocity(x_t, t, cond, params)
        return (v if uncond is None else model.guide(v, model.velocity(x_t, t, uncond, params))).to(x0.dtype)

    if base is not None:
        with torch.no_grad():
            v_base = velocity(base)
        return ((velocity(None) - v_base) ** 2).mean()
    return normalised_error(x_t - t_b * velocity(None), x0).mean()
