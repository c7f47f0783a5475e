"""Tiny SD3, Qwen-Image and Qwen-Image-Edit pipelines built from configs (no downloads), and a
scalar stub critic, for the RL trainer tests."""

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


def _tiny_qwenimage_parts(folder: Path) -> dict:
    """Seeded tiny Qwen-Image components: a tiny Qwen2.5-VL text encoder (written beside
    ``folder``), a 2x 3-D VAE, a one-layer transformer and a dynamic-shift scheduler."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    from models.critic.tiny_qwen import build_tiny_qwen25vl

    encoder_folder = build_tiny_qwen25vl(folder.parent / f"{folder.name}_text_encoder", hidden_size=64)
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=64, axes_dims_rope=(4, 6, 6))
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    return {"scheduler": FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), "vae": vae,
            "text_encoder": Qwen2_5_VLForConditionalGeneration.from_pretrained(encoder_folder),
            "tokenizer": Qwen2Tokenizer.from_pretrained(encoder_folder), "transformer": transformer,
            "encoder_folder": encoder_folder}


def save_tiny_qwenimage(folder: Path) -> Path:
    """Build a seeded tiny ``QwenImagePipeline`` (a tiny Qwen2.5-VL text encoder, a 2x 3-D VAE and
    a one-layer Qwen-Image transformer) in ``folder``."""
    from diffusers import QwenImagePipeline

    parts = _tiny_qwenimage_parts(folder)
    del parts["encoder_folder"]
    QwenImagePipeline(**parts).save_pretrained(folder)
    return folder


def tiny_qwenimage_edit(folder: Path):
    """A seeded tiny ``QwenImageEditPipeline`` (the Qwen-Image parts above plus the text encoder's
    image processor: the source image reaches the text encoder as vision tokens), in memory: the
    stock ``Qwen2VLProcessor`` cannot be built without torchvision, so the pipeline carries the
    project's image-only Qwen-VL processor and is not saved as a folder."""
    from diffusers import QwenImageEditPipeline

    from models.critic.critic_transformers import load_processor

    parts = _tiny_qwenimage_parts(folder)
    processor = load_processor(str(parts.pop("encoder_folder")))
    return QwenImageEditPipeline(**parts, processor=processor)


def tiny_qwenimage_edit_flow(folder: Path, size: int = 32):
    """The ``FlowModel`` of a fresh ``tiny_qwenimage_edit`` pipeline at ``size`` x ``size``, its
    source images conditioned at the same size (the real pipeline's megapixel is far too big for a
    tiny CPU test; ``source_area`` is the one setting that differs)."""
    from studio.rl.flow import flow_model

    return flow_model(tiny_qwenimage_edit(folder), size=(size, size), guidance=4.0, max_sequence_length=None,
                      negative_prompt=" ", source_area=size * size)


class ScalarStubCritic:
    """A scalar reward model in the shape of a Bradley-Terry critic: each critique scores no
    dimension and carries only ``overall`` (here the image's mean brightness in [0, 1])."""

    name = "scalar-stub"

    def __init__(self, **_: object) -> None:
        self.calls = 0

    def critique(self, requests: list) -> list:
        from PIL import ImageStat

        from models.types import Critique

        self.calls += 1
        return [Critique(r.task, {}, {}, None, None, None, None,
                         sum(ImageStat.Stat(r.image.convert("RGB")).mean) / (3 * 255), "")
                for r in requests]


def untrained_shapes_comparison(tmp_path: Path) -> tuple[str, Path]:
    """For the ``--against`` benches: an untrained smoke-size shapes generator folder (it draws
    no scene asked for) and a config JSON whose model is the shipped ``assets/shapes-t2i``."""
    import json

    from models.shapes.tiny_flux import TinyFluxConfig
    from models.shapes.train_generator import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(out=str(tmp_path / "out"), run_dir=str(tmp_path / "run"), tasks="t2i",
                                  vae_minutes=0.0, minutes=5.0, model=TinyFluxConfig.smoke()))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "assets/shapes-t2i", "data": "shapes", "threads": 1, "sampling_steps": 8,
                                  "critic": {"backend": "shapes"}}))
    return str(trainer.export()[0]), config
