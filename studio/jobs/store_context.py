"""The ``JobContext`` a job process reports to: every report goes to its row in the session store.

The job process owns its record. Besides what the kind reports (progress, metrics, artifacts,
result), a heartbeat thread stamps the row every few seconds so the studio can tell a live job
from a hung or vanished one, and SIGTERM (how Cancel asks a job to stop) turns ``should_stop()``
true instead of killing the process, so the kind can checkpoint and return.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from studio.store import SessionStore, now

logger = logging.getLogger(__name__)

#: Seconds between two heartbeats of a running job.
HEARTBEAT_S = 2.0


class StoreContext:
    """Writes a running job's reports to job ``job_id`` of ``store``.

    Use as a context manager: entering starts the heartbeat and installs the SIGTERM/SIGINT
    handler (main thread only), leaving stops the heartbeat.

    :param resuming: the job was started again (``--resume``) in the run folder of an earlier
        attempt; kinds that checkpoint continue from it.
    """

    def __init__(self, store: SessionStore, job_id: str, run_dir: Path, *, resuming: bool = False) -> None:
        self.store = store
        self.job_id: str | None = job_id
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resuming = resuming
        self.summary: dict[str, Any] | None = None
        self.last_step: tuple[int, int | None] = (0, None)
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "StoreContext":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self._beat = threading.Thread(target=self._heartbeat, name=f"job-{self.job_id}-heartbeat", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        if threading.current_thread() is threading.main_thread():
            # The kind has returned: a late SIGTERM must not turn a recorded ending into a kill.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        if self._beat is not None:
            self._beat.join(timeout=HEARTBEAT_S * 2)

    # -- JobContext -----------------------------------------------------------------------------

    def progress(self, step: int, total: int | None, message: str = "") -> None:
        """Record ``step`` of ``total`` units done."""
        self.last_step = (step, total)
        self.store.update_job(self.job_id, step=step, total=total, message=message or None, heartbeat=now())  # type: ignore[arg-type]

    def metric(self, step: int, name: str, value: float) -> None:
        """Record one point of curve ``name``."""
        self.store.add_job_metric(self.job_id, step, name, value)  # type: ignore[arg-type]

    def artifact(self, name: str, path: Path, kind: str = "file") -> None:
        """Record a file or folder the job produced (stored as an absolute path)."""
        self.store.add_job_artifact(self.job_id, name, Path(path).resolve(), kind)  # type: ignore[arg-type]

    def result(self, summary: dict[str, Any]) -> None:
        """Record the job's final summary."""
        self.summary = summary
        self.store.update_job(self.job_id, result=summary)  # type: ignore[arg-type]

    def should_stop(self) -> bool:
        """True once SIGTERM or SIGINT arrived (or ``request_stop`` was called)."""
        return self._stop.is_set()

    # -- helpers --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the kind to stop at its next check (what SIGTERM does)."""
        self._stop.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        logger.warning("received %s: stopping after the current unit", signal.Signals(signum).name)
        self._stop.set()

    def _heartbeat(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            try:
                self.store.update_job(self.job_id, heartbeat=now())  # type: ignore[arg-type]
            except Exception:  # a locked or vanished database must not kill the job
                logger.exception("could not write the heartbeat")
