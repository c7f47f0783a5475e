"""Models load in a background thread while the page starts serving; model-bound handlers wait
for that thread before they touch a model.

The wait is not only about speed: two threads importing diffusers for the first time at once
can see a half-initialised module (``cannot import name 'DiffusionPipeline'``), so a Run that
arrives during the preload must not load models beside it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from typing import Any, Callable, Iterator, TypeVar

from models.base import HealthChecked, Loadable
from models.errors import StudioError
from models.spaces import gpu
from studio.services import Services

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_loaded = threading.Event()
_loaded.set()  # nothing is loading until preload() starts


def preload(services: Services) -> threading.Thread:
    """Load the critic and the generators (and check a critic server) in a background thread.

    A backend that fails to load is logged here and reported again, as a readable error, by the
    first action that needs it.
    """
    roles = (("critic", services.critic, services.get_critic),
             ("t2i generator", services.t2i_generator, lambda: services.get_generator("t2i")),
             ("edit generator", services.edit_generator, lambda: services.get_generator("edit")))

    def load() -> None:
        try:
            for role, slot, get in roles:
                if slot is None:
                    continue
                try:
                    backend = get()
                    if isinstance(backend, HealthChecked):  # a critic server: say now if it cannot be reached
                        backend.health_check()
                    if isinstance(backend, Loadable):  # e.g. a diffusers generator: its weights, now
                        backend.load()
                except StudioError as e:
                    logger.warning("%s not loaded at start-up: %s", role, e)
            logger.info("models loaded")
        finally:
            _loaded.set()

    _loaded.clear()
    thread = threading.Thread(target=load, name="studio-preload", daemon=True)
    thread.start()
    return thread


def model_bound(fn: F) -> F:
    """Wrap a handler (plain or streaming) that uses a model: it waits for the preload, and on
    Hugging Face Spaces runs with a GPU attached (``models.spaces.gpu``)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            _loaded.wait()
            yield from fn(*args, **kwargs)

        return gpu(stream)  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        _loaded.wait()
        return fn(*args, **kwargs)

    return gpu(call)  # type: ignore[return-value]
