"""The Training tab's conversions, Gradio-free: a job kind's config dataclass as form fields and
back, jobs as table rows and a job view, metrics as a curve frame, and the Leaderboard.

Form widgets hold plain values: a list field is one item per line, a dict field is JSON text, an
optional text or number left empty is ``None``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.errors import InvalidInputError
from studio.evaluation.published import PUBLISHED_ACCURACY
from studio.jobs.config import config_fields, config_from_dict, config_to_flags, field_default, flag_type
from studio.jobs.view import duration_s, eta_s, format_seconds, fraction_done, silent_s
from studio.store import SessionStore

JOB_COLUMNS = ("id", "kind", "status", "progress", "started", "duration", "model", "message")
LEADERBOARD_COLUMNS = ("source", "critic", "benchmark", "mode", "n", "answered", "failed", "ties", "accuracy %",
                       "95% CI", "accuracy answered %", "accuracy with ties %", "position consistency %", "job")
PUBLISHED = "published (paper, Table 1)"
BAR_CELLS = 10


@dataclass(frozen=True)
class FormField:
    """One form widget of a config field: ``widget`` is bool, int, float, choice, text, lines or json."""

    name: str
    label: str
    widget: str
    default: Any
    optional: bool
    choices: tuple[Any, ...] | None = None
    help: str = ""


def form_fields(config_cls: type, overrides: dict[str, Any] | None = None) -> list[FormField]:
    """The form of ``config_cls``: one field per dataclass field, with the widget value of its
    default (or of ``overrides[name]``, e.g. the app's current critic)."""
    overrides = overrides or {}
    fields = []
    for f, hint in config_fields(config_cls):
        kind, choices = flag_type(hint)
        default = overrides.get(f.name, field_default(f))
        widget = {bool: "bool", int: "int", float: "float", list: "lines", dict: "json"}.get(kind, "text")
        if choices:
            widget = "choice"
        fields.append(FormField(
            name=f.name, label=f.name.replace("_", " ").capitalize(), widget=widget,
            default=_widget_value(widget, None if default is dataclasses.MISSING else default),
            optional="None" in str(hint), choices=choices, help=f.metadata.get("help", ""),
        ))
    return fields


def config_from_form(config_cls: type, values: list[Any]) -> Any:
    """The validated config from the form's widget values (in ``form_fields`` order).

    Raises ``InvalidInputError`` naming the field when a value cannot be read, and ``ConfigError``
    when the config refuses it.
    """
    fields = form_fields(config_cls)
    if len(values) != len(fields):
        raise InvalidInputError(f"{config_cls.__name__} has {len(fields)} settings, the form sent {len(values)}.")
    parsed = {}
    for field, value in zip(fields, values):
        parsed_value = _parse(field, value)
        if parsed_value is not None or field.optional:
            parsed[field.name] = parsed_value
    return config_from_dict(config_cls, parsed)


def config_from_json(config_cls: type, text: str) -> Any:
    """The validated config from its JSON text (the form's config box)."""
    try:
        values = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"The config is not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise InvalidInputError("The config must be a JSON object of settings.")
    return config_from_dict(config_cls, values)


def config_json(config: Any) -> str:
    """A config as the JSON text of the form's config box."""
    return json.dumps(dataclasses.asdict(config), indent=1)


def start_command(kind: str, config: Any, *, device: str = "cpu", gpu_gb: float = 0.0) -> str:
    """The ``python -m studio jobs start`` command that queues this job from a shell."""
    options = ["--device", device] if device != "cpu" else []
    if gpu_gb:
        options += ["--gpu-gb", f"{gpu_gb:g}"]
    return shlex.join(["python", "-m", "studio", "jobs", "start", *options, kind, *config_to_flags(config)])


# -- the job list and a job's view -------------------------------------------------------------


def progress_bar(job: dict[str, Any]) -> str:
    """A text progress bar: ``"▰▰▰▱▱▱▱▱▱▱ 30% (3/10)"`` (empty before anything is known)."""
    fraction = fraction_done(job)
    if fraction is None:
        return f"{job['step']} done" if job.get("step") else ""
    cells = round(fraction * BAR_CELLS)
    counts = f" ({job['step']}/{job['total']})" if job.get("total") else ""
    return "▰" * cells + "▱" * (BAR_CELLS - cells) + f" {fraction:.0%}" + counts


def job_model(job: dict[str, Any]) -> str:
    """The critic or model a job used, from its config (``""`` when it names none)."""
    config = job.get("config") or {}
    for key in ("critic", "model", "generator"):
        value = config.get(key)
        if isinstance(value, dict):
            return str(value.get("name") or value.get("model") or value.get("backend") or "")
        if value:
            return str(value)
    return ""


def jobs_frame(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    """The job list: one row per job (``JOB_COLUMNS``), newest first."""
    rows = []
    for job in jobs:
        state = job["status"]
        quiet = silent_s(job)
        if quiet is not None:
            state += f" (no heartbeat for {format_seconds(quiet)})"
        eta = eta_s(job)
        rows.append({
            "id": job["id"], "kind": job["kind"], "status": state,
            "progress": progress_bar(job) + (f", {format_seconds(eta)} left" if eta is not None else ""),
            "started": (job.get("started") or "")[:19].replace("T", " "),
            "duration": format_seconds(duration_s(job)), "model": job_model(job),
            "message": (job.get("reason") or job.get("message") or "").split("\n")[0],
        })
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


def job_markdown(store: SessionStore, job: dict[str, Any]) -> str:
    """A job's header: kind, status and reason, timing, the command it runs, its pipeline."""
    lines = [f"### {job['kind']} job `{job['id']}` — {job['status']}"]
    if job.get("message") and job["status"] in ("queued", "running"):
        lines.append(f"*{job['message']}*")
    timing = [f"started {job['started'][:19].replace('T', ' ')} UTC" if job.get("started") else "not started",
              f"ran {format_seconds(duration_s(job))}" if job.get("started") else "",
              f"about {format_seconds(eta_s(job))} left" if eta_s(job) is not None else "",
              f"exit status {job['exit_code']}" if job.get("exit_code") is not None else "",
              f"device {job['device']}"]
    lines.append(" · ".join(t for t in timing if t))
    if job.get("reason"):
        lines.append("**Reason:**\n```\n" + job["reason"] + "\n```")
    lines.append(f"Command (run from `{job.get('cwd') or '.'}`):\n```\n{job.get('command') or ''}\n```")
    chain = pipeline(store, job)
    if len(chain) > 1:
        lines.append("Pipeline: " + " → ".join(
            f"{'**' if j['id'] == job['id'] else ''}{j['kind']} `{j['id']}` ({j['status']})"
            f"{'**' if j['id'] == job['id'] else ''}" for j in chain))
    return "\n\n".join(lines)


def pipeline(store: SessionStore, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain of jobs ``job`` belongs to (``parent_id`` links), first stage first."""
    first = job
    seen = {job["id"]}
    while first.get("parent_id") and first["parent_id"] not in seen:
        first = store.get_job(first["parent_id"])
        seen.add(first["id"])
    children: dict[str, list[dict[str, Any]]] = {}
    for other in sorted(store.list_jobs(), key=lambda j: j["created"]):
        if other.get("parent_id"):
            children.setdefault(other["parent_id"], []).append(other)
    chain, frontier = [], [first]
    while frontier:
        current = frontier.pop(0)
        chain.append(current)
        frontier.extend(children.get(current["id"], []))
    return chain


def metrics_frame(metrics: list[dict[str, Any]]) -> pd.DataFrame | None:
    """The job's curves as (step, value, metric) rows; ``None`` while there is no point (a
    ``gr.LinePlot`` first given an empty frame draws every later line without a colour)."""
    if not metrics:
        return None
    return pd.DataFrame([{"step": m["step"], "value": m["value"], "metric": m["name"]} for m in metrics])


def result_frame(result: dict[str, Any] | None) -> pd.DataFrame:
    """The result as (figure, value) rows; nested values as JSON text."""
    rows = [{"figure": key, "value": value if isinstance(value, (int, float, str)) or value is None
             else json.dumps(value, default=str)} for key, value in (result or {}).items()]
    return pd.DataFrame(rows, columns=["figure", "value"])


# -- the Leaderboard ---------------------------------------------------------------------------


def leaderboard_frame(jobs: list[dict[str, Any]], pinned: str | None = None) -> pd.DataFrame:
    """One row per (critic, benchmark, mode) from the newest done eval job of each, then the
    paper's published accuracies, labelled as published, benchmark by benchmark. The ``pinned``
    job's row (the job opened in the Leaderboard) takes its key's place, even when a newer job
    has one, and comes first.

    Fractions in an eval result (accuracy 0.7) are shown as percentages (70.0).
    """
    ours: dict[tuple[str, str, str], dict[str, Any]] = {}
    # newest first: the first job of a key wins, the pinned job before all
    for job in sorted(jobs, key=lambda j: j["id"] != pinned):
        result = job.get("result") or {}
        if job["kind"] != "eval" or job["status"] != "done" or "accuracy" not in result:
            continue
        key = (str(result.get("critic", "")), str(result.get("benchmark", "")), str(result.get("mode", "")))
        ours.setdefault(key, {**_figures(result), "source": "ours", "critic": key[0], "benchmark": key[1],
                              "mode": key[2], "job": job["id"]})
    published = [{"source": PUBLISHED, "critic": judge, "benchmark": benchmark, "mode": "pairwise",
                  "accuracy %": accuracy}
                 for benchmark, judges in PUBLISHED_ACCURACY.items() for judge, accuracy in judges.items()]
    # ours first (what a person came to see), then the published rows benchmark by benchmark
    rows = sorted([*ours.values(), *published],
                  key=lambda r: (r.get("job") != pinned or pinned is None, r["source"] != "ours", r["benchmark"],
                                 r["critic"]))
    return pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    interval = result.get("accuracy_ci")
    return {
        "n": result.get("n"), "answered": result.get("answered"), "failed": result.get("failed"),
        "ties": result.get("ties"), "accuracy %": _percent(result.get("accuracy")),
        "95% CI": f"{_percent(interval[0])}–{_percent(interval[1])}" if interval else "",
        "accuracy answered %": _percent(result.get("accuracy_answered")),
        "accuracy with ties %": _percent(result.get("accuracy_with_ties")),
        "position consistency %": _percent(result.get("position_consistency")),
    }


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(100.0 * fraction, 1)


def _widget_value(widget: str, value: Any) -> Any:
    if value is None:
        return "" if widget in ("text", "lines", "json") else None
    if widget == "lines":
        return "\n".join(map(str, value))
    if widget == "json":
        return json.dumps(value, indent=1)
    return value


def _parse(field: FormField, value: Any) -> Any:
    """A widget value as the config value (``None`` for an empty optional field)."""
    if field.widget in ("text", "choice"):
        return value if value not in (None, "") else None
    if field.widget == "lines":
        return [line.strip() for line in (value or "").splitlines() if line.strip()]
    if field.widget == "json":
        if not (value or "").strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{field.label}: not valid JSON ({e}).") from e
    if field.widget == "bool":
        return bool(value)
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{field.label}: expected a number, got {value!r}.") from None
    if field.widget == "int":
        if number != int(number):
            raise InvalidInputError(f"{field.label}: expected a whole number, got {value}.")
        return int(number)
    return number
