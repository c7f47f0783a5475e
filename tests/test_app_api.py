"""``gradio_client`` against ``python app.py`` in a subprocess: every ``api_name``, and bad input
(empty prompt, corrupt upload, 50-megapixel upload, garbage critic output, unreachable critic),
each answered with a readable message while the store stays consistent.

The unreachable critic is reported at the call, not at start-up: the app starts and serves, and
the first action that needs the critic says which server it could not reach.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from models.shapes import world
from studio.ui.app import API_NAMES
from tests.openai_stub import OpenAIStub
from tests.ui_helpers import RunningApp, running_app

pytestmark = pytest.mark.slow

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app as a user starts it with no flags: the shapes world."""
    yield from running_app(tmp_path_factory.mktemp("api") / "store")


@pytest.fixture(scope="module")
def client(app: RunningApp) -> Client:
    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    Image.new("RGB", (64, 64), (240, 240, 240)).save(folder / "plain.png")
    Image.new("RGB", (64, 64), (215, 40, 40)).save(folder / "red.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not image data" * 40)
    Image.new("RGB", (7100, 7100), (30, 90, 200)).save(folder / "huge.png")  # 50 megapixels, ~150 KB
    Image.effect_noise((1024, 1024), 64).convert("RGB").save(folder / "noise.png")  # ~2 MB
    Image.new("1", (15000, 15000)).save(folder / "bomb.png")  # 225 megapixels in a few KB
    return {p.stem: p for p in folder.iterdir()}


@contextlib.contextmanager
def database(app: RunningApp) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the app's store, closed afterwards."""
    db = sqlite3.connect(f"file:{app.store / 'studio.db'}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def counts(app: RunningApp) -> dict[str, Any]:
    """Rows per table and sessions per status, read straight from the app's database."""
    with database(app) as db:
        tables = {t: db.execute(f"select count(*) from {t}").fetchone()[0]
                  for t in ("sessions", "rounds", "images", "critiques", "judgements", "votes")}
        tables["statuses"] = dict(db.execute("select status, count(*) from sessions group by status").fetchall())
    return tables


def session_row(app: RunningApp, session_id: str) -> dict[str, Any]:
    with database(app) as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("select * from sessions where id = ?", [session_id]).fetchone())


def refine_args(prompt: str, *, rounds: int = 2, rewriter: str = "critic", threshold: float = 3.5) -> tuple:
    """The ``refine`` endpoint's inputs, in order."""
    return ("t2i", prompt, None, rounds, 1, 0, "fixed", rewriter, threshold, threshold, threshold, threshold, 1, False)


def test_every_engine_action_has_an_api_name(client):
    assert set(API_NAMES) <= {name.lstrip("/") for name in client.view_api(return_format="dict")["named_endpoints"]}


def test_refine_streams_an_image_then_stops_and_stores_the_session(app, client):
    job = client.submit(*refine_args(PROMPT), api_name="/refine")
    outputs = list(job)
    session_id, status, latest = outputs[-1][0], outputs[-1][1], outputs[-1][2]
    assert any(out[2] for out in outputs[:-1]), "an image was streamed before the session stopped"
    assert status.startswith("**Stopped") and Path(latest).is_file()
    row = session_row(app, session_id)
    assert row["status"] == "finished" and row["best_image_id"] is not None


def test_refine_edit_slides_from_the_source_to_the_best_edit(app, client, tmp_path):
    scene = world.random_scene(random.Random(3), word_prob=0)
    edit = world.random_edit(scene, random.Random(4))
    source = tmp_path / "source.png"
    world.render(scene).save(source)
    outputs = client.predict("edit", edit.instruction, handle_file(str(source)), 1, 1, 0, "fixed", "critic",
                             3.5, 3.5, 3.5, 3.5, 1, False, api_name="/refine")
    before, after = outputs[3]
    assert Image.open(before).convert("RGB").tobytes() == Image.open(source).convert("RGB").tobytes()
    assert session_row(app, outputs[0])["task"] == "edit" and Path(after).is_file()


def test_resume_continues_an_awaiting_session_with_the_edited_prompt(app, client):
    first = client.predict(*refine_args("three purple stars and two yellow diamonds", rewriter="human",
                                        threshold=4.0), api_name="/refine")
    session_id = first[0]
    assert "Waiting for you" in first[1] or "Stopped" in first[1]
    assert session_row(app, session_id)["status"] == "awaiting"
    final = client.predict(session_id, "three purple stars", api_name="/resume")
    assert final[0] == session_id
    with database(app) as db:
        rows = db.execute("select prompt from rounds where session_id = ? order by idx", [session_id])
        prompts = [r[0] for r in rows]
    # round 1 drew the critic's expansion of the request (the loop's default first prompt)
    asked = sorted((o.shape, o.colour) for o in world.parse_prompt("three purple stars and two yellow diamonds").objects)
    assert sorted((o.shape, o.colour) for o in world.parse_prompt(prompts[0]).objects) == asked
    assert all(o.position for o in world.parse_prompt(prompts[0]).objects)
    assert prompts[1] == "three purple stars"


def test_generate_judge_and_vote_record_a_preference_pair(app, client):
    image_a, image_b = client.predict("t2i", PROMPT, None, 1, 2, "", api_name="/generate_pair")
    verdict, table, judgement_id = client.predict("t2i", PROMPT, None, handle_file(image_a), handle_file(image_b), True,
                                                  api_name="/judge")
    assert verdict.startswith("**Verdict") and "Position-consistent" in verdict
    assert [row[0] for row in table["data"]][0] == "Text Faithfulness"
    before = counts(app)["votes"]
    message = client.predict(judgement_id, "both_bad", "t2i", PROMPT, None, None, None, api_name="/vote")
    assert "recorded" in message and "Both bad" in message
    assert counts(app)["votes"] == before + 1


def test_diagnose_returns_scores_summary_and_refined_request(client, files):
    chart, report, refined, raw = client.predict("t2i", PROMPT, None, handle_file(files["red"]), api_name="/diagnose")
    assert "**Score:**" in report and "Text Faithfulness" in report
    assert refined and "Refined Request" in raw
    assert {row[0] for row in chart["data"]} >= {"Text Faithfulness", "Physical and Visual Quality"}


def test_diagnose_batch_returns_a_table_and_a_csv(client, files):
    table, csv_path = client.predict("t2i", [handle_file(files["red"]), handle_file(files["plain"])], "", PROMPT,
                                     api_name="/diagnose_batch")
    assert sorted(row[0] for row in table["data"]) == ["plain.png", "red.png"]
    assert Path(csv_path).read_text().startswith("name,task,prompt,ok,score")


def test_history_search_open_and_export(app, client):
    client.predict(*refine_args("a green triangle", rounds=1), api_name="/refine")
    found = client.predict("green triangle", "", "", "", "", "", api_name="/history_search")
    column = {name: i for i, name in enumerate(found["headers"])}
    assert [row[column["prompt"]] for row in found["data"]] == ["a green triangle"]
    assert found["data"][0][column["image"]].startswith("![best image](data:image/png;base64,")
    session_id = found["data"][0][column["id"]]
    none = client.predict("green triangle", "", "", "", "", "physical_quality > 4", api_name="/history_search")
    assert none["data"] == [] or none["data"] == [[""] * len(found["headers"])]
    best, _, _, timeline = client.predict(session_id, api_name="/history_open")
    assert Path(best).is_file() and "Round 1" in timeline and "best so far" in timeline
    record = client.predict(session_id, api_name="/session_json")  # for agents: JSON, images by id
    assert record["id"] == session_id and record["rounds"][0]["candidates"][0]["image_id"] == record["best"]["image_id"]
    assert "base64" not in json.dumps(record) and str(app.store) not in json.dumps(record)
    archive = zipfile.ZipFile(client.predict(session_id, api_name="/export_session"))
    exported = json.loads(archive.read("session.json"))
    assert exported["session"]["id"] == session_id
    votes = zipfile.ZipFile(client.predict("jsonl", api_name="/export_votes"))
    rows = [json.loads(line) for line in votes.read("votes.jsonl").decode().splitlines()]
    assert {"prompt", "left_image", "right_image", "vote_type"} <= set(rows[0])


@pytest.mark.parametrize("endpoint", ["refine", "diagnose", "judge"])
def test_empty_prompt_is_refused_and_nothing_is_stored(app, client, files, endpoint):
    before = counts(app)
    args = {
        "refine": refine_args("   "),
        "diagnose": ("t2i", "", None, handle_file(files["red"])),
        "judge": ("t2i", "", None, handle_file(files["red"]), handle_file(files["plain"]), True),
    }[endpoint]
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict(*args, api_name=f"/{endpoint}")
    assert counts(app) == before


@pytest.mark.parametrize("name, message", [("corrupt", "not an image|corrupt or truncated"), ("huge", "megapixels")])
def test_unusable_upload_is_refused_and_nothing_is_stored(app, client, files, name, message):
    before = counts(app)
    with pytest.raises(AppError, match=message):
        client.predict("t2i", PROMPT, None, handle_file(files[name]), api_name="/diagnose")
    assert counts(app) == before


def test_unknown_session_is_a_readable_error(app, client):
    with pytest.raises(AppError, match="No session with id") as refused:
        client.predict("does-not-exist", api_name="/history_open")
    assert str(app.store) not in str(refused.value)  # no server path in the message


@pytest.mark.parametrize("endpoint, message", [
    ("refine_seed", "Seed: 1.18059e\\+21 is not a seed; use a whole number from 0 to 4294967295"),
    ("refine_unreadable", "The shapes world cannot read this prompt"),
    ("vote", "'abc' is not a judgement id"),
    ("generate_pair", "Seed B: 1.09951e\\+12 is not a seed"),
    ("diagnose_bomb", "too large to open safely"),
])
def test_bad_values_are_refused_with_a_clear_message(app, client, files, endpoint, message):
    before = counts(app)
    call = {
        "refine_seed": lambda: client.predict(*refine_args(PROMPT)[:5], 2**70, *refine_args(PROMPT)[6:],
                                              api_name="/refine"),
        "refine_unreadable": lambda: client.predict(*refine_args("a cat playing the piano"), api_name="/refine"),
        "vote": lambda: client.predict("abc", "A", "t2i", PROMPT, None, None, None, api_name="/vote"),
        "generate_pair": lambda: client.predict("t2i", PROMPT, None, 1, 2**40, "", api_name="/generate_pair"),
        "diagnose_bomb": lambda: client.predict("t2i", PROMPT, None, handle_file(files["bomb"]), api_name="/diagnose"),
    }[endpoint]
    with pytest.raises(AppError, match=message) as refused:
        call()
    assert "Something went wrong" not in str(refused.value)
    assert counts(app) == before


def test_readable_errors_leave_no_traceback_in_the_log(app):
    """Runs after the bad-input tests above: none of them was an unexpected error."""
    assert "Traceback" not in app.log_text()


def test_image_b_from_a_second_model(app, client, tmp_path):
    second = tmp_path / "second-t2i"
    second.symlink_to(Path(__file__).resolve().parents[1] / "assets" / "shapes-t2i")  # another folder name
    image_a, image_b = client.predict("t2i", PROMPT, None, 3, 3, str(second), api_name="/generate_pair")
    assert Image.open(image_b).size == Image.open(image_a).size
    with database(app) as db:
        b_settings, a_settings = [json.loads(row[0]) for row in db.execute(
            "select settings from images where role = 'judge' order by id desc limit 2")]
    assert b_settings["model"] == str(second)
    assert a_settings["model"].endswith("shapes-t2i") and a_settings["model"] != str(second)
    with pytest.raises(AppError, match="not a diffusers pipeline folder"):
        client.predict("t2i", PROMPT, None, 1, 2, str(tmp_path), api_name="/generate_pair")


# -- a critic behind an OpenAI-compatible endpoint, in public mode ----------------------------------


@pytest.fixture(scope="module")
def garbage_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(reply=lambda body: "I like this picture a lot!") as stub:
        yield stub


@pytest.fixture(scope="module")
def endpoint_app(tmp_path_factory, garbage_stub) -> Iterator[RunningApp]:
    yield from running_app(tmp_path_factory.mktemp("endpoint") / "store", "--critic-url", garbage_stub.url,
                           "--t2i", "none", "--edit", "none", "--public", "--max-upload-mb", "1")


def test_unparseable_critic_output_is_shown_and_stored_as_a_failure(endpoint_app, files):
    client = Client(endpoint_app.url, verbose=False)
    chart, report, refined, raw = client.predict("t2i", PROMPT, None, handle_file(files["red"]), api_name="/diagnose")
    assert report.startswith("**The critique failed:**") and "did not parse" in report
    assert raw == "I like this picture a lot!" and refined == ""
    with database(endpoint_app) as db:
        stored = db.execute("select ok, raw, score from critiques").fetchall()
    assert stored == [(0, "I like this picture a lot!", None)]


def test_public_mode_hides_endpoints_and_limits_uploads(endpoint_app, garbage_stub, files):
    import httpx

    page_config = httpx.get(endpoint_app.url + "config", timeout=10).text
    assert garbage_stub.url not in page_config and "Backend settings" not in page_config
    client = Client(endpoint_app.url, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        client.predict("t2i", PROMPT, None, handle_file(files["noise"]), api_name="/diagnose")


def test_unreachable_critic_is_reported_at_the_call(endpoint_app, garbage_stub, files):
    garbage_stub.stop()
    client = Client(endpoint_app.url, verbose=False)
    before = counts(endpoint_app)
    chart, report, _, _ = client.predict("t2i", PROMPT, None, handle_file(files["red"]), api_name="/diagnose")
    assert report.startswith("**The critique failed:**") and garbage_stub.url.rsplit("/", 1)[0] in report
    after = counts(endpoint_app)
    assert after["critiques"] == before["critiques"] + 1 and after["statuses"] == before["statuses"]
