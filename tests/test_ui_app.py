"""``build_app`` over fake backends, in-process: the API surface, public mode, the shared GPU queue,
and Stop (a cancelled stream is stored as a cancelled session)."""

from __future__ import annotations

import time
from typing import Iterator

import gradio as gr
import pytest
from gradio_client import Client

from studio.ui.app import API_NAMES, LAUNCH_OPTIONS, TRAINING_API_NAMES, build_app
from tests.studio_fakes import ScriptedCritic, SquaresGenerator, make_services, poor
from tests.ui_helpers import free_port

GPU_BOUND = {"refine", "resume", "judge", "generate_pair", "diagnose", "diagnose_batch", "release_models", "use_critic",
             "load_lora"}


def dependencies(demo: gr.Blocks) -> list[dict]:
    return demo.get_config_file()["dependencies"]


@pytest.fixture
def services(tmp_path):
    return make_services(tmp_path, ScriptedCritic([poor(2.0)]), SquaresGenerator(delay_s=0.3))


@pytest.fixture
def served(services) -> Iterator[tuple[gr.Blocks, Client]]:
    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        yield demo, Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_public_endpoints_are_exactly_the_engine_actions(services):
    def public(demo: gr.Blocks) -> set[str]:
        return {d["api_name"] for d in dependencies(demo) if d["api_visibility"] == "public"}

    assert public(build_app(services)) == set(API_NAMES) | set(TRAINING_API_NAMES)
    assert public(build_app(services, public=True)) == set(API_NAMES)  # no Training tab in public mode


def test_model_bound_actions_share_one_gpu_slot(services):
    functions = {fn.api_name: fn for fn in build_app(services).fns.values()}
    gpu = {name for name, fn in functions.items() if fn.concurrency_id == "gpu"}
    # besides the API: the Resume buttons of the Studio and History tabs (private listeners of resume)
    assert gpu >= GPU_BOUND and {name.rsplit("_", 1)[0] for name in gpu - GPU_BOUND} == {"resume"}
    assert all(functions[name].concurrency_limit == 1 for name in gpu)


def test_public_mode_hides_backend_settings_and_server_folders(services):
    def labels(demo: gr.Blocks) -> set[str]:
        return {c.get("props", {}).get("label") for c in demo.get_config_file()["components"]
                if c.get("props", {}).get("visible", True) is not False}

    assert {"Backend settings", "…or a folder on the server"} <= labels(build_app(services))
    assert not {"Backend settings", "…or a folder on the server"} & labels(build_app(services, public=True))


def test_stop_stores_the_session_as_cancelled(served, services):
    _, client = served
    job = client.submit("t2i", "a red square", None, 10, 1, 0, "fixed", "critic", 4, 4, 4, 4, 0, False,
                        api_name="/refine")
    deadline = time.monotonic() + 30
    while not any(out[2] for out in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    while services.store.search_sessions()[0]["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    session = services.store.search_sessions()[0]
    assert (session["status"], session["stop_reason"]) == ("cancelled", "cancelled")
    assert services.store.rounds(session["id"])[-1]["status"] in ("cancelled", "done")


def test_mcp_tools_are_named_after_the_api(services):
    """``--mcp`` serves every action as an MCP tool of the same name (needs ``gradio[mcp]``)."""
    import httpx

    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, mcp_server=True, **LAUNCH_OPTIONS)
    try:
        tools = httpx.get(f"http://127.0.0.1:{port}/gradio_api/mcp/schema", timeout=30).json()
    finally:
        demo.close()
    assert {tool["name"] for tool in tools} == set(API_NAMES) | set(TRAINING_API_NAMES)
    refine = next(tool for tool in tools if tool["name"] == "refine")
    assert "Generate-Critique-Refine" in refine["description"]
    required = {tool["name"]: set(tool["inputSchema"].get("required", [])) for tool in tools}
    # text to image needs no source image; settings and filters have defaults
    assert required["refine"] == required["generate_pair"] == {"prompt"}
    assert required["resume"] == {"session_id"} and required["history_search"] == set()


def test_public_export_leaves_out_backend_settings(services):
    import json
    import zipfile

    demo = build_app(services, public=True)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        session_id = client.predict("t2i", "a red square", None, 1, 1, 0, "fixed", "critic", 3.5, 3.5, 3.5, 3.5, 1,
                                    False, api_name="/refine")[0]
        archive = zipfile.ZipFile(client.predict(session_id, api_name="/export_session"))
    finally:
        demo.close()
    session = json.loads(archive.read("session.json"))["session"]
    assert session["critic_name"] == "scripted-critic" and "critic" not in session and "generator" not in session


def test_an_engine_error_mid_session_leaves_the_stored_failed_session_on_screen(tmp_path):
    from gradio_client.exceptions import AppError

    from models.errors import BackendUnavailableError

    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]),
                             SquaresGenerator(crash_on_call=2, crash=BackendUnavailableError))
    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        job = client.submit("t2i", "a red square", None, 3, 1, 0, "fixed", "critic", 4, 4, 4, 4, 0, False,
                            api_name="/refine")
        with pytest.raises(AppError, match="simulated crash"):
            job.result()
        session_id, status, latest, _, _, timeline, _ = job.outputs()[-1]
    finally:
        demo.close()
    assert status.startswith("**Failed** — BackendUnavailableError: simulated crash.") and "**Resume**" in status
    assert latest and "Round 2</b> · interrupted" in timeline and "status <b>failed</b>" in timeline
    assert services.store.get_session(session_id)["status"] == "failed"
    assert [r["status"] for r in services.store.rounds(session_id)] == ["done", "interrupted"]  # none left running


def test_a_full_queue_of_refines_does_not_refuse_store_only_actions(services):
    import httpx

    from studio.ui.limits import Limits

    demo = build_app(services, limits=Limits(queue_size=2))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit("t2i", f"a red square {i}", None, 10, 1, 0, "fixed", "critic", 4, 4, 4, 4, 0, False,
                              api_name="/refine") for i in range(4)]
        deadline = time.monotonic() + 90  # a busy machine may take a while to submit four
        while not any("model queue is full" in str(job.exception() or "") for job in jobs if job.done()):
            assert time.monotonic() < deadline, ("no refine was turned away",
                                                 [(job.status().code, job.done() and job.exception()) for job in jobs])
            time.sleep(0.1)
        refused = next(str(job.exception()) for job in jobs if job.done() and job.exception())
        assert "2 requests are waiting" in refused and "--queue-size" in refused  # names the limit and the setting
        started = time.monotonic()  # the page's (and a plain HTTP client's) route: no queue to be full
        answer = httpx.post(f"http://127.0.0.1:{port}/gradio_api/run/history_search",
                            json={"data": ["red square", "", "", "", "", ""]}, timeout=30)
        assert answer.status_code == 200 and time.monotonic() - started < 5
        assert "a red square" in str(answer.json()["data"])
        other = Client(f"http://127.0.0.1:{port}/", verbose=False)
        started = time.monotonic()  # an API client queues every call: store-only ones have a slot of their own
        found = other.predict("red square", "", "", "", "", "", api_name="/history_search")
        assert "a red square" in str(found["data"]) and time.monotonic() - started < 10
        for job in jobs:
            job.cancel()
    finally:
        demo.close()


def test_optional_inputs_can_be_left_out_of_an_api_call(served, services):
    _, client = served
    session_id = client.predict("t2i", "a red square", api_name="/refine")[0]  # no source image, default settings
    assert services.store.get_session(session_id)["settings"]["max_rounds"] == 3
    found = client.predict(api_name="/history_search")  # no filter: the latest sessions
    assert session_id in str(found["data"])


def test_examples_come_from_the_loaded_world(services, tmp_path):
    from models.shapes.critic_shapes import ShapesCritic
    from studio import grammar
    from studio.services import Services

    def examples(demo: gr.Blocks) -> list[list]:
        found = [c for c in demo.get_config_file()["components"]
                 if c.get("props", {}).get("elem_id") == "studio-examples"]
        return found[0]["props"]["samples"] if found else []

    general = examples(build_app(services))  # a critic that reads any text: general prompts
    assert [row[1] for row in general] == list(grammar.GENERAL_EXAMPLES)
    shapes = Services(store=services.store, critic=ShapesCritic(), t2i_generator=services.t2i_generator,
                      edit_generator=services.t2i_generator)
    rows = examples(build_app(shapes))
    assert [row[1] for row in rows] == grammar.example_prompts() + [i for _, i in grammar.example_edits()]
    assert examples(build_app(Services(store=services.store, critic=ShapesCritic()))) == []  # nothing to generate with
