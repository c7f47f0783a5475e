"""A tiny local chat model for rewriter tests: a 2-layer Qwen2 causal LM with a byte-level
tokenizer and a Qwen-style chat template, built from configs (no downloads).

Its final norm is zeroed, so every logit is 0 and greedy decoding always picks token 0, which is
the letter ``a``: the model answers ``"aaaa..."`` up to ``max_new_tokens``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import pre_tokenizers

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_tiny_chat_lm(folder: Path) -> Path:
    """Save the tiny chat model and its tokenizer into ``folder``; return ``folder``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda s: (s != "a", s))
    vocab = {s: i for i, s in enumerate(symbols + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"], tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
