"""The UI's error boundary: a ``StudioError`` becomes a ``gr.Error`` with its plain-language
message; anything else is logged with its traceback under a short log id, and the user sees a
generic message quoting that id (never a stack trace). A public deployment also cuts server
paths out of the messages (``hide_server_paths``)."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from typing import Any, Callable, Iterator, TypeVar

import gradio as gr

from models.errors import StudioError
from studio.ui.redact import redact_paths

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_hide_paths = False


def hide_server_paths() -> None:
    """From now on, in this process, error messages shown to users carry no absolute paths (each
    becomes its last part): for a public deployment, whose store and model folders are nobody's
    business. The full message still goes to the log."""
    global _hide_paths
    _hide_paths = True


def to_gradio_error(error: BaseException) -> gr.Error:
    """The ``gr.Error`` a user sees for ``error`` (logging unexpected ones with a log id)."""
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, StudioError):
        if _hide_paths:
            logger.info("refused: %s", error)
            return gr.Error(redact_paths(str(error)), print_exception=False)
        return gr.Error(str(error), print_exception=False)
    log_id = uuid.uuid4().hex[:8]
    logger.error("unexpected error [log id %s]", log_id, exc_info=error)
    return gr.Error(
        f"Something went wrong inside the studio (log id {log_id}). Nothing you typed was lost; "
        "try again, and if it keeps happening, report the log id.",
        print_exception=False,
    )


def ui_errors(fn: F) -> F:
    """Wrap a Gradio handler (plain or generator) so every error reaches the user as ``gr.Error``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # the UI boundary: every failure becomes a readable message
                raise to_gradio_error(e) from e

        return stream  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # the UI boundary: every failure becomes a readable message
            raise to_gradio_error(e) from e

    return call  # type: ignore[return-value]
