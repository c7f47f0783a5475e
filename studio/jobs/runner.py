"""Starts, queues, watches, cancels and resumes background jobs; all state lives in the store.

A job is a detached process tree: the runner starts a small *supervisor*
(``python -m studio.jobs.supervisor``, its own session) that starts the job's worker
(``python -m <kind module> --config FILE --job-id ID --job-store DB``, its own process group), waits
for it and records how it ended. Neither is a thread of the app, so the app can die and the job
goes on; any ``Runner`` on the same store (a restarted app, ``python -m studio jobs wait``, the
supervisor of a job that just finished) sees it, and starts queued jobs when a slot frees.

Example::

    runner = Runner(store)
    job_id = runner.submit("diagnose", {"inputs": ["images/"], "prompt": "a red cube"})
    runner.wait(job_id)
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from models.errors import ConfigError, InvalidInputError, JobError
from studio.jobs.config import config_from_dict, config_to_dict, save_config
from studio.jobs.procs import is_alive, log_tail, signal_group, start_time
from studio.jobs.registry import load_kind
from studio.options import env
from studio.store import JOB_FINISHED, SessionStore, now

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("cpu", "cuda")
#: Seconds a claimed job may go without a recorded process before it counts as lost.
LAUNCH_TIMEOUT_S = 60.0

#: GiB of free GPU memory now (``None``: no CUDA GPU is visible).
FreeMemory = Callable[[], float | None]


@dataclass(frozen=True)
class JobLimits:
    """The resource rule: at most ``max_gpu_jobs`` cuda jobs and ``max_cpu_jobs`` cpu jobs run at
    once; Cancel waits ``grace_s`` seconds after SIGTERM before it kills the job."""

    max_gpu_jobs: int = 1
    max_cpu_jobs: int = 2
    grace_s: float = 10.0

    @classmethod
    def from_env(cls) -> "JobLimits":
        """Limits from ``STUDIO_MAX_GPU_JOBS``, ``STUDIO_MAX_CPU_JOBS`` and ``STUDIO_JOB_GRACE_S``."""
        try:
            limits = cls(int(env("STUDIO_MAX_GPU_JOBS", "1")), int(env("STUDIO_MAX_CPU_JOBS", "2")),  # type: ignore[arg-type]
                         float(env("STUDIO_JOB_GRACE_S", "10")))  # type: ignore[arg-type]
        except ValueError as e:
            raise ConfigError(f"STUDIO_MAX_GPU_JOBS/STUDIO_MAX_CPU_JOBS/STUDIO_JOB_GRACE_S must be numbers: {e}") from e
        if limits.max_gpu_jobs < 0 or limits.max_cpu_jobs < 1 or limits.grace_s < 0:
            raise ConfigError(f"Job limits out of range: {limits} (cpu jobs at least 1, others at least 0).")
        return limits

    def to_flags(self) -> list[str]:
        """These limits as supervisor flags."""
        return ["--max-gpu-jobs", str(self.max_gpu_jobs), "--max-cpu-jobs", str(self.max_cpu_jobs),
                "--grace-s", str(self.grace_s)]


def cuda_free_gb() -> float | None:
    """Free memory of the current CUDA device in GiB, ``None`` without a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free / 2**30


def child_env(device: str) -> dict[str, str]:
    """The environment a job runs with: the caller's (secrets such as ``OPENAI_API_KEY`` reach the
    job this way only), the project on ``PYTHONPATH``, and no visible GPU for a cpu job."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environment.get("PYTHONPATH")) if p)
    environment["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = ""
    return environment


class Runner:
    """Jobs of one session store.

    :param limits: the resource rule (default: from the environment, see ``JobLimits.from_env``).
    :param free_gpu_gb: how much GPU memory is free (injected by tests; default ``cuda_free_gb``).
    """

    def __init__(self, store: SessionStore, limits: JobLimits | None = None,
                 free_gpu_gb: FreeMemory = cuda_free_gb) -> None:
        self.store = store
        self.limits = limits or JobLimits.from_env()
        self.free_gpu_gb = free_gpu_gb
        self._children: list[subprocess.Popen] = []
        self._children_lock = threading.Lock()  # the app polls from several threads

    # -- starting ---------------------------------------------------------------------------------

    def submit(self, kind: str, config: Any, *, device: str | None = None, gpu_gb: float = 0.0,
               parent_id: str | None = None) -> str:
        """Queue a job of ``kind`` with ``config`` (its config dataclass or a dict of it), start it
        when the resource rule allows, and return its id.

        :param device: "cpu" or "cuda" (default: the config's ``device`` field, else "cpu").
        :param gpu_gb: GPU memory (GiB) that must be free before a cuda job starts.
        :param parent_id: a job this one waits for (a pipeline stage); it starts once that is done.
        Raises ``ConfigError`` for an unknown kind or an invalid config.
        """
        spec = load_kind(kind)
        if isinstance(config, dict):
            config = config_from_dict(spec.config_cls, config)
        elif not isinstance(config, spec.config_cls):
            raise ConfigError(f"A {kind} job takes a {spec.config_cls.__name__}, got {type(config).__name__}.")
        device = device or self._device_of(config)
        if device not in DEVICES:
            raise ConfigError(f"Unknown device {device!r}; use 'cpu' or 'cuda'.")
        if gpu_gb < 0:
            raise ConfigError(f"gpu_gb must be at least 0, got {gpu_gb}.")
        if parent_id is not None:
            self.store.get_job(parent_id)
        job_id = self.store.create_job(kind, config_to_dict(config), module=spec.module, device=device,
                                       gpu_gb=gpu_gb, parent_id=parent_id, cwd=os.getcwd())
        folder = Path(self.store.get_job(job_id)["folder"])
        config_path = save_config(config, folder / "config.json")
        command = shlex.join([sys.executable, "-m", spec.module, "--config", str(config_path)])
        self.store.update_job(job_id, status="queued", command=command)
        self.poll()
        return job_id

    def poll(self) -> list[str]:
        """Re-attach to running jobs (a job whose processes are gone is marked failed), then start
        the queued jobs the resource rule allows, oldest first; return the ids started."""
        with self._children_lock:  # reap the supervisors this runner started that have finished
            self._children = [p for p in self._children if p.poll() is None]
        self.reattach()
        started = []
        queued = sorted(self.store.list_jobs(status="queued"), key=lambda j: j["created"])
        for job in queued:
            waiting = self._why_waiting(job)
            if waiting is not None:
                if waiting != job["message"]:
                    self.store.update_job(job["id"], message=waiting)
                continue
            limit = self.limits.max_gpu_jobs if job["device"] == "cuda" else self.limits.max_cpu_jobs
            if self.store.claim_job(job["id"], self.store.owner, max_running=limit) and self._launch(job):
                started.append(job["id"])
        return started

    def reattach(self) -> list[str]:
        """Mark running jobs whose processes are gone as failed, with the log's tail and the
        reason; return their ids. A job whose worker or supervisor still runs is left running."""
        lost = []
        for job in self.store.list_jobs(status="running"):
            if (job["claimed_by"] or "").partition(":")[0] not in ("", socket.gethostname()):
                continue  # started on another machine sharing the store: its processes cannot be seen here
            if is_alive(job["pid"], job["pid_start"]) or is_alive(job["supervisor_pid"], job["supervisor_start"]):
                continue
            if job["supervisor_pid"] is None and _age_s(job["started"]) < LAUNCH_TIMEOUT_S:
                continue  # claimed a moment ago; its supervisor is being started
            if job["pid"] is None:
                reason = "the job's process never started (the studio stopped while launching it)"
            else:
                reason = ("the job's process is gone: it was killed together with its supervisor, "
                          "or the machine restarted")
            if self.store.finish_job(job["id"], "failed", reason=with_tail(reason, job["log_path"])):
                lost.append(job["id"])
        return lost

    # -- controlling ------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> str:
        """Stop job ``job_id``: a queued job is cancelled at once; a running one gets SIGTERM (it
        stops after its current unit) and is killed ``grace_s`` seconds later if still running.
        Returns what was done, in words. Raises ``InvalidInputError`` for a finished job."""
        job = self.store.get_job(job_id)
        if job["status"] in ("created", "queued"):
            self.store.update_job(job_id, status="cancelled", finished=now(), reason="cancelled before it started")
            return f"Job {job_id} was cancelled before it started."
        if job["status"] != "running":
            raise InvalidInputError(f"Job {job_id} has already ended ({job['status']}); nothing to cancel.")
        if job["cancel_requested"] is None:
            self.store.update_job(job_id, cancel_requested=now())
        if is_alive(job["supervisor_pid"], job["supervisor_start"]):  # it sends SIGTERM, then SIGKILL
            return (f"Asked job {job_id} to stop (SIGTERM); it is killed if it still runs "
                    f"{self.limits.grace_s:g} s later.")
        if is_alive(job["pid"], job["pid_start"]):
            signal_group(job["pid"], signal.SIGTERM)
        return self._stop_unsupervised(job)

    def resume(self, job_id: str) -> str:
        """Queue a finished job again in its run folder with ``--resume``: kinds that checkpoint
        continue where they stopped (a done eval job judges its failed rows again). Raises
        ``InvalidInputError`` for a job still queued or running, or of a kind without checkpoints."""
        job = self.store.get_job(job_id)
        if job["status"] not in JOB_FINISHED:
            raise InvalidInputError(f"Only a finished job can be resumed; job {job_id} is {job['status']}.")
        if not load_kind(job["kind"]).resumable:
            raise InvalidInputError(f"{job['kind']} jobs keep no checkpoint, so job {job_id} cannot be resumed; "
                                    "start it again instead.")
        cursor = self.store.db.execute(
            "update jobs set status = 'queued', resume = 1, updated = ? where id = ? and status = ?",
            [now(), job_id, job["status"]])
        if cursor.rowcount != 1:
            raise InvalidInputError(f"Job {job_id} changed while resuming it; look at it again.")
        self.poll()
        return f"Job {job_id} resumes from its last checkpoint."

    def delete(self, job_id: str) -> None:
        """Forget a job that is not running, and remove its run folder (config, log, artifacts)."""
        job = self.store.get_job(job_id)
        if job["status"] == "running":
            raise InvalidInputError(f"Job {job_id} is running; cancel it before deleting it.")
        self.store.delete_job(job_id)
        folder = Path(job["folder"])
        if folder.is_dir() and folder.resolve().parent == self.store.run_root.resolve():
            shutil.rmtree(folder)

    def wait(self, job_id: str, timeout_s: float | None = None, interval_s: float = 0.2) -> dict[str, Any]:
        """Poll until job ``job_id`` has ended; return its record. Raises ``JobError`` on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.poll()
            job = self.store.get_job(job_id)
            if job["status"] in JOB_FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobError(f"Job {job_id} is still {job['status']} after {timeout_s:g} s.")
            time.sleep(interval_s)

    # -- helpers ----------------------------------------------------------------------------------

    def _device_of(self, config: Any) -> str:
        """The resource a config asks for through a ``device`` field ("cuda", "cuda:1", "auto"
        with a GPU present: cuda), else cpu."""
        wanted = str(getattr(config, "device", "") or "")
        if wanted.startswith("cuda") or (wanted == "auto" and self.free_gpu_gb() is not None):
            return "cuda"
        return "cpu"

    def _why_waiting(self, job: dict[str, Any]) -> str | None:
        """Why a queued job cannot start now (``None``: it can)."""
        if job["parent_id"]:
            parent = self.store.get_job(job["parent_id"])
            if parent["status"] in ("failed", "cancelled"):
                reason = f"its parent job {parent['id']} ended {parent['status']}"
                self.store.update_job(job["id"], status="cancelled", finished=now(), reason=reason)
                return reason
            if parent["status"] != "done":
                return f"waiting for job {parent['id']} ({parent['kind']}) to finish"
        if job["device"] == "cuda":
            running = self.store.count_running_jobs("cuda")
            if running >= self.limits.max_gpu_jobs:
                return f"waiting for a GPU slot ({running} of {self.limits.max_gpu_jobs} GPU jobs running)"
            free = self.free_gpu_gb()
            if free is None:
                return "waiting for a CUDA GPU: none is visible to the studio"
            if free < (job["gpu_gb"] or 0.0):
                return (f"waiting for GPU memory: {free:.1f} GiB free, the job needs {job['gpu_gb']:g} GiB "
                        "(release the studio's loaded models, or wait for other work to finish)")
            return None
        running = self.store.count_running_jobs("cpu")
        if running >= self.limits.max_cpu_jobs:
            return f"waiting for a CPU slot ({running} of {self.limits.max_cpu_jobs} CPU jobs running)"
        return None

    def _launch(self, job: dict[str, Any]) -> bool:
        """Start the supervisor of a claimed job; False (and the job failed) when it cannot start."""
        folder = Path(job["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "studio.jobs.supervisor", "--job-id", job["id"],
                   "--job-store", str(self.store.path), *self.limits.to_flags()]
        try:
            with open(job["log_path"], "ab") as log:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           cwd=job["cwd"] or None, env=child_env(job["device"]),
                                           start_new_session=True)
        except OSError as e:
            self.store.finish_job(job["id"], "failed", reason=f"the job's process could not be started: {e}")
            return False
        with self._children_lock:
            self._children.append(process)
        self.store.update_job(job["id"], supervisor_pid=process.pid, supervisor_start=start_time(process.pid))
        logger.info("started job %s (%s), supervisor pid %d", job["id"], job["kind"], process.pid)
        return True

    def _stop_unsupervised(self, job: dict[str, Any]) -> str:
        """Cancel a running job whose supervisor is gone: wait out the grace period, then kill."""
        deadline = time.monotonic() + self.limits.grace_s
        while is_alive(job["pid"], job["pid_start"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        killed = is_alive(job["pid"], job["pid_start"]) and signal_group(job["pid"], signal.SIGKILL)
        reason = (f"cancelled: did not stop within {self.limits.grace_s:g} s of SIGTERM and was killed" if killed
                  else "cancelled (SIGTERM)")
        self.store.finish_job(job["id"], "cancelled", reason=reason)
        return f"Job {job['id']} {reason}."


def with_tail(reason: str, log_path: str | None) -> str:
    """``reason`` followed by the last lines of the job's log (when it has any)."""
    tail = log_tail(log_path)
    return f"{reason}\n--- last lines of the log ---\n{tail}" if tail else reason


def _age_s(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()
