"""Text-to-image and editing through diffusers pipelines, by hub id or local folder.

Supported pipeline classes and how each is called live in one table, ``PROFILES``: which keyword
carries guidance (``guidance_scale`` or ``true_cfg_scale`` with a negative prompt), the family's
default steps, guidance and size, the size multiple, and the editing quirks (FLUX.1-Kontext must
be told the size or it renders 1024x1024; Qwen-Image-Edit picks about one megapixel itself;
Qwen-Image-Edit-Plus takes a list of images). A ``studio_defaults.json`` in a model folder
overrides the family defaults (the shapes-world pipelines ship one).

Example::

    gen = DiffusersGenerator(model="black-forest-labs/FLUX.1-dev", memory="model_offload")
    result = gen.generate(GenerationRequest(task="t2i", prompt="a red fox in snow", num_images=2))
    result.images, result.seeds, result.settings
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal

from PIL import Image

from models.errors import BackendUnavailableError, CancellationError, ConfigError, InvalidInputError
from models.images import ImageLimits, check_prompt, prepare_image
from models.prompt_limit import PromptLimit
from models.spaces import gpu
from models.types import MAX_IMAGES_PER_REQUEST, GenerationRequest, GenerationResult, Task

logger = logging.getLogger(__name__)

MemoryMode = Literal["gpu", "model_offload", "sequential_offload"]
MEMORY_MODES: tuple[str, ...] = ("gpu", "model_offload", "sequential_offload")
MIN_SIDE = 16
DEFAULTS_FILE = "studio_defaults.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
           "fp32": "float32", "float32": "float32"}


@dataclass(frozen=True)
class PipelineProfile:
    """How to call one diffusers pipeline class.

    ``size`` is the default (width, height); ``None`` means an edit follows its source image.
    Sizes are snapped to multiples of ``vae_scale_factor * patch``. ``guidance_embedded``: the
    guidance goes to a guidance embedding, and models without one (FLUX.1-schnell, the shapes
    world) get true classifier-free guidance instead. ``prompt_tokenizer`` and
    ``max_sequence_length`` give the prompt length limit (``None``: the tokenizer's own maximum).
    """

    family: str
    task: Task
    steps: int
    guidance: float
    guidance_kw: Literal["guidance_scale", "true_cfg_scale"] = "guidance_scale"
    size: tuple[int, int] | None = (1024, 1024)
    patch: int = 2
    prompt_tokenizer: str = "tokenizer_2"
    max_sequence_length: int | None = 512
    guidance_embedded: bool = False
    source_as_list: bool = False
    kontext_size: bool = False
    picks_own_size: bool = False


PROFILES: dict[str, PipelineProfile] = {
    "FluxPipeline": PipelineProfile("FLUX.1", "t2i", 28, 3.5, guidance_embedded=True),
    "FluxKontextPipeline": PipelineProfile(
        "FLUX.1-Kontext", "edit", 28, 2.5, size=None, guidance_embedded=True, kontext_size=True
    ),
    "QwenImagePipeline": PipelineProfile(
        "Qwen-Image", "t2i", 50, 4.0, "true_cfg_scale", size=(1328, 1328), prompt_tokenizer="tokenizer"
    ),
    "QwenImageEditPipeline": PipelineProfile(
        "Qwen-Image-Edit", "edit", 40, 4.0, "true_cfg_scale", size=None, prompt_tokenizer="tokenizer",
        picks_own_size=True,
    ),
    "QwenImageEditPlusPipeline": PipelineProfile(
        "Qwen-Image-Edit-2509", "edit", 40, 4.0, "true_cfg_scale", size=None, prompt_tokenizer="tokenizer",
        picks_own_size=True, source_as_list=True,
    ),
    "StableDiffusion3Pipeline": PipelineProfile(
        "SD3.5", "t2i", 28, 3.5, prompt_tokenizer="tokenizer_3", max_sequence_length=256
    ),
    "StableDiffusionXLPipeline": PipelineProfile(
        "SDXL", "t2i", 30, 5.0, patch=1, prompt_tokenizer="tokenizer", max_sequence_length=None
    ),
    "StableDiffusionPipeline": PipelineProfile(
        "SD1.x", "t2i", 30, 7.5, size=(512, 512), patch=1, prompt_tokenizer="tokenizer",
        max_sequence_length=None,
    ),
}


@dataclass(frozen=True)
class Variant:
    """Different defaults for some checkpoints of one pipeline class, recognised by ``matches``
    (called with the loaded pipeline and the model id or folder)."""

    matches: Callable[[Any, str], bool]
    family: str
    steps: int
    guidance: float
    max_sequence_length: int | None = None


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "FluxPipeline": (
        Variant(lambda pipe, model: not pipe.transformer.config.guidance_embeds, "FLUX.1-schnell", 4, 0.0, 256),
    ),
    "StableDiffusion3Pipeline": (
        Variant(lambda pipe, model: "turbo" in model.lower(), "SD3.5-Large-Turbo", 4, 0.0),
        Variant(lambda pipe, model: "medium" in model.lower(), "SD3.5-Medium", 40, 4.5),
    ),
}

# studio_defaults.json keys; the diffusers keyword names are accepted as aliases.
_DEFAULT_KEYS = {
    "steps": "steps", "num_inference_steps": "steps", "guidance": "guidance", "guidance_scale": "guidance",
    "true_cfg_scale": "guidance", "width": "width", "height": "height", "negative_prompt": "negative_prompt",
    "max_sequence_length": "max_sequence_length", "description": "description",
}


@dataclass(frozen=True)
class CallDefaults:
    """The defaults one loaded model runs with (family table, variant, then studio_defaults.json)."""

    family: str
    steps: int
    guidance: float
    width: int | None
    height: int | None
    negative_prompt: str
    max_sequence_length: int | None


@gpu
def _run_pipeline(pipe: Any, kwargs: dict[str, Any]) -> list[Image.Image]:
    """Run one pipeline call (on a GPU Space, with a GPU attached for the call)."""
    return list(pipe(**kwargs).images)


class DiffusersGenerator:
    """A ``Generator`` over a diffusers pipeline; loaded once, on first use.

    :param model: hub id (``"black-forest-labs/FLUX.1-dev"``) or local pipeline folder.
    :param task: ``"t2i"``, ``"edit"``, or ``None`` to take it from the pipeline class.
    :param dtype: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
    :param device: ``"auto"`` (CUDA when available, else CPU) or a torch device string.
    :param memory: ``"gpu"`` (whole pipeline on the device), ``"model_offload"`` or
        ``"sequential_offload"`` (parts kept on the CPU until used; needs CUDA).
    :param vae_tiling: decode in tiles (large images on a small GPU).
    :param lora: LoRA weights (folder, ``.safetensors`` file or hub id) applied with ``lora_scale``.
    :param steps, guidance, width, height: override the model's defaults.
    :param max_side: largest width or height a request may ask for.

    Raises ``ConfigError`` for unusable settings; loading raises ``BackendUnavailableError``.
    """

    def __init__(
        self,
        *,
        model: str,
        task: Task | None = None,
        dtype: str = "auto",
        device: str = "auto",
        memory: MemoryMode = "gpu",
        vae_tiling: bool = False,
        lora: str | None = None,
        lora_scale: float = 1.0,
        steps: int | None = None,
        guidance: float | None = None,
        width: int | None = None,
        height: int | None = None,
        max_side: int = 2048,
        name: str | None = None,
    ) -> None:
        self._config: dict[str, Any] = {
            "model": model, "task": task, "dtype": dtype, "device": device, "memory": memory,
            "vae_tiling": vae_tiling, "lora": lora, "lora_scale": lora_scale, "steps": steps,
            "guidance": guidance, "width": width, "height": height, "max_side": max_side, "name": name,
        }
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a hub id or a folder path, got {model!r}.")
        if task not in (None, "t2i", "edit"):
            raise ConfigError(f"task must be 't2i', 'edit' or None (from the pipeline), got {task!r}.")
        if memory not in MEMORY_MODES:
            raise ConfigError(f"memory must be one of {', '.join(MEMORY_MODES)}; got {memory!r}.")
        if dtype != "auto" and dtype not in _DTYPES:
            raise ConfigError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}; got {dtype!r}.")
        self.model = model.strip()
        self.name = name or f"diffusers:{self.model}"
        self.memory = memory
        self.vae_tiling = vae_tiling
        self.lora = lora
        self.lora_scale = float(lora_scale)
        self.max_side = max_side
        self._overrides: dict[str, Any] = {"steps": steps, "guidance": guidance, "width": width, "height": height}
        self._check_overrides()
        self.device = _resolve_device(device)
        if memory != "gpu" and not self.device.startswith("cuda"):
            raise ConfigError(
                f"memory={memory!r} keeps model parts on the CPU and moves each to a CUDA GPU when it "
                f"runs, but the device is {self.device!r} (no CUDA GPU found). Use memory='gpu', which "
                "keeps the whole pipeline on the device."
            )
        self.dtype_name = _resolve_dtype_name(dtype, self.device)
        self._task = task
        self._class_name: str | None = None
        self._pipe: Any = None
        self._defaults: CallDefaults | None = None
        self._lock = threading.RLock()

    # -- what this generator is -----------------------------------------------------------------

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The one task this generator does (reads the folder's ``model_index.json``, not weights)."""
        return (self._profile().task,)

    def to_config(self) -> dict[str, Any]:
        """The constructor settings, so ``DiffusersGenerator(**g.to_config())`` rebuilds ``g``."""
        return dict(self._config)

    def prompt_limit(self) -> PromptLimit:
        """The prompt length the pipeline reads, counted by its own tokenizer (loads the pipeline)."""
        pipe = self.pipeline
        tokenizer = getattr(pipe, self._profile().prompt_tokenizer, None)
        if tokenizer is None:
            return PromptLimit(max_chars=ImageLimits().max_prompt_chars)
        max_tokens = self._loaded_defaults().max_sequence_length or int(tokenizer.model_max_length)
        return PromptLimit(
            max_chars=ImageLimits().max_prompt_chars,
            max_tokens=max_tokens,
            count_tokens=lambda text: len(tokenizer(text).input_ids),
        )

    # -- loading --------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (loaded on first access, with LoRA and memory mode applied)."""
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
            return self._pipe

    def load(self) -> None:
        """Load the pipeline now instead of on the first ``generate`` (``models.base.Loadable``)."""
        _ = self.pipeline

    def close(self) -> None:
        """Drop the loaded pipeline and give its GPU memory back (it loads again on next use)."""
        with self._lock:
            if self._pipe is None:
                return
            self._pipe = None
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _local_folder(self) -> Path | None:
        path = Path(self.model).expanduser()
        if path.exists():
            if not (path / "model_index.json").is_file():
                raise BackendUnavailableError(
                    f"{path} is not a diffusers pipeline folder (it has no model_index.json). Point "
                    "model at a folder saved with save_pretrained, or at a hub id."
                )
            return path
        if _HUB_ID.match(self.model):
            return None
        raise BackendUnavailableError(
            f"No model folder at {path}, and {self.model!r} is not a hub id (owner/name). Check the path."
        )

    def _pipeline_class_name(self) -> str:
        if self._class_name is None:
            folder = self._local_folder()
            if folder is not None:
                index = json.loads((folder / "model_index.json").read_text())
            else:
                from diffusers import DiffusionPipeline

                try:
                    index = DiffusionPipeline.load_config(self.model)
                except OSError as e:
                    raise BackendUnavailableError(_hub_message(self.model, e)) from e
            self._class_name = str(index.get("_class_name"))
        return self._class_name

    def _profile(self) -> PipelineProfile:
        class_name = self._pipeline_class_name()
        if class_name not in PROFILES:
            raise ConfigError(
                f"{self.model} is a {class_name}, which the studio cannot drive. Supported pipelines: "
                f"{', '.join(sorted(PROFILES))}."
            )
        profile = PROFILES[class_name]
        if self._task is not None and self._task != profile.task:
            raise ConfigError(
                f"task={self._task!r} was set, but {self.model} is a {class_name}, which does "
                f"{profile.task!r}. Leave task unset or pick a model for {self._task!r}."
            )
        return profile

    def _load(self) -> Any:
        import torch
        from diffusers import DiffusionPipeline

        profile = self._profile()
        logger.info("loading %s (%s, %s, memory=%s)", self.model, profile.family, self.dtype_name, self.memory)
        try:
            pipe = DiffusionPipeline.from_pretrained(self.model, dtype=getattr(torch, self.dtype_name))
        except OSError as e:
            raise BackendUnavailableError(_hub_message(self.model, e)) from e
        pipe.set_progress_bar_config(disable=True)
        if self.lora:
            self._apply_lora(pipe)
        if self.vae_tiling:
            if not hasattr(getattr(pipe, "vae", None), "enable_tiling"):
                raise ConfigError(f"vae_tiling=True, but the VAE of {self.model} cannot decode in tiles.")
            pipe.vae.enable_tiling()
        if self.memory == "gpu":
            pipe.to(self.device)
        elif self.memory == "model_offload":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.enable_sequential_cpu_offload(device=self.device)
        return pipe

    def _apply_lora(self, pipe: Any) -> None:
        if not hasattr(pipe, "load_lora_weights"):
            raise ConfigError(f"lora was set, but {type(pipe).__name__} cannot load LoRA weights.")
        path = Path(self.lora).expanduser()  # type: ignore[arg-type]
        if path.is_file():
            source, extra = str(path.parent), {"weight_name": path.name}
        elif path.is_dir() or _HUB_ID.match(str(self.lora)):
            source, extra = str(path) if path.is_dir() else str(self.lora), {}
        else:
            raise BackendUnavailableError(f"No LoRA weights at {path}. Give a folder, a .safetensors file or a hub id.")
        try:
            pipe.load_lora_weights(source, adapter_name="studio", **extra)
        except (OSError, ValueError) as e:
            raise BackendUnavailableError(f"Could not load the LoRA weights {self.lora}: {e}") from e
        pipe.set_adapters(["studio"], adapter_weights=[self.lora_scale])
        logger.info("LoRA %s applied at scale %s", self.lora, self.lora_scale)

    def call_defaults(self) -> CallDefaults:
        """The defaults this model runs with: family table, variant, then ``studio_defaults.json``
        (loads the pipeline)."""
        return self._loaded_defaults()

    def _loaded_defaults(self) -> CallDefaults:
        if self._defaults is None:
            pipe, profile = self.pipeline, self._profile()
            width, height = profile.size if profile.size else (None, None)
            defaults = CallDefaults(profile.family, profile.steps, profile.guidance, width, height, " ",
                                    profile.max_sequence_length)
            for variant in VARIANTS.get(type(pipe).__name__, ()):
                if variant.matches(pipe, self.model):
                    defaults = replace(defaults, family=variant.family, steps=variant.steps,
                                       guidance=variant.guidance,
                                       max_sequence_length=variant.max_sequence_length or defaults.max_sequence_length)
                    break
            folder = self._local_folder()
            if folder is not None and (folder / DEFAULTS_FILE).is_file():
                # a model folder with its own defaults is its own family (e.g. "shapes-t2i")
                defaults = replace(defaults, family=folder.name, **_read_defaults_file(folder / DEFAULTS_FILE))
            self._defaults = defaults
        return self._defaults

    # -- generating -----------------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        """Generate ``request.num_images`` images in one pipeline call; image ``i`` uses seed
        ``request.seed + i`` on its own ``torch.Generator``, so it can be reproduced alone.

        :param on_step: called as ``on_step(step, total)`` after each denoising step.
        :param should_stop: polled after each step; when it returns True the generation stops and
            ``CancellationError`` is raised.
        :returns: the images and the exact settings used (model, pipeline, scheduler, seeds,
            steps, guidance, actual size, dtype, LoRA).

        Raises ``InvalidInputError`` before loading anything when the request is unusable.
        """
        # 1. Check inputs (before any model loads).
        prompt, source = self._check_inputs(request)
        if should_stop is not None and should_stop():
            raise CancellationError("Generation was stopped before it started.")
        # 2. Settings: request, then constructor overrides, then the model's defaults.
        with self._lock:
            pipe, profile, defaults = self.pipeline, self._profile(), self._loaded_defaults()
            steps = _first(request.steps, self._overrides["steps"], defaults.steps)
            guidance = float(_first(request.guidance, self._overrides["guidance"], defaults.guidance))
            size = self._target_size(request, source, pipe, profile, defaults)
            seeds = [request.seed + i for i in range(request.num_images)]
            kwargs = self._call_kwargs(pipe, profile, defaults, prompt, source, steps, guidance, size, seeds)
            stop_requested = _attach_callback(kwargs, on_step, should_stop)
            # 3. Run.
            images = _run_pipeline(pipe, kwargs)
        if stop_requested():
            raise CancellationError("Generation was stopped; its unfinished images were discarded.")
        settings = {
            "model": self.model, "family": defaults.family, "task": profile.task,
            "pipeline": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
            "seeds": seeds, "steps": steps, "guidance": guidance, "guidance_kw": self._guidance_kw(pipe, profile),
            "negative_prompt": kwargs.get("negative_prompt"), "width": images[0].width, "height": images[0].height,
            "num_images": len(images), "dtype": self.dtype_name, "device": self.device, "memory": self.memory,
            "lora": self.lora, "lora_scale": self.lora_scale if self.lora else None, "prompt": prompt,
        }
        return GenerationResult(images=images, seeds=seeds, settings=settings)

    def _check_inputs(self, request: GenerationRequest) -> tuple[str, Image.Image | None]:
        prompt = check_prompt(request.prompt)
        if request.task not in self.tasks:
            raise InvalidInputError(
                f"{self.name} does {self.tasks[0]!r} only, but the request is {request.task!r}. "
                "Pick a generator for that task."
            )
        source = None
        if request.task == "edit":  # the request checked that an edit has its source image
            source = prepare_image(request.source_image, what="source image")  # type: ignore[arg-type]
        elif request.source_image is not None:
            raise InvalidInputError(
                "A source image was given for a text-to-image request. Remove it or switch the task to edit."
            )
        if not isinstance(request.num_images, int) or not 1 <= request.num_images <= MAX_IMAGES_PER_REQUEST:
            raise InvalidInputError(f"num_images must be 1 to {MAX_IMAGES_PER_REQUEST}, got {request.num_images!r}.")
        if not isinstance(request.seed, int) or request.seed < 0:
            raise InvalidInputError(f"seed must be a whole number of 0 or more, got {request.seed!r}.")
        if request.steps is not None and not (isinstance(request.steps, int) and 1 <= request.steps <= 500):
            raise InvalidInputError(f"steps must be 1 to 500, got {request.steps!r}.")
        guidance = request.guidance
        if guidance is not None and not (isinstance(guidance, (int, float)) and 0 <= guidance <= 50):
            raise InvalidInputError(f"guidance must be 0 to 50, got {request.guidance!r}.")
        for side in ("width", "height"):
            self._check_side(side, getattr(request, side))
        return prompt, source

    def _check_side(self, side: str, value: int | None) -> None:
        if value is not None and not (isinstance(value, int) and MIN_SIDE <= value <= self.max_side):
            raise InvalidInputError(
                f"{side} must be {MIN_SIDE} to {self.max_side} pixels, got {value!r}. Pick a size in that range."
            )

    def _check_overrides(self) -> None:
        try:
            self._check_side("width", self._overrides["width"])
            self._check_side("height", self._overrides["height"])
        except InvalidInputError as e:
            raise ConfigError(str(e)) from e
        steps = self._overrides["steps"]
        if steps is not None and not (isinstance(steps, int) and steps >= 1):
            raise ConfigError(f"steps must be a whole number of 1 or more, got {steps!r}.")

    def _target_size(
        self, request: GenerationRequest, source: Image.Image | None, pipe: Any, profile: PipelineProfile,
        defaults: CallDefaults,
    ) -> tuple[int, int] | None:
        """(width, height) to ask for, snapped to the pipeline's multiple; ``None`` lets a
        pipeline that picks its own edit size (Qwen-Image-Edit) do so."""
        width = _first(request.width, self._overrides["width"], defaults.width)
        height = _first(request.height, self._overrides["height"], defaults.height)
        if width is None or height is None:
            if profile.picks_own_size:
                return None
            assert source is not None, "only edit profiles leave the size to the source"
            width, height = width or source.width, height or source.height
        multiple = int(pipe.vae_scale_factor) * profile.patch
        snapped = (max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple))
        if snapped != (width, height):
            logger.warning("%s needs sizes in multiples of %d: %dx%d becomes %dx%d",
                           type(pipe).__name__, multiple, width, height, *snapped)
        return snapped

    def _guidance_kw(self, pipe: Any, profile: PipelineProfile) -> str:
        if profile.guidance_embedded and not pipe.transformer.config.guidance_embeds:
            return "true_cfg_scale"
        return profile.guidance_kw

    def _call_kwargs(
        self, pipe: Any, profile: PipelineProfile, defaults: CallDefaults, prompt: str,
        source: Image.Image | None, steps: int, guidance: float, size: tuple[int, int] | None, seeds: list[int],
    ) -> dict[str, Any]:
        import torch

        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": steps,
            "num_images_per_prompt": len(seeds),
            # CPU generators: the same seed gives the same noise on every device.
            "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
        }
        guidance_kw = self._guidance_kw(pipe, profile)
        kwargs[guidance_kw] = guidance
        if guidance_kw == "true_cfg_scale" and guidance > 1:
            kwargs["negative_prompt"] = defaults.negative_prompt
        if size is not None:
            kwargs["width"], kwargs["height"] = size
            if profile.kontext_size:
                kwargs.update(_auto_resize=False, max_area=size[0] * size[1])
        if source is not None:
            kwargs["image"] = [source] if profile.source_as_list else source
        if defaults.max_sequence_length is not None:
            kwargs["max_sequence_length"] = defaults.max_sequence_length
        return kwargs


def _attach_callback(
    kwargs: dict[str, Any],
    on_step: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Callable[[], bool]:
    """Add a diffusers ``callback_on_step_end`` reporting progress and setting the pipeline's
    ``_interrupt`` flag on a stop request; returns whether a stop was requested."""
    stopped = [False]
    if on_step is None and should_stop is None:
        return lambda: stopped[0]
    total = kwargs["num_inference_steps"]

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, getattr(pipe, "_num_timesteps", None) or total)
        if should_stop is not None and should_stop():
            stopped[0] = True
            pipe._interrupt = True
        return {}

    kwargs["callback_on_step_end"] = callback
    return lambda: stopped[0]


def _read_defaults_file(path: Path) -> dict[str, Any]:
    """The overrides in a model folder's ``studio_defaults.json``; unknown keys raise ``ConfigError``."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not readable JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(raw).__name__}.")
    unknown = sorted(set(raw) - set(_DEFAULT_KEYS))
    if unknown:
        raise ConfigError(f"{path} has unknown keys {unknown}; allowed: {sorted(_DEFAULT_KEYS)}.")
    out = {_DEFAULT_KEYS[k]: v for k, v in raw.items() if _DEFAULT_KEYS[k] != "description"}
    for key, kind in (("steps", int), ("width", int), ("height", int), ("guidance", (int, float)),
                      ("negative_prompt", str), ("max_sequence_length", int)):
        if key in out and not isinstance(out[key], kind):
            raise ConfigError(f"{path}: {key} has the wrong type ({out[key]!r}).")
    return out


def _first(*values: Any) -> Any:
    """The first value that is not ``None``."""
    return next((v for v in values if v is not None), None)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype_name(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return _DTYPES[dtype]


def _hub_message(model: str, error: Exception) -> str:
    return (
        f"Could not load {model}: it is not a local folder and could not be fetched from the "
        f"Hugging Face Hub (offline, not cached, gated or misspelled). Download it first or give a "
        f"local folder. Details: {str(error)[:300]}"
    )
