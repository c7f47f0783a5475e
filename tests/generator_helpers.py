"""Tiny diffusers pipelines built from configs, for generator tests (no downloads).

One set of seeded components serves both ``FluxPipeline`` (text-to-image) and
``FluxKontextPipeline`` (editing); ``StableDiffusionPipeline`` is built separately. Each builder
saves the pipeline into a folder, so tests load it the way a user would: by path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import pre_tokenizers

_BYTE_SYMBOLS = sorted(pre_tokenizers.ByteLevel.alphabet())


def clip_tokenizer() -> Any:
    """A byte-level CLIP tokenizer (one token per character, plus start and end tokens)."""
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    symbols = specials + _BYTE_SYMBOLS + [s + "</w>" for s in _BYTE_SYMBOLS]
    vocab = {s: i for i, s in enumerate(symbols)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(chr(c), -2.0) for c in range(32, 127)]
    pieces += [("\u2581" + w, -1.5) for w in ("a", "red", "blue", "circle", "square", "cat", "dog")]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _clip_text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return CLIPTextModel(config)


def _flux_components(seed: int = 0) -> dict[str, Any]:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        guidance_embeds=True, axes_dims_rope=(4, 4, 8),
    )
    text_encoder = _clip_text_encoder(len(tokenizer))
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    )
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(), "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2, "tokenizer": tokenizer, "tokenizer_2": tokenizer_2,
        "transformer": transformer, "vae": vae,
    }


def save_tiny_flux(t2i_folder: Path, edit_folder: Path) -> tuple[Path, Path]:
    """Build seeded tiny FLUX components once and save them as a ``FluxPipeline`` in
    ``t2i_folder`` and a ``FluxKontextPipeline`` in ``edit_folder``."""
    from diffusers import FluxKontextPipeline, FluxPipeline

    components = _flux_components()
    FluxPipeline(**components).save_pretrained(t2i_folder)
    FluxKontextPipeline(**components).save_pretrained(edit_folder)
    return t2i_folder, edit_folder


def save_tiny_flux_lora(pipeline_folder: Path, lora_folder: Path, *, seed: int = 1) -> Path:
    """Add a randomly initialised LoRA adapter to the tiny Flux transformer in ``pipeline_folder``
    and save it with ``FluxPipeline.save_lora_weights`` into ``lora_folder``."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = FluxPipeline.from_pretrained(pipeline_folder)
    pipe.transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v"])
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in pipe.transformer.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op adapter); make it do something
                param.normal_(0.0, 0.5)
    FluxPipeline.save_lora_weights(lora_folder, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return lora_folder


def save_tiny_stable_diffusion(folder: Path) -> Path:
    """Build a seeded tiny ``StableDiffusionPipeline`` (UNet, DDIM with ``steps_offset=1``) in ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8), in_channels=3, out_channels=3, norm_num_groups=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, scheduler=scheduler, vae=vae, text_encoder=_clip_text_encoder(len(tokenizer)),
        tokenizer=tokenizer, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


class RecordingPipeline:
    """Stands in for a real pipeline whose weights we cannot build cheaply (Qwen-Image, SDXL, FLUX
    schnell): records each call's keyword arguments and returns blank images of the asked size, or
    of ``own_size`` when the call leaves the size to the pipeline."""

    vae_scale_factor = 8
    own_size = (1184, 896)

    def __init__(self, guidance_embeds: bool = True) -> None:
        from types import SimpleNamespace

        self.calls: list[dict[str, Any]] = []
        self.scheduler = SimpleNamespace()
        self.transformer = SimpleNamespace(config=SimpleNamespace(guidance_embeds=guidance_embeds))

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Accepted and ignored."""

    def to(self, device: str) -> "RecordingPipeline":
        return self

    def __call__(self, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        from PIL import Image

        self.calls.append(kwargs)
        size = (kwargs["width"], kwargs["height"]) if "width" in kwargs else self.own_size
        return SimpleNamespace(images=[Image.new("RGB", size) for _ in range(kwargs["num_images_per_prompt"])])


def recording_pipeline_folder(folder: Path, class_name: str) -> Path:
    """A folder whose ``model_index.json`` names ``class_name`` (no weights: pair it with a
    ``RecordingPipeline`` patched in as the loader's result)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return folder
