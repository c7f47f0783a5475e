"""What a job's record means to a person: duration, ETA, liveness, and one flat summary dict
(shared by ``python -m studio jobs`` and the Training tab)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from studio.store import JOB_FINISHED

#: Seconds without a heartbeat after which a running job is called silent.
SILENT_S = 30.0

SUMMARY_KEYS = ("id", "kind", "status", "device", "step", "total", "message", "reason", "exit_code", "created",
                "started", "finished", "parent_id", "folder", "log_path", "command", "result")


def parse_time(stamp: str | None) -> datetime | None:
    """A store timestamp as an aware datetime (``None`` stays ``None``)."""
    return datetime.fromisoformat(stamp) if stamp else None


def duration_s(job: dict[str, Any], at: datetime | None = None) -> float | None:
    """Seconds the job has run (until it finished, else until ``at``/now); ``None`` before it started."""
    started = parse_time(job.get("started"))
    if started is None:
        return None
    end = parse_time(job.get("finished")) if job["status"] in JOB_FINISHED else None
    return ((end or at or datetime.now(timezone.utc)) - started).total_seconds()


def eta_s(job: dict[str, Any], at: datetime | None = None) -> float | None:
    """Seconds left at the pace so far (``None`` when unknown: not running, no total or no step)."""
    step, total = job.get("step"), job.get("total")
    elapsed = duration_s(job, at)
    if job["status"] != "running" or not step or not total or elapsed is None:
        return None
    return max(0.0, elapsed / step * (total - step))


def silent_s(job: dict[str, Any], at: datetime | None = None) -> float | None:
    """Seconds since a running job's last heartbeat when over ``SILENT_S`` (hung?), else ``None``."""
    beat = parse_time(job.get("heartbeat"))
    if job["status"] != "running" or beat is None:
        return None
    quiet = ((at or datetime.now(timezone.utc)) - beat).total_seconds()
    return quiet if quiet > SILENT_S else None


def fraction_done(job: dict[str, Any]) -> float | None:
    """``step / total`` in [0, 1] (1 for a done job), ``None`` when unknown."""
    if job["status"] == "done":
        return 1.0
    step, total = job.get("step"), job.get("total")
    return min(1.0, step / total) if step is not None and total else None


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """A flat, JSON-ready record of a job: its main columns plus duration and ETA in seconds."""
    record = {key: job.get(key) for key in SUMMARY_KEYS}
    record["duration_s"] = _round(duration_s(job))
    record["eta_s"] = _round(eta_s(job))
    return record


def format_seconds(seconds: float | None) -> str:
    """``75.0`` -> ``"1m 15s"``; ``None`` -> ``""``."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
