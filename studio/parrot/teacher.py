"""Build a teacher or judge critic from a JSON spec, in the job's own process.

A spec is the registry name plus the backend's settings, e.g. ``{"backend": "shapes",
"perception_noise": 0.2, "seed": 1}``, ``{"backend": "openai", "base_url": "http://host:8000/v1",
"model": "Qwen3-VL-235B"}`` or ``{"backend": "transformers", "model": "/models/critic"}``.
Secrets (``OPENAI_API_KEY``) come from the environment, never from the spec.
"""

from __future__ import annotations

from typing import Any

from models.critic.runner import ProtocolCritic
from models.errors import ConfigError
from models.registry import load_backend


def check_spec(spec: Any, what: str) -> None:
    """Raise ``ConfigError`` unless ``spec`` is a dict with a ``backend`` name and no secret."""
    if not isinstance(spec, dict) or not isinstance(spec.get("backend"), str) or not spec["backend"]:
        raise ConfigError(
            f"{what} must be a JSON object with a 'backend' (shapes, openai, transformers), got {spec!r}."
        )
    if "api_key" in spec:
        raise ConfigError(f"{what}: pass the API key as OPENAI_API_KEY in the environment, not in the config.")


def build_critic(spec: dict[str, Any], what: str) -> ProtocolCritic:
    """The critic ``spec`` describes (see the module docstring)."""
    check_spec(spec, what)
    options = {key: value for key, value in spec.items() if key != "backend"}
    critic = load_backend("critic", spec["backend"], **options)
    if not isinstance(critic, ProtocolCritic):
        raise ConfigError(f"{what}: the {spec['backend']!r} backend is not a protocol critic; PARROT needs its text.")
    return critic
