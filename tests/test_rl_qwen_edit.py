"""Qwen-Image-Edit in the DiffusionNFT trainer, on a tiny ``QwenImageEditPipeline`` built from
configs: the source image conditions the velocity through both of its routes (vision tokens of the
text encoder, packed latents beside the noisy ones), sampling reproduces the pipeline's own call,
and the trained LoRA loads into the studio's edit generator. (One training step changing only the
LoRA weights and lowering the loss: ``test_rl_training``, kind ``qwen_edit``.)"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from models.errors import ConfigError
from models.generator_diffusers import DiffusersGenerator
from models.types import GenerationRequest
from studio.rl.config import RLConfig
from studio.rl.flow import Cond, QwenImageEditFlow
from studio.rl.trainer import NFTTrainer
from studio.rl.weights import export_lora
from tests.generator_helpers import recording_pipeline_folder
from tests.rl_helpers import tiny_qwenimage_edit, tiny_qwenimage_edit_flow

torch.set_num_threads(1)

RED = Image.new("RGB", (32, 32), (220, 30, 30))
BLUE = Image.new("RGB", (32, 32), (30, 30, 220))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> QwenImageEditFlow:
    flow = tiny_qwenimage_edit_flow(tmp_path_factory.mktemp("qwen_edit") / "pipe")
    assert isinstance(flow, QwenImageEditFlow) and flow.task == "edit"
    return flow


@pytest.fixture
def pipeline_source_area(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the pipeline condition on a 32x32 source, as the tiny flow model does, instead of its
    fixed one megapixel."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit

    original = edit.calculate_dimensions
    monkeypatch.setattr(edit, "calculate_dimensions", lambda area, ratio: original(32 * 32, ratio))


def test_the_source_image_conditions_the_velocity_through_both_routes(model):
    x = model.noise(1, torch.Generator().manual_seed(0)).repeat(2, 1, 1)
    t = torch.tensor([0.5])
    cond = model.encode(["make it green", "make it green"], [RED, BLUE])
    v = model.velocity(x, t, cond)
    assert (v[0] - v[1]).abs().max() > 1e-3  # another source, another prediction

    same = model.velocity(x, t, model.encode(["make it green"] * 2, [RED, RED]))
    assert torch.equal(same[0], same[1])
    # each route alone: the red source's text tokens with the blue source's latents, and back
    tokens_only = Cond({**cond.select([0]).batched, "image_latents": cond.batched["image_latents"][1:]}, {})
    latents_only = Cond({**cond.select([1]).batched, "image_latents": cond.batched["image_latents"][:1]}, {})
    red_v = v[:1]
    assert (model.velocity(x[:1], t, tokens_only) - red_v).abs().max() > 1e-3
    assert (model.velocity(x[:1], t, latents_only) - red_v).abs().max() > 1e-3


def test_sampling_reproduces_the_pipelines_own_call(model, pipeline_source_area):
    noise = model.noise(1, torch.Generator().manual_seed(1))
    ours = model.sample(model.encode(["make it blue"], [RED]), noise, 2)
    theirs = model.pipe(image=RED, prompt="make it blue", latents=noise, num_inference_steps=2, true_cfg_scale=1.0,
                        width=32, height=32, output_type="latent").images
    assert torch.allclose(theirs.float(), ours, atol=1e-5)


def test_an_edit_without_its_source_image_is_refused(model):
    with pytest.raises(ConfigError, match="one source image per prompt"):
        model.encode(["make it blue", "make it red"], [RED])


def test_the_trained_lora_loads_into_the_studio_edit_generator(tmp_path, monkeypatch, pipeline_source_area):
    flow = tiny_qwenimage_edit_flow(tmp_path / "train")
    config = RLConfig(model="tiny", resolution=32, sampling_steps=2, lora_rank=4, lora_alpha=4, learning_rate=1e-2,
                      group_size=2, train_batch=4)
    trainer = NFTTrainer(config, flow, critic=None, prompts=None)  # type: ignore[arg-type]
    cond = flow.encode(["make it blue"] * 2, [RED, BLUE]).repeat(2)
    x0 = flow.sample(cond, flow.noise(4, torch.Generator().manual_seed(3)), 2)
    noise = flow.noise(4, torch.Generator().manual_seed(7))
    for _ in range(3):
        trainer.update(cond, x0, torch.tensor([1.0, 0.0, 0.75, 0.25]), torch.tensor([0.3, 0.5, 0.7, 0.9]), noise)
    lora = export_lora(flow.pipe, {n: p.detach() for n, p in trainer.trainable.items()}, tmp_path / "lora")

    folder = str(recording_pipeline_folder(tmp_path / "model", "QwenImageEditPipeline"))

    def generate(lora_folder: str | None):
        monkeypatch.setattr("diffusers.DiffusionPipeline.from_pretrained",
                            lambda *a, **k: tiny_qwenimage_edit(tmp_path / "studio"))
        request = GenerationRequest(task="edit", prompt="make it blue", source_image=RED, steps=2, width=32, height=32)
        return DiffusersGenerator(model=folder, lora=lora_folder).generate(request)

    base, tuned = generate(None), generate(str(lora.parent))
    assert tuned.settings["lora"] == str(lora.parent) and tuned.images[0].size == (32, 32)
    assert np.abs(np.asarray(base.images[0], dtype=int) - np.asarray(tuned.images[0], dtype=int)).max() > 0
