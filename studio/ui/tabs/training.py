"""The Training tab: start background jobs from a form per job kind, watch them live (progress,
curves, log, result, artifacts), cancel / resume / delete them, and the Leaderboard of eval jobs.

Jobs are processes of their own (``studio.jobs.runner``); this tab only reads and writes their
records, so closing the browser or restarting the app loses nothing. A ``gr.Timer`` refreshes
the list and the open job every few seconds and starts queued jobs whose turn has come.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from models.errors import ConfigError, NotFoundError, StudioError
from studio.jobs import actions
from studio.jobs.registry import KindSpec, available_kinds, load_kind
from studio.jobs.runner import Runner
from studio.jobs.procs import log_tail
from studio.jobs.specs import app_spec
from studio.services import Services
from studio.ui import jobs_adapt, rationales_adapt
from studio.ui.errors import ui_errors
from studio.ui.tabs.studio import models_markdown

logger = logging.getLogger(__name__)

#: Seconds between two refreshes of the job list and the open job.
REFRESH_S = 2.0
LOG_LINES = 40


def create_training_tab(services: Services, runner: Runner | None = None,
                        models_view: gr.Markdown | None = None) -> dict[str, gr.components.Component]:
    """Build the Training tab's widgets and listeners; return its components by name.

    On build the runner re-attaches to the store's jobs (a job whose process is gone is marked
    failed with its reason) and starts queued jobs that may run. ``models_view`` (the app's
    line naming its models) is rewritten when an action swaps the critic or a generator.
    """
    store = services.store
    runner = runner or Runner(store)
    runner.poll()
    kinds = available_kinds()
    overrides = _app_defaults(services)
    forms: dict[str, list[gr.components.Component]] = {}
    groups: dict[str, gr.Group] = {}
    first = next((name for name, spec in kinds.items() if isinstance(spec, KindSpec)), None)

    with gr.Tabs() as subtabs:
        with gr.Tab("Jobs", id="training-jobs"):
            with gr.Row():
                with gr.Column(scale=2):
                    kind = gr.Dropdown([(_kind_label(n, s), n) for n, s in kinds.items()], value=first,
                                       label="Job kind (or type a package.module of your own)",
                                       allow_custom_value=True, elem_id="training-kind")
                    for name, spec in kinds.items():
                        with gr.Group(visible=name == first) as groups[name]:
                            if isinstance(spec, KindSpec):
                                gr.Markdown(spec.description)
                                forms[name] = [_widget(f, f"training-{name}-{f.name}".replace("_", "-"))
                                               for f in jobs_adapt.form_fields(spec.config_cls, overrides)]
                            else:
                                gr.Markdown(f"**Unavailable:** {spec}")
                    with gr.Row():
                        device = gr.Radio(["cpu", "cuda"], value="cpu", label="Device")
                        gpu_gb = gr.Number(0, minimum=0, label="GPU memory needed (GiB)")
                        parent = gr.Textbox(label="After job (pipeline)", placeholder="job id", max_lines=1)
                    config_box = gr.Code(language="json", label="Config (JSON; the form above fills it)",
                                         interactive=True, elem_id="training-config")
                    command = gr.Textbox(label="Command", interactive=False, lines=2, elem_id="training-command")
                    with gr.Row():
                        start = gr.Button("Start job", variant="primary", elem_id="training-start")
                        release = gr.Button("Release the studio's models", size="sm",
                                            elem_id="training-release")
                with gr.Column(scale=3):
                    jobs_table = gr.Dataframe(jobs_adapt.jobs_frame(store.list_jobs()), interactive=False,
                                              label="Jobs (click a row to open it)", elem_id="training-jobs-table")
                    with gr.Row():
                        job_id = gr.Textbox(label="Job", max_lines=1, scale=2, elem_id="training-job-id")
                        refresh_button = gr.Button("Refresh", size="sm", scale=1)
                        cancel = gr.Button("Cancel", size="sm", scale=1)
                        resume = gr.Button("Resume", size="sm", scale=1)
                        delete = gr.Button("Delete", size="sm", variant="stop", scale=1)
                    with gr.Row():
                        # shown when the open job offers them (see actions.job_actions)
                        critic_button = gr.Button("Use this critic", size="sm", visible=False,
                                                  elem_id="training-use-critic")
                        lora_button = gr.Button("Load this LoRA into the generator", size="sm", visible=False,
                                                elem_id="training-use-lora")
                        board_button = gr.Button("Open in Leaderboard", size="sm", visible=False,
                                                 elem_id="training-open-leaderboard")
                    notice = gr.Markdown(elem_id="training-notice")
                    view = gr.Markdown("Start a job or pick one in the list.", elem_id="training-job-view")
                    curves = gr.LinePlot(x="step", y="value", color="metric", label="Curves", height=260,
                                         elem_id="training-curves")
                    result = gr.Dataframe(jobs_adapt.result_frame(None), label="Result", interactive=False,
                                          elem_id="training-result")
            with gr.Group(visible=False, elem_id="training-rationales") as rationale_group:
                gr.Markdown("#### Rationales of this PARROT filter job\nEach pair's images (the labelled one "
                            "framed), its label, the preference its critiques re-predict without the label, and "
                            "the kept critiques or why the rationale was rejected.")
                with gr.Row():
                    which = gr.Radio(list(rationales_adapt.FILES), value="kept", label="Show", scale=2,
                                     elem_id="training-rationales-which")
                    page_box = gr.Number(1, precision=0, minimum=1, label="Page", scale=1,
                                         elem_id="training-rationales-page")
                    previous_page = gr.Button("◀ Previous", size="sm", scale=1, elem_id="training-rationales-previous")
                    next_page = gr.Button("Next ▶", size="sm", scale=1, elem_id="training-rationales-next")
                rationale_view = gr.HTML(elem_id="training-rationales-view")
            log = gr.Textbox(label="Log (last lines)", lines=12, max_lines=12, interactive=False, autoscroll=True,
                             elem_id="training-log")
            artifacts = gr.File(label="Artifacts", file_count="multiple", interactive=False, height=120)
        with gr.Tab("Leaderboard", id="training-leaderboard"):
            gr.Markdown("One row per critic, benchmark and mode from the newest finished eval job, beside the "
                        "paper's published accuracies (labelled *published*; measured elsewhere, not here).")
            leaderboard_button = gr.Button("Refresh")
            # the timer's refresh reads the store again within REFRESH_S of every page load
            leaderboard_table = gr.Dataframe(jobs_adapt.leaderboard_frame(store.list_jobs(kind="eval")),
                                             interactive=False, elem_id="training-leaderboard-table")
    timer = gr.Timer(REFRESH_S)

    all_widgets = [w for widgets in forms.values() for w in widgets]
    offsets, at = {}, 0
    for name, widgets in forms.items():
        offsets[name] = (at, at + len(widgets))
        at += len(widgets)

    def preview(kind_name: str, device_value: str, gpu: float | None, *values: Any) -> tuple[str, str]:
        """The form as config JSON plus the command that queues it (a message when it is not valid)."""
        if kind_name not in kinds:  # a user's own kind: no form, its config is written as JSON
            return gr.skip(), f"Write the config of {kind_name} as JSON above, then start it."
        spec = kinds[kind_name]
        if not isinstance(spec, KindSpec):
            return "", f"{kind_name} jobs are unavailable here: {spec}"
        low, high = offsets[kind_name]
        try:
            config = jobs_adapt.config_from_form(spec.config_cls, list(values[low:high]))
        except StudioError as e:  # shown in place of the command while the form is being filled in
            return "", f"⚠ {e}"
        return (jobs_adapt.config_json(config),
                jobs_adapt.start_command(kind_name, config, device=device_value, gpu_gb=float(gpu or 0)))

    if first is not None:
        config_box.value, command.value = preview(first, "cpu", 0, *[w.value for w in all_widgets])

    @ui_errors
    def start_job(kind_name: str, config_json: str, device_value: str, gpu: float | None,
                  parent_id: str) -> tuple[Any, str]:
        """Queue a background job; it starts when the resource rule allows.

        Args:
            kind_name: the job kind (eval, diagnose, curate, ...).
            config_json: the kind's config as a JSON object.
            device_value: "cpu" or "cuda".
            gpu: GiB of GPU memory that must be free before a cuda job starts.
            parent_id: a job this one waits for (empty: none).
        """
        spec = load_kind(kind_name)
        config = jobs_adapt.config_from_json(spec.config_cls, config_json)
        new_id = runner.submit(kind_name, config, device=device_value, gpu_gb=float(gpu or 0),
                               parent_id=parent_id.strip() or None)
        return jobs_adapt.jobs_frame(store.list_jobs()), new_id

    @ui_errors
    def list_jobs() -> Any:
        """Every job, newest first, after starting queued jobs whose turn has come."""
        runner.poll()
        return jobs_adapt.jobs_frame(store.list_jobs())

    @ui_errors
    def job_view(job: str) -> tuple[Any, ...]:
        """One job: header (status, reason, command, pipeline), curves, result, log tail, artifacts.

        Args:
            job: the job id.
        """
        if not job.strip():
            return "Start a job or pick one in the list.", None, None, "", None
        record = store.get_job(job.strip())
        files = [a["path"] for a in store.job_artifacts(record["id"]) if Path(a["path"]).is_file()]
        return (jobs_adapt.job_markdown(store, record), jobs_adapt.metrics_frame(store.job_metrics(record["id"])),
                jobs_adapt.result_frame(record["result"]), log_tail(record["log_path"], LOG_LINES), files or None)

    @ui_errors
    def job_rationales(job: str, shown: str, page: float | None) -> tuple[Any, int, str]:
        """A PARROT filter job's kept or rejected rationales, one page of ``PAGE_SIZE``: each pair's
        images, label, re-predicted preference, and the kept critiques or the rejection reason.
        Hidden for other jobs.

        Args:
            job: the id of a PARROT filter job.
            shown: "kept" or "rejected".
            page: the page, from 1 (clamped to the pages there are).
        """
        try:
            record = store.get_job(job.strip()) if job.strip() else None
        except NotFoundError:
            record = None
        files = rationales_adapt.filter_files(record) if record else None
        if files is None:
            return gr.update(visible=False), 1, ""
        path = files[shown]
        if not path.is_file():
            return gr.update(visible=True), 1, (f"<p>No {shown} rationales yet: the job is {record['status']}"  # type: ignore[index]
                                                "; press Refresh when it is done.</p>")
        found = rationales_adapt.read_page(path, int(page or 1))
        return gr.update(visible=True), found.page, rationales_adapt.page_html(found, path.parent, shown)

    def turn_page(step: int) -> Any:
        def turned(job: str, shown: str, page: float | None) -> tuple[Any, int, str]:
            return job_rationales(job, shown, int(page or 1) + step)
        return turned

    @ui_errors
    def cancel_job(job: str) -> str:
        """Stop a job: SIGTERM (it stops after its current unit), then killed after the grace period.

        Args:
            job: the job id.
        """
        return runner.cancel(job.strip())

    @ui_errors
    def resume_job(job: str) -> str:
        """Continue a failed or cancelled job from its last checkpoint, in its run folder.

        Args:
            job: the job id.
        """
        return runner.resume(job.strip())

    @ui_errors
    def delete_job(job: str) -> str:
        """Forget a job that is not running and remove its run folder.

        Args:
            job: the job id.
        """
        runner.delete(job.strip())
        return f"Deleted job {job.strip()}."

    @ui_errors
    def release_models() -> str:
        """Free the memory of the studio's loaded models (they load again on their next use), so
        that a queued GPU job fits; then start the jobs that may now run."""
        released = services.release_models()
        started = runner.poll()
        freed = f"Released {', '.join(released)}; each loads again on its next use." if released else \
            "No model of the studio was loaded."
        return freed + (f" Started job(s) {', '.join(started)}." if started else "")

    @ui_errors
    def leaderboard() -> Any:
        """The Leaderboard: our eval results per (critic, benchmark, mode) beside the published ones."""
        return jobs_adapt.leaderboard_frame(store.list_jobs(kind="eval"))

    @ui_errors
    def use_critic(job: str) -> tuple[str, str]:
        """Make the job's distilled critic (its "critic" artifact folder) the app's critic, as a
        transformers critic; the previous critic is closed. Waits for running model actions.

        Args:
            job: the id of a PARROT distill job.
        """
        return actions.use_job_critic(services, job.strip()), models_markdown(services.names())

    @ui_errors
    def load_lora(job: str) -> tuple[str, str]:
        """Rebuild the generator of the job's task with its LoRA (its "lora" artifact); the
        previous generator is closed. Waits for running model actions.

        Args:
            job: the id of an RL job that trained a LoRA.
        """
        return actions.load_job_lora(services, job.strip()), models_markdown(services.names())

    @ui_errors
    def open_in_leaderboard(job: str) -> tuple[Any, Any]:
        """Switch to the Leaderboard with the eval job's row first (even when a newer job measured
        the same critic, benchmark and mode).

        Args:
            job: the id of a finished eval job.
        """
        pinned = actions.leaderboard_job(services, job.strip())
        return gr.Tabs(selected="training-leaderboard"), jobs_adapt.leaderboard_frame(
            store.list_jobs(kind="eval"), pinned=pinned)

    def action_buttons(job: str) -> list[Any]:
        offered = actions.job_actions(services, job.strip())
        return [gr.update(visible=name in offered) for name in ("critic", "lora", "leaderboard")]

    def refresh(job: str) -> tuple[Any, ...]:
        board = jobs_adapt.leaderboard_frame(store.list_jobs(kind="eval"), pinned=job.strip() or None)
        return (list_jobs(), *job_view(job), board, *action_buttons(job))

    def selected(frame: Any, event: gr.SelectData) -> str:
        return str(frame.iloc[event.index[0]]["id"])

    def show_form(kind_name: str) -> list[Any]:
        return [gr.update(visible=name == kind_name) for name in groups]

    view_outputs = [view, curves, result, log, artifacts]
    rationale_inputs, rationale_outputs = [job_id, which, page_box], [rationale_group, page_box, rationale_view]

    def first_page(job: str, shown: str) -> tuple[Any, int, str]:
        return job_rationales(job, shown, 1)
    kind.change(show_form, kind, list(groups.values()), api_visibility="private", queue=False)
    for trigger in [kind, device, gpu_gb, *all_widgets]:
        trigger.change(preview, [kind, device, gpu_gb, *all_widgets], [config_box, command],
                       api_visibility="private", queue=False)
    start.click(start_job, [kind, config_box, device, gpu_gb, parent], [jobs_table, job_id],
                api_name="start_job").then(job_view, job_id, view_outputs, api_name="job_view_started",
                                           api_visibility="private").then(
        first_page, [job_id, which], rationale_outputs, api_visibility="private")
    jobs_table.select(selected, jobs_table, job_id, api_visibility="private").then(
        job_view, job_id, view_outputs, api_name="job_view_selected", api_visibility="private").then(
        first_page, [job_id, which], rationale_outputs, api_visibility="private")
    job_id.submit(job_view, job_id, view_outputs, api_name="job_view").then(
        first_page, [job_id, which], rationale_outputs, api_visibility="private")
    refresh_button.click(list_jobs, None, jobs_table, api_name="list_jobs").then(
        job_view, job_id, view_outputs, api_name="job_view_refreshed", api_visibility="private").then(
        job_rationales, rationale_inputs, rationale_outputs, api_name="job_rationales_refreshed",
        api_visibility="private")
    which.change(first_page, [job_id, which], rationale_outputs, api_visibility="private")
    page_box.submit(job_rationales, rationale_inputs, rationale_outputs, api_name="job_rationales")
    previous_page.click(turn_page(-1), rationale_inputs, rationale_outputs, api_visibility="private")
    next_page.click(turn_page(+1), rationale_inputs, rationale_outputs, api_visibility="private")
    cancel.click(cancel_job, job_id, notice, api_name="cancel_job")
    resume.click(resume_job, job_id, notice, api_name="resume_job")
    delete.click(delete_job, job_id, notice, api_name="delete_job")
    leaderboard_button.click(leaderboard, None, leaderboard_table, api_name="leaderboard")
    release.click(release_models, None, notice, api_name="release_models", concurrency_id="gpu", concurrency_limit=1)
    swapped = [notice, models_view] if models_view is not None else [notice, gr.State()]
    critic_button.click(use_critic, job_id, swapped, api_name="use_critic", concurrency_id="gpu", concurrency_limit=1)
    lora_button.click(load_lora, job_id, swapped, api_name="load_lora", concurrency_id="gpu", concurrency_limit=1)
    board_button.click(open_in_leaderboard, job_id, [subtabs, leaderboard_table], api_name="open_in_leaderboard")
    action_outputs = [critic_button, lora_button, board_button]
    job_id.change(action_buttons, job_id, action_outputs, api_visibility="private", queue=False)
    timer.tick(refresh, job_id, [jobs_table, *view_outputs, leaderboard_table, *action_outputs],
               api_name="list_jobs_refresh",
               api_visibility="private",
               show_progress="hidden")
    return {"kind": kind, "config": config_box, "command": command, "start": start, "release": release, "device": device,
            "gpu_gb": gpu_gb, "parent": parent, "jobs": jobs_table, "job_id": job_id, "refresh": refresh_button, "cancel": cancel,
            "resume": resume, "delete": delete, "notice": notice, "view": view, "curves": curves, "result": result,
            "log": log, "artifacts": artifacts, "leaderboard": leaderboard_table, "timer": timer,
            "rationales": rationale_view, "rationales_which": which, "rationales_page": page_box,
            "use_critic": critic_button, "load_lora": lora_button, "open_in_leaderboard": board_button, "tabs": subtabs}


def _widget(field: jobs_adapt.FormField, elem_id: str) -> gr.components.Component:
    """The input widget of one config field (``elem_id``: ``training-<kind>-<field>``)."""
    common: dict[str, Any] = {"label": field.label, "info": field.help or None, "elem_id": elem_id}
    if field.widget == "bool":
        return gr.Checkbox(value=bool(field.default), **common)
    if field.widget in ("int", "float") and not field.optional:
        return gr.Number(value=field.default, precision=0 if field.widget == "int" else None, **common)
    # an optional number is a text box: gr.Number sends 0 for an empty box, which is not "unset"
    if field.widget == "choice":
        return gr.Dropdown(list(field.choices or ()), value=field.default, **common)
    return gr.Textbox(value=field.default, lines=3 if field.widget in ("lines", "json") else 1, **common)


def _kind_label(name: str, spec: KindSpec | str) -> str:
    return name if isinstance(spec, KindSpec) else f"{name} (unavailable)"


def _app_defaults(services: Services) -> dict[str, Any]:
    """Form defaults taken from the app: its current critic (so a job scores with it)."""
    try:
        critic = app_spec(services, "critic")
    except ConfigError:
        return {}
    return {"critic": critic} if critic else {}
