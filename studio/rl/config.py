"""The RL job's typed settings: one dataclass, the public DiffusionNFT settings as defaults.

``studio.jobs.config`` turns it into CLI flags (``--learning-rate``), a JSON file and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError

# Attention projections of the FLUX / SD3 / Qwen-Image transformers (joint and single blocks).
ATTENTION_PROJECTIONS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class RLConfig:
    """DiffusionNFT fine-tuning of a diffusers flow-matching generator with the critic as reward.

    A *step* samples ``prompts_per_step`` prompts x ``group_size`` images with the old policy,
    scores them with the critic and trains once over them (``train_batch`` images per update).
    """

    model: str = _help("generator pipeline folder or hub id (FLUX.1, FLUX.1-Kontext, SD3.5, the shapes world)",
                       default="assets/shapes-t2i")
    data: str = _help("'shapes' (generated shapes-world prompts / edits) or a JSONL file of "
                      "{\"prompt\": ..., \"source_image\": path} rows", default="shapes")
    prompt_form: Literal["short", "detailed", "both"] = _help(
        "shapes-world prompt form to train on", default="both")
    eval_data: str | None = _help("JSONL of held-out prompts (shapes world: its held-out scenes)", default=None)
    eval_prompts: int = _help("held-out prompts per evaluation (per form in the shapes world)", default=16)
    critic: dict = _help("critic spec: {\"backend\": \"shapes\"|\"openai\"|\"transformers\", ...options}",
                         default_factory=lambda: {"backend": "shapes"})
    check_critic: dict | None = _help("optional second critic spec for the reward-hacking monitor "
                                      "(the shapes world uses its analyzer instead)", default=None)
    weights: dict | None = _help("per-dimension reward weights (default: the RL preset, no Image Faithfulness)",
                                 default=None)
    finetune: Literal["lora", "full"] = _help("LoRA adapters, or all transformer weights (tiny models)",
                                               default="lora")
    lora_rank: int = _help("LoRA rank", default=32)
    lora_alpha: int = _help("LoRA alpha", default=64)
    lora_targets: list = _help("module names the LoRA adapts", default_factory=lambda: list(ATTENTION_PROJECTIONS))
    learning_rate: float = _help("AdamW learning rate", default=3e-4)
    weight_decay: float = _help("AdamW weight decay", default=1e-4)
    max_grad_norm: float = _help("gradient clipping norm", default=1.0)
    group_size: int = _help("images per prompt (one group)", default=8)
    prompts_per_step: int = _help("prompts sampled per step", default=64)
    sample_batch: int = _help("prompts per sampling pass (each gives group_size images)", default=1)
    train_batch: int = _help("images per optimizer update", default=8)
    train_epochs: int = _help("passes over a step's samples (each with fresh times and noise); more "
                              "learning per sampled image when sampling dominates a step", default=1)
    group_noise: bool = _help("training draws one time and noise per group, shared by its images, which are "
                              "updated together (train_batch a multiple of group_size), instead of one per image: "
                              "a control variate for the noise common to a group's near-identical images", default=False)
    guided_loss: bool = _help("with true CFG, the loss is on the guided velocity the sampler drew the images with "
                              "(the policy); off (default: it halved bench.rl_sanity's gain): on the conditional branch alone",
                              default=False)
    anchor_prompts: int = _help("prompts whose base-model drawings are replayed (0: no anchor): the base draws a group "
                                "for each before the first step and the best-rewarded image is kept (studio.rl.anchor)",
                                default=0)
    anchor_form: Literal["short", "detailed", "both"] = _help(
        "shapes-world prompt form of the anchor's prompts (JSONL data: its own prompts)", default="detailed")
    anchor_weight: float = _help("weight of the supervised flow-matching term on replayed anchor images (in the "
                                 "shapes world 0.05 and 0.2 both cost the protected form: docs/rl.md, Session 12)",
                                 default=0.05)
    anchor_batch: int = _help("anchor images replayed in each update", default=4)
    anchor_term: Literal["supervised", "kl"] = _help(
        "the anchor's term: 'supervised' pulls the velocity to the pool's images; 'kl' holds it to the base model's "
        "velocity there (|v - v_base|^2, zero at the base: it only resists drift on the pool's prompts)",
        default="supervised")
    anchor_guided: bool = _help("with true CFG, the anchor term is on the guided velocity that drew the pool; off: on "
                                "the conditional branch alone (it cost detailed prompts 13-20 points: docs/rl.md)",
                                default=True)
    sampling_steps: int = _help("deterministic Euler steps of the old policy", default=10)
    guidance: float | None = _help("sampling guidance (default: the model's own)", default=None)
    resolution: int | None = _help("image side in pixels (default: the model's own, else 512)", default=None)
    beta: float = _help("DiffusionNFT guidance strength b of the implicit positive/negative policies",
                        default=1.0)
    kl_weight: float = _help("weight of ||v - v_base||^2 against the base model", default=1e-4)
    adv_clip: float = _help("advantages are clipped to +-this, then mapped to [0, 1]", default=5.0)
    std_scope: Literal["group", "global"] = _help("divide by the group's std or the step's global std",
                                                  default="group")
    retire_mean: float = _help("retire a prompt whose group mean reward is above this ...", default=0.9)
    retire_std: float = _help("... and whose group std is below this", default=0.05)
    old_decay_rate: float = _help("old policy EMA decay grows by this per step ...", default=0.001)
    old_decay_max: float = _help("... up to this", default=0.5)
    ema_decay: float = _help("decay of the EMA weights used for evaluation and export", default=0.9)
    max_steps: int = _help("training steps", default=100)
    max_minutes: float = _help("stop after the step that passes this wall-clock budget, evaluate and "
                               "export (0: no budget)", default=0.0)
    max_cpu_minutes: float = _help("stop after the step that passes this much CPU time of the run's process (all "
                                   "its threads, summed over resumes; a budget a shared machine's load does not "
                                   "eat), evaluate and export (0: no budget)", default=0.0)
    eval_every: int = _help("evaluate every N steps (0: only before and after)", default=10)
    checkpoint_every: int = _help("checkpoint every N steps", default=10)
    overlap_reward: bool = _help("critique images while the next ones are drawn", default=True)
    critic_batch: int = _help("images per critic call", default=8)
    alert_tolerance: float = _help("reward rise / check fall that raises the reward-hacking alert",
                                   default=0.02)
    alert_p: float = _help("a check with per-scene results (the shapes world) has fallen only when the paired sign "
                           "test over its scenes gives p below this (1: the tolerance alone decides)", default=0.05)
    seed: int = _help("seed of prompts, noise and LoRA init", default=0)
    offload_text_encoders: bool = _help("the text encoders wait on the CPU and visit the device only to encode a step's "
                                        "prompts (the one-GPU preset: FLUX's T5 is 9 GB in bf16)", default=False)
    gradient_checkpointing: bool = _help("recompute the transformer's activations in the backward pass: much less "
                                         "memory for a slower update (the one-GPU preset)", default=False)
    device: str = _help("'auto', 'cpu' or 'cuda'", default="auto")
    dtype: str = _help("'auto' (bf16 on CUDA, fp32 on CPU), 'bf16', 'fp32'", default="auto")
    threads: int = _help("torch CPU threads (0: torch's default)", default=0)

    def validate(self) -> None:
        """Raise ``ConfigError`` for a setting the trainer cannot use."""
        positive = ("eval_prompts", "lora_rank", "lora_alpha", "group_size", "prompts_per_step", "sample_batch",
                    "train_batch", "train_epochs", "sampling_steps", "max_steps", "checkpoint_every", "critic_batch",
                    "anchor_batch")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number of 1 or more, got {value!r}.")
        if self.group_size < 2:
            raise ConfigError("group_size must be at least 2: advantages compare images within a group.")
        for name in ("max_minutes", "max_cpu_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (no budget) or more, got {getattr(self, name)!r}.")
        if not isinstance(self.anchor_prompts, int) or isinstance(self.anchor_prompts, bool) or self.anchor_prompts < 0:
            raise ConfigError(f"anchor_prompts must be a whole number of 0 (no anchor) or more, got {self.anchor_prompts!r}.")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be 0 or more, got {self.eval_every!r}.")
        for name in ("learning_rate", "max_grad_norm", "adv_clip", "beta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be above 0, got {getattr(self, name)!r}.")
        for name in ("kl_weight", "weight_decay", "retire_std", "alert_tolerance", "old_decay_rate", "anchor_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)!r}.")
        if not 0 < self.alert_p <= 1:
            raise ConfigError(f"alert_p must be in (0, 1], got {self.alert_p!r}.")
        for name in ("ema_decay", "old_decay_max"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")
        if self.group_noise and self.train_batch % self.group_size:
            raise ConfigError(f"group_noise updates whole groups: train_batch ({self.train_batch}) must be a multiple "
                              f"of group_size ({self.group_size}).")
        if self.resolution is not None and self.resolution < 16:
            raise ConfigError(f"resolution must be at least 16 pixels, got {self.resolution!r}.")
        if not isinstance(self.critic, dict) or "backend" not in self.critic:
            raise ConfigError(f"critic must be a spec with a 'backend' key, got {self.critic!r}.")
        if self.check_critic is not None and "backend" not in self.check_critic:
            raise ConfigError(f"check_critic must be a spec with a 'backend' key, got {self.check_critic!r}.")
        if not self.lora_targets:
            raise ConfigError("lora_targets must name at least one module.")
        self.scoring_policy()

    def scoring_policy(self) -> ScoringPolicy:
        """The reward's ScoringPolicy: the RL preset, or the given per-dimension weights."""
        if self.weights is None:
            return ScoringPolicy.rl_reward()
        return ScoringPolicy(weights=self.weights, name="rl_custom")
