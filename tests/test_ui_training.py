"""The Training tab: its form and views (``studio.ui.jobs_adapt``), and the served app starting a
real background job through the API and listing it with its command, curve and result."""

from __future__ import annotations

import json
import time
from typing import Iterator

import gradio as gr
import pytest
from gradio_client import Client

from models.critic.critic_transformers import TransformersCritic
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import ConfigError, InvalidInputError
from studio.config import StudioConfig
from studio.jobs import actions
from studio.jobs.kinds.curate import CurateConfig
from studio.jobs.kinds.diagnose import DiagnoseConfig
from studio.ui import jobs_adapt
from studio.services import Services
from studio.ui.app import LAUNCH_OPTIONS, build_app
from tests.studio_fakes import ScriptedCritic, make_services, poor
from tests.ui_helpers import free_port

KIND = "tests.jobs_counting"


def test_a_config_dataclass_becomes_a_form_and_back():
    fields = jobs_adapt.form_fields(CurateConfig, {"critic": {"backend": "openai", "base_url": "http://h/v1"}})
    by_name = {f.name: f for f in fields}
    assert [by_name[n].widget for n in ("inputs", "task", "batch_size", "critic", "min_score", "min")] == \
        ["lines", "choice", "int", "json", "float", "json"]
    assert by_name["task"].choices == ("t2i", "edit") and by_name["batch_size"].default == 4
    assert json.loads(by_name["critic"].default) == {"backend": "openai", "base_url": "http://h/v1"}
    values = {f.name: f.default for f in fields}
    values.update(inputs="a.png\n\n b.png ", prompt="a red cube", min_score=0.7, min='{"text_rendering": 3}')
    config = jobs_adapt.config_from_form(CurateConfig, [values[f.name] for f in fields])
    assert (config.inputs, config.prompt, config.min_score, config.min) == (["a.png", "b.png"], "a red cube", 0.7,
                                                                            {"text_rendering": 3})
    assert config.critic["base_url"] == "http://h/v1" and config.source is None
    assert jobs_adapt.start_command("curate", config) == (
        "python -m studio jobs start curate --inputs a.png b.png --prompt 'a red cube' --critic "
        "'{\"backend\": \"openai\", \"base_url\": \"http://h/v1\"}' --min-score 0.7 --min '{\"text_rendering\": 3}'")
    assert jobs_adapt.config_from_json(CurateConfig, jobs_adapt.config_json(config)) == config


def test_a_bad_form_value_names_its_field():
    fields = jobs_adapt.form_fields(DiagnoseConfig)
    values = {f.name: f.default for f in fields}
    with pytest.raises(InvalidInputError, match="Critic: not valid JSON"):
        jobs_adapt.config_from_form(DiagnoseConfig, [{**values, "inputs": "x", "critic": "{"}[f.name] for f in fields])
    with pytest.raises(ConfigError, match="inputs: give image files"):
        jobs_adapt.config_from_form(DiagnoseConfig, [values[f.name] for f in fields])


def test_progress_bar_and_pipeline_rows():
    running = {"id": "a", "kind": "eval", "status": "running", "step": 3, "total": 10, "config": {"critic": {
        "backend": "shapes"}}, "started": None}
    assert jobs_adapt.progress_bar(running) == "▰▰▰▱▱▱▱▱▱▱ 30% (3/10)"
    assert jobs_adapt.progress_bar({**running, "status": "done"}).startswith("▰" * 10 + " 100%")
    frame = jobs_adapt.jobs_frame([running])
    assert list(frame.columns) == list(jobs_adapt.JOB_COLUMNS) and frame.iloc[0]["model"] == "shapes"


def test_leaderboard_keeps_the_newest_eval_per_critic_benchmark_and_mode_beside_published_numbers():
    def eval_job(job_id: str, accuracy: float, status: str = "done", mode: str = "pairwise") -> dict:
        return {"id": job_id, "kind": "eval", "status": status, "result": {
            "critic": "shapes", "benchmark": "genai-bench-t2i", "mode": mode, "n": 10, "answered": 9, "failed": 1,
            "ties": 2, "accuracy": accuracy, "accuracy_ci": [0.5, 0.9], "accuracy_answered": 0.8,
            "accuracy_with_ties": 0.6}}

    frame = jobs_adapt.leaderboard_frame([eval_job("new", 0.75), eval_job("old", 0.5), eval_job("pw", 0.7, mode="pointwise"),
                                          eval_job("broken", 0.1, status="failed")])
    ours = frame[frame["source"] == "ours"]
    assert sorted(zip(ours["job"], ours["accuracy %"], ours["mode"])) == [("new", 75.0, "pairwise"), ("pw", 70.0, "pointwise")]
    assert ours.iloc[0]["95% CI"] == "50.0–90.0"
    genai = frame[frame["benchmark"] == "genai-bench-t2i"]
    assert list(genai["source"][:2]) == ["ours", "ours"]  # ours first, then the published rows
    published = genai[genai["source"] == jobs_adapt.PUBLISHED]
    assert dict(zip(published["critic"], published["accuracy %"]))["RationalRewards-8B"] == 69.8


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[gr.Blocks, Client, object]]:
    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]))
    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        yield demo, Client(f"http://127.0.0.1:{port}/", verbose=False), services
    finally:
        demo.close()


def test_the_training_tab_starts_a_job_and_lists_it_with_its_command_curve_and_result(served):
    _, client, services = served
    frame, job_id = client.predict(KIND, json.dumps({"total": 3}), "cpu", 0, "", api_name="/start_job")
    assert job_id in [row[0] for row in frame["data"]]
    deadline = time.monotonic() + 60
    while True:
        rows = {row[0]: row for row in client.predict(api_name="/list_jobs")["data"]}
        if rows[job_id][2] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert rows[job_id][1:3] == [KIND, "done"] and rows[job_id][3].startswith("▰" * 10 + " 100% (3/3)")
    header, curves, result, log, _files = client.predict(job_id, api_name="/job_view")
    assert f"-m {KIND} --config" in header and "done" in header
    assert curves["data"] == [[1, 1.0, "count_squared"], [2, 4.0, "count_squared"], [3, 9.0, "count_squared"]]
    assert result["data"] == [["counted", 3]]
    assert "counted unit 3" in log
    with pytest.raises(Exception, match="has already ended"):
        client.predict(job_id, api_name="/cancel_job")
    assert client.predict(job_id, api_name="/delete_job") == f"Deleted job {job_id}."
    assert services.store.list_jobs() == []


def test_the_training_tab_refuses_a_bad_config_with_its_message(served):
    _, client, services = served
    with pytest.raises(Exception, match="min_score is required"):
        client.predict("curate", json.dumps({"inputs": ["x"]}), "cpu", 0, "", api_name="/start_job")
    assert services.store.list_jobs() == []


def test_release_models_frees_the_apps_models_for_a_gpu_job(served):
    _, client, services = served
    services.get_critic()  # an object, not built from a spec: nothing to release
    assert client.predict(api_name="/release_models") == "No model of the studio was loaded."


def test_an_optional_number_left_empty_is_unset_and_a_typed_one_is_read():
    """The eval form's `concurrency` (int | None): empty means "the backend's own"; gr.Number would
    have sent 0, which the config refuses, so the form gives it a text box."""
    from studio.evaluation.run import EvalConfig

    fields = jobs_adapt.form_fields(EvalConfig)
    values = {f.name: f.default for f in fields}
    values.update(data="shapes:t2i:8")
    config = jobs_adapt.config_from_form(EvalConfig, [values[f.name] for f in fields])
    assert config.concurrency is None and config.limit is None
    values.update(limit="5")
    assert jobs_adapt.config_from_form(EvalConfig, [values[f.name] for f in fields]).limit == 5
    values.update(limit="five")
    with pytest.raises(InvalidInputError, match="Limit: expected a number, got 'five'"):
        jobs_adapt.config_from_form(EvalConfig, [values[f.name] for f in fields])


@pytest.fixture
def served_specs(tmp_path) -> Iterator[tuple[Client, Services, gr.Blocks]]:
    """The app over backends built from specs (so that they can be swapped)."""
    services = Services.from_config(StudioConfig(
        store_dir=str(tmp_path / "store"),
        critic={"backend": "tests.studio_fakes:ClosableCritic", "script": [poor(2.0)], "name": "base critic"},
        t2i_generator={"backend": "tests.studio_fakes:LoraSquaresGenerator", "size": 16, "name": "squares"}))
    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), services, demo
    finally:
        demo.close()
        services.close()


def finished_job(services: Services, kind: str, config: dict, artifacts: dict[str, str] = {},
                 result: dict | None = None) -> str:
    job_id = services.store.create_job(kind, config, status="done")
    services.store.update_job(job_id, result=result)
    for artifact_kind, path in artifacts.items():
        services.store.add_job_artifact(job_id, artifact_kind, path, artifact_kind)
    return job_id


def test_use_this_critic_makes_a_distilled_critic_the_apps_critic(served_specs, tmp_path):
    client, services, demo = served_specs
    old = services.get_critic()
    folder = build_tiny_qwen3vl(tmp_path / "distilled" / "critic", seed=0)
    job = finished_job(services, "parrot_distill", {}, {"critic": str(folder)})
    notice, models = client.predict(job, api_name="/use_critic")
    assert notice.startswith(f"Critic is now transformers critic ({folder})")
    assert f"Critic: `transformers critic ({folder})`" in models and "squares" in models
    assert old.closed and isinstance(services.get_critic(), TransformersCritic)
    assert services.critic.config["model"] == str(folder)  # what a job started now is given

    without = finished_job(services, "eval", {})
    with pytest.raises(Exception, match=f"Job {without} \\(eval, done\\) has no critic artifact"):
        client.predict(without, api_name="/use_critic")
    gone = finished_job(services, "parrot_distill", {}, {"critic": str(tmp_path / "deleted" / "critic")})
    with pytest.raises(Exception, match="No critic folder at"):
        client.predict(gone, api_name="/use_critic")
    assert services.names()["critic"] == f"transformers critic ({folder})"  # refusals change nothing


def test_load_this_lora_rebuilds_the_generator_of_the_jobs_task(served_specs, tmp_path):
    client, services, demo = served_specs
    old = services.get_generator("t2i")
    lora = tmp_path / "rl" / "lora"
    lora.mkdir(parents=True)
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    job = finished_job(services, "rl", {"model": "shapes"}, {"lora": str(lora)})
    notice, models = client.predict(job, api_name="/load_lora")
    name = f"tests.studio_fakes:LoraSquaresGenerator + LoRA {lora}"  # the spec names no model
    assert notice == f"The text-to-image generator is now {name}."
    assert f"Text-to-image: `{name}`" in models
    assert old.closed and services.get_generator("t2i").lora == str(lora)

    empty = tmp_path / "not-a-lora"
    empty.mkdir()
    bad = finished_job(services, "rl", {"model": "shapes"}, {"lora": str(empty)})
    with pytest.raises(Exception, match="holds no LoRA weights"):
        client.predict(bad, api_name="/load_lora")
    assert services.get_generator("t2i").lora == str(lora)


def test_open_in_leaderboard_shows_the_jobs_row_first_even_when_a_newer_one_measured_the_same(served_specs):
    client, services, demo = served_specs
    result = {"critic": "shapes", "benchmark": "genai-bench-t2i", "mode": "pairwise", "n": 10, "accuracy": 0.6}
    older = finished_job(services, "eval", {}, result=result)
    time.sleep(0.01)
    finished_job(services, "eval", {}, result={**result, "accuracy": 0.9})
    board = client.predict(older, api_name="/open_in_leaderboard")
    first = dict(zip(board["headers"], board["data"][0]))  # the client returns the data outputs
    assert (first["job"], first["accuracy %"]) == (older, 60.0)
    listener = next(fn for fn in demo.fns.values() if fn.api_name == "open_in_leaderboard")
    tabs, _ = listener.fn(older)  # and the Leaderboard sub-tab is selected
    assert isinstance(listener.outputs[0], gr.Tabs) and tabs.selected == "training-leaderboard"
    with pytest.raises(Exception, match="only eval jobs have a Leaderboard row"):
        client.predict(finished_job(services, "curate", {}), api_name="/open_in_leaderboard")


def test_the_job_view_offers_the_actions_of_the_jobs_artifacts(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]))
    distill = finished_job(services, "parrot_distill", {}, {"critic": str(tmp_path)})
    rl = finished_job(services, "rl", {}, {"lora": str(tmp_path)})
    result = {"critic": "shapes", "benchmark": "genai-bench-t2i", "mode": "pairwise", "accuracy": 0.6}
    done_eval = finished_job(services, "eval", {}, result=result)
    running_eval = services.store.create_job("eval", {}, status="running")
    assert [actions.job_actions(services, job) for job in (distill, rl, done_eval, running_eval, "nope")] == \
        [{"critic"}, {"lora"}, {"leaderboard"}, set(), set()]
