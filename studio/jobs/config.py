"""One typed config dataclass per job kind, turned into CLI flags, a JSON file and back.

A job kind declares ``@dataclass class EvalConfig`` with a docstring per field given as
``field(metadata={"help": "..."})`` and a ``validate()`` method that raises ``ConfigError``.
``config_parser(EvalConfig)`` builds the argparse flags from the fields (``--tie-tolerance``
for ``tie_tolerance``), ``parse_config(EvalConfig, argv)`` reads ``--config FILE`` first and lets
the flags given on the command line override it, and ``save_config`` writes the JSON file the job
runner passes to ``python -m <module> --config FILE``. The same object therefore comes from the
Training tab's form, a config file or the command line.

Example::

    config = parse_config(EvalConfig, ["--data", "pairs.parquet", "--mode", "pointwise"])
    save_config(config, run_dir / "config.json")
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from models.errors import ConfigError

C = TypeVar("C")


def config_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass fields of ``cls`` with their resolved type hints, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def flag_name(field_name: str) -> str:
    """The command-line flag of a config field: ``tie_tolerance`` -> ``--tie-tolerance``."""
    return "--" + field_name.replace("_", "-")


def config_parser(cls: type, parser: argparse.ArgumentParser | None = None, *,
                  prog: str | None = None) -> argparse.ArgumentParser:
    """Add ``--config FILE`` and one flag per field of ``cls`` to ``parser`` (a new one if None).

    Flags default to ``argparse.SUPPRESS`` so that only the flags a person typed override the
    config file; the dataclass defaults fill the rest.
    """
    parser = parser or argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", metavar="FILE", help="a .json config file; flags override its values")
    for f, hint in config_fields(cls):
        kind, choices = flag_type(hint)
        help_text = f.metadata.get("help", "")
        default = field_default(f)
        if default is not dataclasses.MISSING:
            help_text += f" (default: {json.dumps(default) if not isinstance(default, str) else default})"
        # argparse %-formats help strings: a literal "%" (e.g. "60% of the scenes") must be doubled
        options: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        if kind is bool:
            parser.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, **options)
        elif kind is list:
            parser.add_argument(flag_name(f.name), nargs="*", metavar="VALUE", **options)
        elif kind is dict:
            parser.add_argument(flag_name(f.name), type=json_object, metavar="JSON", **options)
        else:
            parser.add_argument(flag_name(f.name), type=kind, choices=choices, **options)
    return parser


def parse_config(cls: type[C], argv: list[str] | None = None, *, prog: str | None = None) -> C:
    """Parse ``argv`` (``--config FILE`` plus flags) into a validated ``cls``; ``prog`` names the
    command in ``--help`` and usage errors.

    Raises ``ConfigError`` for an unreadable file, an unknown key or a value ``validate`` refuses.
    """
    args = vars(config_parser(cls, prog=prog).parse_args(argv))
    values = load_config_values(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    values.update(args)
    return config_from_dict(cls, values)


def load_config_values(path: str | Path) -> dict[str, Any]:
    """The JSON object stored in ``path``. Raises ``ConfigError`` when missing or malformed."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No config file at {path}.") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable JSON config: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a JSON object of settings, got {type(values).__name__}.")
    return values


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build and validate ``cls`` from a plain dict; an unknown key raises ``ConfigError``."""
    known = {f.name for f, _ in config_fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {unknown}; known settings are {sorted(known)}.")
    try:
        config = cls(**values)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of ``config`` that ``config_from_dict`` turns back into an equal config."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> Path:
    """Write ``config`` as indented JSON to ``path`` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def config_to_flags(config: Any) -> list[str]:
    """The command-line flags that rebuild ``config`` (fields equal to their default are left out)."""
    flags: list[str] = []
    for f, hint in config_fields(type(config)):
        value = getattr(config, f.name)
        if value == field_default(f) or value is None:
            continue
        kind, _ = flag_type(hint)
        if kind is bool:
            flags.append(flag_name(f.name) if value else "--no-" + f.name.replace("_", "-"))
        elif kind is list:
            flags += [flag_name(f.name), *map(str, value)]
        elif kind is dict:
            flags += [flag_name(f.name), json.dumps(value, sort_keys=True)]
        else:
            flags += [flag_name(f.name), str(value)]
    return flags


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a config field (``dataclasses.MISSING`` when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def flag_type(hint: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(argparse type or bool/list/dict, choices) for a field's type hint; ``X | None`` is ``X``.
    The Training tab picks each field's widget from it too."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"config fields may be 'X | None' only, got {hint!r}")
        return flag_type(inner[0])
    if origin is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices
    if origin in (list, tuple) or hint in (list, tuple):
        return list, None
    if origin is dict or hint is dict:
        return dict, None
    if hint in (bool, int, float, str):
        return hint, None
    raise TypeError(f"unsupported config field type {hint!r}")


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value
