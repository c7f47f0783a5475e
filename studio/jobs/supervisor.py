"""``python -m studio.jobs.supervisor --job-id ID --job-store DB``: start one job's worker, wait for
it, and record precisely how it ended.

The worker records its own outcome when it can (done, cancelled, or failed with the exception).
When it cannot — killed by a signal, out of memory, a native crash — the supervisor records it:
"killed (kill -9 or out of memory)" and the last lines of the log. It also carries out Cancel:
SIGTERM to the worker's process group once ``cancel_requested`` is set, SIGKILL after the grace
period. When the worker has ended it starts the queued jobs that may now run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from studio.jobs.procs import describe_exit, signal_group, start_time
from studio.jobs.runner import JobLimits, Runner, child_env, with_tail
from studio.store import SessionStore

logger = logging.getLogger(__name__)

#: Seconds between two looks at the job's record while the worker runs.
POLL_S = 0.25


def main(argv: list[str] | None = None) -> int:
    """Supervise one job to its end; exit status 0 (also when the job failed: that is recorded)."""
    parser = argparse.ArgumentParser(prog="python -m studio.jobs.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--job-store", required=True, help="the session store's database file")
    parser.add_argument("--max-gpu-jobs", type=int, default=1)
    parser.add_argument("--max-cpu-jobs", type=int, default=2)
    parser.add_argument("--grace-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor: %(message)s")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stays to record the worker's end; only SIGKILL stops it
    limits = JobLimits(args.max_gpu_jobs, args.max_cpu_jobs, args.grace_s)
    store = SessionStore(args.job_store)
    try:
        supervise(store, args.job_id, limits)
        Runner(store, limits).poll()
    finally:
        store.close()
    return 0


def supervise(store: SessionStore, job_id: str, limits: JobLimits) -> int:
    """Run job ``job_id``'s worker to its end, carry out a cancel request, record the outcome;
    return the worker's exit status (negative: the signal that ended it)."""
    job = store.get_job(job_id)
    command = [sys.executable, *_worker_args(job, store.path)]
    with open(job["log_path"], "ab") as log:
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=job["cwd"] or None, env=child_env(job["device"]), start_new_session=True)
    store.update_job(job_id, pid=worker.pid, pid_start=start_time(worker.pid))
    logger.info("job %s: worker pid %d: %s", job_id, worker.pid, " ".join(command[1:]))
    terminated_at: float | None = None
    killed = False
    while True:
        try:
            returncode = worker.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if store.get_job(job_id)["cancel_requested"] is None:
            continue
        if terminated_at is None:
            terminated_at = time.monotonic()
            signal_group(worker.pid, signal.SIGTERM)
        elif not killed and time.monotonic() - terminated_at > limits.grace_s:
            killed = signal_group(worker.pid, signal.SIGKILL)
    signal_group(worker.pid, signal.SIGKILL)  # whatever the worker left running in its group
    _record_end(store, job_id, worker.pid, returncode, killed, limits.grace_s)
    return returncode


def _worker_args(job: dict, store_path: Path) -> list[str]:
    args = ["-m", job["module"], "--config", str(Path(job["folder"]) / "config.json"),
            "--job-id", job["id"], "--job-store", str(store_path)]
    return [*args, "--resume"] if job["resume"] else args


def _record_end(store: SessionStore, job_id: str, pid: int, returncode: int, killed: bool, grace_s: float) -> None:
    """Record the exit status; when the worker could not record its outcome, record it here.
    Nothing is written once the job has moved on to another attempt (resumed: another pid)."""
    job = store.get_job(job_id)
    if job["pid"] != pid:
        return
    if job["status"] != "running":
        store.db.execute("update jobs set exit_code = ? where id = ? and pid = ?", [returncode, job_id, pid])
        return
    if job["cancel_requested"] is not None and returncode != 0:
        reason = (f"cancelled: did not stop within {grace_s:g} s of SIGTERM and was killed" if killed
                  else f"cancelled: {describe_exit(returncode)}")
        store.finish_job(job_id, "cancelled", pid=pid, exit_code=returncode, reason=reason)
        return
    reason = describe_exit(returncode)
    if returncode == 0:
        reason = "exited without recording its outcome (not started through studio.jobs.entry?)"
    store.finish_job(job_id, "failed", pid=pid, exit_code=returncode, reason=with_tail(reason, job["log_path"]))
    logger.info("job %s: %s", job_id, reason)


if __name__ == "__main__":
    sys.exit(main())
