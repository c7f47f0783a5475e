"""The DiffusionNFT objective on clean samples (no sampler log-probabilities).

For a clean latent ``x0`` with weight ``r`` in [0, 1] (its mapped advantage), fresh noise ``eps``
and time ``t``: ``x_t = (1 - t) x0 + t eps``. With the current velocity ``v`` and the old
policy's ``v_old``, the implicit positive and negative policies are

    v+ = b v + (1 - b) v_old        v- = (1 + b) v_old - b v

and each predicts a clean image ``x0+- = x_t - t v+-``. The loss pulls the positive prediction to
``x0`` for good samples and the negative one for bad samples,

    L = [r ||x0+ - x0||^2 / w+ + (1 - r) ||x0- - x0||^2 / w-] / b  +  kl ||v - v_base||^2,

where ``w+-`` is the detached mean absolute error of that prediction (adaptive normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.rl.flow import Cond, FlowModel, Params

NORM_FLOOR = 1e-5
T_RANGE = (0.001, 0.999)


@dataclass
class NFTLoss:
    """The loss to backpropagate and its detached parts (means over the batch)."""

    loss: torch.Tensor
    policy: float
    kl: float


def normalised_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error divided by its own detached mean absolute error."""
    dims = tuple(range(1, pred.ndim))
    scale = (pred - target).abs().mean(dim=dims, keepdim=True).detach().clamp_min(NORM_FLOOR)
    return ((pred - target) ** 2 / scale).mean(dim=dims)


def draw_times(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` training times, uniform in ``T_RANGE``."""
    low, high = T_RANGE
    return low + (high - low) * torch.rand(n, generator=generator)


def nft_loss(
    model: FlowModel,
    cond: Cond,
    x0: torch.Tensor,
    weight: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    old: Params,
    base: Params | None,
    beta: float,
    kl_weight: float,
    uncond: Cond | None = None,
) -> NFTLoss:
    """The DiffusionNFT loss of one batch (``base`` may be ``None`` when ``kl_weight`` is 0).

    With ``uncond`` (samples drawn with true CFG) every velocity is the *guided* one the sampler
    used, ``model.guide(v(c), v(uncond))``: the policy that drew the samples, so that ``v_old``
    is their velocity field. Without it, the conditional branch alone.
    """
    device, dtype = x0.device, x0.dtype
    shape = (-1,) + (1,) * (x0.ndim - 1)
    t_b = t.to(device, dtype).reshape(shape)
    x_t = (1 - t_b) * x0 + t_b * noise.to(device, dtype)

    def policy(params: Params | None) -> torch.Tensor:
        v_cond = model.velocity(x_t, t, cond, params)
        return v_cond if uncond is None else model.guide(v_cond, model.velocity(x_t, t, uncond, params))

    with torch.no_grad():
        v_old = policy(old)
        v_base = policy(base) if kl_weight > 0 and base is not None else None
    v = policy(None).to(dtype)
    v_pos = beta * v + (1 - beta) * v_old
    v_neg = (1 + beta) * v_old - beta * v
    r = weight.to(device, dtype)
    policy = (r * normalised_error(x_t - t_b * v_pos, x0) + (1 - r) * normalised_error(x_t - t_b * v_neg, x0)) / beta
    kl = ((v - v_base) ** 2).mean(dim=tuple(range(1, v.ndim))) if v_base is not None else torch.zeros_like(policy)
    loss = (policy + kl_weight * kl).mean()
    return NFTLoss(loss=loss, policy=float(policy.detach().mean()), kl=float(kl.detach().mean()))
