"""Builds the tiny FLUX components of the shapes world from code: tokenizers, text encoders, VAE,
transformer and scheduler, and assembles them into standard diffusers pipelines.

Nothing is downloaded. The tokenizers are built over the world's vocabulary (every world word is
one token; anything else falls back to characters), the networks start from random weights and are
trained by ``models.shapes.train_generator``. One transformer serves both ``FluxPipeline``
(text-to-image) and ``FluxKontextPipeline`` (editing).

Example::

    cfg = TinyFluxConfig()
    parts = build_components(cfg, corpus=["a red circle", "two blue squares"])
    t2i, edit = assemble_pipelines(parts)
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

logger = logging.getLogger(__name__)

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_END_OF_WORD = "</w>"
T5_WORD_START = "\u2581"  # the SentencePiece word-boundary mark
_T5_WORD_SCORE = -2.0
_T5_CHAR_SCORE = -8.0
# Characters that always exist as single pieces, so that any world text tokenizes without <unk>.
_T5_CHARS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "\"'.,;:!?-()/&"
)


@dataclass
class TinyFluxConfig:
    """Sizes of the tiny shapes-world FLUX model (defaults: the shipped model)."""

    # VAE: len(vae_channels) blocks give a spatial factor of 2 ** (len - 1); 3 blocks: 64 px -> 16.
    vae_channels: tuple[int, ...] = (8, 16, 32)
    vae_norm_groups: int = 8
    # 8 channels, not 4: with 4 the VAE blurs small stars into diamonds (bench.vae_ceiling: 93.5%
    # of held-out scenes read back exact; 8 channels reached 99.5% with the steps of a 2-thread
    # VAE phase, 94.0% with the 2,250 steps the shipped one-thread runs got)
    latent_channels: int = 8
    # CLIP text encoder (its pooled output conditions the transformer's modulation)
    clip_hidden: int = 64
    clip_layers: int = 2
    clip_heads: int = 2
    # T5 text encoder (its token states are the transformer's text stream)
    t5_d_model: int = 128
    t5_layers: int = 2
    t5_heads: int = 4
    t5_d_ff: int = 256
    # FLUX transformer: inner width = heads * head_dim; rope axes sum to head_dim
    heads: int = 3
    head_dim: int = 32
    double_layers: int = 2
    single_layers: int = 2
    axes_dims_rope: tuple[int, int, int] = (8, 12, 12)
    # text tokens the T5 stream is padded to, in training and at sampling
    max_sequence_length: int = 48

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> "TinyFluxConfig":
        """Sizes read back from JSON (a checkpoint's config, ``--model-json``): lists become tuples."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # type: ignore[arg-type]

    @classmethod
    def smoke(cls) -> "TinyFluxConfig":
        """The smallest sizes that still exercise every component (tests and smoke runs)."""
        return cls(vae_channels=(8, 8, 8), clip_hidden=16, clip_layers=1, t5_d_model=32, t5_layers=1,
                   t5_d_ff=32, heads=2, head_dim=16, double_layers=1, single_layers=1, axes_dims_rope=(4, 6, 6))

    def __post_init__(self) -> None:
        assert sum(self.axes_dims_rope) == self.head_dim, (
            f"axes_dims_rope {self.axes_dims_rope} must sum to head_dim {self.head_dim}"
        )
        assert all(c % self.vae_norm_groups == 0 for c in self.vae_channels), (
            f"vae_channels {self.vae_channels} must be multiples of vae_norm_groups {self.vae_norm_groups}"
        )


@dataclass
class FluxComponents:
    """The seven registered components of a FLUX pipeline."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    tokenizer_2: T5TokenizerFast
    text_encoder_2: T5EncoderModel
    vae: AutoencoderKL
    transformer: FluxTransformer2DModel
    scheduler: FlowMatchEulerDiscreteScheduler

    def as_kwargs(self) -> dict[str, object]:
        """The components as pipeline constructor keyword arguments."""
        return dict(vars(self))


def corpus_words(texts: Iterable[str]) -> Counter[str]:
    """Lower-case alphabetic words of ``texts`` with their counts (quoted capitals are left out:
    they are spelled letter by letter)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(re.findall(r"\b[a-z]+\b", text))
    return counts


def _learn_bpe_merges(words: Counter[str]) -> list[tuple[str, str]]:
    """Byte-pair merges learned on ``words`` until every word is a single symbol."""
    pieces = {word: [*word[:-1], word[-1] + CLIP_END_OF_WORD] for word in words}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, symbols in pieces.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += words[word]
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        for word, symbols in pieces.items():
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            pieces[word] = merged


def build_clip_tokenizer(words: Counter[str]) -> CLIPTokenizer:
    """A byte-level BPE ``CLIPTokenizer`` in which each of ``words`` is one token.

    The vocabulary is the start/end tokens, every byte symbol (plain and word-final) and the
    merged symbols; text outside the world's words falls back to bytes.
    """
    alphabet = sorted(ByteLevel.alphabet())
    symbols = [CLIP_BOS, CLIP_EOS, *alphabet, *(a + CLIP_END_OF_WORD for a in alphabet)]
    merges = _learn_bpe_merges(words)
    symbols += [a + b for a, b in merges]
    vocab = {symbol: i for i, symbol in enumerate(dict.fromkeys(symbols))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_t5_tokenizer(words: Counter[str]) -> T5TokenizerFast:
    """A Unigram ``T5TokenizerFast`` with one piece per world word and single-character pieces
    (letters, digits, punctuation) for everything else, e.g. the letters of a quoted word."""
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(T5_WORD_START + w, _T5_WORD_SCORE) for w in sorted(words)]
    vocab += [(T5_WORD_START, _T5_CHAR_SCORE)]
    vocab += [(c, _T5_CHAR_SCORE) for c in _T5_CHARS]
    vocab += [(T5_WORD_START + c, _T5_CHAR_SCORE) for c in _T5_CHARS if c not in words]
    vocab = list(dict((piece, score) for piece, score in vocab).items())
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)


def build_text_encoders(
    cfg: TinyFluxConfig, clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5TokenizerFast
) -> tuple[CLIPTextModel, T5EncoderModel]:
    """Randomly initialised CLIP and T5 text encoders sized by ``cfg`` for the two tokenizers."""
    eos = clip_tokenizer.convert_tokens_to_ids(CLIP_EOS)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=cfg.clip_hidden,
            intermediate_size=cfg.clip_hidden * 4,
            num_hidden_layers=cfg.clip_layers,
            num_attention_heads=cfg.clip_heads,
            max_position_embeddings=clip_tokenizer.model_max_length,
            bos_token_id=clip_tokenizer.convert_tokens_to_ids(CLIP_BOS),
            eos_token_id=eos,
            pad_token_id=eos,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=cfg.t5_d_model,
            d_kv=cfg.t5_d_model // cfg.t5_heads,
            d_ff=cfg.t5_d_ff,
            num_layers=cfg.t5_layers,
            num_heads=cfg.t5_heads,
            relative_attention_num_buckets=16,
            relative_attention_max_distance=64,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
            decoder_start_token_id=t5_tokenizer.pad_token_id,
        )
    )
    return clip, t5


def build_vae(cfg: TinyFluxConfig) -> AutoencoderKL:
    """A small ``AutoencoderKL`` (scaling/shift factors are set after training from latent stats)."""
    blocks = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.vae_norm_groups,
        sample_size=64,
        scaling_factor=1.0,
        shift_factor=0.0,
    )


def build_transformer(cfg: TinyFluxConfig) -> FluxTransformer2DModel:
    """A tiny ``FluxTransformer2DModel`` whose text stream matches the T5 width and whose
    pooled projection matches the CLIP width. No guidance embedding (use ``true_cfg_scale``)."""
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=cfg.latent_channels * 4,
        num_layers=cfg.double_layers,
        num_single_layers=cfg.single_layers,
        attention_head_dim=cfg.head_dim,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.t5_d_model,
        pooled_projection_dim=cfg.clip_hidden,
        guidance_embeds=False,
        axes_dims_rope=cfg.axes_dims_rope,
    )


def build_scheduler(shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    """Flow-matching Euler scheduler with a fixed ``shift`` (no resolution-dependent shifting)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift, use_dynamic_shifting=False)


def build_components(cfg: TinyFluxConfig, corpus: Iterable[str]) -> FluxComponents:
    """All components, freshly initialised, with tokenizers built over the words of ``corpus``."""
    words = corpus_words(corpus)
    tokenizer = build_clip_tokenizer(words)
    tokenizer_2 = build_t5_tokenizer(words)
    text_encoder, text_encoder_2 = build_text_encoders(cfg, tokenizer, tokenizer_2)
    return FluxComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        tokenizer_2=tokenizer_2,
        text_encoder_2=text_encoder_2,
        vae=build_vae(cfg),
        transformer=build_transformer(cfg),
        scheduler=build_scheduler(),
    )


def assemble_pipelines(parts: FluxComponents) -> tuple[FluxPipeline, FluxKontextPipeline]:
    """The text-to-image and the editing pipeline, sharing the same component objects."""
    kwargs = parts.as_kwargs()
    return FluxPipeline(**kwargs), FluxKontextPipeline(**kwargs)
