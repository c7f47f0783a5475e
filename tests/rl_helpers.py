"""A tiny ``StableDiffusion3Pipeline`` built from configs (no downloads), for the RL trainer tests."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.generator_helpers import _t5_tokenizer, clip_tokenizer


def save_tiny_sd3(folder: Path) -> Path:
    """Build a seeded tiny SD3 pipeline (MMDiT, two CLIP encoders with projections, T5) in ``folder``."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer, t5_tokenizer = clip_tokenizer(), _t5_tokenizer()

    def clip() -> CLIPTextModelWithProjection:
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
            bos_token_id=0, eos_token_id=1, pad_token_id=1))

    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                 num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
        text_encoder=clip(), tokenizer=tokenizer, text_encoder_2=clip(), tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5, tokenizer_3=t5_tokenizer)
    pipe.save_pretrained(folder)
    return folder
