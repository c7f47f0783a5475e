"""The session store: every session, round, image, critique, judgement, vote, note and job in
SQLite, so that nothing is lost when the browser closes or the app restarts.

The database runs in WAL mode with one connection per thread. Images are PNG files named by the
SHA-256 of their bytes under ``<db folder>/images/ab/abcdef....png``; tables hold only the path.
The schema is created and migrated with ``sqlite_utils.migrations.Migrations``.

Example::

    store = SessionStore("runs/studio.db")
    sid = store.create_session(task="t2i", prompt="a red cube", settings={})
    store.search_sessions(text="cube", scores=[ScoreFilter.parse("text_rendering < 2")])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import struct
import threading
import uuid
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, get_args

import numpy as np
from PIL import Image
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from models.errors import ConfigError, InvalidInputError, NotFoundError
from studio.store_lock import LOCK_BACKOFF_S, LOCK_RETRIES, PatientConnection
from models.types import Critique, CritiqueFailure, CritiqueResult, task_dimensions

logger = logging.getLogger(__name__)

SessionStatus = Literal["running", "awaiting", "finished", "interrupted", "cancelled", "failed"]
Vote = Literal["A", "B", "tie", "both_bad"]
VOTES: tuple[str, ...] = get_args(Vote)
#: GenAI-Bench's ``vote_type`` for each of our votes.
GENAI_BENCH_VOTE = {"A": "leftvote", "B": "rightvote", "tie": "tievote", "both_bad": "bothbad_vote"}

DIMENSION_COLUMNS: tuple[str, ...] = tuple(d.key for d in task_dimensions("edit"))  # every dimension
_SCORE_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "="}
_PNG_LEVEL = 1  # fast compression: every candidate of every round is written

MIGRATIONS = Migrations("rationalrewards_studio")

# PNG encoding and file writes, shared by every store of the process (threads stay warm).
_IMAGE_WRITER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="studio-images")

# Store objects alive in this process, by owner token: their "running" sessions are not stale.
_LIVE_OWNERS: set[str] = set()
#: Serialises check-and-claim of sessions, so two browser tabs cannot both resume one session.
_CLAIM_LOCK = threading.Lock()


def now() -> str:
    """The current UTC time as an ISO-8601 string with milliseconds (how the store dates rows)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    """Sessions, rounds, images, critiques, judgements, votes, notes and jobs."""
    db.table("sessions").create(
        {
            "id": str, "task": str, "prompt": str, "status": str, "stop_reason": str, "message": str,
            "settings": str, "source_image_id": int, "generator": str, "critic": str, "rewriter": str,
            "generator_name": str, "critic_name": str, "rewriter_name": str, "pending_prompt": str,
            "best_image_id": int, "best_critique_id": int, "best_score": float, "best_round": int,
            "best_candidate": int, "best_meets": int, "owner": str, "created": str, "updated": str,
        },
        pk="id",
        not_null={"task", "prompt", "status", "created", "updated"},
    )
    db.table("rounds").create(
        {
            "id": int, "session_id": str, "idx": int, "prompt": str, "seed": int, "status": str,
            "best_image_id": int, "best_critique_id": int, "best_score": float, "failures": int,
            "next_prompt": str, "prompt_source": str, "generate_s": float, "critique_s": float,
            "created": str, "updated": str,
        },
        pk="id",
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db.table("images").create(
        {
            "id": int, "sha256": str, "path": str, "width": int, "height": int, "role": str,
            "session_id": str, "round_id": int, "candidate": int, "seed": int, "settings": str,
            "created": str,
        },
        pk="id",
        not_null={"sha256", "path", "role"},
    )
    db.table("critiques").create(
        {
            "id": int, "image_id": int, "session_id": str, "round_id": int, "candidate": int,
            "task": str, "prompt": str, "critic_name": str, "ok": int, "failure_reason": str,
            "attempts": int, "raw": str, "overall": float, "score": float,
            **{key: float for key in DIMENSION_COLUMNS},
            "justifications": str, "analysis": str, "summary": str, "refinement_comments": str,
            "refined_request": str, "warnings": str, "created": str,
        },
        pk="id",
    )
    db.table("judgements").create(
        {
            "id": int, "task": str, "prompt": str, "image_a_id": int, "image_b_id": int,
            "source_image_id": int, "critic_name": str, "winner": str, "consistent": int,
            "dimensions": str, "raw_ab": str, "raw_ba": str, "failures": str, "created": str,
        },
        pk="id",
    )
    db.table("votes").create(
        {
            "id": int, "judgement_id": int, "task": str, "prompt": str, "image_a_id": int,
            "image_b_id": int, "source_image_id": int, "model_a": str, "model_b": str, "vote": str,
            "created": str,
        },
        pk="id",
        not_null={"vote", "prompt"},
    )
    db.table("notes").create(
        {"id": int, "session_id": str, "round_id": int, "text": str, "created": str}, pk="id"
    )
    db.table("jobs").create(
        {
            "id": str, "kind": str, "status": str, "config": str, "folder": str, "pid": int,
            "message": str, "created": str, "updated": str,
        },
        pk="id",
        not_null={"kind", "status"},
    )
    db.table("sessions").create_index(["status"])
    db.table("sessions").create_index(["created"])
    db.table("rounds").create_index(["session_id", "idx"])
    db.table("images").create_index(["session_id"])
    db.table("critiques").create_index(["session_id"])
    db.table("critiques").create_index(["image_id"])


#: Job statuses: "created" (row written, run folder being prepared), "queued" (waiting for a slot),
#: "running" (its process runs), then "done", "failed" or "cancelled".
JOB_STATUSES: tuple[str, ...] = ("created", "queued", "running", "done", "failed", "cancelled")
JOB_FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")


@MIGRATIONS()
def m002_jobs(db: Database) -> None:
    """Background jobs: process identity (pid + start time), heartbeat, progress, outcome, chaining,
    plus one table of metric points and one of artifacts per job."""
    jobs = db.table("jobs")
    for column, kind in {
        "module": str, "command": str, "cwd": str, "device": str, "gpu_gb": float, "parent_id": str,
        "pid_start": int, "supervisor_pid": int, "supervisor_start": int, "claimed_by": str,
        "heartbeat": str, "step": int, "total": int, "started": str, "finished": str, "exit_code": int,
        "reason": str, "log_path": str, "result": str, "resume": int, "cancel_requested": str,
    }.items():
        jobs.add_column(column, kind)
    jobs.create_index(["status"])
    db.table("job_metrics").create(
        {"id": int, "job_id": str, "step": int, "name": str, "value": float}, pk="id",
        not_null={"job_id", "name"},
    )
    db.table("job_metrics").create_index(["job_id", "name", "step"])
    db.table("job_artifacts").create(
        {"id": int, "job_id": str, "name": str, "path": str, "kind": str, "created": str}, pk="id",
        not_null={"job_id", "name", "path"},
    )
    db.table("job_artifacts").create_index(["job_id"])


@MIGRATIONS()
def m003_eval_rows(db: Database) -> None:
    """One row per benchmark row judged by an evaluation run (``studio.evaluation``): both
    scores, the stored critiques or judgement, the winner, the label, and why a row failed."""
    db.table("eval_rows").create(
        {
            "id": int, "run_id": str, "row_index": int, "row_id": str, "benchmark": str, "mode": str,
            "critic_name": str, "task": str, "prompt": str, "label": str, "model_a": str, "model_b": str,
            "score_a": float, "score_b": float, "winner": str, "correct": int, "consistent": int,
            "failure": str, "critique_a_id": int, "critique_b_id": int, "judgement_id": int,
            "dimensions": str, "created": str,
        },
        pk="id",
        not_null={"run_id", "row_index", "label"},
    )
    db.table("eval_rows").create_index(["run_id", "row_index"], unique=True)
    db.table("images").create_index(["sha256"], if_not_exists=True)  # cached critiques are found by pixels


@MIGRATIONS()
def m004_critique_missing(db: Database) -> None:
    """Critiques record which dimensions were missing (not N/A): JSON list of keys."""
    db.table("critiques").add_column("missing", str)


@MIGRATIONS()
def m005_one_vote_per_judgement(db: Database) -> None:
    """A judgement keeps one vote, the latest: older duplicates are dropped and a unique index
    makes a new vote on the same judgement replace the old one."""
    db.execute("delete from votes where judgement_id is not null and id not in "
               "(select max(id) from votes where judgement_id is not null group by judgement_id)")
    db.execute("create unique index if not exists idx_votes_judgement_id on votes (judgement_id)")


@MIGRATIONS()
def m006_visitors(db: Database) -> None:
    """Sessions, judgements and votes record the visitor who made them (a shared deployment shows
    each visitor their own); ``None`` for rows made locally (CLI, a local app)."""
    for table in ("sessions", "judgements", "votes"):
        db.table(table).add_column("visitor", str)
    db.table("sessions").create_index(["visitor", "created"])


@dataclass(frozen=True)
class StoredImage:
    """An image row: ``id`` in the images table, ``sha256`` of its PNG bytes, ``path`` on disk."""

    id: int
    sha256: str
    path: Path


@dataclass(frozen=True)
class ScoreFilter:
    """A condition on a dimension score (or ``overall``) of a session's best critique.

    Example: ``ScoreFilter.parse("text_rendering < 2")``
    """

    dimension: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.dimension not in (*DIMENSION_COLUMNS, "overall", "score"):
            raise InvalidInputError(
                f"Unknown score {self.dimension!r}; use one of {[*DIMENSION_COLUMNS, 'overall']}."
            )
        if self.op not in _SCORE_OPS:
            raise InvalidInputError(f"Unknown comparison {self.op!r}; use one of {sorted(_SCORE_OPS)}.")

    @classmethod
    def parse(cls, text: str) -> "ScoreFilter":
        """Parse ``"<dimension> <op> <number>"``, e.g. ``"text_rendering < 2"``."""
        match = re.fullmatch(r"\s*([a-z_]+)\s*(<=|>=|==|<|>|=)\s*([0-9.]+)\s*", text or "")
        if not match:
            raise InvalidInputError(
                f"Cannot read the score filter {text!r}; write it like 'text_rendering < 2'."
            )
        return cls(match.group(1), match.group(2), float(match.group(3)))


class SessionStore:
    """Sessions and everything around them, in one SQLite file plus an image folder beside it.

    Opening a store creates or migrates the schema, and marks sessions left "running" by a
    process that is gone as "interrupted" (they can be resumed).

    :param path: the database file; images go to ``<its folder>/images``.
    :param busy_timeout_s: how long a statement waits for a lock held by another connection;
        then it is tried again ``lock_retries`` times after pauses from ``lock_backoff_s`` doubling
        (``studio.store_lock``), and ``BackendUnavailableError`` says the store stayed locked.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, lock_retries: int = LOCK_RETRIES,
                 lock_backoff_s: float = LOCK_BACKOFF_S) -> None:
        self.path = Path(path)
        self._patience = (lock_retries, lock_backoff_s, busy_timeout_s, f"the store ({self.path.name})")
        self.image_dir = self.path.parent / "images"
        try:
            self.image_dir.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(str(self.path)).close()
        except (OSError, sqlite3.Error) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConfigError(f"Cannot open the store in {self.path.parent}: {reason}. Give --store (STUDIO_STORE) "
                              "a folder you can write to.") from e
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._local = threading.local()
        self._connections: list[Database] = []
        self._lock = threading.Lock()
        self._pending: dict[str, Future[None]] = {}
        db = self.db
        db.enable_wal()
        MIGRATIONS.apply(db)
        _LIVE_OWNERS.add(self.owner)
        self._mark_stale_sessions()

    # -- connections ----------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """This thread's connection (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.path), timeout=self._patience[2], check_same_thread=False,
                                   factory=PatientConnection)
            conn.patience(*self._patience)
            conn.execute("PRAGMA synchronous=NORMAL")
            db = Database(conn)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        """Finish pending image writes and close every connection this store opened. Its
        running sessions count as stale after."""
        _LIVE_OWNERS.discard(self.owner)
        self.flush()
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def _mark_stale_sessions(self) -> None:
        stale = [row["id"] for row in self.db["sessions"].rows_where("status = 'running'", select="id, owner")
                 if _owner_gone(row["owner"])]
        for sid in stale:
            self.update_session(sid, status="interrupted", message="The app stopped while this session ran.")
        if stale:
            logger.info("marked %d session(s) left running as interrupted", len(stale))

    # -- images ---------------------------------------------------------------------------------

    def save_image(
        self,
        image: Image.Image,
        *,
        role: str,
        session_id: str | None = None,
        round_id: int | None = None,
        candidate: int | None = None,
        seed: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> StoredImage:
        """Record a row for ``image`` and write its PNG file (once per content) in the background.

        The file is named by the SHA-256 of the pixels (mode, size and bytes). ``image_path``,
        ``load_image``, the exports and ``flush`` wait for a pending write, so a reader never
        sees a missing file; the encoding overlaps the next model call instead of delaying the
        event that shows the image.

        :param role: what the image is: "candidate", "source", "judge", "diagnose", ...
        """
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        pixels = image.tobytes()
        sha = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode() + pixels).hexdigest()
        relative = Path(sha[:2]) / f"{sha}.png"
        target = self.image_dir / relative
        with self._lock:
            if sha not in self._pending and not target.exists():
                self._pending[sha] = _IMAGE_WRITER.submit(_write_png, image.mode, image.size, pixels, target)
        row = {
            "sha256": sha, "path": str(relative), "width": image.width, "height": image.height,
            "role": role, "session_id": session_id, "round_id": round_id, "candidate": candidate,
            "seed": seed, "settings": _dumps(settings), "created": now(),
        }
        image_id = self._insert("images", row)
        return StoredImage(id=int(image_id), sha256=sha, path=target)

    def flush(self, sha256: str | None = None) -> None:
        """Wait until the image file ``sha256`` (default: every pending one) is on disk.

        Raises ``OSError`` when a file could not be written (disk full, no permission).
        """
        with self._lock:
            keys = [sha256] if sha256 is not None else list(self._pending)
            futures = [(k, self._pending[k]) for k in keys if k in self._pending]
        for key, future in futures:
            try:
                future.result()
            finally:
                with self._lock:
                    self._pending.pop(key, None)

    def image_path(self, image_id: int) -> Path:
        """The file of image ``image_id`` (waiting for its write). Raises ``NotFoundError``."""
        row = self._get("images", image_id)
        self.flush(row["sha256"])
        return self.image_dir / row["path"]

    def load_image(self, image_id: int) -> Image.Image:
        """Open image ``image_id`` fully into memory."""
        with Image.open(self.image_path(image_id)) as opened:
            return opened.convert("RGB")

    # -- sessions and rounds --------------------------------------------------------------------

    def create_session(
        self,
        *,
        task: str,
        prompt: str,
        settings: dict[str, Any],
        source_image_id: int | None = None,
        backends: dict[str, dict[str, Any]] | None = None,
        names: dict[str, str] | None = None,
        visitor: str | None = None,
    ) -> str:
        """Record a new running session and return its id.

        :param backends: role ("generator", "critic", "rewriter") → the backend's ``to_config()``.
        :param names: role → the backend's display name (searchable as "model").
        :param visitor: who started it, in a shared deployment (see ``get_session``).
        """
        backends, names = backends or {}, names or {}
        sid = uuid.uuid4().hex[:16]
        stamp = now()
        self._insert("sessions", {
            "id": sid, "task": task, "prompt": prompt, "status": "running", "settings": _dumps(settings),
            "source_image_id": source_image_id, "owner": self.owner, "visitor": visitor, "created": stamp,
            "updated": stamp,
            **{role: _dumps(backends.get(role)) for role in ("generator", "critic", "rewriter")},
            **{f"{role}_name": names.get(role) for role in ("generator", "critic", "rewriter")},
        })
        return sid

    def update_session(self, session_id: str, **values: Any) -> None:
        """Set columns of session ``session_id`` (``updated`` is set too; a dict ``settings`` is
        stored as JSON)."""
        if isinstance(values.get("settings"), dict):
            values["settings"] = _dumps(values["settings"])
        self._update("sessions", session_id, {**values, "updated": now()})

    def claim_session(self, session_id: str) -> None:
        """Mark a session running under this store (before resuming it).

        Raises ``InvalidInputError`` when it is already running in a live process, or in this one
        (another tab resumed it first); the check and the claim are one step.
        """
        with _CLAIM_LOCK:
            if self.session_is_live(session_id):
                raise InvalidInputError(
                    f"Session {session_id} is already running (in another tab or process); "
                    "wait for it to finish or stop it before resuming."
                )
            self.update_session(session_id, status="running", owner=self.owner, message=None)

    def session_is_live(self, session_id: str) -> bool:
        """Whether a running session belongs to a process (or store object) that is still alive."""
        row = self._get("sessions", session_id)
        return row["status"] == "running" and not _owner_gone(row["owner"])

    def get_session(self, session_id: str, *, visitor: str | None = None) -> dict[str, Any]:
        """Session ``session_id`` as a dict with ``settings`` and the backend configs
        (``generator``, ``critic``, ``rewriter``) decoded. Raises ``NotFoundError``, also when
        ``visitor`` is given and the session is someone else's (it exists only for its visitor)."""
        return _decode_session(self._get("sessions", session_id, visitor=visitor))

    def start_round(self, session_id: str, index: int, prompt: str, seed: int) -> int:
        """Record round ``index`` (1-based) as running and return its row id."""
        stamp = now()
        return self._insert("rounds", {
            "session_id": session_id, "idx": index, "prompt": prompt, "seed": seed, "status": "running",
            "failures": 0, "created": stamp, "updated": stamp,
        })

    def update_round(self, round_id: int, **values: Any) -> None:
        """Set columns of round ``round_id`` (``updated`` is set too)."""
        self._update("rounds", round_id, {**values, "updated": now()})

    def recent_round_seconds(self, limit: int = 50) -> list[float]:
        """How long each of the latest ``limit`` completed rounds took (generation plus critique),
        newest first: what a wait estimate is made from."""
        rows = self.db.execute(
            "select generate_s + critique_s from rounds where generate_s is not null and critique_s is not null "
            "order by id desc limit ?", [limit]).fetchall()
        return [float(row[0]) for row in rows]

    def interrupt_running_rounds(self, session_id: str) -> None:
        """Mark the session's rounds still "running" as "interrupted" (its run ended mid-round)."""
        for stale in self.rounds(session_id, status="running"):
            self.update_round(stale["id"], status="interrupted")

    def rounds(self, session_id: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """Rounds of a session in order (every attempt, unless ``status`` picks some)."""
        where, args = "session_id = ?", [session_id]
        if status is not None:
            where, args = where + " and status = ?", args + [status]
        return list(self.db["rounds"].rows_where(where, args, order_by="idx, id"))

    # -- critiques ------------------------------------------------------------------------------

    def save_critique(
        self,
        result: CritiqueResult,
        *,
        task: str,
        prompt: str,
        image_id: int,
        critic_name: str,
        score: float | None = None,
        session_id: str | None = None,
        round_id: int | None = None,
        candidate: int | None = None,
    ) -> int:
        """Record a critique or a critique failure (raw text kept) and return its row id.

        :param score: the [0, 1] score under the session's scoring policy (``None`` for a failure).
        """
        row: dict[str, Any] = {
            "image_id": image_id, "session_id": session_id, "round_id": round_id, "candidate": candidate,
            "task": task, "prompt": prompt, "critic_name": critic_name, "ok": int(result.ok),
            "raw": result.raw, "created": now(),
        }
        if isinstance(result, CritiqueFailure):
            row.update(failure_reason=result.reason, attempts=result.attempts)
        else:
            row.update(
                overall=result.overall, score=score,
                **{key: result.scores.get(key) for key in DIMENSION_COLUMNS},
                justifications=_dumps(result.justifications), analysis=result.analysis,
                summary=result.summary, refinement_comments=result.refinement_comments,
                refined_request=result.refined_request, warnings=_dumps(result.warnings),
                missing=_dumps(result.missing),
            )
        return self._insert("critiques", row)

    def find_critique(self, sha256: str, *, task: str, prompt: str, critic_name: str) -> int | None:
        """The id of the latest successful critique by ``critic_name`` of the image whose pixels
        hash to ``sha256`` for ``task`` and ``prompt`` (a cached critique), or ``None``."""
        rows = self.db.execute(
            "select c.id from critiques c join images i on i.id = c.image_id where i.sha256 = ? and c.task = ? "
            "and c.prompt = ? and c.critic_name = ? and c.ok = 1 order by c.id desc limit 1",
            [sha256, task, prompt, critic_name],
        ).fetchall()
        return int(rows[0][0]) if rows else None

    def get_critique(self, critique_id: int) -> CritiqueResult:
        """Rebuild the ``Critique`` (or ``CritiqueFailure``) stored as ``critique_id``."""
        row = self._get("critiques", critique_id)
        if not row["ok"]:
            return CritiqueFailure(reason=row["failure_reason"], raw=row["raw"], attempts=row["attempts"] or 1)
        keys = [d.key for d in task_dimensions(row["task"])]
        return Critique(
            task=row["task"], scores={k: row[k] for k in keys},
            justifications=json.loads(row["justifications"] or "{}"), analysis=row["analysis"],
            summary=row["summary"], refinement_comments=row["refinement_comments"],
            refined_request=row["refined_request"], overall=row["overall"], raw=row["raw"],
            warnings=json.loads(row["warnings"] or "[]"), missing=json.loads(row["missing"] or "[]"),
        )

    def critiques(self, session_id: str) -> list[dict[str, Any]]:
        """Critique rows of a session, in the order they were written."""
        return list(self.db["critiques"].rows_where("session_id = ?", [session_id], order_by="id"))

    # -- judgements, votes, notes ---------------------------------------------------------------

    def save_judgement(self, **values: Any) -> int:
        """Record a pairwise judgement (columns of the judgements table) and return its id."""
        return self._insert("judgements", {**values, "created": now()})

    def get_judgement(self, judgement_id: int, *, visitor: str | None = None) -> dict[str, Any]:
        """Judgement ``judgement_id`` as a dict. Raises ``NotFoundError``, also when ``visitor``
        is given and the judgement is someone else's."""
        return self._get("judgements", judgement_id, visitor=visitor)

    def save_vote(
        self,
        *,
        vote: str,
        task: str,
        prompt: str,
        image_a_id: int,
        image_b_id: int,
        source_image_id: int | None = None,
        model_a: str | None = None,
        model_b: str | None = None,
        judgement_id: int | None = None,
        visitor: str | None = None,
    ) -> int:
        """Record a person's preference between image A and image B; return the vote id.

        A judgement holds one vote: voting again on ``judgement_id`` replaces the earlier vote
        (same id, new choice and time).
        """
        if vote not in VOTES:
            raise InvalidInputError(f"Unknown vote {vote!r}; use one of {list(VOTES)}.")
        row = {
            "judgement_id": judgement_id, "task": task, "prompt": prompt, "image_a_id": image_a_id,
            "image_b_id": image_b_id, "source_image_id": source_image_id, "model_a": model_a,
            "model_b": model_b, "vote": vote, "visitor": visitor, "created": now(),
        }
        if judgement_id is None:
            return self._insert("votes", row)
        columns = ", ".join(f"[{c}]" for c in row)
        replace = ", ".join(f"[{c}] = excluded.[{c}]" for c in row if c != "judgement_id")
        with self.db.conn:  # commits: sqlite3 leaves the transaction of an "insert ... returning" open
            cursor = self.db.execute(
                f"insert into votes ({columns}) values ({', '.join('?' for _ in row)}) "
                f"on conflict (judgement_id) do update set {replace} returning id", list(row.values()))
            ((vote_id,),) = cursor.fetchall()
        return int(vote_id)

    def get_vote(self, vote_id: int) -> dict[str, Any]:
        """Vote ``vote_id`` as a dict (``created`` is when it was last cast). Raises ``NotFoundError``."""
        return self._get("votes", vote_id)

    def vote_on(self, judgement_id: int) -> dict[str, Any] | None:
        """The vote cast on judgement ``judgement_id``, or ``None`` when there is none yet."""
        return next(iter(self.db["votes"].rows_where("judgement_id = ?", [judgement_id])), None)

    def votes(self, *, visitor: str | None = None) -> list[dict[str, Any]]:
        """Every vote (with ``visitor``: that visitor's), oldest first."""
        where, args = _conditions({"visitor = ?": visitor})
        return list(self.db["votes"].rows_where(where, args, order_by="id"))

    def add_note(self, session_id: str, text: str, *, round_id: int | None = None) -> int:
        """Attach a person's note to a session (and optionally one round)."""
        self._get("sessions", session_id)
        return self._insert("notes", {
            "session_id": session_id, "round_id": round_id, "text": text, "created": now(),
        })

    def notes(self, session_id: str) -> list[dict[str, Any]]:
        """Notes of a session, oldest first."""
        return list(self.db["notes"].rows_where("session_id = ?", [session_id], order_by="id"))

    # -- jobs -----------------------------------------------------------------------------------

    def create_job(
        self,
        kind: str,
        config: dict[str, Any],
        folder: str | Path | None = None,
        *,
        status: str = "created",
        module: str | None = None,
        device: str = "cpu",
        gpu_gb: float = 0.0,
        parent_id: str | None = None,
        cwd: str | None = None,
    ) -> str:
        """Record a job (status "created" unless given) and return its id.

        :param folder: the job's run folder (config, log, checkpoints, artifacts); default
            ``<store folder>/runs/<job id>``.
        :param module: the Python module the job runs (``python -m <module>``).
        :param device: "cpu" or "cuda": which resource limit the job counts against.
        :param gpu_gb: GPU memory the job needs free before it starts (cuda jobs).
        :param parent_id: the job this one follows in a pipeline.
        """
        if status not in JOB_STATUSES:
            raise InvalidInputError(f"Unknown job status {status!r}; use one of {list(JOB_STATUSES)}.")
        job_id = uuid.uuid4().hex[:12]
        folder = folder if folder is not None else self.run_root / job_id
        stamp = now()
        self._insert("jobs", {
            "id": job_id, "kind": kind, "status": status, "config": _dumps(config), "folder": str(folder),
            "module": module, "device": device, "gpu_gb": gpu_gb, "parent_id": parent_id, "cwd": cwd,
            "log_path": str(Path(folder) / "job.log"), "created": stamp, "updated": stamp,
        })
        return job_id

    @property
    def run_root(self) -> Path:
        """The folder that holds one run folder per job: ``<store folder>/runs``."""
        return self.path.parent / "runs"

    def update_job(self, job_id: str, **values: Any) -> None:
        """Set columns of job ``job_id`` (status, pid, message, progress, ...); a dict ``result``
        or ``config`` is stored as JSON."""
        for key in ("result", "config"):
            if isinstance(values.get(key), dict):
                values[key] = _dumps(values[key])
        self._update("jobs", job_id, {**values, "updated": now()})

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Job ``job_id`` with ``config`` and ``result`` decoded. Raises ``NotFoundError``."""
        return _decode_job(self._get("jobs", job_id))

    def list_jobs(self, *, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Jobs (decoded as by ``get_job``), newest first, optionally of one kind and status."""
        where, args = _conditions({"kind = ?": kind, "status = ?": status})
        return [_decode_job(row) for row in self.db["jobs"].rows_where(where, args, order_by="created desc")]

    def claim_job(self, job_id: str, owner: str, *, max_running: int | None = None) -> bool:
        """Move a queued job to "running" for ``owner``, in one statement: of two processes
        claiming one job, exactly one gets True. With ``max_running``, the claim also fails when
        that many jobs of the job's device already run (so two apps cannot both take the last slot)."""
        stamp = now()
        limit = ""
        args: list[Any] = [owner, stamp, stamp, stamp, job_id]
        if max_running is not None:
            limit = (" and (select count(*) from jobs other where other.status = 'running' "
                     "and other.device = jobs.device) < ?")
            args.append(max_running)
        cursor = self.db.execute(
            "update jobs set status = 'running', claimed_by = ?, started = ?, heartbeat = ?, updated = ?, "
            "exit_code = null, reason = null, finished = null, cancel_requested = null, message = null, "
            "pid = null, pid_start = null, supervisor_pid = null, supervisor_start = null "
            f"where id = ? and status = 'queued'{limit}",
            args,
        )
        return cursor.rowcount == 1

    def finish_job(self, job_id: str, status: str, *, pid: int | None = None, **values: Any) -> bool:
        """Record the end of a running job (status done, failed or cancelled, plus exit code,
        reason, ...); a job that is no longer running — or, with ``pid``, whose current attempt
        runs another process — is left as it is. Returns whether the row changed."""
        if status not in JOB_FINISHED:
            raise InvalidInputError(f"{status!r} is not a final job status; use one of {list(JOB_FINISHED)}.")
        values = {**values, "status": status, "finished": now(), "updated": now()}
        if isinstance(values.get("result"), dict):
            values["result"] = _dumps(values["result"])
        assignments = ", ".join(f"[{c}] = ?" for c in values)
        where, args = "id = ? and status = 'running'", [job_id]
        if pid is not None:
            where, args = where + " and pid = ?", [*args, pid]
        cursor = self.db.execute(f"update jobs set {assignments} where {where}", [*values.values(), *args])
        return cursor.rowcount == 1

    def count_running_jobs(self, device: str) -> int:
        """How many jobs on ``device`` ("cpu" or "cuda") are running now."""
        row = self.db.execute("select count(*) from jobs where status = 'running' and device = ?", [device]).fetchone()
        return int(row[0])

    def add_job_metric(self, job_id: str, step: int, name: str, value: float) -> None:
        """One point of a job's curve ``name``."""
        self._insert("job_metrics", {"job_id": job_id, "step": step, "name": name, "value": float(value)})

    def job_metrics(self, job_id: str) -> list[dict[str, Any]]:
        """A job's metric points (``step``, ``name``, ``value``), by name then step."""
        return list(self.db["job_metrics"].rows_where("job_id = ?", [job_id], order_by="name, step, id",
                                                     select="step, name, value"))

    def add_job_artifact(self, job_id: str, name: str, path: str | Path, kind: str = "file") -> None:
        """Record a file or folder job ``job_id`` produced."""
        self._insert("job_artifacts", {"job_id": job_id, "name": name, "path": str(path), "kind": kind,
                                       "created": now()})

    def job_artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """A job's artifacts (``name``, ``path``, ``kind``), oldest first."""
        return list(self.db["job_artifacts"].rows_where("job_id = ?", [job_id], order_by="id",
                                                       select="name, path, kind, created"))

    def delete_job(self, job_id: str) -> None:
        """Forget job ``job_id`` with its metrics and artifact rows (its folder stays on disk)."""
        self._get("jobs", job_id)
        with self.db.conn:
            for table in ("job_metrics", "job_artifacts"):
                self.db.execute(f"delete from {table} where job_id = ?", [job_id])
            self.db.execute("delete from jobs where id = ?", [job_id])

    # -- search and export ----------------------------------------------------------------------

    def search_sessions(
        self,
        *,
        text: str | None = None,
        model: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        status: str | None = None,
        task: str | None = None,
        scores: Sequence[ScoreFilter] = (),
        limit: int = 200,
        visitor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Sessions (decoded as by ``get_session``, plus the best critique's dimension scores),
        newest first, matching every given condition: at most ``limit``, each with ``matched``,
        how many sessions match in all.

        :param text: words the initial prompt contains (case-insensitive).
        :param model: part of the generator or critic name.
        :param since: sessions created at or after this time (ISO string or datetime, UTC).
        :param until: sessions created before this time.
        :param scores: conditions on the best critique of the session, e.g.
            ``[ScoreFilter.parse("text_rendering < 2")]``.
        :param visitor: only this visitor's sessions (``None``: everyone's).
        """
        where, args = _conditions({
            "s.prompt like ?": f"%{text}%" if text else None,
            "(s.generator_name like ? or s.critic_name like ?)": [f"%{model}%"] * 2 if model else None,
            "s.created >= ?": _iso(since),
            "s.created < ?": _iso(until),
            "s.status = ?": status,
            "s.task = ?": task,
            "s.visitor = ?": visitor,
        })
        for f in scores:
            where += f" and c.[{f.dimension}] {_SCORE_OPS[f.op]} ?"
            args.append(f.value)
        sql = (
            "select s.*, count(*) over () as matched, " + ", ".join(f"c.[{k}] as [{k}]" for k in DIMENSION_COLUMNS)
            + " from sessions s left join critiques c on c.id = s.best_critique_id"
            + f" where {where} order by s.created desc limit ?"
        )
        return [_decode_session(dict(row)) for row in self.db.query(sql, [*args, limit])]

    def session_timeline(self, session_id: str, *, visitor: str | None = None) -> dict[str, Any]:
        """A session with its rounds, each round's images and critiques, and its notes
        (``visitor``: as for ``get_session``)."""
        session = self.get_session(session_id, visitor=visitor)
        images = list(self.db["images"].rows_where("session_id = ?", [session_id], order_by="id"))
        critiques = {row["image_id"]: row for row in self.critiques(session_id)}
        rounds = []
        for rnd in self.rounds(session_id):
            rnd["candidates"] = [
                {**image, "critique": critiques.get(image["id"])}
                for image in images if image["round_id"] == rnd["id"]
            ]
            rounds.append(rnd)
        return {"session": session, "rounds": rounds, "notes": self.notes(session_id)}

    def export_session(self, session_id: str, folder: str | Path, *, visitor: str | None = None) -> Path:
        """Copy a session's images into ``folder/images`` and write ``folder/session.json``
        (``visitor``: as for ``get_session``)."""
        timeline = self.session_timeline(session_id, visitor=visitor)
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        image_ids = [c["id"] for r in timeline["rounds"] for c in r["candidates"]]
        for key in ("source_image_id", "best_image_id"):
            if timeline["session"][key] is not None:
                image_ids.append(timeline["session"][key])
        files = {image_id: self._export_image(image_id, folder) for image_id in image_ids}
        for rnd in timeline["rounds"]:
            for cand in rnd["candidates"]:
                cand["file"] = files[cand["id"]]
        timeline["files"] = {str(k): v for k, v in files.items()}
        target = folder / "session.json"
        target.write_text(json.dumps(timeline, indent=2, default=str), encoding="utf-8")
        return target

    def export_votes(self, folder: str | Path, format: Literal["jsonl", "parquet"] = "jsonl", *,
                     visitor: str | None = None, model_name: Callable[[str], str | None] | None = None) -> Path:
        """Write every vote (with ``visitor``: that visitor's) as a preference dataset with
        GenAI-Bench column names.

        Columns: ``prompt``, ``left_image``, ``right_image``, ``left_model``, ``right_model``,
        ``vote_type`` (leftvote, rightvote, tievote, bothbad_vote), ``source_image`` (edits;
        ``None`` for text-to-image), ``task``, and ``vote_id``, ``voted_at`` (UTC) and
        ``judgement_id`` (``None`` for a vote on images not judged here). Image columns are paths
        relative to ``folder``, whose ``images/`` holds the files. ``model_name`` rewrites the
        model names (e.g. to leave out the folders of a public deployment).
        """
        if format not in ("jsonl", "parquet"):
            raise InvalidInputError(f"Unknown export format {format!r}; use 'jsonl' or 'parquet'.")
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        rows = [
            {
                "prompt": v["prompt"],
                "left_image": self._export_image(v["image_a_id"], folder),
                "right_image": self._export_image(v["image_b_id"], folder),
                "left_model": (model_name or str)(v["model_a"] or "") or "",
                "right_model": (model_name or str)(v["model_b"] or "") or "",
                "vote_type": GENAI_BENCH_VOTE[v["vote"]],
                "source_image": self._export_image(v["source_image_id"], folder)
                if v["source_image_id"] is not None else None,
                "task": v["task"],
                "vote_id": v["id"],
                "voted_at": v["created"],
                "judgement_id": v["judgement_id"],
            }
            for v in self.votes(visitor=visitor)
        ]
        if format == "jsonl":
            target = folder / "votes.jsonl"
            target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            return target
        import pyarrow as pa  # imported here: only parquet exports need it
        import pyarrow.parquet as pq

        target = folder / "votes.parquet"
        pq.write_table(pa.Table.from_pylist(rows), target)
        return target

    # -- helpers --------------------------------------------------------------------------------

    def _export_image(self, image_id: int, folder: Path) -> str:
        source = self.image_path(image_id)
        relative = f"images/{source.name}"
        if not (folder / relative).exists():
            shutil.copyfile(source, folder / relative)
        return relative

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row with a single statement (no schema look-ups: this is the hot path)."""
        columns = ", ".join(f"[{c}]" for c in row)
        marks = ", ".join("?" for _ in row)
        cursor = self.db.execute(f"insert into [{table}] ({columns}) values ({marks})", list(row.values()))
        return int(cursor.lastrowid or 0)

    def _update(self, table: str, key: str | int, values: dict[str, Any]) -> None:
        """Set columns of one row; raise ``NotFoundError`` when there is no row ``key``."""
        assignments = ", ".join(f"[{c}] = ?" for c in values)
        cursor = self.db.execute(f"update [{table}] set {assignments} where id = ?", [*values.values(), key])
        if cursor.rowcount == 0:
            raise NotFoundError(f"No {table[:-1]} with id {key!r} in the store.")

    def _get(self, table: str, key: str | int, *, visitor: str | None = None) -> dict[str, Any]:
        """Row ``key`` of ``table``; with ``visitor``, only when it is that visitor's (someone
        else's row is not found, so a guessed id tells nothing)."""
        rows = list(self.db[table].rows_where("id = ?", [key]))
        if not rows or (visitor is not None and rows[0].get("visitor") != visitor):
            raise NotFoundError(f"No {table[:-1]} with id {key!r} in the store.")
        return rows[0]


def _decode_session(row: dict[str, Any]) -> dict[str, Any]:
    """A session row with its JSON columns (settings, backend configs) decoded."""
    for key in ("settings", "generator", "critic", "rewriter"):
        row[key] = json.loads(row[key]) if row[key] else ({} if key == "settings" else None)
    return row


def _decode_job(row: dict[str, Any]) -> dict[str, Any]:
    """A job row with its JSON columns (config, result) decoded."""
    row["config"] = json.loads(row["config"] or "{}")
    row["result"] = json.loads(row["result"]) if row.get("result") else None
    return row


def _write_png(mode: str, size: tuple[int, int], pixels: bytes, target: Path) -> None:
    """Write the pixels as a PNG file at ``target`` atomically (a partial file is never visible)."""
    data = _png_bytes(mode, size, pixels)
    partial = target.with_suffix(f".{uuid.uuid4().hex[:8]}.part")
    try:
        target.parent.mkdir(exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as e:
        raise OSError(f"Could not write the image file {target}: {e}") from e


def _png_bytes(mode: str, size: tuple[int, int], pixels: bytes) -> bytes:
    """A PNG (8-bit, no scanline filter) of "L", "RGB" or "RGBA" pixels.

    Written here rather than with Pillow because Pillow's encoder holds the GIL for the whole
    compression, which stalls the engine thread; ``zlib.compress`` releases it.
    """
    colour_type, channels = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}[mode]
    width, height = size
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)  # column 0: filter type 0
    rows[:, 1:] = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join((
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), _PNG_LEVEL)),
        _png_chunk(b"IEND", b""),
    ))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _owner_gone(owner: str | None) -> bool:
    """Whether the process that owned a running session has stopped."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname():
        return False  # another machine shares the database: it cannot be checked from here
    if int(pid_text) == os.getpid():
        return owner not in _LIVE_OWNERS
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _conditions(candidates: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL ``where`` text and arguments from the conditions whose argument is not ``None``."""
    parts, args = ["1 = 1"], []
    for clause, value in candidates.items():
        if value is None:
            continue
        parts.append(clause)
        args.extend(value if isinstance(value, list) else [value])
    return " and ".join(parts), args


def _iso(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)

