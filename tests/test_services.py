"""Services: built once from the config, backends loaded on first use."""

from __future__ import annotations

import pytest

from models.errors import ConfigError
from models.prompt_limit import PromptLimit
from studio.config import StudioConfig
from studio.services import Lazy, Services
from tests.studio_fakes import SquaresGenerator


def test_services_from_config_loads_backends_lazily(tmp_path):
    config = StudioConfig(
        store_dir=str(tmp_path / "store"),
        critic={"backend": "tests.studio_fakes:ScriptedCritic", "script": [{"text_faithfulness": 3.0}]},
        t2i_generator={"backend": "tests.studio_fakes:SquaresGenerator", "size": 16},
    )
    services = Services.from_config(config)
    assert isinstance(services.critic, Lazy) and not services.critic.loaded
    assert services.names() == {"critic": "tests.studio_fakes:ScriptedCritic",
                                "t2i_generator": "tests.studio_fakes:SquaresGenerator",
                                "edit_generator": None, "rewriter": None}
    assert services.get_generator("t2i").size == 16
    assert not services.critic.loaded  # only what was asked for is built
    assert services.get_critic() is services.get_critic()
    assert (tmp_path / "store" / "studio.db").is_file()
    services.close()


def test_services_missing_role_raises_config_error(tmp_path):
    services = Services.from_config(StudioConfig(store_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="edit_generator"):
        services.get_generator("edit")
    with pytest.raises(ConfigError, match="critic"):
        services.get_critic()
    services.close()


def test_services_unknown_backend_fails_on_first_use(tmp_path):
    services = Services.from_config(StudioConfig(store_dir=str(tmp_path), critic={"backend": "no_such_backend"}))
    with pytest.raises(ConfigError, match="no_such_backend"):
        services.get_critic()
    services.close()


class ShortPromptGenerator(SquaresGenerator):
    """A generator whose text encoder reads at most 77 characters."""

    def prompt_limit(self) -> PromptLimit:
        return PromptLimit(max_chars=77)


def test_llm_rewriter_from_config_fits_prompts_to_the_generators_limit(tmp_path):
    config = StudioConfig(
        store_dir=str(tmp_path),
        t2i_generator={"backend": "tests.test_services:ShortPromptGenerator"},
        rewriter={"backend": "llm", "llm_backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
    )
    services = Services.from_config(config)
    assert services.get_rewriter().limit_for("t2i").limit == 77
    assert services.rewriter.config == config.rewriter  # the runtime limit is not recorded as a setting
    services.close()


class NamedSquares(SquaresGenerator):
    """A squares generator that has a model name and records being closed."""

    def __init__(self, *, model: str = "squares", **kwargs) -> None:
        super().__init__(**kwargs)
        self.name = model
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_another_model_for_comparison_shares_the_settings_and_one_is_kept(tmp_path):
    config = StudioConfig(store_dir=str(tmp_path), t2i_generator={
        "backend": "tests.test_services:NamedSquares", "model": "org/base", "size": 16})
    services = Services.from_config(config)
    base = services.get_generator("t2i")
    assert services.get_generator("t2i", "org/base") is base and services.get_generator("t2i", " ") is base
    other = services.get_generator("t2i", "org/other")
    assert other is not base and (other.name, other.size) == ("org/other", 16)
    assert services.get_generator("t2i", "org/other") is other  # loaded once
    third = services.get_generator("t2i", "org/third")
    assert other.closed and not third.closed and not base.closed  # only one other model stays loaded
    services.close()
    assert third.closed and third.name == "org/third"


def test_release_models_frees_loaded_backends_which_load_again_on_next_use(tmp_path):
    config = StudioConfig(
        store_dir=str(tmp_path / "store"),
        critic={"backend": "tests.studio_fakes:ScriptedCritic", "script": [{"text_faithfulness": 3.0}]},
        t2i_generator={"backend": "tests.studio_fakes:SquaresGenerator", "size": 16},
    )
    services = Services.from_config(config)
    first = services.get_generator("t2i")
    assert services.release_models() == ["tests.studio_fakes:SquaresGenerator"]  # the critic was never loaded
    assert not services.t2i_generator.loaded
    again = services.get_generator("t2i")
    assert again is not first and again.size == 16
    assert services.release_models() == ["tests.studio_fakes:SquaresGenerator"] and services.release_models() == []
    services.close()


def test_a_lora_folder_as_the_other_model_is_the_configured_model_with_that_lora(tmp_path):
    """Judge's model B can be an RL job's LoRA: base (A) against tuned (B) on one base model."""
    lora = tmp_path / "rl-run" / "lora"
    lora.mkdir(parents=True)
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    config = StudioConfig(store_dir=str(tmp_path / "store"), t2i_generator={
        "backend": "tests.test_services:LoraSquares", "model": "org/base", "size": 16})
    services = Services.from_config(config)
    base = services.get_generator("t2i")
    tuned = services.get_generator("t2i", str(lora))
    assert (base.name, base.lora) == ("org/base", None)
    assert (tuned.name, tuned.lora, tuned.size) == ("org/base", str(lora), 16)
    assert services.get_generator("t2i", str(tmp_path / "rl-run")).lora is None  # a folder, not a LoRA
    services.close()


class LoraSquares(NamedSquares):
    """A named squares generator that records the LoRA it was built with."""

    def __init__(self, *, lora: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lora = lora
