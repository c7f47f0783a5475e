"""Loop and app settings: round trips and plain-language errors."""

from __future__ import annotations

import pytest

from models.errors import ConfigError
from studio.config import LoopSettings, StudioConfig


def test_loop_settings_defaults():
    settings = LoopSettings()
    assert (settings.max_rounds, settings.candidates, settings.rewriter) == (3, 1, "critic")
    assert settings.thresholds == {"text_faithfulness": 3.5, "physical_quality": 3.5, "text_rendering": 3.5}


def test_loop_settings_round_trip():
    settings = LoopSettings(max_rounds=5, candidates=2, seed_policy="vary", policy={"tie_tolerance": 0.05})
    assert LoopSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    "values, message",
    [
        ({"max_round": 3}, "unknown setting"),
        ({"max_rounds": "3"}, "whole number"),
        ({"max_rounds": 0}, "at least 1"),
        ({"candidates": 2.5}, "whole number"),
        ({"candidates": 9}, "candidates"),  # one generation request makes at most 8 images
        ({"stop_on_regression": 1}, "true or false"),
        ({"seed_policy": "random"}, "seed_policy"),
        ({"rewriter": "gpt"}, "rewriter"),
        ({"thresholds": {"sharpness": 3}}, "unknown dimension"),
        ({"thresholds": {"text_rendering": 5}}, "between 1.0 and 4.0"),
        ({"policy": {"weights": {"beauty": 1}}}, "beauty"),
        ({"guidance": float("nan")}, "number"),
    ],
)
def test_loop_settings_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        LoopSettings.from_dict(values)


def test_loop_settings_seed_for_round():
    assert [LoopSettings(seed=5).seed_for_round(r) for r in (1, 2, 3)] == [5, 5, 5]
    assert [LoopSettings(seed=5, seed_policy="vary").seed_for_round(r) for r in (1, 2, 3)] == [5, 1005, 2005]


def test_studio_config_from_toml_file(tmp_path):
    path = tmp_path / "studio.toml"
    path.write_text('store_dir = "runs"\n[critic]\nbackend = "shapes"\n[loop]\nmax_rounds = 4\n')
    config = StudioConfig.from_file(path)
    assert (config.store_dir, config.critic, config.loop.max_rounds) == ("runs", {"backend": "shapes"}, 4)
    assert StudioConfig.from_dict(config.to_dict()) == config


def test_studio_config_rejects_spec_without_backend():
    with pytest.raises(ConfigError, match="'backend' name"):
        StudioConfig(critic={"model": "x"})
