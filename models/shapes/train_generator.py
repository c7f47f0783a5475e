"""Trains the tiny shapes-world generators and exports them as diffusers pipeline folders.

    python -m models.shapes.train_generator --tasks t2i --out assets --minutes 55 --seed 0 --threads 1
    python -m models.shapes.train_generator --tasks edit --out assets --minutes 55 --seed 0 --threads 2 --vae-steps 3000

(the shipped models: the first ran beside an earlier edit run, the second alone).

Two phases inside one wall-clock budget: a small VAE learns to reconstruct rendered scenes (then
it is frozen and its scaling/shift factors are set from latent statistics), then one tiny FLUX
transformer and its two text encoders learn jointly, with flow matching, text-to-image (a random
scene, prompted in the short or the detailed form) and editing (source render + instruction ->
target render, in the Kontext token layout). Noise levels are drawn logit-normal and shifted
towards pure noise (``--sigma-shift``, 3), where a scene's layout is decided and only the prompt
can tell it; on 500-step test runs this doubled how much the loss depends on the right prompt at
high noise. The EMA weights are exported to ``<out>/shapes-t2i`` (``FluxPipeline``) and
``<out>/shapes-edit`` (``FluxKontextPipeline``), whose scheduler samples with the same shift.

Training-only probes (``models.shapes.text_probes``) make the T5 token states say what each word is
about: the binding probe (``--binding-probe-weight``, 1.0; 0 turns it off) which attribute sits in
which cell, so that the transformer can bind colours and shapes to positions (without it,
detailed-prompt accuracy stayed at a few percent); the edit probe (``--edit-probe-weight``, 1.0)
which words name the object to change and which the change (the "blue" of "make the red circle
blue"). ``--tasks t2i`` or ``--tasks edit`` trains one pipeline alone (the shipped ones
are trained that way, each in its own 55 minutes); the default trains one transformer for both.

``--device cuda`` runs the same training on a GPU; ``--steps N`` (and ``--vae-steps``) fix the
step counts instead of the wall-clock budget, which is how ``bench/generator_sweep.sh`` compares
designs at the step counts a CPU reaches.

A checkpoint in ``--run-dir`` (default ``runs/shapes-<tasks>``, e.g. ``runs/shapes-t2i``) is written every few minutes;
running the same command again resumes from it. Held-out scenes (``heldout_scenes``,
``heldout_edits``) are never trained on.

``--init-from FOLDER`` continues training an exported pipeline folder (e.g. ``assets/shapes-t2i``)
instead of starting from random weights: its VAE (with its latent factors), transformer and text
encoders are loaded, the VAE phase is skipped, and the transformer phase starts at step 0 with a
fresh optimizer, LR schedule, EMA (from the loaded weights) and binding probe (probes are not
exported). A checkpoint already in ``--run-dir`` wins over it, so an interrupted continuation
resumes as any run does. E.g., with short prompts weighted up and a new training stream::

    python -m models.shapes.train_generator --tasks t2i --init-from assets/shapes-t2i --out /tmp/cont \
        --run-dir /tmp/cont/run --minutes 25 --seed 1 --threads 1 --detailed-prob 0.2 --lr 3e-4
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxPipeline
from PIL import Image
from tqdm import tqdm

from models.errors import ConfigError, NotFoundError
from models.shapes import world
from models.shapes.text_probes import BindingProbe, EditProbe
from models.shapes.tiny_flux import FluxComponents, TinyFluxConfig, assemble_pipelines, build_components, build_scheduler

logger = logging.getLogger(__name__)

HELDOUT_SEED = 990_001  # held-out evaluation scenes; training streams are seeded elsewhere
CORPUS_SEED = 12_345  # the text corpus the tokenizers are built from
T2I_FOLDER = "shapes-t2i"
EDIT_FOLDER = "shapes-edit"
DEFAULTS_FILE = "studio_defaults.json"
IMAGE_SIZE = 64
TASKS = ("t2i", "edit")  # text-to-image (FluxPipeline) and editing (FluxKontextPipeline)
FOLDERS = {"t2i": T2I_FOLDER, "edit": EDIT_FOLDER}


def parse_tasks(tasks: str) -> list[str]:
    """The tasks a comma-separated ``--tasks`` value names, in the order of ``TASKS``."""
    asked = {t.strip() for t in tasks.split(",")}
    if not asked <= set(TASKS):
        raise ConfigError(f"tasks must be a comma-separated subset of {', '.join(TASKS)}; got {tasks!r}.")
    return [t for t in TASKS if t in asked]


@dataclass
class TrainConfig:
    """Settings of one training run (defaults: the shipped models', trained with ``--tasks t2i
    --threads 1`` and ``--tasks edit --threads 2 --vae-steps 3000``)."""

    out: str = "assets"  # where the two pipeline folders are written
    run_dir: str = ""  # checkpoint, log and eval samples; "": runs/shapes-<tasks> (runs/shapes-t2i, ...)
    minutes: float = 55.0  # wall-clock budget for the whole run (both phases, eval, export)
    seed: int = 0
    threads: int = 2  # torch CPU threads (on a busy shared machine 1 can be faster: no spin-waiting)
    device: str = "cpu"  # "cuda" trains the same run on a GPU
    steps: int = 0  # transformer steps; 0: train until the wall-clock budget ends
    vae_steps: int = 0  # VAE steps; 0: train for vae_minutes
    loader_workers: int = 0  # processes rendering training batches (0: render in the training process)
    # what the transformer learns: "t2i,edit" (one transformer serves both pipelines), or one of
    # them alone, exporting only its pipeline (the budget is 60 minutes per model)
    tasks: str = "t2i,edit"
    # VAE phase
    vae_minutes: float = 8.0
    vae_batch: int = 8
    vae_lr: float = 3e-3
    vae_foreground_weight: float = 9.0  # extra loss weight on non-background pixels (colours, letters)
    vae_kl_weight: float = 1e-6
    # joint transformer + text-encoder phase
    # batches of 16 + 8 at lr 1e-3 beat 32 + 16 at 1.5e-3 at equal CPU time: twice the steps
    # (bench/generator_sweep.sh batch); 16 + 8 at 1.5e-3 diverged
    batch_t2i: int = 16
    batch_edit: int = 8
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    empty_prompt_prob: float = 0.1  # unconditional samples for classifier-free guidance
    # noise levels are drawn logit-normal, then shifted towards pure noise, where the layout of a
    # scene is decided and only the prompt can tell it (as SD3 and FLUX do); the exported
    # scheduler samples with the same shift
    sigma_shift: float = 3.0
    detailed_prob: float = 0.5  # detailed vs short prompt form in text-to-image samples
    # share of training scenes that carry a word (the world's own share, 0.3, keeps the stream the
    # shipped models saw), and the loss weight of the latent tokens of the word band (the image's
    # bottom rows, where the letters are drawn: a few tokens of 64, so a letter's shape is a
    # small part of the mean loss)
    word_prob: float = world.WORD_PROB
    word_band_weight: float = 1.0
    # held-out scenes and edits never trained on, by scene and by prompt text (ExcludedKeys); the
    # shipped models excluded the first 200 by scene only (bench.heldout reconstructs what they saw)
    heldout_n: int = 400
    # weights of the training-only probes' losses (models.shapes.text_probes); 0: no probe. The
    # binding probe makes the T5 token states say which colour, shape and size sits in which cell
    # (text-to-image prompts), the edit probe which object an instruction names and what changes
    binding_probe_weight: float = 1.0
    edit_probe_weight: float = 1.0
    ema_decay: float = 0.995
    reserve_minutes: float = 2.0  # kept free at the end for the final eval and export
    checkpoint_minutes: float = 3.0
    eval_minutes: float = 10.0
    # sampling settings written to studio_defaults.json
    sample_steps: int = 16
    # true_cfg_scale (with an empty negative prompt) per task: text-to-image wants 3; editing is best
    # without guidance, whose empty-instruction branch keeps the source (the previous edit model on
    # 100 held-out edits: 31% success at 1, 20% at 1.5, 17% at 2, 10% at 3)
    sample_cfg_t2i: float = 3.0
    sample_cfg_edit: float = 1.0
    # an exported pipeline folder to continue training from ("": random weights and a VAE phase)
    init_from: str = ""
    model: TinyFluxConfig = field(default_factory=TinyFluxConfig)

    def __post_init__(self) -> None:
        parse_tasks(self.tasks)
        if self.heldout_n < 0:
            raise ConfigError(f"heldout_n is the number of held-out scenes never trained on (>= 0); got {self.heldout_n}.")
        if not 0 <= self.word_prob <= 1:
            raise ConfigError(f"word_prob is a share of the training scenes, between 0 and 1; got {self.word_prob}.")
        if self.word_band_weight <= 0:
            raise ConfigError(f"word_band_weight must be positive; got {self.word_band_weight}.")
        if not 0 < self.batch_edit <= self.batch_t2i:
            raise ConfigError(
                f"batch_edit must be between 1 and batch_t2i ({self.batch_t2i}), because edit sources are drawn "
                f"from the text-to-image batch; got {self.batch_edit}."
            )
        if self.init_from:
            if self.reserve_minutes >= self.minutes:
                raise ConfigError(f"The budget of {self.minutes} minutes leaves no time for the transformer after the "
                                  f"export reserve ({self.reserve_minutes} min). Raise --minutes.")
        elif self.vae_minutes + self.reserve_minutes >= self.minutes:
            raise ConfigError(
                f"The budget of {self.minutes} minutes leaves no time for the transformer after the VAE "
                f"({self.vae_minutes} min) and the export reserve ({self.reserve_minutes} min). Raise --minutes."
            )

    @property
    def task_list(self) -> list[str]:
        """The tasks this run trains, in the order of ``TASKS``."""
        return parse_tasks(self.tasks)


def heldout_scenes(n: int = 200, seed: int = HELDOUT_SEED) -> list[world.Scene]:
    """``n`` distinct evaluation scenes for text-to-image; training never draws them."""
    rng = random.Random(seed)
    scenes: dict[world.Scene, None] = {}
    while len(scenes) < n:
        scenes[world.random_scene(rng)] = None
    return list(scenes)


def heldout_edits(n: int = 200, seed: int = HELDOUT_SEED + 1) -> list[tuple[world.Scene, world.Edit]]:
    """``n`` evaluation edits (distinct source scenes, one edit each); never trained on."""
    rng = random.Random(seed)
    sources: dict[world.Scene, world.Edit] = {}
    while len(sources) < n:
        scene = world.random_scene(rng)
        if scene not in sources:
            sources[scene] = world.random_edit(scene, rng)
    return list(sources.items())


def load_generator_weights(parts: FluxComponents, folder: str | Path) -> None:
    """Copy the VAE (with its latent scaling and shift), transformer and text encoders of an exported
    shapes pipeline folder into ``parts`` (in place, keeping each module's dtype and device).

    Raises ``NotFoundError`` when ``folder`` is not a pipeline folder and ``ConfigError`` when its
    tokenizers or module sizes differ from ``parts`` (other ``--model-json`` sizes)."""
    from diffusers import DiffusionPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise NotFoundError(f"{folder} is not an exported pipeline folder (no model_index.json); "
                            f"--init-from takes e.g. assets/{T2I_FOLDER}.")
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, name).get_vocab() != getattr(parts, name).get_vocab():
            raise ConfigError(f"The {name} of {folder} differs from the one this trainer builds; "
                              "it was exported by another version of the shapes world.")
    for name in ("vae", "transformer", "text_encoder", "text_encoder_2"):
        try:
            getattr(parts, name).load_state_dict(getattr(pipe, name).state_dict())
        except RuntimeError as err:
            raise ConfigError(f"The {name} of {folder} does not fit the model sizes of this run "
                              f"(set them with --model-json): {str(err).splitlines()[0]}") from err
    vae_config = pipe.vae.config
    parts.vae.register_to_config(scaling_factor=vae_config.scaling_factor, shift_factor=vae_config.shift_factor)


def text_corpus(n_scenes: int = 3000, seed: int = CORPUS_SEED) -> list[str]:
    """Prompts in both forms and edit instructions: the texts the tokenizers are built over."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n_scenes):
        scene = world.random_scene(rng)
        texts += [world.short_prompt(scene), world.detailed_prompt(scene), world.random_edit(scene, rng).instruction]
    return texts


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> float tensor (N, 3, H, W) in [-1, 1], as the pipelines' image processor does."""
    return uint8_to_model(torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])))


def _foreground(x: torch.Tensor) -> torch.Tensor:
    """Mask (N, 1, H, W) of the pixels of ``x`` (in [-1, 1]) that differ from the world's background."""
    background = torch.tensor(world.BACKGROUND, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 127.5 - 1
    return ((x - background).abs().sum(dim=1, keepdim=True) > 0.05).to(x.dtype)


@dataclass(frozen=True)
class ExcludedKeys:
    """What training never draws: held-out scenes by identity, and any scene whose short or
    detailed prompt is the text of a held-out prompt (so an evaluation prompt is never a training
    prompt, whichever scene it came with)."""

    scenes: frozenset[world.Scene]
    prompts: frozenset[str]

    @classmethod
    def heldout(cls, n: int) -> "ExcludedKeys":
        """The first ``n`` held-out scenes and the sources of the first ``n`` held-out edits,
        with both prompt forms of each."""
        scenes = frozenset(heldout_scenes(n)) | {scene for scene, _ in heldout_edits(n)}
        prompts = frozenset(text for scene in scenes for text in (world.short_prompt(scene), world.detailed_prompt(scene)))
        return cls(scenes, prompts)

    def excludes(self, scene: world.Scene) -> bool:
        """Whether training must skip ``scene``."""
        if scene in self.scenes:
            return True
        return bool(self.prompts) and (
            world.short_prompt(scene) in self.prompts or world.detailed_prompt(scene) in self.prompts
        )


class SceneStream:
    """Training scenes, reproducible per step and never one the ``excluded`` keys name."""

    def __init__(self, seed: int, excluded: ExcludedKeys, word_prob: float = world.WORD_PROB) -> None:
        self.seed = seed
        self.excluded = excluded
        self.word_prob = word_prob

    def rng(self, phase: str, step: int) -> random.Random:
        """The random source of one step of one phase."""
        return random.Random(f"{self.seed}/{phase}/{step}")

    def scene(self, rng: random.Random) -> world.Scene:
        """One training scene."""
        while True:
            scene = world.random_scene(rng, word_prob=self.word_prob)
            if not self.excluded.excludes(scene):
                return scene


@dataclass
class StepSamples:
    """One transformer step's samples: the text-to-image scenes (the first ones also the edit
    sources), their prompts ("" unconditional), the edit instructions and the edit targets."""

    scenes: list[world.Scene]
    prompts: list[str]
    edit_prompts: list[str]
    targets: list[world.Scene]


class StepBatches(torch.utils.data.IterableDataset):
    """The rendered training batch of every transformer step from ``start`` on: text-to-image
    prompts, edit instructions and the images (uint8, t2i renders then edit targets). Step ``i``'s
    batch depends only on the seed and ``i``, so any number of loader workers gives the same data."""

    def __init__(self, cfg: TrainConfig, stream: SceneStream, start: int) -> None:
        self.cfg, self.stream, self.start = cfg, stream, start

    def __iter__(self) -> Iterator[tuple[list[str], list[str], torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        first, every = (0, 1) if info is None else (info.id, info.num_workers)
        step = self.start + first
        while True:
            yield self.batch(step)
            step += every

    def batch(self, step: int) -> tuple[list[str], list[str], torch.Tensor]:
        """The batch of transformer step ``step`` (no prompts for a task the run does not train)."""
        samples = self.samples(step)
        images = np.stack([np.asarray(world.render(s)) for s in samples.scenes + samples.targets])
        return samples.prompts, samples.edit_prompts, torch.from_numpy(images)

    def samples(self, step: int) -> "StepSamples":
        """What transformer step ``step`` trains on, before rendering."""
        cfg, tasks = self.cfg, self.cfg.task_list
        rng = self.stream.rng("flux", step)
        # the first batch_edit scenes of the text-to-image batch are also the edit sources
        scenes = [self.stream.scene(rng) for _ in range(cfg.batch_t2i if "t2i" in tasks else cfg.batch_edit)]
        prompts = [self._t2i_prompt(scene, rng) for scene in scenes] if "t2i" in tasks else []
        e_prompts, targets = [], []
        for scene in scenes[: cfg.batch_edit] if "edit" in tasks else []:
            edit = world.random_edit(scene, rng)
            if rng.random() < cfg.empty_prompt_prob:
                e_prompts.append("")  # no instruction: keep the source
                targets.append(scene)
            else:
                e_prompts.append(edit.instruction)
                targets.append(edit.target)
        return StepSamples(scenes, prompts, e_prompts, targets)

    def _t2i_prompt(self, scene: world.Scene, rng: random.Random) -> str:
        if rng.random() < self.cfg.empty_prompt_prob:
            return ""
        if rng.random() < self.cfg.detailed_prob:
            return world.detailed_prompt(scene)
        return world.short_prompt(scene)


def uint8_to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def packed_latents(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Scaled, packed latents (N, tokens, channels * 4) of uint8 renders (N, H, W, 3): what the
    FLUX transformer denoises."""
    z = vae.encode(uint8_to_model(images.to(vae.device))).latent_dist.mode()
    z = (z - vae.config.shift_factor) * vae.config.scaling_factor
    n, c, h, w = z.shape
    return FluxPipeline._pack_latents(z, n, c, h, w)


@dataclass
class RunState:
    """What a checkpoint holds besides the weights."""

    phase: str = "vae"  # "vae", then "flux", then "done"
    vae_step: int = 0
    step: int = 0
    flux_start: float = 0.0  # elapsed seconds when phase 2 began (the LR schedule runs on time)
    elapsed: float = 0.0  # seconds of training so far, over all sessions


class Trainer:
    """Owns the components, the optimizer and the checkpoint of one run."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir or f"runs/shapes-{'-'.join(cfg.task_list)}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.run_dir / "ckpt.pt"
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.parts = build_components(cfg.model, text_corpus())
        self.parts.scheduler = build_scheduler(cfg.sigma_shift)
        self.state = RunState()
        if cfg.init_from:  # continue an exported model: its weights, no VAE phase
            load_generator_weights(self.parts, cfg.init_from)
            self.state.phase = "flux"
        for module in (self.parts.vae, self.parts.transformer, self.parts.text_encoder, self.parts.text_encoder_2):
            module.to(self.device)
        self.t2i = FluxPipeline(**self.parts.as_kwargs())  # prompt encoding and latent packing
        self.trainable = [self.parts.transformer, self.parts.text_encoder, self.parts.text_encoder_2]
        self.ema = [copy.deepcopy(m).requires_grad_(False) for m in self.trainable]
        self.vae_opt = torch.optim.AdamW(self.parts.vae.parameters(), lr=cfg.vae_lr)
        params = [p for m in self.trainable for p in m.parameters()]
        # the probes of the run's tasks, by the name of their loss term
        self.probes = {name: probe(cfg.model.t5_d_model).to(self.device) for name, probe, task in (
            ("binding_probe", BindingProbe, "t2i"), ("edit_probe", EditProbe, "edit"))
            if task in cfg.task_list and self.loss_weight(name) > 0}
        params += [p for probe in self.probes.values() for p in probe.parameters()]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        self.stream = SceneStream(cfg.seed, ExcludedKeys.heldout(cfg.heldout_n), cfg.word_prob)
        self._batches = None  # iterator over StepBatches, opened at the first transformer step
        self.session_start = time.time()
        self.elapsed_at_start = 0.0
        if self.ckpt_path.exists():
            self._load()

    def loss_weight(self, term: str) -> float:
        """The weight of a loss term in the transformer phase (the probes' from the config, 1 otherwise)."""
        return {"binding_probe": self.cfg.binding_probe_weight, "edit_probe": self.cfg.edit_probe_weight}.get(term, 1.0)

    # ----------------------------------------------------------------- time and checkpoints
    def elapsed(self) -> float:
        """Seconds of this run so far, including earlier sessions."""
        return self.elapsed_at_start + time.time() - self.session_start

    def save(self) -> None:
        """Write the checkpoint atomically."""
        self.state.elapsed = self.elapsed()
        blob = {
            "config": asdict(self.cfg),
            "state": asdict(self.state),
            "vae": self.parts.vae.state_dict(),
            "vae_factors": (self.parts.vae.config.scaling_factor, self.parts.vae.config.shift_factor),
            "models": [m.state_dict() for m in self.trainable],
            "ema": [m.state_dict() for m in self.ema],
            "probes": {name: probe.state_dict() for name, probe in self.probes.items()},
            "vae_opt": self.vae_opt.state_dict(),
            "opt": self.opt.state_dict(),
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(blob, tmp)
        tmp.replace(self.ckpt_path)
        logger.info("checkpoint saved at %s (phase %s, step %d)", self.ckpt_path, self.state.phase, self.state.step)

    def _load(self) -> None:
        blob = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        if blob["config"]["model"] != asdict(self.cfg.model):
            raise ConfigError(
                f"The checkpoint in {self.ckpt_path} was trained with model sizes {blob['config']['model']}, "
                f"but this run asks for {asdict(self.cfg.model)}. Use another --run-dir or delete the checkpoint."
            )
        trained = parse_tasks(blob["config"].get("tasks", TrainConfig.tasks))
        if trained != self.cfg.task_list:
            raise ConfigError(f"The checkpoint in {self.ckpt_path} trains {','.join(trained)}, but this run asks for "
                              f"{','.join(self.cfg.task_list)}. Use another --run-dir or delete the checkpoint.")
        self.state = RunState(**blob["state"])
        self.elapsed_at_start = self.state.elapsed
        self.parts.vae.load_state_dict(blob["vae"])
        scaling, shift = blob["vae_factors"]
        self.parts.vae.register_to_config(scaling_factor=scaling, shift_factor=shift)
        for module, sd in zip(self.trainable, blob["models"]):
            module.load_state_dict(sd)
        for module, sd in zip(self.ema, blob["ema"]):
            module.load_state_dict(sd)
        if set(self.probes) != set(blob["probes"]):
            raise ConfigError(f"The checkpoint in {self.ckpt_path} was trained with probes {sorted(blob['probes'])}, "
                              f"this run asks for {sorted(self.probes)} (--binding-probe-weight, --edit-probe-weight "
                              "on or off). Use the same settings, another --run-dir, or delete the checkpoint.")
        for name, probe in self.probes.items():
            probe.load_state_dict(blob["probes"][name])
        self.vae_opt.load_state_dict(blob["vae_opt"])
        self.opt.load_state_dict(blob["opt"])
        logger.info("resumed from %s: %s", self.ckpt_path, self.state)

    # ----------------------------------------------------------------- phase 1: VAE
    def train_vae(self) -> None:
        """Train the VAE on rendered scenes for ``vae_minutes``, then fix its latent factors."""
        cfg, vae = self.cfg, self.parts.vae
        vae.train()
        deadline = cfg.vae_minutes * 60
        bar = tqdm(desc="vae", initial=self.state.vae_step, total=cfg.vae_steps or None, mininterval=20)
        last_save = time.time()
        while (self.state.vae_step < cfg.vae_steps) if cfg.vae_steps else (self.elapsed() < deadline):
            rng = self.stream.rng("vae", self.state.vae_step)
            x = images_to_tensor([world.render(self.stream.scene(rng)) for _ in range(cfg.vae_batch)]).to(self.device)
            posterior = vae.encode(x).latent_dist
            # the posterior mean, not a sample: with the tiny KL weight the sampling noise only
            # slows learning down, and the pipelines encode sources with the mean too
            recon = vae.decode(posterior.mode()).sample
            error = recon - x
            weight = 1 + cfg.vae_foreground_weight * _foreground(x)
            rec_loss = ((error.abs() + error**2) * weight).mean()
            loss = rec_loss + cfg.vae_kl_weight * posterior.kl().mean()
            progress = self.state.vae_step / cfg.vae_steps if cfg.vae_steps else min(1.0, self.elapsed() / deadline)
            for group in self.vae_opt.param_groups:
                group["lr"] = cfg.vae_lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.vae_opt.step()
            self.state.vae_step += 1
            bar.update()
            if self.state.vae_step % 50 == 0:
                bar.set_postfix(rec=f"{rec_loss.item():.4f}")
                logger.info("vae step %d rec %.4f (%.1fs)", self.state.vae_step, rec_loss.item(), self.elapsed())
            if time.time() - last_save > cfg.checkpoint_minutes * 60:
                self.save()
                last_save = time.time()
        bar.close()
        vae.eval().requires_grad_(False)
        self._set_latent_factors()
        self.state.phase = "flux"
        self.save()

    @torch.no_grad()
    def _set_latent_factors(self, n: int = 512) -> None:
        rng = random.Random(f"{self.cfg.seed}/latent-stats")
        x = images_to_tensor([world.render(self.stream.scene(rng)) for _ in range(n)]).to(self.device)
        z = self.parts.vae.encode(x).latent_dist.mode()
        shift, scale = z.mean().item(), 1.0 / z.std().item()
        self.parts.vae.register_to_config(scaling_factor=scale, shift_factor=shift)
        recon = self.parts.vae.decode(z).sample
        logger.info("vae latent shift %.4f scaling %.4f; reconstruction L1 %.4f",
                    shift, scale, F.l1_loss(recon, x).item())

    # ----------------------------------------------------------------- phase 2: transformer
    def _latents(self, images: torch.Tensor) -> torch.Tensor:
        return packed_latents(self.parts.vae, images.to(self.device))

    def _image_ids(self) -> torch.Tensor:
        side = IMAGE_SIZE // self.t2i.vae_scale_factor // 2
        return FluxPipeline._prepare_latent_image_ids(1, side, side, self.device, torch.float32)

    def _flow_loss(self, prompts: list[str], x0: torch.Tensor, gen: torch.Generator,
                   source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow-matching loss: x_t = (1 - s) x0 + s eps, target eps - x0, s ~ shifted logit-normal;
        returned with the prompts' T5 token states."""
        embeds, pooled, text_ids = self.t2i.encode_prompt(
            prompt=prompts, prompt_2=None, device=self.device,
            max_sequence_length=self.cfg.model.max_sequence_length,
        )
        n = x0.shape[0]
        sigma = torch.sigmoid(torch.randn(n, generator=gen, device=self.device))
        shift = self.cfg.sigma_shift
        sigma = shift * sigma / (1 + (shift - 1) * sigma)
        eps = torch.randn(x0.shape, generator=gen, device=self.device)
        s = sigma[:, None, None]
        hidden = (1 - s) * x0 + s * eps
        img_ids = self._image_ids()
        if source is not None:
            source_ids = img_ids.clone()
            source_ids[:, 0] = 1
            hidden = torch.cat([hidden, source], dim=1)
            img_ids = torch.cat([img_ids, source_ids], dim=0)
        pred = self.parts.transformer(
            hidden_states=hidden, timestep=sigma, pooled_projections=pooled, encoder_hidden_states=embeds,
            txt_ids=text_ids, img_ids=img_ids, return_dict=False,
        )[0][:, : x0.shape[1]]
        error = ((pred - (eps - x0)) ** 2).mean(dim=-1)  # (N, tokens)
        weights = self._token_weights
        return (error * weights).sum(dim=1).mean() / weights.sum(), embeds

    @property
    def _token_weights(self) -> torch.Tensor:
        """Loss weight of each packed latent token: ``word_band_weight`` on the rows of tokens the
        word band touches, 1 elsewhere (all 1 by default: the plain mean squared error)."""
        side = IMAGE_SIZE // self.t2i.vae_scale_factor // 2  # packed tokens per row
        pixels_per_token = IMAGE_SIZE // side
        first_band_row = int(world.GRID_HEIGHT * IMAGE_SIZE) // pixels_per_token
        rows = torch.arange(side, device=self.device).repeat_interleave(side)
        return torch.where(rows >= first_band_row, self.cfg.word_band_weight, 1.0)

    def _flux_end(self) -> float:
        return (self.cfg.minutes - self.cfg.reserve_minutes) * 60

    def _flux_done(self) -> bool:
        """``steps`` reached, or the wall-clock budget spent (it always caps the run)."""
        return bool(self.cfg.steps) and self.state.step >= self.cfg.steps or self.elapsed() >= self._flux_end()

    def _lr(self) -> float:
        """Linear warm-up over steps, then cosine decay over ``steps`` or, without it, over the
        phase's wall-clock budget (on a shared machine a step count fixed in advance would end
        too early or too late)."""
        cfg, step = self.cfg, self.state.step
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        if cfg.steps:
            progress = min(1.0, step / cfg.steps)
        else:
            span = max(1.0, self._flux_end() - self.state.flux_start)
            progress = min(1.0, (self.elapsed() - self.state.flux_start) / span)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.state.step) / (10 + self.state.step))
        for ema, model in zip(self.ema, self.trainable):
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)

    def flux_step(self) -> dict[str, float]:
        """One optimizer step on a text-to-image batch and an edit batch (those of the run's tasks,
        plus the losses of their probes, when on); returns the losses by name (t2i, edit,
        binding_probe, edit_probe)."""
        cfg = self.cfg
        if self._batches is None:
            data = StepBatches(cfg, self.stream, self.state.step)
            self._batches = iter(torch.utils.data.DataLoader(
                data, batch_size=None, num_workers=cfg.loader_workers, prefetch_factor=4 if cfg.loader_workers else None,
                persistent_workers=cfg.loader_workers > 0))
        prompts, e_prompts, images = next(self._batches)
        gen = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_003 + self.state.step)
        latents = self._latents(images)
        n_scenes = len(latents) - len(e_prompts)
        x0, target_x0 = latents[:n_scenes], latents[n_scenes:]
        terms: dict[str, torch.Tensor] = {}
        texts: dict[str, tuple[torch.Tensor, list[str]]] = {}  # T5 states and texts per probe
        if prompts:
            terms["t2i"], t5_states = self._flow_loss(prompts, x0, gen)
            texts["binding_probe"] = t5_states, prompts
        if e_prompts:
            terms["edit"], t5_states = self._flow_loss(e_prompts, target_x0, gen, source=x0[: len(e_prompts)])
            texts["edit_probe"] = t5_states, e_prompts
        for name, probe in self.probes.items():
            if name in texts and (probe_loss := probe.loss(*texts[name])) is not None:
                terms[name] = probe_loss
        loss = sum(value * self.loss_weight(name) for name, value in terms.items())
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for group in self.opt.param_groups for p in group["params"]], 1.0)
        self.opt.step()
        self.state.step += 1
        self._update_ema()
        return {name: value.item() for name, value in terms.items()}

    def train_flux(self) -> None:
        """Text-to-image and/or editing training until the phase's wall-clock budget ends."""
        cfg = self.cfg
        for m in self.trainable:
            m.train()
        if self.state.step == 0:
            self.state.flux_start = self.elapsed()
        bar = tqdm(desc="flux", initial=self.state.step, total=cfg.steps or None, mininterval=20)
        last_save = last_eval = time.time()
        while not self._flux_done():
            losses = self.flux_step()
            bar.update()
            if self.state.step % 25 == 0:
                rate = self.state.step / max(1e-9, self.elapsed() - self.state.flux_start)
                bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()})
                shown = " ".join(f"{name} {value:.4f}" for name, value in losses.items())
                logger.info("step %d loss %s lr %.2e, %.2f steps/s (%.0fs)", self.state.step, shown, self._lr(), rate,
                            self.elapsed())
            if time.time() - last_save > cfg.checkpoint_minutes * 60:
                self.save()
                last_save = time.time()
            if time.time() - last_eval > cfg.eval_minutes * 60:
                self.write_samples()
                last_eval = time.time()
        bar.close()
        self.state.phase = "done"
        self.save()

    # ----------------------------------------------------------------- samples and export
    def ema_components(self) -> FluxComponents:
        """The components with the EMA weights of the trained modules."""
        transformer, text_encoder, text_encoder_2 = self.ema
        return FluxComponents(
            tokenizer=self.parts.tokenizer, text_encoder=text_encoder, tokenizer_2=self.parts.tokenizer_2,
            text_encoder_2=text_encoder_2, vae=self.parts.vae, transformer=transformer,
            scheduler=self.parts.scheduler,
        )

    def sampling_kwargs(self, task: str) -> dict[str, object]:
        """The sampling settings the export recommends for ``task`` (also in its studio_defaults.json)."""
        return {
            "num_inference_steps": self.cfg.sample_steps,
            "true_cfg_scale": self.cfg.sample_cfg_t2i if task == "t2i" else self.cfg.sample_cfg_edit,
            "negative_prompt": "",
            "height": IMAGE_SIZE,
            "width": IMAGE_SIZE,
            "max_sequence_length": self.cfg.model.max_sequence_length,
        }

    @torch.no_grad()
    def write_samples(self, n: int = 8) -> Path:
        """A grid of EMA samples in the run dir: for text-to-image the truth of short and detailed
        prompts above the images; for editing the sources above the edits (the run's tasks only)."""
        t2i, edit = assemble_pipelines(self.ema_components())
        rows: list[list[Image.Image]] = []
        if "t2i" in self.cfg.task_list:
            t2i.set_progress_bar_config(disable=True)
            scenes = heldout_scenes()[: n // 2]
            prompts = [world.short_prompt(s) for s in scenes] + [world.detailed_prompt(s) for s in scenes]
            made = t2i(prompt=prompts, generator=torch.Generator().manual_seed(0), **self.sampling_kwargs("t2i")).images
            rows += [[world.render(s) for s in scenes] * 2, made]
        if "edit" in self.cfg.task_list:
            edit.set_progress_bar_config(disable=True)
            edits = heldout_edits()[:n]
            edited = [
                edit(image=world.render(src), prompt=e.instruction, generator=torch.Generator().manual_seed(0),
                     max_area=IMAGE_SIZE * IMAGE_SIZE, _auto_resize=False, **self.sampling_kwargs("edit")).images[0]
                for src, e in edits
            ]
            rows += [[world.render(s) for s, _ in edits], edited]
        grid = Image.new("RGB", (IMAGE_SIZE * n, IMAGE_SIZE * len(rows)), "white")
        for r, row in enumerate(rows):
            for c, im in enumerate(row):
                grid.paste(im, (c * IMAGE_SIZE, r * IMAGE_SIZE))
        path = self.run_dir / f"samples_{self.state.step:06d}.png"
        grid.save(path)
        logger.info("eval samples written to %s", path)
        return path

    def export(self) -> list[Path]:
        """Save the EMA weights as the pipeline folders of the run's tasks (fp16 diffusers models,
        fp32 text encoders so that plain ``from_pretrained`` gives a consistent float32 pipeline)."""
        parts = copy.deepcopy(self.ema_components())
        for module in (parts.transformer, parts.vae, parts.text_encoder, parts.text_encoder_2):
            module.to("cpu")
        parts.transformer.to(torch.float16)
        parts.vae.to(torch.float16)
        t2i, edit = assemble_pipelines(parts)
        out = Path(self.cfg.out)
        continued = f", continued from {self.cfg.init_from}" if self.cfg.init_from else ""
        description = (
            f"Tiny shapes-world FLUX (guidance is true_cfg_scale with an empty negative prompt), trained "
            f"by models.shapes.train_generator ({self.cfg.tasks}) with seed {self.cfg.seed}{continued}: "
            f"{self.state.step} steps in {self.elapsed() / 60:.0f} minutes."
        )
        paths = []
        for task, pipe in zip(TASKS, (t2i, edit)):
            if task in self.cfg.task_list:
                folder = out / FOLDERS[task]
                pipe.save_pretrained(folder)
                kwargs = self.sampling_kwargs(task)
                defaults = {
                    "steps": kwargs["num_inference_steps"], "guidance": kwargs["true_cfg_scale"],
                    "negative_prompt": kwargs["negative_prompt"], "height": IMAGE_SIZE, "width": IMAGE_SIZE,
                    "max_sequence_length": kwargs["max_sequence_length"], "description": description,
                }
                (folder / DEFAULTS_FILE).write_text(json.dumps(defaults, indent=2) + "\n")
                paths.append(folder)
        logger.info("exported %s", ", ".join(map(str, paths)))
        return paths

    def run(self) -> None:
        """Both phases (resuming where the checkpoint left off), final samples and export."""
        torch.set_num_threads(self.cfg.threads)
        if self.state.phase == "vae":
            self.train_vae()
        else:
            self.parts.vae.eval().requires_grad_(False)
        if self.state.phase == "flux":
            self.train_flux()
        self.write_samples()
        self.export()
        logger.info("done in %.1f minutes", self.elapsed() / 60)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command-line overrides of ``TrainConfig`` (top-level fields; each keeps its default's type)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(TrainConfig):
        if f.name == "model":
            continue
        default = f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes (a few seconds per step)")
    parser.add_argument("--model-json", default="", help='model size overrides, e.g. \'{"heads": 4}\' (TinyFluxConfig fields)')
    args = vars(parser.parse_args(argv))
    tiny, overrides = args.pop("tiny"), args.pop("model_json")
    model = TinyFluxConfig.smoke() if tiny else TinyFluxConfig()
    if overrides:
        known = {f.name for f in fields(TinyFluxConfig)}
        changes = json.loads(overrides)
        if not isinstance(changes, dict) or set(changes) - known:
            raise ConfigError(f"--model-json takes an object with fields of {sorted(known)}; got {overrides}.")
        model = TinyFluxConfig.from_dict({**asdict(model), **changes})
    return TrainConfig(**args, model=model)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m models.shapes.train_generator``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    logger.info("config: %s", json.dumps(asdict(cfg)))
    Trainer(cfg).run()


if __name__ == "__main__":
    main()
