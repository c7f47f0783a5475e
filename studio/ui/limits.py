"""The limits of a shared deployment, and what a visitor waiting for the model is told.

* **Images per session** (rounds × images per round): one request cannot hold the single model
  slot for long (public default 12; ``--max-session-images``).
* **Model requests per visitor**: how many of one visitor's requests may wait for or hold the
  model slot at once (public default 2; ``--max-visitor-requests``), so one visitor cannot fill
  the queue ahead of everyone.
* **Queue size**: model requests that may wait before new ones are turned away
  (``--queue-size``, in every mode). Only requests for the model count: store-only actions
  (History, votes, exports) have a concurrency of their own and are never refused behind them,
  so Gradio's own ``max_size`` (which counts every queued event) is not used.

The checks run when a request is *submitted* (a Gradio ``validator``), not when its turn comes,
so a refused request never waited. The queue itself is Gradio's: the requests that wait for or
hold the slot are read from it, so a request that left (its tab closed) no longer counts. Gradio
adds a request to its queue only after the validator returned, so requests submitted at the same
moment would all see the same queue: each admitted request also counts as waiting from its
admission until Gradio records it as queued (at most ``ADMISSION_S``; a request that already ran
and finished counts as queued, so it is never counted twice), and admissions are one at a time.
"""

from __future__ import annotations

import functools
import inspect
import math
import statistics
import threading
import time
from typing import Any, Callable

import gradio as gr

from models.errors import InvalidInputError, StudioError
from studio.store import SessionStore
from studio.ui.quotas import Limits
from studio.ui.visitors import Visitor, Visitors

#: Seconds an admitted request counts as waiting until Gradio records it as queued. Gradio adds
#: it within milliseconds of the validator's return, so this is short.
ADMISSION_S = 0.5
#: The ``concurrency_id`` of every listener that uses a model (one slot: one GPU).
MODEL_SLOT = "gpu"
#: Listener settings of store-only actions (History, votes, exports): no queue in the page, and
#: for API clients (which always queue) a concurrency of their own, beside the model's.
STORE_ONLY: dict[str, Any] = {"queue": False, "concurrency_id": "store", "concurrency_limit": 8}
#: The same for a store-only step that must be queued (to show a ``gr.Info`` toast).
STORE_QUEUED: dict[str, Any] = {**STORE_ONLY, "queue": True}


class ModelQueue:
    """The requests waiting for or holding the model slot, as Gradio's queue holds them.

    Reads Gradio's queue internals (``Blocks._queue``: each concurrency id's waiting events and
    the running ones); ``tests/test_app_public.py`` and ``tests/test_ui_app.py`` check the counts
    against a running app.
    """

    def __init__(self, visitors: Visitors) -> None:
        self.visitors = visitors
        self.demo: gr.Blocks | None = None
        self._admitted: list[tuple[float, str | None, str | None]] = []  # (time.time(), session hash, visitor)
        self._lock = threading.Lock()

    def bind(self, demo: gr.Blocks) -> None:
        """Read the queue of ``demo`` (its ``build_app``)."""
        self.demo = demo

    def requests(self) -> tuple[list[Any], list[Any]]:
        """(running, waiting) events of the model slot, the waiting ones in queue order."""
        queue = getattr(self.demo, "_queue", None)
        if queue is None:
            return [], []
        waiting_queue = queue.event_queue_per_concurrency_id.get(MODEL_SLOT)
        waiting = list(waiting_queue.queue) if waiting_queue is not None else []
        running = [event for job in list(queue.active_jobs) if job for event in job
                   if event.concurrency_id == MODEL_SLOT and event.alive]
        return running, waiting

    def admit(self, check: Callable[[int, int], None], session_hash: str | None, visitor: Visitor) -> None:
        """Call ``check(waiting, visitor's)`` with the number of requests waiting for the slot and
        the number ``visitor`` has waiting or running, counting requests admitted but not yet in
        Gradio's queue; when it returns (it raises to refuse), count this request as admitted."""
        with self._lock:
            running, waiting = self.requests()
            unseen = self._unseen()
            held = sum(1 for event in running + waiting if self._visitor_of(event) == visitor.id)
            check(len(waiting) + len(unseen), held + sum(1 for _, _, who in unseen if who == visitor.id))
            self._admitted.append((time.time(), session_hash, visitor.id))

    def enqueued(self) -> list[tuple[float, str | None]]:
        """(when, session hash) of the model-slot requests Gradio has queued lately, finished ones
        included (its queue's record of each event: ``time.time()`` at queueing, the session and
        the endpoint's name)."""
        queue = getattr(self.demo, "_queue", None)
        if queue is None or self.demo is None:
            return []
        names = {fn.api_name for fn in self.demo.fns.values() if fn.concurrency_id == MODEL_SLOT}
        return [(record["time"], record["session_hash"]) for record in list(queue.event_analytics.values())
                if record.get("function") in names]

    def _unseen(self) -> list[tuple[float, str | None, str | None]]:
        """The admitted requests Gradio has not queued yet. Each model request it queued from the
        same session at or after an admission accounts for one, whether it still waits, runs or
        has already finished (a request that ran between two admissions no longer holds the
        slot). Forgets those accounted for, and those older than ``ADMISSION_S``."""
        now = time.time()
        queued = sorted(self.enqueued())
        unseen = []
        for entry in self._admitted:
            match = next((item for item in queued if item[1] == entry[1] and item[0] >= entry[0]), None)
            if match is not None:
                queued.remove(match)
            elif now - entry[0] < ADMISSION_S:
                unseen.append(entry)
        self._admitted = unseen
        return unseen

    def _visitor_of(self, event: Any) -> str | None:
        scope = getattr(getattr(event, "request", None), "scope", None)
        session = scope.get("session") or {} if isinstance(scope, dict) else {}
        try:
            return self.visitors.of_parts(event.session_hash, session).id
        except StudioError:
            return None


class Admission:
    """Lets requests for the model in, or refuses them at submission, under ``limits``; says what
    a new request will wait for. Call ``bind`` with the app once it is built."""

    def __init__(self, limits: Limits | None = None, visitors: Visitors | None = None) -> None:
        self.limits = limits or Limits()
        self.visitors = visitors or Visitors()
        self.queue = ModelQueue(self.visitors)

    def bind(self, demo: gr.Blocks) -> None:
        """Read the queue of ``demo``."""
        self.queue.bind(demo)

    def validator(self, fn: Callable[..., Any], *, flag: str = "prompt",
                  images: Callable[[dict[str, Any]], tuple[float, float]] | None = None) -> Callable[..., Any]:
        """A Gradio ``validator`` for the model-bound handler ``fn``: at submission, refuse a
        request when the model queue is full, when it asks for more images than the limit
        (``images`` reads its rounds and candidates from ``fn``'s arguments) or when its visitor
        already has ``limits.visitor_requests`` requests waiting or running. The refusal is shown
        on the input named ``flag`` (else the first) and reaches an API client as a
        ``ValidationError`` with the message."""
        limits = self.limits
        signature = _with_request(inspect.signature(fn))
        names = [p.name for p in signature.parameters.values() if p.name not in ("request", "progress")]
        flagged = names.index(flag) if flag in names else 0

        @functools.wraps(fn)  # Gradio passes a validator the inputs of fn, read from its signature
        def check(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
            arguments = signature.bind_partial(*args, **kwargs).arguments
            try:
                if images is not None:
                    limits.check_session(*images(arguments))
                request = arguments.get("request")
                self.queue.admit(self._check, getattr(request, "session_hash", None), self.visitors.of(request))
            except StudioError as e:
                return tuple(gr.validate(False, str(e)) if i == flagged else None for i in range(len(names)))
            return tuple(None for _ in names)

        check.__signature__ = signature  # type: ignore[attr-defined]
        check.__annotations__ = {**fn.__annotations__, "request": gr.Request | None}
        return check

    def _check(self, waiting: int, held: int) -> None:
        """Refuse a request when ``waiting`` requests fill the queue or its visitor already has
        ``held`` requests waiting or running, up to their limit."""
        if waiting >= self.limits.queue_size:
            raise InvalidInputError(
                f"The model queue is full: {waiting} requests are waiting. Try again in a minute (operator setting: "
                "--queue-size, STUDIO_QUEUE_SIZE).")
        limit = self.limits.visitor_requests
        if limit is not None and held >= limit:
            raise InvalidInputError(
                f"You already have {held} request(s) waiting for or using the model; this shared studio takes "
                f"{limit} at a time per visitor. Wait for one to finish (operator setting: --max-visitor-requests, "
                "STUDIO_MAX_VISITOR_REQUESTS).")

    def notice(self, store: SessionStore) -> str | None:
        """What a new request will wait for (see ``wait_notice``)."""
        return wait_notice(self.queue, store)


def _with_request(signature: inspect.Signature) -> inspect.Signature:
    """``signature`` with a ``request: gr.Request | None`` parameter (Gradio fills it in), so a
    validator knows the visitor even when the handler itself does not ask who calls."""
    if "request" in signature.parameters:
        return signature
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation=gr.Request | None)
    parameters = list(signature.parameters.values())
    return signature.replace(parameters=[*parameters, request])


def wait_notice(queue: ModelQueue, store: SessionStore) -> str | None:
    """What a new request will wait for: the requests ahead (running and waiting) and an estimate
    from the median duration of the store's recent rounds; ``None`` when the slot is free."""
    running, waiting = queue.requests()
    ahead = len(running) + len(waiting)
    if not ahead:
        return None
    durations = store.recent_round_seconds()
    line = f"Waiting for the model: {ahead} request(s) ahead of yours ({len(running)} running)."
    if durations:
        median = statistics.median(durations)
        line += (f" Recent rounds took {median:.1f} s each (median of the last {len(durations)}), so expect to wait "
                 f"about {math.ceil(median * ahead)} s or more for your turn (a session ahead may run several rounds).")
    return line
