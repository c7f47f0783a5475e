"""app.py and CLI flags: defaults from the environment, backend specs, and clear errors."""

from __future__ import annotations

import pytest
import torch

import app
from models.errors import ConfigError
from models.generator_diffusers import DiffusersGenerator
from models.registry import load_backend
from studio.options import SHAPES_EDIT, SHAPES_T2I, config_from_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "STUDIO_STORE", "STUDIO_CRITIC", "STUDIO_CRITIC_URL",
                 "STUDIO_CRITIC_MODEL", "STUDIO_CRITIC_4BIT", "STUDIO_T2I", "STUDIO_EDIT", "STUDIO_REWRITER",
                 "STUDIO_REWRITER_URL", "STUDIO_REWRITER_MODEL", "STUDIO_PUBLIC", "STUDIO_MAX_UPLOAD_MB",
                 "STUDIO_MCP", "STUDIO_TEMP_MAX_MINUTES", "STUDIO_STATE_SESSIONS", "STUDIO_SHARE", "STUDIO_GEN_DTYPE", "STUDIO_GEN_MEMORY", "STUDIO_VAE_TILING",
                 "STUDIO_T2I_LORA", "STUDIO_EDIT_LORA", "STUDIO_LORA_SCALE"):
        monkeypatch.delenv(name, raising=False)


def test_no_arguments_is_the_shapes_world():
    config = config_from_args(app.parse_args([]))
    assert config.critic == {"backend": "shapes"}
    assert config.t2i_generator["model"] == str(SHAPES_T2I) and config.t2i_generator["task"] == "t2i"
    assert config.edit_generator["model"] == str(SHAPES_EDIT) and config.edit_generator["task"] == "edit"
    assert config.rewriter == {"backend": "critic"}
    assert config.store_dir == ".studio"


def test_gradio_server_variables_set_host_and_port(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7000)
    assert app.parse_args(["--port", "7001"]).port == 7001


def test_studio_variables_are_flag_defaults(monkeypatch):
    monkeypatch.setenv("STUDIO_CRITIC_URL", "http://gpu:8000/v1")
    monkeypatch.setenv("STUDIO_CRITIC_MODEL", "rr-8b")
    monkeypatch.setenv("STUDIO_PUBLIC", "1")
    monkeypatch.setenv("STUDIO_T2I", "none")
    args = app.parse_args([])
    config = config_from_args(args)
    assert config.critic == {"backend": "openai", "base_url": "http://gpu:8000/v1", "model": "rr-8b"}
    assert config.t2i_generator is None
    assert args.public is True


def test_transformers_critic_in_4bit():
    config = config_from_args(app.parse_args(["--critic", "TIGER-Lab/RationalRewards-8B-T2I", "--critic-4bit"]))
    assert config.critic == {"backend": "transformers", "model": "TIGER-Lab/RationalRewards-8B-T2I",
                             "quantization": "4bit"}


def test_generator_memory_dtype_and_lora_flags_reach_the_diffusers_backend(tmp_path):
    lora = tmp_path / "style.safetensors"
    args = app.parse_args(["--t2i", "black-forest-labs/FLUX.1-dev", "--gen-memory", "model_offload",
                           "--gen-dtype", "bf16", "--vae-tiling", "--t2i-lora", str(lora), "--lora-scale", "0.8"])
    config = config_from_args(args)
    assert config.t2i_generator == {
        "backend": "diffusers", "model": "black-forest-labs/FLUX.1-dev", "task": "t2i", "dtype": "bf16",
        "memory": "model_offload", "vae_tiling": True, "lora": str(lora), "lora_scale": 0.8}
    assert "lora" not in config.edit_generator and config.edit_generator["memory"] == "model_offload"
    # the backend validates the settings when it is built (weights load at the first image)
    assert isinstance(load_backend("generator", **{**config.t2i_generator, "memory": "gpu"}), DiffusersGenerator)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU found"):
            load_backend("generator", **config.t2i_generator)


def test_generator_settings_from_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_GEN_MEMORY", "sequential_offload")
    monkeypatch.setenv("STUDIO_EDIT_LORA", "me/kontext-lora")
    config = config_from_args(app.parse_args([]))
    assert config.t2i_generator["memory"] == config.edit_generator["memory"] == "sequential_offload"
    assert config.edit_generator["lora"] == "me/kontext-lora" and "lora" not in config.t2i_generator


@pytest.mark.parametrize("flags, message", [
    (["--t2i", "none", "--t2i-lora", "x"], "--t2i is 'none'"),
    (["--critic-model", "x"], "--critic-url"),
    (["--critic-4bit"], "shapes critic"),
    (["--rewriter", "llm"], "--rewriter-url"),
    (["--rewriter-url", "http://x/v1"], "--rewriter llm"),
])
def test_contradictory_flags_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args(app.parse_args(flags))


def test_llm_rewriter_on_an_endpoint_or_a_local_model():
    remote = config_from_args(app.parse_args(["--rewriter", "llm", "--rewriter-url", "http://llm:8000/v1"]))
    assert remote.rewriter == {"backend": "llm", "llm_backend": "openai", "base_url": "http://llm:8000/v1",
                               "model": None}
    local = config_from_args(app.parse_args(["--rewriter", "llm", "--rewriter-model", "Qwen/Qwen3-4B"]))
    assert local.rewriter == {"backend": "llm", "llm_backend": "transformers", "model": "Qwen/Qwen3-4B"}


def test_bad_boolean_variable_is_refused(monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLIC", "maybe")
    with pytest.raises(ConfigError, match="STUDIO_PUBLIC"):
        app.parse_args([])


def test_public_mode_limits_uploads_by_default():
    assert app.upload_limit(app.parse_args([])) is None
    assert app.upload_limit(app.parse_args(["--public"])) == f"{app.PUBLIC_UPLOAD_MB}mb"
    assert app.upload_limit(app.parse_args(["--max-upload-mb", "5"])) == "5mb"
    with pytest.raises(ConfigError):
        app.upload_limit(app.parse_args(["--max-upload-mb", "0"]))


def test_app_exits_2_with_a_sentence_on_bad_configuration(capsys):
    assert app.main(["--rewriter", "llm"]) == 2
    assert "--rewriter llm needs" in capsys.readouterr().err


def test_temp_max_minutes_sets_the_age_of_temporary_files(monkeypatch):
    assert app.temp_max_age(app.parse_args([])) == 3600
    assert app.temp_max_age(app.parse_args(["--temp-max-minutes", "0.5"])) == 30
    monkeypatch.setenv("STUDIO_TEMP_MAX_MINUTES", "5")
    assert app.temp_max_age(app.parse_args([])) == 300
    with pytest.raises(ConfigError, match="--temp-max-minutes must be above 0"):
        app.temp_max_age(app.parse_args(["--temp-max-minutes", "0"]))


def test_state_sessions_bounds_the_page_state_kept(monkeypatch, tmp_path, capsys):
    assert app.parse_args([]).state_sessions == 200
    monkeypatch.setenv("STUDIO_STATE_SESSIONS", "30")
    assert app.parse_args([]).state_sessions == 30
    assert app.main(["--state-sessions", "0", "--store", str(tmp_path)]) == 2
    assert "--state-sessions must be at least 1" in capsys.readouterr().err
