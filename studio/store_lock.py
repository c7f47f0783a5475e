"""A SQLite connection that outlasts a lock held by another program.

SQLite waits up to its busy timeout for a lock; a writer that holds it longer (a database browser
with an open transaction, a backup tool, another studio) makes the statement fail with "database
is locked". ``PatientConnection`` then tries again after a pause that doubles each time, logging
each retry, and when every try is spent raises ``BackendUnavailableError`` saying how long it
waited, so that the message names the cause rather than a generic failure.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, Callable, TypeVar

from models.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Tries after the first one fails on a lock, and the first pause (seconds; doubled per retry).
LOCK_RETRIES = 3
LOCK_BACKOFF_S = 1.0


def is_lock_error(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" / "busy" (another connection holds the lock)."""
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class PatientConnection(sqlite3.Connection):
    """``sqlite3.Connection`` whose ``execute``, ``executemany`` and ``commit`` retry on a lock.

    Configure with ``patience(retries, backoff_s, busy_timeout_s, where)`` after connecting.
    """

    retries: int = LOCK_RETRIES
    backoff_s: float = LOCK_BACKOFF_S
    busy_timeout_s: float = 30.0
    where: str = "the store"

    def patience(self, retries: int, backoff_s: float, busy_timeout_s: float, where: str) -> None:
        """How often to retry after a lock error, the first pause, the busy timeout each try waits,
        and what to call the database in messages (no server path)."""
        self.retries, self.backoff_s, self.busy_timeout_s, self.where = retries, backoff_s, busy_timeout_s, where

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        """``sqlite3.Connection.execute``, retried on a lock."""
        return self._patiently(lambda: super(PatientConnection, self).execute(*args, **kwargs))

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
        """``sqlite3.Connection.executemany``, retried on a lock."""
        return self._patiently(lambda: super(PatientConnection, self).executemany(*args, **kwargs))

    def commit(self) -> None:
        """``sqlite3.Connection.commit``, retried on a lock."""
        self._patiently(lambda: super(PatientConnection, self).commit())

    def _patiently(self, call: Callable[[], T]) -> T:
        started, pause, attempt = time.monotonic(), self.backoff_s, 0
        while True:
            try:
                return call()
            except sqlite3.OperationalError as e:
                if not is_lock_error(e):
                    raise
                if attempt == self.retries:
                    waited = time.monotonic() - started
                    raise BackendUnavailableError(
                        f"{self.where[0].upper()}{self.where[1:]} stayed locked by another program for {waited:.0f} s "
                        f"({self.retries + 1} tries, each waiting up to {self.busy_timeout_s:g} s). Close what holds "
                        "it (a database browser, a backup, another studio on the same store) and try again; an "
                        "interrupted session can be resumed from History."
                    ) from e
                attempt += 1
                logger.warning("%s is locked by another connection; retry %d of %d in %.1f s", self.where,
                               attempt, self.retries, pause)
                time.sleep(pause)
                pause *= 2
