"""Stop requests for the runs in flight, one per browser session.

The Stop button does not cancel the streaming event (Gradio would then leave every output on its
last "running" state with an error badge); it sets the run's flag, the engine stops at its next
check, and the stream ends with the session's stored status like any other stop.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict


class StopRequests:
    """The stop flag of each browser session's run in flight, keyed by Gradio's session hash."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, key: str | None) -> tuple[str, threading.Event]:
        """Register a new run for ``key`` (``None``: a caller without a browser session, whose
        run only the closed stream can stop); return its key and its fresh flag."""
        key = key or f"anonymous-{uuid.uuid4().hex}"
        flag = threading.Event()
        with self._lock:
            self._flags[key] = flag
        return key, flag

    def stop(self, key: str | None) -> bool:
        """Ask the run of ``key`` to stop; ``False`` when it has none in flight."""
        with self._lock:
            flag = self._flags.get(key or "")
        if flag is None:
            return False
        flag.set()
        return True

    def finish(self, key: str, flag: threading.Event) -> None:
        """Forget ``key``'s run (unless a newer run of the same browser session replaced it)."""
        with self._lock:
            if self._flags.get(key) is flag:
                del self._flags[key]


class LastLines:
    """The status line each browser session's last stream ended with, for the stream's follow-up
    event to write again: the Stop button answers outside the stream, so its "Stopping…" may reach
    the browser after the stream's last line. API callers never run the follow-up, so only the
    ``limit`` most recent lines are kept."""

    def __init__(self, limit: int = 256) -> None:
        self._lines: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def keep(self, key: str, line: str) -> None:
        """Remember ``line`` as the last one of ``key``'s stream."""
        with self._lock:
            self._lines[key] = line
            self._lines.move_to_end(key)
            while len(self._lines) > self._limit:
                self._lines.popitem(last=False)

    def take(self, key: str | None) -> str | None:
        """The last line of ``key``'s stream, once (``None``: none kept)."""
        with self._lock:
            return self._lines.pop(key or "", None)
