"""Public mode through ``gradio_client`` against ``python app.py --public`` in a subprocess: each
visitor (here: each API client) sees, opens, exports, resumes and votes on only their own work,
unless the operator shares the gallery (then others' sessions are read-only); the limits refuse
big or too many requests at submission, naming their setting; exports and errors carry no server
paths.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zipfile
from typing import Iterator

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError

from tests.openai_stub import OpenAIStub
from tests.test_app_api import refine_args
from tests.ui_helpers import ROOT, RunningApp, running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def public_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("public") / "store", "--public", "--max-visitor-requests", "1")


@pytest.fixture(scope="module")
def held_critic_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningApp, OpenAIStub]]:
    """A public app whose critic is a local OpenAI stub behind an open gate: a test that clears
    ``stub.gate`` holds every request at its critique until it sets the gate again."""
    with OpenAIStub(gate=threading.Event()) as stub:
        stub.gate.set()
        yield from ((app, stub) for app in running_app(tmp_path_factory.mktemp("held") / "store", "--public",
                                                       "--max-visitor-requests", "1", "--critic-url", stub.url))


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("shared") / "store", "--public", "--shared-gallery")


def visitor(app: RunningApp) -> Client:
    """A new API client: a visitor of its own."""
    return Client(app.url, verbose=False)


def refine(client: Client, prompt: str, **kwargs) -> str:
    """Run a one-round session; return its id."""
    return client.predict(*refine_args(prompt, rounds=1, **kwargs), api_name="/refine")[0]


def listed(client: Client) -> set[str]:
    """The prompts of the sessions History lists for ``client`` (no filter)."""
    found = client.predict("", "", "", "", "", "", api_name="/history_search")
    column = found["headers"].index("prompt")
    return {row[column] for row in found["data"] if row[column]}


def judged(client: Client) -> str:
    """Generate a pair and judge it; return the judgement id."""
    image_a, image_b = client.predict("t2i", "a green triangle", None, 1, 2, "", api_name="/generate_pair")
    return client.predict("t2i", "a green triangle", None, handle_file(image_a), handle_file(image_b), True,
                          api_name="/judge")[2]


def vote_rows(client: Client) -> list[dict]:
    archive = zipfile.ZipFile(client.predict("jsonl", api_name="/export_votes"))
    return [json.loads(line) for line in archive.read("votes.jsonl").decode().splitlines()]


def stored_visitors(app: RunningApp, table: str) -> list[str | None]:
    db = sqlite3.connect(f"file:{app.store / 'studio.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute(f"select visitor from {table} order by rowid")]
    finally:
        db.close()


def test_each_visitor_finds_opens_and_exports_only_their_own_sessions(public_app):
    alice, bob = visitor(public_app), visitor(public_app)
    mine = refine(alice, "a green triangle")
    refine(bob, "a blue circle")
    assert listed(alice) == {"a green triangle"} and listed(bob) == {"a blue circle"}
    assert len(set(stored_visitors(public_app, "sessions"))) == 2
    for endpoint in ("/history_open", "/session_json", "/export_session"):  # a crafted id: as if it did not exist
        with pytest.raises(AppError, match=f"No session with id '{mine}'"):
            bob.predict(mine, api_name=endpoint)
    with pytest.raises(AppError, match=f"No session with id '{mine}'"):
        bob.predict(mine, "", api_name="/resume")
    assert alice.predict(mine, api_name="/session_json")["id"] == mine


def test_a_visitor_votes_only_on_their_own_judgements_and_exports_only_their_votes(public_app):
    alice, bob = visitor(public_app), visitor(public_app)
    judgement = judged(alice)
    with pytest.raises(AppError, match=f"No judgement with id {judgement}"):
        bob.predict(judgement, "B", "t2i", "x", None, None, None, api_name="/vote")
    assert "recorded" in alice.predict(judgement, "A", "t2i", "x", None, None, None, api_name="/vote")
    assert [row["judgement_id"] for row in vote_rows(alice)] == [int(judgement)]
    assert vote_rows(bob) == []


def test_public_exports_carry_no_server_paths_or_visitors(public_app):
    alice = visitor(public_app)
    session_id = refine(alice, "two red circles")
    judgement = judged(alice)
    alice.predict(judgement, "tie", "t2i", "x", None, None, None, api_name="/vote")
    archive = zipfile.ZipFile(alice.predict(session_id, api_name="/export_session"))
    exported = archive.read("session.json").decode()
    record = json.dumps(alice.predict(session_id, api_name="/session_json"))
    votes = json.dumps(vote_rows(alice))
    for text in (exported, record, votes):
        assert str(ROOT) not in text and str(public_app.store) not in text and "/tmp/" not in text
    session = json.loads(exported)["session"]
    assert not {"owner", "visitor", "generator", "critic"} & set(session)
    assert session["generator_name"] == "diffusers:shapes-t2i"  # the name stays, its folder goes


def test_errors_in_public_mode_carry_no_server_paths(public_app, tmp_path):
    alice = visitor(public_app)
    with pytest.raises(AppError) as refused:  # a folder typed as B's model: not in a shared studio
        alice.predict("t2i", "a red circle", None, 1, 2, str(tmp_path), api_name="/generate_pair")
    assert str(tmp_path) not in str(refused.value) and "Model for B" in str(refused.value)
    with pytest.raises(AppError, match="No session with id") as missing:
        alice.predict("../../etc/passwd", api_name="/history_open")
    assert str(public_app.store) not in str(missing.value)


def test_a_request_over_the_image_limit_is_refused_at_submission_naming_the_setting(public_app):
    alice = visitor(public_app)
    before = stored_visitors(public_app, "sessions")
    args = list(refine_args("a green triangle", rounds=10))
    args[4] = 8  # images per round
    with pytest.raises(ValidationError, match=r"at most 12 images per session.*10 × 8 = 80.*--max-session-images"):
        alice.predict(*args, api_name="/refine")
    assert stored_visitors(public_app, "sessions") == before


def test_a_visitor_over_their_request_limit_is_refused_and_others_are_not(held_critic_app):
    app, stub = held_critic_app
    alice, bob = visitor(app), visitor(app)
    stub.gate.clear()  # the critic now holds every critique until the test releases it
    first = alice.submit(*refine_args("three purple stars and two yellow diamonds", rounds=1), api_name="/refine")
    deadline = time.monotonic() + 300  # a fresh app loads its models first
    while stub.in_flight == 0:  # alice's first request holds the model, waiting on its critique
        assert time.monotonic() < deadline and not first.done(), first.status()
        time.sleep(0.05)
    refused = r"already have 1 request.*1 at a time per visitor.*--max-visitor-requests"
    second = alice.submit(*refine_args("a blue circle", rounds=1), api_name="/refine")
    with pytest.raises(ValidationError, match=refused):  # at submission, not after a wait (that would time out)
        second.result(timeout=60)
    waiting = bob.submit(*refine_args("a blue circle", rounds=1), api_name="/refine")
    assert stub.in_flight == 1 and not first.done()  # refused while the first was still running
    stub.gate.set()
    assert first.result(timeout=300)[0]
    assert waiting.result(timeout=300)[0]  # another visitor waited their turn and was served
    assert refine(alice, "a blue circle")  # the first one done: alice may ask again


def test_the_shared_gallery_shows_everyones_sessions_but_only_their_visitor_continues_one(shared_app):
    alice, bob = visitor(shared_app), visitor(shared_app)
    theirs = refine(alice, "three purple stars", rewriter="human", threshold=4.0)
    assert "three purple stars" in listed(bob)
    assert bob.predict(theirs, api_name="/session_json")["id"] == theirs
    assert zipfile.ZipFile(bob.predict(theirs, api_name="/export_session")).read("session.json")
    with pytest.raises(AppError, match="started by another visitor.*not continue it"):
        bob.predict(theirs, "three purple stars", api_name="/resume")
    judgement = judged(alice)
    with pytest.raises(AppError, match=f"No judgement with id {judgement}"):  # a vote is its visitor's to cast
        bob.predict(judgement, "B", "t2i", "x", None, None, None, api_name="/vote")
    assert alice.predict(theirs, "three purple stars", api_name="/resume")[0] == theirs
