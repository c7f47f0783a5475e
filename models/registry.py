"""Backends by role and name, imported lazily so that heavy libraries load only when used.

``load_backend("critic", "openai", base_url=...)`` builds an ``OpenAICritic``. A name of the
form ``"package.module:Class"`` loads a user's own backend.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.errors import ConfigError

BACKENDS: dict[str, dict[str, str]] = {
    "critic": {
        "transformers": "models.critic.critic_transformers:TransformersCritic",
        "openai": "models.critic.critic_openai:OpenAICritic",
        "shapes": "models.shapes.critic_shapes:ShapesCritic",
        "bt": "models.critic.critic_bt:BTCritic",
    },
    "generator": {
        "diffusers": "models.generator_diffusers:DiffusersGenerator",
    },
    "rewriter": {
        "critic": "models.rewriter:CriticRewriter",
        "llm": "models.rewriter:LLMRewriter",
    },
}


def backend_class(role: str, backend: str) -> type:
    """The class registered for ``role``/``backend`` (or the ``module:Class`` path given instead)."""
    if role not in BACKENDS:
        raise ConfigError(f"Unknown backend role {role!r}; expected one of {sorted(BACKENDS)}.")
    target = BACKENDS[role].get(backend, backend)
    if ":" not in target:
        raise ConfigError(
            f"Unknown {role} backend {backend!r}; expected one of {sorted(BACKENDS[role])} "
            "or a 'package.module:Class' path."
        )
    module_name, class_name = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"The {role} backend {backend!r} could not be imported: {e}") from e
    try:
        return getattr(module, class_name)
    except AttributeError as e:
        raise ConfigError(f"{module_name} has no class {class_name} (the {role} backend {backend!r}).") from e


def load_backend(role: str, backend: str, **options: Any) -> Any:
    """Instantiate the ``role`` backend ``backend`` with keyword ``options`` (which may include
    the backend's own ``name``)."""
    return backend_class(role, backend)(**options)
