"""``build_app`` over fake backends, in-process: the API surface, public mode, the shared GPU queue,
and Stop (a cancelled stream is stored as a cancelled session)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterator

import gradio as gr
import pytest
from gradio_client import Client

from models.shapes.critic_shapes import ShapesCritic
from studio.services import Services
from studio.store import SessionStore
from studio.ui.agents import AGENT_TOOLS
from studio.ui.app import API_NAMES, LAUNCH_OPTIONS, TRAINING_API_NAMES, build_app
from tests.studio_fakes import ScriptedCritic, SquaresGenerator, make_services, poor
from tests.ui_helpers import free_port

GPU_BOUND = {"refine", "resume", "judge", "generate_pair", "diagnose", "diagnose_batch", "release_models", "use_critic",
             "load_lora"}
GPU_BOUND |= {f"agent_{name}" for name in ("refine", "resume", "judge", "generate_pair", "diagnose")}


def dependencies(demo: gr.Blocks) -> list[dict]:
    return demo.get_config_file()["dependencies"]


@pytest.fixture
def services(tmp_path):
    return make_services(tmp_path, ScriptedCritic([poor(2.0)]), SquaresGenerator(delay_s=0.3))


@contextlib.contextmanager
def launched(services: Services, **options: Any) -> Iterator[tuple[gr.Blocks, Client]]:
    """The app over ``services`` (``options`` as for ``build_app``), served on a free port, with a client."""
    demo = build_app(services, **options)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        yield demo, Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture
def served(services) -> Iterator[tuple[gr.Blocks, Client]]:
    with launched(services) as app:
        yield app


class HoldsUntilStopped(SquaresGenerator):
    """Draws round 1 at once, then holds each later call for up to 2 s, ending the hold early when
    the engine's stop flag is set: ten rounds take 18 s or more, so a cancel sent after round 1
    reaches the server before the session could end on its own, however slow the machine."""

    def generate(self, request, should_stop=None):  # type: ignore[override]
        if self.requests:
            deadline = time.monotonic() + 2
            while not should_stop() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().generate(request)


def test_public_endpoints_are_exactly_the_engine_actions(services):
    def public(demo: gr.Blocks) -> set[str]:
        return {d["api_name"] for d in dependencies(demo) if d["api_visibility"] == "public"}

    agents = {f"agent_{name}" for name in AGENT_TOOLS}  # the MCP tools (tests/test_agents_mcp.py)
    assert public(build_app(services)) == set(API_NAMES) | set(TRAINING_API_NAMES) | agents
    # public mode: no Training tab, and no agent tools (an MCP call carries no visitor identity)
    assert public(build_app(services, public=True)) == set(API_NAMES)


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


def test_stop_stores_the_session_as_cancelled(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]), HoldsUntilStopped())
    with launched(services) as (_, client):
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
    rounds = [r["status"] for r in services.store.rounds(session["id"])]
    assert rounds[0] == "done" and rounds[-1] == "cancelled" and len(rounds) < 10


def test_a_stopped_stream_ends_with_its_last_status_whatever_the_stop_button_wrote(tmp_path):
    """The Stop button answers "Stopping…" outside the stream, so its answer can reach the browser
    after the stream's last status; a follow-up of every streaming action writes the stream's last
    status line again once the stream has ended."""
    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]), HoldsUntilStopped())
    functions = list(build_app(services).fns.values())
    status = next(fn.outputs[1] for fn in functions if fn.api_name == "refine")
    streams = {fn._id for fn in functions if fn.concurrency_id == "gpu" and status in fn.outputs}  # Studio and History
    follow_ups = [fn for fn in functions if fn.name == "last_status"]
    assert streams and {fn.trigger_after for fn in follow_ups} == streams
    assert not any(fn.trigger_only_on_success for fn in follow_ups)  # also after a failed or stopped stream
    refine = next(fn.fn for fn in functions if fn.api_name == "refine")
    stop = next(fn.fn for fn in functions if fn.name == "request_stop")
    request = gr.Request(session_hash="tab-1")
    stream = refine("t2i", "a red square", None, 10, 1, 0, "fixed", "critic", 4, 4, 4, 4, 0, False, request=request)
    session_id = next(stream)[0]
    assert stop(request=request) == "Stopping after the current step…"
    last = [outputs[1] for outputs in stream][-1]
    assert "Stopped on request" in last and services.store.get_session(session_id)["status"] == "cancelled"
    assert follow_ups[0].fn(request=request) == last
    skip = type(gr.skip())
    assert isinstance(follow_ups[0].fn(request=request), skip)  # written once
    assert isinstance(follow_ups[0].fn(request=gr.Request(session_hash="tab-2")), skip)  # another tab's stream


def test_public_export_leaves_out_backend_settings(services):
    import json
    import zipfile

    with launched(services, public=True) as (_, client):
        session_id = client.predict("t2i", "a red square", None, 1, 1, 0, "fixed", "critic", 3.5, 3.5, 3.5, 3.5, 1,
                                    False, api_name="/refine")[0]
        archive = zipfile.ZipFile(client.predict(session_id, api_name="/export_session"))
    session = json.loads(archive.read("session.json"))["session"]
    assert session["critic_name"] == "scripted-critic" and "critic" not in session and "generator" not in session


def test_an_engine_error_mid_session_leaves_the_stored_failed_session_on_screen(tmp_path):
    from gradio_client.exceptions import AppError

    from models.errors import BackendUnavailableError

    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]),
                             SquaresGenerator(crash_on_call=2, crash=BackendUnavailableError))
    with launched(services) as (_, client):
        job = client.submit("t2i", "a red square", None, 3, 1, 0, "fixed", "critic", 4, 4, 4, 4, 0, False,
                            api_name="/refine")
        with pytest.raises(AppError, match="simulated crash"):
            job.result()
        session_id, status, latest, _, _, timeline, _ = job.outputs()[-1]
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


@pytest.mark.parametrize(("on_repeat", "max_tries", "rounds"), [("stop", 3, 1), ("vary_seed", 2, 2), ("vary_seed", 0, 4)])
def test_refine_takes_the_repeat_policy_and_tries_per_prompt(tmp_path, on_repeat, max_tries, rounds):
    """A critic that proposes no new prompt: the same prompt comes back every round, so the
    session ends 'exhausted' when ``on_repeat`` says stop or the prompt has used its tries."""
    services = make_services(tmp_path, ScriptedCritic([poor(2.0)], refine=False))
    with launched(services) as (_, client):
        session_id = client.predict(task="t2i", prompt="a red square", max_rounds=4, plateau=0, on_repeat=on_repeat,
                                    max_tries_per_prompt=max_tries, api_name="/refine")[0]
    session = services.store.get_session(session_id)
    assert session["settings"]["on_repeat"] == on_repeat and session["settings"]["max_tries_per_prompt"] == max_tries
    assert session["stop_reason"] == ("max_rounds" if max_tries == 0 else "exhausted")
    assert len(services.store.rounds(session_id)) == rounds


class RecordingShapesCritic(ShapesCritic):
    """The shapes critic (it expands a request), remembering the prompt of every critique request."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    def critique(self, requests):
        self.prompts += [r.prompt for r in requests]
        return super().critique(requests)


@pytest.mark.parametrize("api_name", ["/refine", "/agent_refine"])
@pytest.mark.parametrize(("first_prompt", "judge_against"), [("expanded", "request"), ("request", "round")])
def test_refine_takes_the_first_prompt_and_what_rounds_are_judged_against(tmp_path, api_name, first_prompt,
                                                                          judge_against):
    """Round 1 generates from the critic's expansion or the prompt as written, and the critic
    judges every round against the prompt as written or the round's own prompt."""
    critic, generator = RecordingShapesCritic(), SquaresGenerator()
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=critic, t2i_generator=generator)
    with launched(services) as (_, client):
        answer = client.predict(task="t2i", prompt="a red square", max_rounds=2, first_prompt=first_prompt,
                                judge_against=judge_against, api_name=api_name)
    session_id = answer[0] if api_name == "/refine" else json.loads(answer)["id"]
    session = services.store.get_session(session_id)
    assert session["settings"]["first_prompt"] == first_prompt and session["settings"]["judge_against"] == judge_against
    round_prompts = [r["prompt"] for r in services.store.rounds(session_id)]
    expansion = ShapesCritic.expand_request("t2i", "a red square", 0)
    assert round_prompts[0] == (expansion if first_prompt == "expanded" else "a red square")
    assert expansion != "a red square"
    assert critic.prompts == (["a red square"] * len(round_prompts) if judge_against == "request" else round_prompts)


def test_agent_refine_refuses_an_unknown_first_prompt_choice(served, services):
    _, client = served
    with pytest.raises(Exception, match="first_prompt"):
        client.predict(prompt="a red square", first_prompt="later", api_name="/agent_refine")
    assert services.store.search_sessions() == []


def test_history_search_says_how_many_sessions_match_beyond_the_200_shown(services):
    for i in range(203):
        services.store.create_session(task="t2i", prompt=f"a red square {i}", settings={})
    services.store.create_session(task="t2i", prompt="a blue circle", settings={})
    functions = {fn.api_name: fn.fn for fn in build_app(services).fns.values()}
    search = functions["history_search"]  # the API: the table; then the page's title of the same table
    title = next(fn for fn in functions.values() if fn.__name__ == "results_title")
    assert len(search(text="red square")) == 200
    assert title("red square", "", "", "", "", "").label.startswith("Sessions: the newest 200 of 203 that match")
    assert title("blue", "", "", "", "", "").label.startswith("Sessions: 1 match")
    assert title("green", "", "", "", "", "").label == "Sessions: none match"


def test_temporary_files_older_than_the_age_are_deleted(tmp_path, monkeypatch):
    """Gradio's cache (copies of every output and upload) and our export folders do not grow
    without bound over a long run: files older than ``temp_max_age_s`` go."""
    from studio.ui import scratch

    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    monkeypatch.setattr(scratch, "SCRATCH_ROOT", tmp_path / "scratch")
    monkeypatch.setattr(scratch, "SCRATCH_MAX_AGE_S", 0)

    def files(folder) -> list:
        return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []

    services = make_services(tmp_path, ScriptedCritic([poor(2.0)]))
    demo = build_app(services, temp_max_age_s=2)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **LAUNCH_OPTIONS)
    try:
        # (no downloads: Gradio's file route allows the cache folder it read at import, not this one)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        page = set(files(cache))  # what the page itself shows (examples' images): kept
        session_id = client.predict("t2i", "a red square", None, 2, 2, api_name="/refine")[0]
        client.predict(session_id, api_name="/export_session")
        assert set(files(cache)) > page and files(scratch.SCRATCH_ROOT)
        time.sleep(4.5)  # past the age, and a sweep (every 2 s) after it
        assert set(files(cache)) <= page
        client.predict(session_id, api_name="/export_session")  # a new export removes the old one's folder
        assert len(list(scratch.SCRATCH_ROOT.iterdir())) == 1
    finally:
        demo.close()
