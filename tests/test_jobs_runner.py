"""Background jobs end to end with a real counting kind (tests/jobs_counting.py): detached
processes, re-attaching after the app dies, kill -9, cancel, resume, the resource rule, two apps
on one store, pid reuse and secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.errors import InvalidInputError
from studio.jobs.procs import is_alive, start_time
from studio.jobs.runner import ROOT, JobLimits, Runner
from studio.store import SessionStore

KIND = "tests.jobs_counting"
FAST = JobLimits(max_gpu_jobs=1, max_cpu_jobs=2, grace_s=1.0)


@pytest.fixture
def store(tmp_path):
    s = SessionStore(tmp_path / "studio.db")
    yield s
    s.close()


@pytest.fixture
def runner(store):
    return Runner(store, FAST, free_gpu_gb=lambda: None)


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def units(store: SessionStore, job_id: str) -> list[int]:
    path = Path(store.get_job(job_id)["folder"]) / "units.txt"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_job_runs_detached_and_records_its_progress_metrics_artifacts_and_result(store, runner):
    job_id = runner.submit(KIND, {"total": 4})
    job = runner.wait(job_id, timeout_s=30)
    assert (job["status"], job["exit_code"], job["step"], job["total"]) == ("done", 0, 4, 4)
    assert job["result"] == {"counted": 4}
    assert [(m["step"], m["value"]) for m in store.job_metrics(job_id)] == [(1, 1.0), (2, 4.0), (3, 9.0), (4, 16.0)]
    assert [a["name"] for a in store.job_artifacts(job_id)] == ["total"]
    assert job["command"].endswith(f"-m {KIND} --config {job['folder']}/config.json")
    assert "counted unit 4" in Path(job["log_path"]).read_text()


def test_the_job_survives_kill_9_of_the_app_and_a_new_runner_reattaches(store, tmp_path):
    app = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from studio.store import SessionStore\n"
            "from studio.jobs.runner import Runner, JobLimits\n"
            f"r = Runner(SessionStore({str(store.path)!r}), JobLimits(1, 2, 1.0))\n"
            f"print(r.submit({KIND!r}, {{'total': 40, 'delay_s': 0.1}}), flush=True)\n"
            "time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    job_id = app.stdout.readline().strip()
    wait_for(lambda: (store.get_job(job_id)["step"] or 0) >= 2, what="the job to count")
    app.kill()  # kill -9 of the app
    app.wait()
    job = store.get_job(job_id)
    assert job["status"] == "running" and is_alive(job["pid"], job["pid_start"])
    new_app = Runner(store, FAST)
    assert new_app.reattach() == []  # still running: not marked lost
    done = new_app.wait(job_id, timeout_s=30)
    assert done["status"] == "done" and units(store, job_id) == list(range(1, 41))


def test_kill_9_of_the_job_marks_it_failed_with_the_reason_and_the_log_tail(store, runner):
    job_id = runner.submit(KIND, {"total": 200, "delay_s": 0.05})
    wait_for(lambda: (store.get_job(job_id)["step"] or 0) >= 2, what="the job to count")
    os.kill(store.get_job(job_id)["pid"], signal.SIGKILL)
    job = runner.wait(job_id, timeout_s=15)
    assert job["status"] == "failed" and job["exit_code"] == -signal.SIGKILL
    assert job["reason"].startswith("killed (kill -9 or out of memory)")
    assert "last lines of the log" in job["reason"] and "counted unit 2" in job["reason"]


def test_a_job_whose_processes_are_all_gone_is_failed_on_reattach(store, runner):
    job_id = runner.submit(KIND, {"total": 200, "delay_s": 0.05})
    wait_for(lambda: (store.get_job(job_id)["step"] or 0) >= 1, what="the job to count")
    job = store.get_job(job_id)
    os.kill(job["supervisor_pid"], signal.SIGKILL)  # e.g. the machine's OOM killer took both
    os.killpg(job["pid"], signal.SIGKILL)
    # both deaths are asynchronous: a supervisor still in the process table keeps the job "running"
    wait_for(lambda: not is_alive(job["pid"], job["pid_start"]), what="the worker to die")
    wait_for(lambda: not is_alive(job["supervisor_pid"], job["supervisor_start"]), what="the supervisor to die")
    assert Runner(store, FAST).reattach() == [job_id]
    lost = store.get_job(job_id)
    assert lost["status"] == "failed" and "the job's process is gone" in lost["reason"]
    assert "counted unit 1" in lost["reason"]


def test_a_reused_pid_is_not_mistaken_for_the_job(store, runner):
    sleeper = subprocess.Popen(["sleep", "30"])  # a live process that is not the job
    try:
        job_id = store.create_job(KIND, {}, status="queued")
        assert store.claim_job(job_id, store.owner)
        store.update_job(job_id, pid=sleeper.pid, pid_start=start_time(sleeper.pid) - 1, started="2000-01-01T00:00:00+00:00")
        assert runner.reattach() == [job_id]
        assert store.get_job(job_id)["status"] == "failed"

        same = store.create_job(KIND, {}, status="queued")  # the same live pid with its real start time
        assert store.claim_job(same, store.owner)
        store.update_job(same, pid=sleeper.pid, pid_start=start_time(sleeper.pid), started="2000-01-01T00:00:00+00:00")
        assert runner.reattach() == [] and store.get_job(same)["status"] == "running"

        remote = store.create_job(KIND, {}, status="queued")  # another machine's job: not checkable here
        assert store.claim_job(remote, "gpu-box-7:4242:abc")
        store.update_job(remote, pid=4242, pid_start=1, started="2000-01-01T00:00:00+00:00")
        assert runner.reattach() == [] and store.get_job(remote)["status"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cancel_stops_the_job_gracefully_after_its_current_unit(store, runner):
    job_id = runner.submit(KIND, {"total": 200, "delay_s": 0.05})
    wait_for(lambda: (store.get_job(job_id)["step"] or 0) >= 2, what="the job to count")
    assert "SIGTERM" in runner.cancel(job_id)
    job = runner.wait(job_id, timeout_s=15)
    assert (job["status"], job["exit_code"]) == ("cancelled", 0)
    assert job["reason"].startswith("stopped on request (SIGTERM) at step")
    counted = units(store, job_id)
    assert 2 <= len(counted) < 200 and counted == list(range(1, len(counted) + 1))


def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace_period(store, runner):
    job_id = runner.submit(KIND, {"total": 400, "delay_s": 0.05, "ignore_stop": True})
    wait_for(lambda: (store.get_job(job_id)["step"] or 0) >= 1, what="the job to count")
    asked = time.monotonic()
    runner.cancel(job_id)
    job = runner.wait(job_id, timeout_s=15)
    assert time.monotonic() - asked >= FAST.grace_s
    assert job["status"] == "cancelled" and job["exit_code"] == -signal.SIGKILL
    assert job["reason"] == "cancelled: did not stop within 1 s of SIGTERM and was killed"


def test_resume_after_a_crash_continues_from_the_checkpoint(store, runner):
    job_id = runner.submit(KIND, {"total": 6, "crash_at": 4})
    crashed = runner.wait(job_id, timeout_s=30)
    assert (crashed["status"], crashed["exit_code"], crashed["reason"]) == ("failed", 1, "RuntimeError: crashed at unit 4")
    assert "RuntimeError: crashed at unit 4" in Path(crashed["log_path"]).read_text()  # the traceback
    assert units(store, job_id) == [1, 2, 3]
    runner.resume(job_id)
    done = runner.wait(job_id, timeout_s=30)
    assert done["status"] == "done" and done["reason"] is None, done["reason"]
    assert units(store, job_id) == [1, 2, 3, 4, 5, 6]  # no unit done twice
    runner.resume(job_id)  # a done job resumed has nothing left to do
    assert runner.wait(job_id, timeout_s=30)["status"] == "done"
    assert units(store, job_id) == [1, 2, 3, 4, 5, 6]


def queued_job(store: SessionStore, total: int) -> str:
    """A queued job with the run folder and config a submit would have written."""
    job_id = store.create_job(KIND, {"total": total}, status="queued", module=KIND)
    folder = Path(store.get_job(job_id)["folder"])
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(f'{{"total": {total}}}')
    return job_id


def poll_at_once(runners: list[Runner]) -> list[list[str]]:
    """Every runner polls at the same moment (threads behind a barrier); the ids each started."""
    barrier = threading.Barrier(len(runners))
    started: list[list[str]] = [[] for _ in runners]

    def poll(i: int) -> None:
        barrier.wait()
        started[i] = runners[i].poll()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(runners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started


def test_two_runners_on_one_store_never_run_one_job_twice(store):
    others = [SessionStore(store.path) for _ in range(4)]
    try:
        job_id = queued_job(store, 2)
        started = poll_at_once([Runner(s, FAST) for s in others])
        assert sorted(len(s) for s in started) == [0, 0, 0, 1]
        assert Runner(store, FAST).wait(job_id, timeout_s=30)["status"] == "done"
        assert units(store, job_id) == [1, 2]
    finally:
        for s in others:
            s.close()


def test_runners_polling_at_once_keep_to_the_cpu_limit(store):
    others = [SessionStore(store.path) for _ in range(4)]
    one_cpu = JobLimits(max_gpu_jobs=1, max_cpu_jobs=1, grace_s=1.0)
    try:
        jobs = [queued_job(store, 1) for _ in range(3)]
        started = poll_at_once([Runner(s, one_cpu) for s in others])
        assert sum(len(s) for s in started) == 1
        for job_id in jobs:  # the rest start one by one as slots free
            assert Runner(store, one_cpu).wait(job_id, timeout_s=60)["status"] == "done"
    finally:
        for s in others:
            s.close()


def test_the_cpu_limit_queues_a_job_that_then_starts_by_itself(store):
    runner = Runner(store, JobLimits(max_gpu_jobs=1, max_cpu_jobs=1, grace_s=1.0))
    first = runner.submit(KIND, {"total": 6, "delay_s": 0.1})
    second = runner.submit(KIND, {"total": 2})
    queued = store.get_job(second)
    assert queued["status"] == "queued" and queued["message"] == "waiting for a CPU slot (1 of 1 CPU jobs running)"
    # nobody polls: the first job's supervisor starts the second when the first ends
    wait_for(lambda: store.get_job(second)["status"] == "done", what="the queued job to run by itself")
    assert store.get_job(first)["finished"] <= store.get_job(second)["started"]


def test_a_gpu_job_waits_for_free_gpu_memory(store):
    free = {"gb": 2.0}
    runner = Runner(store, FAST, free_gpu_gb=lambda: free["gb"])
    job_id = runner.submit(KIND, {"total": 1}, device="cuda", gpu_gb=4.0)
    job = store.get_job(job_id)
    assert job["status"] == "queued"
    assert job["message"].startswith("waiting for GPU memory: 2.0 GiB free, the job needs 4 GiB")
    free["gb"] = 8.0
    assert runner.poll() == [job_id]
    assert runner.wait(job_id, timeout_s=30)["status"] == "done"


def test_a_chained_job_waits_for_its_parent_and_is_cancelled_when_the_parent_fails(store, runner):
    parent = runner.submit(KIND, {"total": 3, "delay_s": 0.1})
    child = runner.submit(KIND, {"total": 1}, parent_id=parent)
    assert store.get_job(child)["message"] == f"waiting for job {parent} ({KIND}) to finish"
    assert runner.wait(child, timeout_s=30)["status"] == "done"
    assert store.get_job(parent)["finished"] <= store.get_job(child)["started"]

    broken = runner.submit(KIND, {"total": 3, "crash_at": 1})
    orphan = runner.submit(KIND, {"total": 1}, parent_id=broken)
    job = runner.wait(orphan, timeout_s=30)
    assert (job["status"], job["reason"]) == ("cancelled", f"its parent job {broken} ended failed")


def test_a_secret_reaches_the_job_but_never_the_store_log_or_config(store, runner, monkeypatch, tmp_path):
    import hashlib

    secret = "sk-test-d41d8cd98f00b204e980"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    job_id = runner.submit(KIND, {"total": 1, "secret_env": "OPENAI_API_KEY"})
    job = runner.wait(job_id, timeout_s=30)
    assert job["result"]["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    store.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "job.log" for p in files) and any(p.name == "config.json" for p in files)
    assert not [p for p in files if secret.encode() in p.read_bytes()]


def test_delete_refuses_a_running_job_and_removes_a_finished_one(store, runner):
    job_id = runner.submit(KIND, {"total": 200, "delay_s": 0.05})
    with pytest.raises(InvalidInputError, match="cancel it before deleting"):
        runner.delete(job_id)
    runner.cancel(job_id)
    folder = Path(runner.wait(job_id, timeout_s=15)["folder"])
    runner.delete(job_id)
    assert store.list_jobs() == [] and not folder.exists()
