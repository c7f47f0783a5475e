"""Job configs: one typed dataclass becomes CLI flags, a JSON file, and back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from models.errors import ConfigError
from studio.jobs.config import config_parser, config_to_flags, parse_config, save_config
from studio.jobs.registry import KINDS, load_kind


@dataclass
class DemoConfig:
    """A demo job."""

    data: str = field(default="", metadata={"help": "where the pairs are"})
    mode: Literal["pairwise", "pointwise"] = "pairwise"
    tie_tolerance: float = 0.0
    swap: bool = True
    weights: dict = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    limit: int | None = None

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: give a dataset path.")
        if self.tie_tolerance < 0:
            raise ConfigError(f"tie_tolerance must be at least 0, got {self.tie_tolerance}.")


def test_flags_are_generated_from_the_fields():
    config = parse_config(DemoConfig, ["--data", "x.parquet", "--mode", "pointwise", "--tie-tolerance", "0.1",
                                       "--no-swap", "--weights", '{"text_faithfulness": 2}', "--names", "a", "b",
                                       "--limit", "3"])
    assert config == DemoConfig("x.parquet", "pointwise", 0.1, False, {"text_faithfulness": 2}, ["a", "b"], 3)


def test_flags_round_trip_through_config_to_flags():
    config = DemoConfig("x.parquet", "pointwise", 0.25, False, {"a": 1.5}, ["n"], 7)
    assert parse_config(DemoConfig, config_to_flags(config)) == config
    assert config_to_flags(DemoConfig("x")) == ["--data", "x"]  # defaults are left out


def test_flags_override_the_config_file_and_the_file_overrides_defaults(tmp_path):
    path = save_config(DemoConfig("from-file.parquet", tie_tolerance=0.5), tmp_path / "run" / "config.json")
    assert json.loads(path.read_text())["tie_tolerance"] == 0.5
    config = parse_config(DemoConfig, ["--config", str(path), "--mode", "pointwise"])
    assert (config.data, config.tie_tolerance, config.mode) == ("from-file.parquet", 0.5, "pointwise")


def test_validation_and_unknown_keys_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="tie_tolerance must be at least 0"):
        parse_config(DemoConfig, ["--data", "x", "--tie-tolerance", "-1"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": "x", "tie_tolernce": 0.1}))
    with pytest.raises(ConfigError, match="unknown setting.*tie_tolernce"):
        parse_config(DemoConfig, ["--config", str(bad)])
    with pytest.raises(ConfigError, match="No config file"):
        parse_config(DemoConfig, ["--config", str(tmp_path / "missing.json")])


def test_a_bad_choice_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse_config(DemoConfig, ["--data", "x", "--mode", "both"])
    assert "invalid choice" in capsys.readouterr().err
    assert "--tie-tolerance" in config_parser(DemoConfig).format_help()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_built_in_kind_prints_its_help(kind, capsys):
    # argparse %-formats help texts: one stray "%" in a setting's help crashed `--help` with a TypeError
    spec = load_kind(kind)
    with pytest.raises(SystemExit) as exit_info:
        parse_config(spec.config_cls, ["--help"], prog=kind)
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: {kind}")
    assert "--config FILE" in shown
