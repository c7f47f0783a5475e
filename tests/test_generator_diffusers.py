"""DiffusersGenerator on tiny pipelines built from configs and saved to folders (no downloads)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.errors import BackendUnavailableError, CancellationError, ConfigError, InvalidInputError  # noqa: E402
from models.generator_diffusers import DiffusersGenerator  # noqa: E402
from models.types import GenerationRequest  # noqa: E402
from tests.generator_helpers import (  # noqa: E402
    RecordingPipeline,
    recording_pipeline_folder,
    save_tiny_flux,
    save_tiny_flux_lora,
    save_tiny_stable_diffusion,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    flux, kontext = save_tiny_flux(root / "flux", root / "kontext")
    return {"flux": flux, "kontext": kontext, "lora": save_tiny_flux_lora(flux, root / "lora")}


@pytest.fixture(scope="module")
def flux(folders: dict[str, Path]) -> DiffusersGenerator:
    return DiffusersGenerator(model=str(folders["flux"]), steps=2, width=32, height=32)


@pytest.fixture(scope="module")
def kontext(folders: dict[str, Path]) -> DiffusersGenerator:
    return DiffusersGenerator(model=str(folders["kontext"]), steps=2)


def t2i(prompt: str = "a red circle", **kw: object) -> GenerationRequest:
    return GenerationRequest(task="t2i", prompt=prompt, **kw)  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def source(width: int = 48, height: int = 32) -> Image.Image:
    image = Image.new("RGB", (width, height), (230, 30, 30))
    image.paste((20, 20, 220), (8, 8, 24, 24))
    return image


# -- loading and task ---------------------------------------------------------------------------


def test_task_inferred_from_pipeline_class(flux: DiffusersGenerator, kontext: DiffusersGenerator) -> None:
    assert flux.tasks == ("t2i",)
    assert kontext.tasks == ("edit",)


def test_task_mismatch_is_config_error(folders: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="FluxPipeline"):
        _ = DiffusersGenerator(model=str(folders["flux"]), task="edit").tasks


def test_missing_folder_is_backend_unavailable(tmp_path: Path) -> None:
    gen = DiffusersGenerator(model=str(tmp_path / "nowhere" / "model"))
    with pytest.raises(BackendUnavailableError, match="No model folder"):
        gen.generate(t2i())


def test_folder_without_model_index_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="model_index.json"):
        DiffusersGenerator(model=str(tmp_path)).generate(t2i())


def test_uncached_hub_id_offline_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailableError, match="Hugging Face Hub"):
        DiffusersGenerator(model="nobody-here/no-such-model").generate(t2i())


def test_model_offload_without_cuda_is_a_clear_config_error(folders: dict[str, Path]) -> None:
    # diffusers itself fails only at load time ("requires accelerator"); we refuse at once.
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        DiffusersGenerator(model=str(folders["flux"]), memory="model_offload", device="cpu")


# -- text-to-image -------------------------------------------------------------------------------


def test_generate_honours_size_and_records_settings(flux: DiffusersGenerator, folders: dict[str, Path]) -> None:
    result = flux.generate(t2i(seed=7, num_images=2, width=48, height=32, guidance=2.0))
    assert [im.size for im in result.images] == [(48, 32), (48, 32)]
    assert result.seeds == [7, 8]
    s = result.settings
    assert s["model"] == str(folders["flux"])
    assert (s["pipeline"], s["scheduler"], s["task"]) == ("FluxPipeline", "FlowMatchEulerDiscreteScheduler", "t2i")
    assert (s["steps"], s["guidance"], s["guidance_kw"]) == (2, 2.0, "guidance_scale")
    assert (s["width"], s["height"], s["seeds"], s["dtype"], s["lora"]) == (48, 32, [7, 8], "float32", None)
    assert s["family"] == "FLUX.1"


def test_same_seed_same_pixels_and_image_i_reproducible_alone(flux: DiffusersGenerator) -> None:
    batch = flux.generate(t2i(seed=3, num_images=3))
    again = flux.generate(t2i(seed=3, num_images=3))
    alone = flux.generate(t2i(seed=5))
    for a, b in zip(batch.images, again.images):
        assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(batch.images[2]) - pixels(alone.images[0])).max() <= 1
    assert not np.array_equal(pixels(batch.images[0]), pixels(batch.images[1]))


def test_sizes_snapped_to_pipeline_multiple_with_warning(
    flux: DiffusersGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    result = flux.generate(t2i(width=33, height=35))
    # the tiny VAE has scale factor 1 and Flux packs 2x2 patches: multiples of 2
    assert result.images[0].size == (32, 34)
    assert "multiples of 2" in caplog.text


def test_on_step_reports_each_step(flux: DiffusersGenerator) -> None:
    seen: list[tuple[int, int]] = []
    flux.generate(t2i(steps=3), on_step=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_should_stop_cancels(flux: DiffusersGenerator) -> None:
    steps: list[int] = []
    with pytest.raises(CancellationError):
        flux.generate(t2i(steps=4), on_step=lambda s, t: steps.append(s), should_stop=lambda: len(steps) >= 1)
    with pytest.raises(CancellationError, match="before it started"):
        flux.generate(t2i(), should_stop=lambda: True)


def copy_with_defaults(folder: Path, target: Path, defaults: dict[str, object]) -> Path:
    shutil.copytree(folder, target)
    (target / "studio_defaults.json").write_text(json.dumps(defaults))
    return target


def test_studio_defaults_file_overrides_family_defaults(folders: dict[str, Path], tmp_path: Path) -> None:
    # the keys the shapes-world export writes (diffusers keyword names)
    defaults = {"num_inference_steps": 3, "true_cfg_scale": 1.0, "negative_prompt": "", "height": 24,
                "width": 16, "max_sequence_length": 32}
    gen = DiffusersGenerator(model=str(copy_with_defaults(folders["flux"], tmp_path / "shapes", defaults)))
    s = gen.generate(t2i()).settings
    assert (s["steps"], s["guidance"], s["width"], s["height"]) == (3, 1.0, 16, 24)
    assert s["family"] == "shapes"
    assert gen.prompt_limit().limit == 32


def test_studio_defaults_unknown_key_is_config_error(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_with_defaults(folders["flux"], tmp_path / "bad", {"stpes": 3})
    with pytest.raises(ConfigError, match="stpes"):
        DiffusersGenerator(model=str(folder)).generate(t2i())


def test_prompt_limit_counts_generator_tokens(flux: DiffusersGenerator) -> None:
    limit = flux.prompt_limit()
    assert (limit.unit, limit.limit) == ("tokens", 512)
    assert limit.measure("a red circle") > 0


# -- LoRA -------------------------------------------------------------------------------------


def test_lora_changes_output_and_scale_zero_matches_base(flux: DiffusersGenerator, folders: dict[str, Path]) -> None:
    base = flux.generate(t2i(seed=1)).images[0]
    weights = folders["lora"] / "pytorch_lora_weights.safetensors"
    with_lora = DiffusersGenerator(model=str(folders["flux"]), steps=2, width=32, height=32, lora=str(weights))
    result = with_lora.generate(t2i(seed=1))
    assert result.settings["lora"] == str(weights)
    assert np.abs(pixels(result.images[0]) - pixels(base)).mean() > 1.0
    off = DiffusersGenerator(model=str(folders["flux"]), steps=2, width=32, height=32,
                             lora=str(folders["lora"]), lora_scale=0.0)
    assert np.abs(pixels(off.generate(t2i(seed=1)).images[0]) - pixels(base)).max() <= 1


def test_missing_lora_is_backend_unavailable(folders: dict[str, Path], tmp_path: Path) -> None:
    gen = DiffusersGenerator(model=str(folders["flux"]), lora=str(tmp_path / "none.safetensors"))
    with pytest.raises(BackendUnavailableError, match="No LoRA weights"):
        gen.generate(t2i())


# -- editing ------------------------------------------------------------------------------------


def test_kontext_edit_keeps_source_size_not_1024(kontext: DiffusersGenerator) -> None:
    result = kontext.generate(GenerationRequest(task="edit", prompt="make it blue", source_image=source(48, 32)))
    assert result.images[0].size == (48, 32)
    assert (result.settings["width"], result.settings["height"]) == (48, 32)
    assert result.settings["pipeline"] == "FluxKontextPipeline"


def test_kontext_edit_honours_requested_size(kontext: DiffusersGenerator) -> None:
    request = GenerationRequest(task="edit", prompt="make it blue", source_image=source(), width=32, height=32)
    assert kontext.generate(request).images[0].size == (32, 32)


def test_kontext_edit_depends_on_source(kontext: DiffusersGenerator) -> None:
    a = kontext.generate(GenerationRequest(task="edit", prompt="x", source_image=source(32, 32)))
    b = kontext.generate(GenerationRequest(task="edit", prompt="x", source_image=Image.new("RGB", (32, 32))))
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))


# -- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (t2i("   "), "prompt is empty"),
        (t2i(num_images=0), "num_images must be 1 to 8"),
        (t2i(num_images=9), "num_images must be 1 to 8"),
        (t2i(width=8), "width must be 16 to 2048"),
        (t2i(height=4096), "height must be 16 to 2048"),
        (t2i(steps=0), "steps must be 1 to 500"),
        (t2i(seed=-1), "seed must be"),
        (t2i(guidance=-1.0), "guidance must be 0 to 50"),
        (GenerationRequest(task="edit", prompt="make it blue", source_image=source()), "does 't2i' only"),
        (t2i(source_image=source()), "source image was given"),
    ],
)
def test_bad_inputs_raise_invalid_input(flux: DiffusersGenerator, request_: GenerationRequest, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        flux.generate(request_)


def test_edit_without_source_image_is_refused_when_the_request_is_built(kontext: DiffusersGenerator) -> None:
    with pytest.raises(InvalidInputError, match="needs a source image"):
        GenerationRequest(task="edit", prompt="make it blue")


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="memory must be"):
        DiffusersGenerator(model="x/y", memory="cpu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dtype must be"):
        DiffusersGenerator(model="x/y", dtype="int8")


# -- Stable Diffusion (UNet) --------------------------------------------------------------------


def test_stable_diffusion_pipeline(tmp_path: Path) -> None:
    folder = save_tiny_stable_diffusion(tmp_path / "sd")
    gen = DiffusersGenerator(model=str(folder), steps=2)
    result = gen.generate(t2i(width=32, height=32, seed=4))
    assert result.images[0].size == (32, 32)
    assert (result.settings["scheduler"], result.settings["guidance_kw"]) == ("DDIMScheduler", "guidance_scale")
    assert gen.prompt_limit().limit == 77
    assert json.dumps(gen.to_config())  # settings round-trip through JSON


# -- per-family call quirks (recorded calls: these pipelines are too costly to build here) -------


def recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, class_name: str, folder: str = "model", **pipe_kw: object
) -> tuple[DiffusersGenerator, RecordingPipeline]:
    pipe = type(class_name, (RecordingPipeline,), {})(**pipe_kw)
    monkeypatch.setattr("diffusers.DiffusionPipeline.from_pretrained", lambda *a, **k: pipe)
    return DiffusersGenerator(model=str(recording_pipeline_folder(tmp_path / folder, class_name))), pipe


def test_qwen_image_edit_plus_takes_image_list_and_picks_its_own_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "QwenImageEditPlusPipeline")
    result = gen.generate(GenerationRequest(task="edit", prompt="make it blue", source_image=source(64, 48)))
    (call,) = pipe.calls
    assert isinstance(call["image"], list) and call["image"][0].size == (64, 48)
    assert (call["true_cfg_scale"], call["negative_prompt"], call["num_inference_steps"]) == (4.0, " ", 40)
    assert "width" not in call and "guidance_scale" not in call
    # the actual output size is recorded, not a requested one
    assert (result.settings["width"], result.settings["height"]) == RecordingPipeline.own_size
    assert result.settings["family"] == "Qwen-Image-Edit-2509"


def test_qwen_image_edit_honours_a_requested_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "QwenImageEditPipeline")
    request = GenerationRequest(task="edit", prompt="make it blue", source_image=source(), width=520, height=384)
    assert gen.generate(request).images[0].size == (512, 384)  # snapped to multiples of 16
    assert not isinstance(pipe.calls[0]["image"], list)


def test_qwen_image_defaults_and_cfg_off_at_guidance_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "QwenImagePipeline")
    assert gen.generate(t2i()).images[0].size == (1328, 1328)
    assert (pipe.calls[0]["num_inference_steps"], pipe.calls[0]["true_cfg_scale"]) == (50, 4.0)
    gen.generate(t2i(guidance=1.0))
    assert "negative_prompt" not in pipe.calls[1]  # true CFG needs guidance above 1


def test_sdxl_uses_guidance_scale_and_multiples_of_8(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "StableDiffusionXLPipeline")
    result = gen.generate(t2i(width=1001, height=768))
    (call,) = pipe.calls
    assert (call["guidance_scale"], call["num_inference_steps"], call["width"]) == (5.0, 30, 1000)
    assert "max_sequence_length" not in call and "negative_prompt" not in call
    assert result.settings["family"] == "SDXL"


def test_flux_without_guidance_embedding_gets_schnell_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "FluxPipeline", guidance_embeds=False)
    result = gen.generate(t2i())
    (call,) = pipe.calls
    assert (call["num_inference_steps"], call["true_cfg_scale"], call["max_sequence_length"]) == (4, 0.0, 256)
    assert "negative_prompt" not in call and result.settings["family"] == "FLUX.1-schnell"


def test_sd35_medium_recognised_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen, pipe = recorded(monkeypatch, tmp_path, "StableDiffusion3Pipeline", folder="stable-diffusion-3.5-medium")
    gen.generate(t2i())
    (call,) = pipe.calls
    assert (call["num_inference_steps"], call["guidance_scale"], call["max_sequence_length"]) == (40, 4.5, 256)
