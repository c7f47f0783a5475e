"""What the app does with a finished job's artifacts: make a distilled critic the app's critic,
load an RL LoRA into the generator, open an eval job in the Leaderboard.

Each function checks the job and its artifact and raises a clear ``StudioError`` (no such job,
no such artifact, its folder gone) before touching the app's models.

Example: ``use_job_critic(services, job_id)`` returns ``"Critic is now transformers critic (...)."``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.errors import InvalidInputError, NotFoundError
from models.types import Task
from studio.jobs.specs import critic_folder_spec
from studio.services import Lazy, Services


def job_artifact(services: Services, job_id: str, kind: str) -> str:
    """The path of job ``job_id``'s newest artifact of ``kind`` ("critic", "lora", ...).

    Raises ``NotFoundError`` for an unknown job and ``InvalidInputError`` when it has no such artifact.
    """
    record = services.store.get_job(job_id)
    paths = [a["path"] for a in services.store.job_artifacts(record["id"]) if a["kind"] == kind]
    if not paths:
        raise InvalidInputError(f"Job {job_id} ({record['kind']}, {record['status']}) has no {kind} artifact.")
    return str(paths[-1])


def use_job_critic(services: Services, job_id: str) -> str:
    """Make job ``job_id``'s ``critic`` artifact (a PARROT distill's folder) the app's critic, as
    a transformers critic; return the notice to show."""
    name = services.use_critic(critic_folder_spec(services, job_artifact(services, job_id, "critic")))
    return f"Critic is now {name}. New sessions, judgements and jobs use it."


def load_job_lora(services: Services, job_id: str) -> str:
    """Load job ``job_id``'s ``lora`` artifact (an RL job's) into the generator of its task;
    return the notice to show."""
    path = job_artifact(services, job_id, "lora")
    if not Path(path).exists():
        raise NotFoundError(f"No LoRA at {path} (was the job's run folder deleted?).")
    task = lora_task(services, services.store.get_job(job_id)["config"] or {})
    name = services.use_generator_lora(task, path)
    return f"The {'text-to-image' if task == 't2i' else 'editing'} generator is now {name}."


def lora_task(services: Services, config: dict[str, Any]) -> Task:
    """The task whose generator a job's LoRA belongs to: the config's ``task`` when it has one,
    else "edit" when the job tuned the app's editing model, else "t2i"."""
    if config.get("task") in ("t2i", "edit"):
        return config["task"]
    edit = services.edit_generator
    if isinstance(edit, Lazy) and config.get("model") and edit.config.get("model") == config["model"]:
        return "edit"
    return "t2i"


def leaderboard_job(services: Services, job_id: str) -> str:
    """``job_id`` when it is a finished eval job with an accuracy, to open in the Leaderboard.

    Raises ``NotFoundError`` for an unknown job and ``InvalidInputError`` for another kind or
    a job that has not finished.
    """
    record = services.store.get_job(job_id)
    if record["kind"] != "eval":
        raise InvalidInputError(f"Job {job_id} is a {record['kind']} job; only eval jobs have a Leaderboard row.")
    if record["status"] != "done" or "accuracy" not in (record["result"] or {}):
        raise InvalidInputError(f"Eval job {job_id} is {record['status']}; it reaches the Leaderboard when done.")
    return record["id"]


def job_actions(services: Services, job_id: str) -> set[str]:
    """The actions job ``job_id`` offers: "critic", "lora" (it has such an artifact) and
    "leaderboard" (a finished eval job); empty for an unknown id."""
    try:
        record = services.store.get_job(job_id)
    except NotFoundError:
        return set()
    kinds = {a["kind"] for a in services.store.job_artifacts(record["id"])} & {"critic", "lora"}
    done_eval = record["kind"] == "eval" and record["status"] == "done" and "accuracy" in (record["result"] or {})
    return kinds | ({"leaderboard"} if done_eval else set())
