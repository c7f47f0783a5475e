"""bitsandbytes settings for the transformers critic, including what 4-bit needs on a CPU.

On CPUs with AVX512-BF16 (recent Xeons and EPYCs), bitsandbytes repacks each 4-bit weight for its
fused kernel at the first inference call (``_convert_weight_packed_for_cpu``). The repacking
reshapes the weight into tiles of ``CPU_4BIT_ROW_TILE`` output rows and the per-block scales into
``in_features // blocksize`` columns, so it fails at generation time (``RuntimeError: shape
'[96, 0]' is invalid``) for any layer whose input width is not a multiple of the quantization
block size (64) or whose output width is not a multiple of 32. Qwen3-VL-8B's vision MLP has such a
layer (4304 wide), and so do tiny test models with narrow vision towers.

On a CPU the critic therefore leaves those layers unquantized (``llm_int8_skip_modules``) on every
CPU, not only on the ones with the fused kernel, so that one checkpoint quantizes the same way on
any machine. The layers skipped are logged by name.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, BitsAndBytesConfig
from transformers.quantizers.base import get_keys_to_not_convert

logger = logging.getLogger(__name__)

Quantization = Literal["4bit", "8bit"]

#: bitsandbytes' default 4-bit block size: the input width of a CPU-repacked layer must divide by it.
CPU_4BIT_BLOCKSIZE = 64
#: Output rows per tile of bitsandbytes' AVX512-BF16 4-bit layout (``block_n`` of the repacking).
CPU_4BIT_ROW_TILE = 32


def cpu_4bit_compatible(in_features: int, out_features: int) -> bool:
    """Whether a ``Linear(in_features, out_features)`` survives bitsandbytes' CPU 4-bit repacking."""
    return in_features % CPU_4BIT_BLOCKSIZE == 0 and out_features % CPU_4BIT_ROW_TILE == 0


def cpu_4bit_skip_modules(source: str) -> tuple[list[str], list[str]]:
    """For the checkpoint ``source``: (transformers' default modules not to quantize, the linear
    layers that CPU 4-bit repacking cannot take). Builds the model on the meta device: no weights
    are read and no memory is used."""
    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    defaults = get_keys_to_not_convert(skeleton)
    incompatible = [
        name
        for name, module in skeleton.named_modules()
        if isinstance(module, torch.nn.Linear)
        and not any(name == d or name.startswith(d + ".") for d in defaults)
        and not cpu_4bit_compatible(module.in_features, module.out_features)
    ]
    return defaults, incompatible


def quantization_config(
    quantization: Quantization | None, dtype: torch.dtype, *, source: str, on_cpu: bool
) -> BitsAndBytesConfig | None:
    """The ``BitsAndBytesConfig`` for ``quantization`` (None: full precision). 4-bit is NF4
    computing in ``dtype``; ``on_cpu`` leaves the layers CPU repacking cannot take unquantized."""
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization != "4bit":
        return None
    skip = None
    if on_cpu:
        defaults, incompatible = cpu_4bit_skip_modules(source)
        if incompatible:
            logger.warning(
                "4-bit on CPU: %d linear layer(s) of %s keep full precision, because bitsandbytes' CPU "
                "kernel needs input widths divisible by %d and output widths by %d: %s",
                len(incompatible), source, CPU_4BIT_BLOCKSIZE, CPU_4BIT_ROW_TILE, ", ".join(incompatible),
            )
        skip = defaults + incompatible
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=skip
    )
