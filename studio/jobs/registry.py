"""Job kinds by name: each is a module run as ``python -m <module> --config FILE``.

A kind module defines one config dataclass (named ``...Config``, or exported as ``CONFIG``),
``run(config, ctx)`` and ``main(argv)``; ``RESUMABLE = True`` says it continues from its run
folder when started with ``--resume``. Besides the built-in names, a dotted module path
(``"mypackage.my_kind"``) names a user's own kind.

Example: ``load_kind("diagnose").config_cls``
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from dataclasses import dataclass

from models.errors import ConfigError

#: Built-in kinds: name -> module.
KINDS: dict[str, str] = {
    "eval": "studio.evaluation.run",
    "diagnose": "studio.jobs.kinds.diagnose",
    "curate": "studio.jobs.kinds.curate",
    "rl": "studio.rl.train",
    "parrot-vision": "studio.parrot.vision",
    "parrot-pretrain": "studio.parrot.pretrain",
    "parrot-generate": "studio.parrot.generate",
    "parrot-filter": "studio.parrot.filter",
    "parrot-export": "studio.parrot.export",
    "parrot-distill": "studio.parrot.distill",
    "parrot-bt": "studio.parrot.bt",
}


@dataclass(frozen=True)
class KindSpec:
    """A loadable job kind: its name, module, config class and whether it can resume."""

    name: str
    module: str
    config_cls: type
    resumable: bool
    description: str


def kind_module(name: str) -> str:
    """The module of kind ``name`` (a built-in name or a dotted module path)."""
    if name in KINDS:
        return KINDS[name]
    if "." in name and all(part.isidentifier() for part in name.split(".")):
        return name
    raise ConfigError(f"Unknown job kind {name!r}; use one of {sorted(KINDS)} or a 'package.module' path.")


def load_kind(name: str) -> KindSpec:
    """Import kind ``name``. Raises ``ConfigError`` when it is unknown, cannot be imported, or
    lacks a config class or ``main``."""
    module_name = kind_module(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"The job kind {name!r} ({module_name}) cannot be imported: {e}") from e
    if not callable(getattr(module, "main", None)):
        raise ConfigError(f"{module_name} has no main(argv); it is not a job kind.")
    config_cls = _config_class(module)
    return KindSpec(
        name=name, module=module_name, config_cls=config_cls, resumable=bool(getattr(module, "RESUMABLE", False)),
        description=((module.__doc__ or config_cls.__doc__ or "").strip().split("\n\n")[0]),
    )


def available_kinds() -> dict[str, KindSpec | str]:
    """Every built-in kind: its ``KindSpec``, or why it cannot be loaded (shown as unavailable)."""
    kinds: dict[str, KindSpec | str] = {}
    for name in KINDS:
        try:
            kinds[name] = load_kind(name)
        except ConfigError as e:
            kinds[name] = str(e)
    return kinds


def _config_class(module: types.ModuleType) -> type:
    explicit = getattr(module, "CONFIG", None)
    if explicit is not None:
        return explicit
    found = [value for key, value in vars(module).items()
             if key.endswith("Config") and dataclasses.is_dataclass(value) and isinstance(value, type)
             and value.__module__ == module.__name__]
    if len(found) != 1:
        raise ConfigError(f"{module.__name__} must define exactly one ...Config dataclass (or set CONFIG); "
                          f"found {[c.__name__ for c in found]}.")
    return found[0]
