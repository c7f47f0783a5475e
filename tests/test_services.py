"""Services: built once from the config, backends loaded on first use."""

from __future__ import annotations

import pytest

from models.errors import ConfigError
from studio.config import StudioConfig
from studio.services import Lazy, Services


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
