"""Backend specs a job rebuilds its models from, in its own process.

A spec is ``{"backend": name, **settings}`` (see ``models.registry`` and ``StudioConfig``): it
round-trips through JSON, so the app's current critic can be written into a job's config file
and built again by the job. Secrets never travel in a spec: an API key reaches the job through
its environment (``OPENAI_API_KEY``, inherited from the app), and a spec holding one is refused.

Example: ``config.critic = app_spec(services, "critic")``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.errors import ConfigError, InvalidInputError, NotFoundError
from studio.services import Lazy, Services

#: Setting names that hold secrets; a spec must not contain them.
SECRET_KEYS = frozenset({"api_key", "token", "hf_token", "password", "secret"})

_ROLES = {"critic": "critic", "t2i_generator": "t2i_generator", "edit_generator": "edit_generator",
          "rewriter": "rewriter"}


def check_spec(spec: Any, what: str = "backend spec") -> dict[str, Any]:
    """Return ``spec`` when it is a JSON-safe dict with a ``backend`` name and no secret.

    Raises ``ConfigError`` otherwise, saying what is wrong.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("backend"), str) or not spec["backend"].strip():
        raise ConfigError(f"{what}: expected a dict with a 'backend' name and its settings, got {spec!r}.")
    secrets = sorted(SECRET_KEYS & {key.lower() for key in spec})
    if secrets:
        raise ConfigError(f"{what}: {secrets} must not be written into a job's config; set it in the environment "
                          "(e.g. OPENAI_API_KEY), which the job inherits.")
    try:
        same = json.loads(json.dumps(spec)) == spec
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ConfigError(f"{what}: every setting must be plain JSON (text, numbers, lists, dicts); got {spec!r}.")
    return spec


def app_spec(services: Services, role: str = "critic") -> dict[str, Any] | None:
    """The spec of the app's backend for ``role`` (``None`` when the role is not configured).

    Raises ``ConfigError`` when the backend was given as an object rather than built from a spec.
    """
    if role not in _ROLES:
        raise ConfigError(f"Unknown backend role {role!r}; use one of {sorted(_ROLES)}.")
    slot = getattr(services, _ROLES[role])
    if slot is None:
        return None
    if not isinstance(slot, Lazy) or not slot.config:
        raise ConfigError(f"The app's {role} was given as an object, not a spec, so a job cannot rebuild it.")
    return check_spec(dict(slot.config), f"the app's {role}")


def critic_folder_spec(services: Services, folder: str) -> dict[str, Any]:
    """The spec of a transformers critic on ``folder`` (a checkpoint written by
    ``save_pretrained``, e.g. a PARROT distill job's ``critic`` artifact), with the settings of the
    app's critic when that is a transformers critic too (dtype, quantization, ...).

    Raises ``NotFoundError`` when the folder is gone and ``InvalidInputError`` when it holds no
    ``config.json``.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise NotFoundError(f"No critic folder at {path} (was the job's run folder deleted?).")
    if not (path / "config.json").is_file():
        raise InvalidInputError(f"{path} is not a model folder (no config.json); pick a job's 'critic' artifact.")
    slot = services.critic
    current = slot.config if isinstance(slot, Lazy) and slot.config.get("backend") == "transformers" else {}
    settings = {k: v for k, v in current.items() if k not in ("model", "name")}
    return {**settings, "backend": "transformers", "model": str(path), "name": f"transformers critic ({path})"}
