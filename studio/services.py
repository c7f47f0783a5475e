"""The backends and the store the engine works with, built once per app (or CLI run, or test).

Heavy backends are wrapped in ``Lazy`` so the app starts at once and a model loads on its first
use; ``Services(store=..., critic=FakeCritic(), t2i_generator=FakeGenerator())`` works too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar, Union

from models.base import Closable, Critic, Generator, PromptLimited, Rewriter
from models.errors import ConfigError, InvalidInputError
from models.prompt_limit import PromptLimit
from models.registry import load_backend
from models.types import Task
from studio.config import StudioConfig
from studio.store import SessionStore

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Lazy(Generic[T]):
    """A backend built on first ``get()`` (once, thread-safe). ``name`` is known before loading."""

    def __init__(self, load: Callable[[], T], name: str, config: dict[str, Any] | None = None) -> None:
        self._load = load
        self.name = name
        self.config = config or {}
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the backend has been built."""
        return self._value is not None

    def get(self) -> T:
        """The backend, building it on the first call."""
        with self._lock:
            if self._value is None:
                logger.info("loading %s", self.name)
                self._value = self._load()
            return self._value

    def release(self) -> bool:
        """Close the built backend and forget it, so the next ``get()`` builds it again (its
        memory is free meanwhile). Returns False when it was not built."""
        with self._lock:
            value, self._value = self._value, None
        if value is None:
            return False
        logger.info("releasing %s", self.name)
        _close_backend(value)
        return True


Slot = Union[T, Lazy[T], None]


@dataclass
class Services:
    """The store plus the critic, the generators (text-to-image, editing) and the LLM rewriter.

    Each backend is an object, a ``Lazy`` that builds it on first use, or ``None`` when the role
    is not configured. ``rewriter`` is only needed for sessions whose ``rewriter`` setting is
    "llm" (the "critic" and "human" rewriters need no model).
    """

    store: SessionStore
    critic: Slot[Critic] = None
    t2i_generator: Slot[Generator] = None
    edit_generator: Slot[Generator] = None
    rewriter: Slot[Rewriter] = None
    # a second generator for comparisons (Judge: "model for B"), at most one loaded at a time
    _other: tuple[tuple[Task, str], Generator] | None = field(default=None, init=False, repr=False)
    _other_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_config(cls, config: StudioConfig) -> "Services":
        """Open the store in ``config.store_dir`` and register each configured backend lazily."""
        store = SessionStore(Path(config.store_dir) / "studio.db")
        services = cls(
            store=store,
            critic=_lazy("critic", config.critic),
            t2i_generator=_lazy("generator", config.t2i_generator),
            edit_generator=_lazy("generator", config.edit_generator),
        )
        if config.rewriter is not None and config.rewriter["backend"] == "llm" and "limit" not in config.rewriter:
            # The LLM must fit the prompt into what the generator of the session's task can read.
            services.rewriter = _lazy("rewriter", config.rewriter, limit=services.prompt_limit)
        else:
            services.rewriter = _lazy("rewriter", config.rewriter)
        return services

    def get_critic(self) -> Critic:
        """The critic. Raises ``ConfigError`` when none is configured."""
        return _resolve(self.critic, "critic", "Configure a critic backend in the studio config.")

    def get_generator(self, task: Task, model: str | None = None) -> Generator:
        """The generator for ``task`` ("t2i" or "edit"); with ``model`` (a hub id or folder other
        than the configured one), that model built with the configured generator's settings
        (backend, dtype, memory mode; no LoRA). ``model`` may also be a LoRA (a folder holding
        ``pytorch_lora_weights.safetensors``, e.g. an RL job's ``lora`` artifact, or such a file):
        then it is the configured model with that LoRA, so base and tuned can be compared. Only one
        such other model is kept loaded. Raises ``ConfigError`` when no generator is set for ``task``."""
        slot = self.t2i_generator if task == "t2i" else self.edit_generator
        configured = _resolve(
            slot, f"{task} generator",
            f"Configure '{'t2i_generator' if task == 't2i' else 'edit_generator'}' in the studio config.",
        )
        spec = slot.config if isinstance(slot, Lazy) else {}
        model = (model or "").strip()
        if not model or model == spec.get("model"):
            return configured
        if not spec:
            raise ConfigError(f"The {task} generator was given as an object, so another model cannot be built "
                              "with its settings; configure it by spec to compare models.")
        with self._other_lock:
            if self._other is not None and self._other[0] == (task, model):
                return self._other[1]
            if self._other is not None:
                previous, self._other = self._other[1], None
                _close_backend(previous)
            options = {k: v for k, v in spec.items() if k not in ("backend", "lora", "lora_scale", "name")}
            chosen = {"model": spec["model"], "lora": model} if is_lora(model) else {"model": model}
            other = load_backend("generator", spec["backend"], **{**options, **chosen})
            self._other = ((task, model), other)
            return other

    def get_rewriter(self) -> Rewriter:
        """The LLM rewriter. Raises ``ConfigError`` when none is configured."""
        return _resolve(
            self.rewriter, "rewriter",
            "Configure a 'rewriter' backend, or use the critic's refined request (rewriter = 'critic').",
        )

    def prompt_limit(self, task: Task) -> PromptLimit:
        """The prompt length limit of ``task``'s generator (its tokenizer's tokens when it can
        tell, else the default character limit)."""
        generator = self.get_generator(task)
        return generator.prompt_limit() if isinstance(generator, PromptLimited) else PromptLimit()

    def names(self) -> dict[str, str | None]:
        """Display name of each role's backend, without loading any model."""
        return {
            role: None if slot is None else slot.name
            for role, slot in (("critic", self.critic), ("t2i_generator", self.t2i_generator),
                               ("edit_generator", self.edit_generator), ("rewriter", self.rewriter))
        }

    def use_critic(self, spec: dict[str, Any]) -> str:
        """Make the backend of ``spec`` (``{"backend": ..., **settings}``) the critic, e.g. a
        transformers critic on a PARROT job's ``critic`` folder; return its name.

        The previous critic's memory is freed first and the new one is built at once, so a bad
        spec or folder raises here (``ConfigError``, ``BackendUnavailableError``) and the previous
        critic stays (it loads again on its next use). A session holding the previous critic object
        keeps it when it was given as an object; one built from a spec is closed, and such a session
        fails at its next critique with ``BackendUnavailableError`` (resume it to go on with the new
        critic). In the app, model-bound actions share one slot, so a swap waits for them.
        """
        self.critic = _replace(self.critic, "critic", spec)
        return self.critic.name

    def use_generator_lora(self, task: Task, path: str) -> str:
        """Rebuild ``task``'s generator from its configured spec plus ``lora=path`` (a folder with
        ``pytorch_lora_weights.safetensors`` or such a file, e.g. an RL job's ``lora`` artifact);
        return its name. The previous generator is closed; a failed build keeps it configured.

        Raises ``InvalidInputError`` when ``path`` holds no LoRA weights and ``ConfigError`` when
        the generator was not configured by spec.
        """
        role = "t2i_generator" if task == "t2i" else "edit_generator"
        slot = getattr(self, role)
        if not isinstance(slot, Lazy) or not slot.config:
            raise ConfigError(f"The {task} generator is not configured by spec ({role} in the studio config), "
                              "so it cannot be rebuilt with a LoRA.")
        if not is_lora(path):
            raise InvalidInputError(f"{path} holds no LoRA weights (a folder with pytorch_lora_weights.safetensors, "
                                    "or a .safetensors file).")
        base = {k: v for k, v in slot.config.items() if k not in ("lora", "name")}
        spec = {**base, "lora": str(path), "name": f"{base.get('model', base['backend'])} + LoRA {path}"}
        setattr(self, role, _replace(slot, "generator", spec))
        return getattr(self, role).name

    def release_models(self) -> list[str]:
        """Free the memory of every loaded backend built from a spec (each loads again on its next
        use), e.g. so that a GPU job fits; return the names of those released."""
        released = []
        with self._other_lock:
            if self._other is not None:
                other, self._other = self._other[1], None
                _close_backend(other)
                released.append(other.name)
        for slot in (self.critic, self.t2i_generator, self.edit_generator, self.rewriter):
            if isinstance(slot, Lazy) and slot.release():
                released.append(slot.name)
        return released

    def close(self) -> None:
        """Close the store and every loaded backend that can be closed."""
        if self._other is not None:
            _close_backend(self._other[1])
        for slot in (self.critic, self.t2i_generator, self.edit_generator, self.rewriter):
            if slot is None or (isinstance(slot, Lazy) and not slot.loaded):
                continue
            _close_backend(slot.get() if isinstance(slot, Lazy) else slot)
        self.store.close()


def is_lora(path: str) -> bool:
    """Whether ``path`` is LoRA weights (a ``.safetensors`` file, or a folder with
    ``pytorch_lora_weights.safetensors`` and no ``model_index.json``) rather than a model."""
    local = Path(path).expanduser()
    if local.is_file():
        return local.suffix == ".safetensors"
    return (local / "pytorch_lora_weights.safetensors").is_file() and not (local / "model_index.json").is_file()


def _close_backend(backend: Any) -> None:
    """Release what ``backend`` holds (HTTP client, model memory), if it can be closed."""
    if isinstance(backend, Closable):
        backend.close()


def _replace(slot: Slot[T], role: str, spec: dict[str, Any]) -> Lazy[T]:
    """A ``Lazy`` of ``spec``'s ``role`` backend, already built, to take ``slot``'s place; ``slot``'s
    backend is released before the build (a ``Lazy`` builds again on its next use should the
    build fail) and closed after it (an object)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("backend"), str):
        raise ConfigError(f"A {role} spec is a dict with a 'backend' name and its settings, got {spec!r}.")
    if isinstance(slot, Lazy):
        slot.release()
    new: Lazy[T] = _lazy_of(role, spec)
    new.get()
    if slot is not None and not isinstance(slot, Lazy):
        _close_backend(slot)
    return new


def _lazy(role: str, spec: dict[str, Any] | None, **runtime: Any) -> Lazy[Any] | None:
    """``_lazy_of`` of ``spec``, or ``None`` when the role is not configured."""
    return None if spec is None else _lazy_of(role, spec, **runtime)


def _lazy_of(role: str, spec: dict[str, Any], **runtime: Any) -> Lazy[Any]:
    """A ``Lazy`` building ``spec``'s backend; ``runtime`` options are passed but not recorded."""
    options = {**{k: v for k, v in spec.items() if k != "backend"}, **runtime}
    name = str(options.get("name") or spec["backend"])
    return Lazy(lambda: load_backend(role, spec["backend"], **options), name=name, config=dict(spec))


def _resolve(slot: Slot[T], what: str, hint: str) -> T:
    if slot is None:
        raise ConfigError(f"No {what} is configured. {hint}")
    return slot.get() if isinstance(slot, Lazy) else slot
