"""Tiny, randomly initialised Qwen3-VL and Qwen2.5-VL checkpoints built in code, no downloads.

They have the real architectures, a byte-level Qwen tokenizer (or the one given, e.g. a protocol
tokenizer for a PARROT student), the Qwen image processor and a chat template, so
``TransformersCritic(model=str(folder))`` loads them exactly like a released checkpoint. Untrained,
their output is random text: they exercise loading, batching and failure handling in tests and
benchmarks, and are the starting point of the distilled shapes-world students.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from models.critic.critic_transformers import QWEN_CHAT_TEMPLATE, ImageOnlyQwenVLProcessor

logger = logging.getLogger(__name__)

_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def byte_level_qwen_tokenizer(*, vision_pad: bool = False) -> Qwen2Tokenizer:
    """A Qwen tokenizer over the 256 byte-level symbols plus the Qwen-VL special tokens.

    No merges: every byte is one token, so any text round-trips. ``vision_pad`` adds Qwen2.5-VL's
    ``<|vision_pad|>``.
    """
    specials = _SPECIAL_TOKENS + (("<|vision_pad|>",) if vision_pad else ())
    symbols = sorted(ByteLevel.alphabet()) + list(specials)
    return Qwen2Tokenizer(
        vocab={symbol: i for i, symbol in enumerate(symbols)},
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(specials[1:]),
    )


def build_tiny_qwen3vl(
    folder: Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
    initializer_range: float = 0.02,
    patch_size: int = 16,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Path:
    """Write a tiny random Qwen3-VL checkpoint (about 0.4M parameters by default) to ``folder``.

    Images use ``patch_size``-pixel patches merged 2x2: with 16, a 64x64 image is 4 tokens and
    128x128 is 16; with 8, a 64x64 image is 16. ``hidden_size`` must be a multiple of
    ``4 * num_heads``. ``tokenizer``: the byte-level one by default, or e.g. a protocol tokenizer
    (``models.critic.protocol_tokenizer``) with the Qwen-VL special tokens. Returns ``folder``.

    The default widths (text 64, vision 64) keep every linear layer's input a multiple of 64 and
    its output a multiple of 32, which bitsandbytes' AVX512-BF16 CPU kernel needs to repack a 4-bit
    weight (see ``models.critic.quantization``): so 4-bit runs the same code path on every CPU.
    """
    tokenizer = tokenizer or byte_level_qwen_tokenizer()
    head_dim = _head_dim(hidden_size, num_heads)
    config = Qwen3VLConfig(
        text_config={
            **_text_config(tokenizer, hidden_size, num_layers, num_heads, initializer_range),
            "head_dim": head_dim,
            "rope_parameters": _rope_parameters(head_dim),
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 2,
            "patch_size": patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": hidden_size,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [vision_depth - 1],
            "initializer_range": initializer_range,
        },
        **_vision_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    return _save(folder, Qwen3VLForConditionalGeneration(config), tokenizer, patch_size=patch_size)


def build_tiny_qwen25vl(
    folder: Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
    initializer_range: float = 0.02,
) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint to ``folder`` (14-pixel patches merged 2x2, so
    a 56x56 image is 4 tokens). Same parameters as ``build_tiny_qwen3vl``. Returns ``folder``."""
    tokenizer = byte_level_qwen_tokenizer(vision_pad=True)
    head_dim = _head_dim(hidden_size, num_heads)
    config = Qwen2_5_VLConfig(
        text_config={
            **_text_config(tokenizer, hidden_size, num_layers, num_heads, initializer_range),
            "rope_parameters": _rope_parameters(head_dim),
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
            "out_hidden_size": hidden_size,
            "initializer_range": initializer_range,
        },
        **_vision_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    return _save(folder, Qwen2_5_VLForConditionalGeneration(config), tokenizer, patch_size=14)


def _head_dim(hidden_size: int, num_heads: int) -> int:
    if hidden_size % (4 * num_heads):
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of 4 * num_heads ({4 * num_heads}).")
    return hidden_size // num_heads


def _rope_parameters(head_dim: int) -> dict[str, object]:
    """Multimodal rotary embedding whose (time, height, width) sections sum to ``head_dim / 2``,
    in the proportions of the released models (24, 20, 20 for a head of 128)."""
    half = head_dim // 2
    spatial = half * 5 // 16
    return {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [half - 2 * spatial, spatial, spatial]}


def _text_config(
    tokenizer: PreTrainedTokenizerBase, hidden_size: int, num_layers: int, num_heads: int, initializer_range: float
) -> dict[str, object]:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": max(1, num_heads // 2),
        "max_position_embeddings": 4096,
        "initializer_range": initializer_range,
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _vision_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _save(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, patch_size: int) -> Path:
    folder = Path(folder)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = ImageOnlyQwenVLProcessor(
        image_processor=Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=2),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    logger.info(
        "Wrote a tiny %s (%d parameters) to %s",
        type(model).__name__, sum(p.numel() for p in model.parameters()), folder,
    )
    return folder
