"""Flags and ``STUDIO_*`` environment variables that choose the store and the backends.

Shared by ``app.py`` and ``python -m studio`` so that both read the same options the same way.
Each flag's default comes from its environment variable, then from the shapes world shipped in
``assets/``: with no flags at all the studio runs the shapes-world critic and generators.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from models.critic.templates import load_templates
from models.errors import ConfigError
from models.generator_diffusers import MEMORY_MODES
from studio.config import StudioConfig

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHAPES_T2I = ASSETS / "shapes-t2i"
SHAPES_EDIT = ASSETS / "shapes-edit"

#: Flag value that leaves a generator role unconfigured.
NONE = "none"
BT_PREFIX = "bt:"  # --critic bt:FOLDER, a Bradley-Terry reward model (studio.parrot.bt)


def env(name: str, default: str | None = None) -> str | None:
    """The environment variable ``name``, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (1, true, yes, on)."""
    value = (env(name) or "").lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off; got {value!r}.")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add the store, critic, generator, rewriter and logging flags to ``parser``."""
    group = parser.add_argument_group("store and backends")
    add_store_option(group)
    group.add_argument("--critic", default=env("STUDIO_CRITIC", "shapes"), metavar="SPEC",
                       help="'shapes' (the shapes-world critic), a Hugging Face model id or local folder "
                            "of a RationalRewards checkpoint run with transformers, or bt:FOLDER (a scalar "
                            "Bradley-Terry reward model: scores only) [STUDIO_CRITIC]")
    group.add_argument("--critic-url", default=env("STUDIO_CRITIC_URL"), metavar="URL",
                       help="base URL of an OpenAI-compatible server (e.g. vLLM) serving the critic; "
                            "overrides --critic [STUDIO_CRITIC_URL]")
    group.add_argument("--critic-model", default=env("STUDIO_CRITIC_MODEL"), metavar="NAME",
                       help="model name to request from --critic-url (default: the first one the server lists) "
                            "[STUDIO_CRITIC_MODEL]")
    group.add_argument("--critic-4bit", action="store_true", default=env_flag("STUDIO_CRITIC_4BIT"),
                       help="load a transformers critic in 4-bit (bitsandbytes NF4) [STUDIO_CRITIC_4BIT]")
    group.add_argument("--critic-prompts", default=env("STUDIO_CRITIC_PROMPTS"), metavar="DIR",
                       help="folder of critic prompt templates (pointwise_t2i.txt, pointwise_edit.txt, "
                            "pairwise_t2i.txt, pairwise_edit.txt) that replace the shipped ones, e.g. the exact "
                            "text of a checkpoint's model card; checked at start [STUDIO_CRITIC_PROMPTS]")
    group.add_argument("--t2i", default=env("STUDIO_T2I", str(SHAPES_T2I)), metavar="MODEL",
                       help="diffusers text-to-image model id or folder, or 'none' [STUDIO_T2I, "
                            "default assets/shapes-t2i]")
    group.add_argument("--edit", default=env("STUDIO_EDIT", str(SHAPES_EDIT)), metavar="MODEL",
                       help="diffusers image-editing model id or folder, or 'none' [STUDIO_EDIT, "
                            "default assets/shapes-edit]")
    gen = parser.add_argument_group("generators")
    gen.add_argument("--gen-dtype", default=env("STUDIO_GEN_DTYPE", "auto"), choices=("auto", "bf16", "fp16", "fp32"),
                     help="weights dtype of both generators: auto (bf16 on a GPU that has it, else fp32), bf16, "
                          "fp16 or fp32 [STUDIO_GEN_DTYPE]")
    gen.add_argument("--gen-memory", choices=MEMORY_MODES, default=env("STUDIO_GEN_MEMORY", "gpu"),
                     help="gpu: whole pipeline on the GPU; model_offload: each model moves to the GPU when it "
                          "runs (a 24 GB card fits FLUX); sequential_offload: layer by layer, slowest, least "
                          "memory [STUDIO_GEN_MEMORY, default gpu]")
    gen.add_argument("--vae-tiling", action="store_true", default=env_flag("STUDIO_VAE_TILING"),
                     help="decode large images tile by tile to save memory [STUDIO_VAE_TILING]")
    gen.add_argument("--t2i-lora", default=env("STUDIO_T2I_LORA"), metavar="LORA",
                     help="LoRA weights (hub id, folder or .safetensors file) for the text-to-image model "
                          "[STUDIO_T2I_LORA]")
    gen.add_argument("--edit-lora", default=env("STUDIO_EDIT_LORA"), metavar="LORA",
                     help="LoRA weights for the editing model [STUDIO_EDIT_LORA]")
    gen.add_argument("--lora-scale", type=float, default=float(env("STUDIO_LORA_SCALE", "1.0")), metavar="S",
                     help="strength of the LoRA weights [STUDIO_LORA_SCALE, default 1.0]")
    group.add_argument("--rewriter", choices=("critic", "llm"), default=env("STUDIO_REWRITER", "critic"),
                       help="where the next round's prompt comes from: the critic's refined request, or an "
                            "instruction-following LLM [STUDIO_REWRITER, default critic]")
    group.add_argument("--rewriter-url", default=env("STUDIO_REWRITER_URL"), metavar="URL",
                       help="base URL of an OpenAI-compatible server for --rewriter llm [STUDIO_REWRITER_URL]")
    group.add_argument("--rewriter-model", default=env("STUDIO_REWRITER_MODEL"), metavar="NAME",
                       help="model for --rewriter llm: a name on --rewriter-url, or a transformers model id or "
                            "folder [STUDIO_REWRITER_MODEL]")
    verbosity = parser.add_argument_group("logging")
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="debug log output")
    verbosity.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")


def add_store_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--store DIR`` (the session store's folder) to ``parser``."""
    parser.add_argument("--store", default=env("STUDIO_STORE", ".studio"), metavar="DIR",
                        help="folder of the session store (SQLite file + images) [STUDIO_STORE, default .studio]")


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    """The ``StudioConfig`` that ``args`` (from ``add_backend_options``) describe."""
    return StudioConfig(
        store_dir=args.store,
        critic=_critic_spec(args),
        t2i_generator=_generator_spec(args, args.t2i, "t2i", args.t2i_lora),
        edit_generator=_generator_spec(args, args.edit, "edit", args.edit_lora),
        rewriter=_rewriter_spec(args),
    )


def configure_logging(verbose: int = 0, quiet: int = 0, *, default: int = logging.INFO) -> None:
    """Configure the root logger once for the process: ``default`` level, -v DEBUG, -q WARNING."""
    level = default
    if quiet:
        level = logging.WARNING
    elif verbose:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level > logging.DEBUG:
        for noisy in ("httpx", "httpcore", "urllib3", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _critic_spec(args: argparse.Namespace) -> dict[str, Any]:
    prompts = {}
    if args.critic_prompts:
        load_templates(args.critic_prompts)  # a missing marker fails now, not at the first critique
        prompts = {"prompts": str(Path(args.critic_prompts).expanduser().resolve())}
    if args.critic_url:
        return {"backend": "openai", "base_url": args.critic_url, "model": args.critic_model, **prompts}
    if args.critic_model:
        raise ConfigError("--critic-model names a model on --critic-url; give --critic-url too, "
                          "or pass the model id or folder as --critic.")
    if args.critic == "shapes":
        if args.critic_4bit:
            raise ConfigError("--critic-4bit applies to a transformers critic; the shapes critic has no weights.")
        if prompts:
            raise ConfigError("--critic-prompts applies to a model critic (--critic MODEL or --critic-url); the shapes "
                              "critic writes its critiques from the scene, not from a prompt.")
        return {"backend": "shapes"}
    if args.critic.startswith(BT_PREFIX):
        if args.critic_4bit or prompts:
            raise ConfigError("--critic-4bit and --critic-prompts apply to a critic that writes text; a "
                              "Bradley-Terry reward model (bt:FOLDER) only scores.")
        return {"backend": "bt", "model": args.critic[len(BT_PREFIX):]}
    return {"backend": "transformers", "model": args.critic, "quantization": "4bit" if args.critic_4bit else None,
            **prompts}


def _generator_spec(args: argparse.Namespace, model: str, task: str, lora: str | None) -> dict[str, Any] | None:
    if model.lower() == NONE:
        if lora:
            raise ConfigError(f"--{task}-lora was given but --{task} is 'none'; give a model or drop the LoRA.")
        return None
    if not model.strip():
        raise ConfigError(f"--{task} is empty; give a diffusers model id or folder, or 'none'.")
    spec: dict[str, Any] = {"backend": "diffusers", "model": model, "task": task, "dtype": args.gen_dtype,
                            "memory": args.gen_memory, "vae_tiling": args.vae_tiling}
    if lora:
        spec.update(lora=lora, lora_scale=args.lora_scale)
    return spec


def _rewriter_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.rewriter == "critic":
        if args.rewriter_url or args.rewriter_model:
            raise ConfigError("--rewriter-url and --rewriter-model apply to --rewriter llm; "
                              "add --rewriter llm or drop them.")
        return {"backend": "critic"}
    if not (args.rewriter_url or args.rewriter_model):
        raise ConfigError("--rewriter llm needs --rewriter-url (an OpenAI-compatible server) "
                          "or --rewriter-model (a transformers model id or folder).")
    if args.rewriter_url:
        return {"backend": "llm", "llm_backend": "openai", "base_url": args.rewriter_url, "model": args.rewriter_model}
    return {"backend": "llm", "llm_backend": "transformers", "model": args.rewriter_model}
