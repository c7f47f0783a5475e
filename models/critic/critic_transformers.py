"""The critic run locally through transformers: any Qwen3-VL or Qwen2.5-VL checkpoint.

``TransformersCritic(model="TIGER-Lab/RationalRewards-8B-T2I")`` (a hub id or a local folder)
loads the model with ``AutoModelForImageTextToText`` and its processor, and critiques images
through ``ProtocolCritic``. The text backend, ``TransformersChat``, renders each ``ChatPrompt``
with the processor's chat template and generates a whole batch at once (left padding).

On machines without torchvision the stock Qwen processors cannot be built (see
``ImageOnlyQwenVLProcessor``); ``load_processor`` detects that and loads the image-only one.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    Qwen3VLProcessor,
    set_seed,
)
from transformers.processing_utils import ProcessorMixin

from models.critic.chat import ChatPrompt, CompletionError
from models.critic.quantization import Quantization, quantization_config
from models.critic.templates import load_templates
from models.critic.runner import ProtocolCritic
from models.errors import BackendUnavailableError, ConfigError
from models.images import ImageLimits
from models.spaces import gpu

logger = logging.getLogger(__name__)

DtypeName = Literal["auto", "bfloat16", "float16", "float32"]

# Qwen's <|im_start|> chat layout; each image part becomes the vision block the processor expands
# into one <|image_pad|> per merged image patch. Used when a checkpoint ships no chat template.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
# Model types whose image inputs ImageOnlyQwenVLProcessor prepares correctly.
QWEN_VL_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ImageOnlyQwenVLProcessor(Qwen3VLProcessor):
    """A Qwen-VL processor for images only: a tokenizer, an image processor, a chat template.

    Without torchvision, transformers has no video processor, and the stock ``Qwen3VLProcessor``
    (or ``Qwen2_5_VLProcessor``) fails to build even with ``video_processor=None``; this subclass
    never asks for one. For images it is the same processor for Qwen3-VL and Qwen2.5-VL: one
    ``<|image_pad|>`` per merged patch, the same ``image_grid_thw``.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


def is_image_text_processor(processor: object) -> bool:
    """Whether ``processor`` can turn chat text plus images into model inputs (a multimodal
    processor with an image processor), as opposed to the bare tokenizer ``AutoProcessor``
    returns for a folder whose processor class it cannot build."""
    return isinstance(processor, ProcessorMixin) and getattr(processor, "image_processor", None) is not None


def load_processor(source: str) -> ProcessorMixin:
    """The processor of the checkpoint ``source`` (hub id or folder), with a chat template.

    ``AutoProcessor`` is tried first. Where it raises for lack of torchvision, or returns a bare
    tokenizer, ``ImageOnlyQwenVLProcessor`` is loaded from the same files instead (logged).
    A checkpoint without a chat template gets ``QWEN_CHAT_TEMPLATE`` (logged as a warning).
    Raises ``OSError`` when the files cannot be found at all.
    """
    processor: object
    try:
        processor = AutoProcessor.from_pretrained(source)
        problem = f"it returned a {type(processor).__name__}"
    except (OSError, ImportError, AttributeError) as e:
        # The torchvision trap shows as ImportError (video processor class), OSError (no video
        # processor config) or AttributeError (VIDEO_PROCESSOR_MAPPING); a truly missing
        # checkpoint fails again below with its own error.
        processor, problem = None, f"{type(e).__name__}: {e}"
    if not is_image_text_processor(processor):
        logger.info("AutoProcessor failed for %s (%s); loading the image-only Qwen-VL processor.", source, problem)
        processor = ImageOnlyQwenVLProcessor.from_pretrained(source)
    assert isinstance(processor, ProcessorMixin)
    if not processor.chat_template:
        logger.warning("%s has no chat template; using the Qwen <|im_start|> template.", source)
        processor.chat_template = QWEN_CHAT_TEMPLATE
    return processor


KvCache = Literal["auto", "static", "dynamic"]
KV_CACHES: tuple[str, ...] = ("auto", "static", "dynamic")


@dataclass(frozen=True)
class TransformersSettings:
    """Settings of the transformers critic.

    :param model: hub id (``"TIGER-Lab/RationalRewards-8B-T2I"``) or local folder of a Qwen3-VL
        or Qwen2.5-VL checkpoint.
    :param dtype: ``"auto"`` is bfloat16 on a GPU that supports it, float16 on other GPUs and
        float32 on CPU.
    :param device_map: passed to ``from_pretrained``; ``None`` means ``"auto"`` with a GPU and
        ``"cpu"`` without.
    :param quantization: ``"4bit"`` (NF4, computing in ``dtype``) or ``"8bit"`` with
        bitsandbytes, or ``None``.
    :param max_new_tokens: length limit of each critique.
    :param min_new_tokens: forces at least this many tokens (for benchmarks; 0 normally).
    :param temperature: sampling temperature; 0 means greedy decoding.
    :param batch_size: prompts generated together.
    :param seed: when set, the random generators are seeded at the start of each ``complete``
        call, so that sampling repeats.
    :param kv_cache: ``"static"`` preallocates the key/value cache of a batch (prompt plus
        ``max_new_tokens``) and writes each step in place; ``"dynamic"`` grows it step by step,
        which copies the whole cache on every token; ``"auto"`` is static when the model runs on
        the CPU (there batched decoding was about 1.4x faster, ``bench.critic_local``) and dynamic
        on a GPU (not measured there; a static cache also attends over the unused positions).
        Greedy output is the same either way.
    """

    model: str
    dtype: DtypeName = "auto"
    device_map: str | None = None
    quantization: Quantization | None = None
    max_new_tokens: int = 2048
    min_new_tokens: int = 0
    temperature: float = 0.1
    batch_size: int = 8
    seed: int | None = None
    kv_cache: KvCache = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a hub id or a folder path, got {self.model!r}.")
        if self.dtype != "auto" and self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {['auto', *_DTYPES]}, got {self.dtype!r}.")
        if self.device_map is not None and not isinstance(self.device_map, str):
            raise ConfigError(f"device_map must be a string such as 'auto' or 'cpu', got {self.device_map!r}.")
        if self.quantization not in (None, "4bit", "8bit"):
            raise ConfigError(f"quantization must be None, '4bit' or '8bit', got {self.quantization!r}.")
        for name, least in (("max_new_tokens", 1), ("min_new_tokens", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be a whole number of at least {least}, got {value!r}.")
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(
                f"min_new_tokens ({self.min_new_tokens}) must not exceed max_new_tokens ({self.max_new_tokens})."
            )
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ConfigError(f"temperature must be a number of at least 0 (0 is greedy), got {self.temperature!r}.")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be a whole number or None, got {self.seed!r}.")
        if self.kv_cache not in KV_CACHES:
            raise ConfigError(f"kv_cache must be one of {list(KV_CACHES)}, got {self.kv_cache!r}.")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TransformersSettings:
        """Settings from keyword options; an unknown key raises ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"Unknown transformers critic setting(s) {unknown}; known: {sorted(known)}.")
        if "model" not in options:
            raise ConfigError("The transformers critic needs model=<hub id or folder>.")
        return cls(**options)


@dataclass
class GenerationStats:
    """What the backend generated so far: prompts, batches, new tokens, seconds inside generate."""

    prompts: int = 0
    batches: int = 0
    failed_batches: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    last_token_counts: list[int] = field(default_factory=list)


@gpu
def _generate(model: PreTrainedModel, inputs: dict[str, Any], options: dict[str, Any]) -> torch.Tensor:
    """``model.generate`` without gradients; the one GPU-bound call (a ZeroGPU slot on Spaces)."""
    with torch.inference_mode():
        return model.generate(**inputs, **options)


class TransformersChat:
    """A ``TextCompleter`` over a local Qwen-VL checkpoint: true batched generation.

    Takes the fields of ``TransformersSettings`` as keywords (``model`` is required)::

        chat = TransformersChat(model="/models/tiny", batch_size=8, temperature=0)
        texts = chat.complete(prompts)

    The model loads in the constructor: an unknown or invalid setting raises ``ConfigError``, a
    missing checkpoint or too little memory ``BackendUnavailableError``. A batch that fails while
    generating becomes a ``CompletionError`` for each of its prompts.
    """

    def __init__(self, **options: Any) -> None:
        settings = TransformersSettings.from_options(options)
        self.settings = settings
        self.stats = GenerationStats()
        self.dtype = resolve_dtype(settings.dtype)
        self.device_map = settings.device_map or ("auto" if torch.cuda.is_available() else "cpu")
        source = _checked_source(settings.model)
        started = time.perf_counter()
        try:
            _check_model_type(source)
            self.processor = load_processor(source)
            self.model = AutoModelForImageTextToText.from_pretrained(
                source,
                dtype=self.dtype,
                device_map=self.device_map,
                quantization_config=quantization_config(
                    settings.quantization, self.dtype, source=source,
                    on_cpu=self.device_map == "cpu" or not torch.cuda.is_available(),
                ),
            ).eval()
        except torch.OutOfMemoryError as e:
            raise BackendUnavailableError(
                f"Out of memory while loading {settings.model} in {self.dtype} on {self.device_map}. "
                "Try quantization='4bit', a smaller checkpoint, or free the GPU."
            ) from e
        except (OSError, ValueError) as e:
            raise BackendUnavailableError(
                f"Could not load the critic model {settings.model!r}. Check the hub id or folder; "
                f"without network (HF_HUB_OFFLINE=1) a hub id must already be downloaded. Details: {e}"
            ) from e
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        logger.info(
            "Loaded %s (%s, %s, quantization=%s) in %.1f s",
            settings.model, self.dtype, self.device_map, settings.quantization, time.perf_counter() - started,
        )

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        """The critic's text for each prompt, in order, generated ``batch_size`` at a time.
        Raises ``BackendUnavailableError`` once closed (e.g. replaced by another critic)."""
        if not hasattr(self, "model"):
            raise BackendUnavailableError(f"The critic {self.settings.model} was closed (another critic replaced "
                                          "it); resume the session to continue with the current critic.")
        if self.settings.seed is not None:
            set_seed(self.settings.seed)
        self.stats.last_token_counts = []
        size = self.settings.batch_size
        results: list[Union[str, CompletionError]] = []
        for start in range(0, len(prompts), size):
            results.extend(self._complete_batch(prompts[start : start + size]))
        return results

    def _complete_batch(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        self.stats.batches += 1
        self.stats.prompts += len(prompts)
        started = time.perf_counter()
        try:
            inputs = self._inputs(prompts)
            output = _generate(self.model, inputs, self._generation_options())
        except (RuntimeError, ValueError) as e:
            # RuntimeError covers torch failures, out of memory included; ValueError a prompt
            # the processor refuses (image placeholders and images that do not match).
            self.stats.failed_batches += 1
            if isinstance(e, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            logger.warning("Generation failed for a batch of %d prompt(s)", len(prompts), exc_info=True)
            hint = " Lower batch_size or max_new_tokens." if isinstance(e, torch.OutOfMemoryError) else ""
            reason = f"transformers critic {self.settings.model}: generation failed ({type(e).__name__}: {e}).{hint}"
            return [CompletionError(reason) for _ in prompts]
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        counts = [self._generated_length(row) for row in new_tokens]
        self.stats.new_tokens += sum(counts)
        self.stats.last_token_counts.extend(counts)
        self.stats.seconds += time.perf_counter() - started
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def prompt_text(self, prompt: ChatPrompt) -> str:
        """The prompt as the model reads it: the chat template applied, one image placeholder per image."""
        return str(self.processor.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False))

    def prompt_token_counts(self, prompt: ChatPrompt) -> tuple[int, int]:
        """``(all tokens, image tokens)`` of ``prompt`` as this checkpoint's processor encodes it."""
        ids = self._inputs([prompt])["input_ids"][0]
        image_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        return int(ids.shape[0]), int((ids == image_id).sum())

    def _inputs(self, prompts: Sequence[ChatPrompt]) -> dict[str, Any]:
        texts = [self.prompt_text(p) for p in prompts]
        images = [image for p in prompts for image in p.images]
        batch = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        return dict(batch.to(self.model.device))

    def _generation_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "min_new_tokens": s.min_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0],
            "eos_token_id": self.eos_ids,
        }
        if s.kv_cache == "static" or (s.kv_cache == "auto" and self.model.device.type == "cpu"):
            options["cache_implementation"] = "static"
        if s.temperature == 0:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=s.temperature)
        return options

    def _generated_length(self, row: torch.Tensor) -> int:
        """Tokens generated in ``row``: up to and including the first end-of-sequence token."""
        ends = torch.isin(row, torch.tensor(self.eos_ids, device=row.device)).nonzero()
        return int(ends[0, 0]) + 1 if len(ends) else int(row.shape[0])

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this backend."""
        return dataclasses.asdict(self.settings)

    def close(self) -> None:
        """Free the model's memory; the backend cannot be used afterwards."""
        if not hasattr(self, "model"):
            return
        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TransformersCritic(ProtocolCritic):
    """The RationalRewards critic on a local Qwen3-VL or Qwen2.5-VL checkpoint.

    Takes the settings of ``TransformersChat`` (the fields of ``TransformersSettings``) as
    keywords, plus ``parse_retries`` (how often unparseable output is re-asked before it is
    reported as a ``CritiqueFailure``), ``limits``, ``name`` and ``prompts`` (a folder of prompt
    templates, see ``ProtocolCritic``)::

        critic = TransformersCritic(model="TIGER-Lab/RationalRewards-8B-T2I", quantization="4bit")
        [result] = critic.critique([CritiqueRequest("t2i", "a red cube", image)])

    Raises ``ConfigError`` for an unknown or invalid setting and ``BackendUnavailableError`` when
    the model cannot be loaded.
    """

    def __init__(
        self,
        *,
        parse_retries: int = 1,
        limits: ImageLimits | None = None,
        name: str | None = None,
        prompts: str | None = None,
        **settings: Any,
    ) -> None:
        load_templates(prompts)  # a bad template fails before the model loads
        chat = TransformersChat(**settings)
        super().__init__(
            chat,
            parse_retries=parse_retries,
            limits=limits,
            name=name or f"transformers critic ({chat.settings.model})",
            prompts=prompts,
        )
        self.completer: TransformersChat


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype for a ``dtype`` setting; ``"auto"`` picks by the hardware present."""
    if name != "auto":
        return _DTYPES[name]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _checked_source(model: str) -> str:
    """``model`` as a folder path when it is one, else as a hub id; a path that names no folder
    raises ``BackendUnavailableError``."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackendUnavailableError(
                f"The critic model folder {path} has no config.json; point model= at a folder "
                "written by save_pretrained (or at a hub id)."
            )
        return str(path)
    if model.startswith(("/", ".", "~")) or not _HUB_ID.match(model):
        raise BackendUnavailableError(
            f"No critic model folder at {path}. Check the path, or give a hub id such as "
            "'TIGER-Lab/RationalRewards-8B-T2I'."
        )
    return model


def _check_model_type(source: str) -> None:
    """Read the checkpoint's config (the cheapest file, and the clearest error when the
    checkpoint is missing) and refuse model families this backend does not run."""
    model_type = AutoConfig.from_pretrained(source).model_type
    if model_type not in QWEN_VL_MODEL_TYPES:
        raise BackendUnavailableError(
            f"{source} is a {model_type!r} checkpoint; the transformers critic runs Qwen-VL checkpoints "
            f"({', '.join(QWEN_VL_MODEL_TYPES)}), such as TIGER-Lab/RationalRewards-8B-T2I."
        )


def _eos_ids(model: PreTrainedModel, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the generation config's, else the tokenizer's."""
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        raise BackendUnavailableError(
            f"The checkpoint {model.name_or_path} defines no end-of-sequence token; generation would never stop."
        )
    return [configured] if isinstance(configured, int) else list(configured)
