"""Services: built once from the config, backends loaded on first use."""

from __future__ import annotations

import pytest

from models.errors import BackendUnavailableError, ConfigError, InvalidInputError
from models.prompt_limit import PromptLimit
from studio.config import StudioConfig
from studio.services import Lazy, Services
from studio.store import SessionStore
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


FAKE_CRITIC = "tests.studio_fakes:ClosableCritic"
FAKE_LORA_GENERATOR = "tests.studio_fakes:LoraSquaresGenerator"


def critic_spec(name: str) -> dict:
    return {"backend": FAKE_CRITIC, "script": [{"text_faithfulness": 3.0}], "name": name}


def test_use_critic_swaps_the_critic_closes_the_old_one_and_the_names_follow(tmp_path):
    services = Services.from_config(StudioConfig(store_dir=str(tmp_path), critic=critic_spec("base")))
    old = services.get_critic()
    assert services.use_critic(critic_spec("distilled")) == "distilled"
    assert old.closed and services.names()["critic"] == "distilled"
    new = services.get_critic()
    assert new is not old and new.name == "distilled" and not new.closed
    assert services.critic.config == critic_spec("distilled")  # a job started now is given this critic
    services.close()
    assert new.closed


def test_use_critic_with_a_bad_spec_keeps_the_previous_critic(tmp_path):
    services = Services.from_config(StudioConfig(store_dir=str(tmp_path), critic=critic_spec("base")))
    services.get_critic()
    with pytest.raises(ConfigError, match="no_such_backend"):
        services.use_critic({"backend": "no_such_backend"})
    with pytest.raises(ConfigError, match="'backend' name"):
        services.use_critic({"model": "/tmp/x"})
    assert services.names()["critic"] == "base" and services.get_critic().name == "base"
    services.close()


def test_use_critic_closes_a_critic_given_as_an_object(tmp_path):
    from tests.studio_fakes import ClosableCritic

    given = ClosableCritic([{"text_faithfulness": 3.0}], name="given")
    services = Services(store=SessionStore(tmp_path / "s.db"), critic=given)
    services.use_critic(critic_spec("distilled"))
    assert given.closed and services.get_critic().name == "distilled"
    services.close()


def test_a_session_running_when_the_critic_is_swapped_fails_cleanly_and_resumes_with_the_new_one(tmp_path):
    """A session holds the critic it started with; once that is closed, its next critique fails,
    the session is stored as failed (not left running), and resuming it uses the new critic."""
    from studio.config import LoopSettings
    from studio.loop import RefineRequest, refine, resume

    services = Services.from_config(StudioConfig(
        store_dir=str(tmp_path), critic={**critic_spec("base"), "script": [{"text_faithfulness": 1.0}]},
        t2i_generator={"backend": FAKE_LORA_GENERATOR}))
    events = refine(RefineRequest("t2i", "a red square"), services, LoopSettings(max_rounds=3, rewriter="critic"))
    started = next(events)
    first_round = []
    for event in events:  # up to the end of round 1, scored by the "base" critic
        first_round.append(event)
        if type(event).__name__ == "RoundFinished":
            break
    assert type(first_round[-1]).__name__ == "RoundFinished"  # round 1 done, the session goes on
    services.use_critic({**critic_spec("distilled"), "script": [{"text_faithfulness": 4.0}]})
    with pytest.raises(BackendUnavailableError, match="base was closed"):
        list(events)
    row = services.store.get_session(started.session_id)
    assert row["status"] == "failed" and "closed" in row["message"]
    list(resume(started.session_id, services))
    assert services.get_critic().seen  # the new critic scored the resumed rounds
    assert services.store.get_session(started.session_id)["status"] != "failed"
    services.close()


def lora_folder(tmp_path) -> str:
    folder = tmp_path / "run" / "lora"
    folder.mkdir(parents=True)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
    return str(folder)


def test_use_generator_lora_rebuilds_the_generator_with_the_lora_and_closes_the_old_one(tmp_path):
    services = Services.from_config(StudioConfig(
        store_dir=str(tmp_path), t2i_generator={"backend": FAKE_LORA_GENERATOR, "size": 16, "name": "base"}))
    old = services.get_generator("t2i")
    path = lora_folder(tmp_path)
    name = services.use_generator_lora("t2i", path)
    assert name == f"{FAKE_LORA_GENERATOR} + LoRA {path}" and services.names()["t2i_generator"] == name
    new = services.get_generator("t2i")
    assert old.closed and new.lora == path and new.size == 16  # the same settings plus the LoRA
    services.close()


def test_use_generator_lora_refuses_a_folder_without_lora_weights_and_an_object_generator(tmp_path):
    services = Services.from_config(StudioConfig(
        store_dir=str(tmp_path), t2i_generator={"backend": FAKE_LORA_GENERATOR, "name": "base"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no LoRA weights"):
        services.use_generator_lora("t2i", str(tmp_path / "empty"))
    assert services.names()["t2i_generator"] == "base" and services.get_generator("t2i").lora is None
    with pytest.raises(ConfigError, match="edit generator is not configured by spec"):
        services.use_generator_lora("edit", lora_folder(tmp_path))
    services.close()
