"""The SQLite session store: schema, WAL, threads, image files, search, exports, jobs."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading

import pyarrow.parquet as pq
import pytest
from PIL import Image

from models.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from models.types import CritiqueFailure
from studio.store import MIGRATIONS, ScoreFilter, SessionStore
from tests.studio_fakes import make_critique


@pytest.fixture
def store(tmp_path):
    opened = SessionStore(tmp_path / "studio.db")
    yield opened
    opened.close()


def red(size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), (255, 0, 0))


def session_with_best(store: SessionStore, prompt: str, scores: dict, **kwargs) -> str:
    sid = store.create_session(task="t2i", prompt=prompt, settings={}, **kwargs)
    image = store.save_image(red(), role="candidate", session_id=sid)
    cid = store.save_critique(make_critique("t2i", scores), task="t2i", prompt=prompt, image_id=image.id,
                              critic_name="critic", session_id=sid)
    store.update_session(sid, best_critique_id=cid, best_image_id=image.id)
    return sid


def test_store_creates_schema_once(tmp_path):
    first = SessionStore(tmp_path / "studio.db")
    applied = [m.name for m in MIGRATIONS.applied(first.db)]
    first.close()
    second = SessionStore(tmp_path / "studio.db")
    assert [m.name for m in MIGRATIONS.applied(second.db)] == applied == ["m001_initial", "m002_jobs", "m003_eval_rows",
                                                                      "m004_critique_missing", "m005_one_vote_per_judgement",
                                                                      "m006_visitors"]
    assert {"sessions", "rounds", "images", "critiques", "judgements", "votes", "notes", "jobs", "eval_rows"} <= set(
        second.db.table_names()
    )
    second.close()


def test_store_uses_wal(store):
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_store_gives_each_thread_its_own_connection(store):
    seen = {}

    def work(name: str) -> None:
        seen[name] = store.db
        store.create_session(task="t2i", prompt=f"from {name}", settings={})

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(db) for db in seen.values()} | {id(store.db)}) == 4
    assert len(store.search_sessions(text="from t")) == 3


def test_save_image_names_file_by_content_hash(store):
    first = store.save_image(red(), role="candidate")
    second = store.save_image(red(), role="judge")
    assert first.sha256 == second.sha256 and first.id != second.id
    assert first.path == store.image_dir / first.sha256[:2] / f"{first.sha256}.png"
    assert store.image_path(first.id) == first.path and first.path.is_file()
    assert store.load_image(second.id).getpixel((0, 0)) == (255, 0, 0)


def test_flush_waits_for_every_pending_image_file(store):
    saved = [store.save_image(Image.new("RGB", (256, 256), (i, 0, 0)), role="candidate") for i in range(8)]
    store.flush()
    assert all(s.path.is_file() for s in saved)
    assert not list(store.image_dir.rglob("*.part"))


def test_failed_image_write_is_raised_not_hidden(store, monkeypatch):
    def refuse(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr("studio.store.os.replace", refuse)
    saved = store.save_image(red(), role="candidate")
    with pytest.raises(OSError, match="No space left"):
        store.image_path(saved.id)


def test_image_bytes_never_go_into_tables(store):
    store.save_image(red(64), role="candidate")
    columns = {col.name: col.type for col in store.db["images"].columns}
    assert "BLOB" not in columns.values()


def test_reopen_marks_sessions_of_a_closed_store_interrupted(tmp_path):
    first = SessionStore(tmp_path / "studio.db")
    sid = first.create_session(task="t2i", prompt="a cat", settings={})
    first.close()
    reopened = SessionStore(tmp_path / "studio.db")
    assert reopened.get_session(sid)["status"] == "interrupted"
    reopened.close()


def test_second_store_leaves_live_sessions_running(tmp_path):
    first = SessionStore(tmp_path / "studio.db")
    sid = first.create_session(task="t2i", prompt="a cat", settings={})
    second = SessionStore(tmp_path / "studio.db")
    assert second.get_session(sid)["status"] == "running"
    assert second.session_is_live(sid)
    first.close()
    second.close()


def test_get_session_unknown_id_raises(store):
    with pytest.raises(NotFoundError, match="no-such"):
        store.get_session("no-such")


def test_critique_round_trip(store):
    image = store.save_image(red(), role="diagnose")
    critique = make_critique("t2i", {"text_faithfulness": 3.0, "physical_quality": 2.5})
    cid = store.save_critique(critique, task="t2i", prompt="p", image_id=image.id, critic_name="c", score=0.6)
    assert store.get_critique(cid) == critique
    row = store.db["critiques"].get(cid)
    assert (row["text_faithfulness"], row["physical_quality"], row["text_rendering"], row["score"]) == (3.0, 2.5, None, 0.6)


def test_critique_round_trip_keeps_missing_apart_from_na(store):
    image = store.save_image(red(), role="diagnose")
    critique = make_critique("t2i", {"text_faithfulness": 3.0, "physical_quality": 2.5})
    critique.missing = ["text_rendering"]  # cut off, not N/A
    cid = store.save_critique(critique, task="t2i", prompt="p", image_id=image.id, critic_name="c", score=0.6)
    assert store.get_critique(cid).is_missing("text_rendering")


def test_critique_failure_round_trip_keeps_raw_text(store):
    image = store.save_image(red(), role="diagnose")
    failure = CritiqueFailure(reason="no dimension parsed", raw="I like it", attempts=2)
    cid = store.save_critique(failure, task="t2i", prompt="p", image_id=image.id, critic_name="c")
    assert store.get_critique(cid) == failure
    assert store.db["critiques"].get(cid)["overall"] is None


def test_search_by_text_model_status_and_task(store):
    a = store.create_session(task="t2i", prompt="A Red Cube", settings={}, names={"generator": "flux-dev"})
    b = store.create_session(task="edit", prompt="make the cube blue", settings={}, names={"critic": "rr-8b"})
    store.update_session(b, status="finished")
    assert [r["id"] for r in store.search_sessions(text="red cube")] == [a]
    assert [r["id"] for r in store.search_sessions(model="flux")] == [a]
    assert [r["id"] for r in store.search_sessions(model="rr-8b")] == [b]
    assert [r["id"] for r in store.search_sessions(status="finished")] == [b]
    assert [r["id"] for r in store.search_sessions(task="edit")] == [b]
    assert {r["id"] for r in store.search_sessions(text="cube")} == {a, b}


def test_search_says_how_many_match_beyond_its_limit(store):
    for i in range(5):
        store.create_session(task="t2i", prompt=f"a cube {i}", settings={})
    store.create_session(task="t2i", prompt="a dog", settings={})
    hits = store.search_sessions(text="cube", limit=2)
    assert len(hits) == 2 and {r["matched"] for r in hits} == {5}


def test_search_by_date_range(store):
    sid = store.create_session(task="t2i", prompt="a cat", settings={})
    store.db["sessions"].update(sid, {"created": "2026-01-05T10:00:00.000+00:00"})
    store.create_session(task="t2i", prompt="a dog", settings={})
    hits = store.search_sessions(since="2026-01-01", until="2026-02-01")
    assert [r["id"] for r in hits] == [sid]


def test_search_by_score_thresholds_of_the_best_critique(store):
    bad_text = session_with_best(store, "a sign", {"text_faithfulness": 3.5, "physical_quality": 3.0, "text_rendering": 1.5})
    good_text = session_with_best(store, "a sign", {"text_faithfulness": 3.5, "physical_quality": 3.0, "text_rendering": 3.5})
    hits = store.search_sessions(scores=[ScoreFilter.parse("text_rendering < 2")])
    assert [r["id"] for r in hits] == [bad_text]
    hits = store.search_sessions(scores=[ScoreFilter.parse("text_rendering>=3"), ScoreFilter("physical_quality", ">", 2.5)])
    assert [r["id"] for r in hits] == [good_text]
    assert hits[0]["text_rendering"] == 3.5


@pytest.mark.parametrize("text", ["text_rendering ~ 2", "colour < 2", "text_rendering <"])
def test_score_filter_parse_rejects_bad_input(text):
    with pytest.raises(InvalidInputError):
        ScoreFilter.parse(text)


def test_session_timeline_groups_images_and_critiques_by_round(store):
    sid = store.create_session(task="t2i", prompt="a cat", settings={"max_rounds": 2})
    rid = store.start_round(sid, 1, "a cat", seed=0)
    image = store.save_image(red(), role="candidate", session_id=sid, round_id=rid, candidate=0)
    store.save_critique(make_critique("t2i", {"text_faithfulness": 2.0}), task="t2i", prompt="a cat",
                        image_id=image.id, critic_name="c", session_id=sid, round_id=rid)
    store.add_note(sid, "too dark")
    timeline = store.session_timeline(sid)
    assert timeline["session"]["settings"] == {"max_rounds": 2}
    (rnd,) = timeline["rounds"]
    assert rnd["candidates"][0]["critique"]["text_faithfulness"] == 2.0
    assert [n["text"] for n in timeline["notes"]] == ["too dark"]


def test_export_session_writes_images_and_json(store, tmp_path):
    sid = session_with_best(store, "a cat", {"text_faithfulness": 3.0})
    rid = store.start_round(sid, 1, "a cat", seed=0)
    store.save_image(Image.new("RGB", (8, 8), (0, 255, 0)), role="candidate", session_id=sid, round_id=rid)
    target = store.export_session(sid, tmp_path / "export")
    data = json.loads(target.read_text())
    assert data["session"]["prompt"] == "a cat"
    files = data["rounds"][0]["candidates"][0]["file"]
    assert (tmp_path / "export" / files).is_file()


def test_export_votes_uses_genai_bench_columns(store, tmp_path):
    a = store.save_image(red(), role="judge").id
    b = store.save_image(Image.new("RGB", (8, 8), (0, 0, 255)), role="judge").id
    src = store.save_image(Image.new("RGB", (8, 8)), role="source").id
    for vote in ("A", "B", "tie", "both_bad"):
        store.save_vote(vote=vote, task="t2i", prompt="a cat", image_a_id=a, image_b_id=b, model_a="m1", model_b="m2")
    store.save_vote(vote="A", task="edit", prompt="make it blue", image_a_id=a, image_b_id=b, source_image_id=src)
    target = store.export_votes(tmp_path / "prefs")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["vote_type"] for r in rows] == ["leftvote", "rightvote", "tievote", "bothbad_vote", "leftvote"]
    assert set(rows[0]) >= {"prompt", "left_image", "right_image", "left_model", "right_model", "vote_type", "source_image"}
    assert rows[0]["source_image"] is None and (tmp_path / "prefs" / rows[4]["source_image"]).is_file()
    assert (tmp_path / "prefs" / rows[0]["left_image"]).is_file()


def test_export_votes_parquet(store, tmp_path):
    a = store.save_image(red(), role="judge").id
    store.save_vote(vote="tie", task="t2i", prompt="a cat", image_a_id=a, image_b_id=a)
    target = store.export_votes(tmp_path / "prefs", format="parquet")
    table = pq.read_table(target)
    assert table.column("vote_type").to_pylist() == ["tievote"]
    assert (tmp_path / "prefs" / table.column("left_image").to_pylist()[0]).is_file()


def test_save_vote_rejects_unknown_vote(store):
    with pytest.raises(InvalidInputError, match="both_bad"):
        store.save_vote(vote="left", task="t2i", prompt="p", image_a_id=1, image_b_id=2)


def test_jobs_crud(store, tmp_path):
    job = store.create_job("parrot", {"epochs": 1}, tmp_path / "job")
    store.update_job(job, status="running", pid=1234)
    row = store.get_job(job)
    assert (row["status"], row["pid"], row["config"]) == ("running", 1234, {"epochs": 1})
    assert [j["id"] for j in store.list_jobs(kind="parrot", status="running")] == [job]
    assert store.list_jobs(kind="rl") == []
    store.delete_job(job)
    with pytest.raises(NotFoundError):
        store.get_job(job)


def test_add_note_to_unknown_session_raises(store):
    with pytest.raises(NotFoundError):
        store.add_note("missing", "hello")


def test_a_new_vote_on_a_judgement_replaces_the_old_one(store, tmp_path):
    a = store.save_image(red(), role="judge").id
    b = store.save_image(Image.new("RGB", (8, 8), (0, 0, 255)), role="judge").id
    judgement = store.save_judgement(task="t2i", prompt="a cat", image_a_id=a, image_b_id=b, winner="A")
    first = store.save_vote(vote="A", task="t2i", prompt="a cat", image_a_id=a, image_b_id=b, judgement_id=judgement)
    first_time = store.get_vote(first)["created"]
    second = store.save_vote(vote="B", task="t2i", prompt="a cat", image_a_id=a, image_b_id=b, judgement_id=judgement)
    unjudged = store.save_vote(vote="tie", task="t2i", prompt="a cat", image_a_id=a, image_b_id=b)
    assert second == first and unjudged != first
    assert store.vote_on(judgement)["vote"] == "B" and store.get_vote(first)["created"] >= first_time
    rows = [json.loads(line) for line in store.export_votes(tmp_path / "prefs").read_text().splitlines()]
    assert [(r["vote_id"], r["vote_type"], r["judgement_id"]) for r in rows] == [
        (first, "rightvote", judgement), (unjudged, "tievote", None)]
    assert all(r["voted_at"].endswith("+00:00") for r in rows)


def test_opening_an_old_store_keeps_the_latest_vote_per_judgement(tmp_path):
    """A store written before votes were one per judgement may hold several for one judgement."""
    old = SessionStore(tmp_path / "studio.db")
    old.db.execute("drop index idx_votes_judgement_id")
    old.db.execute("delete from _sqlite_migrations where name = 'm005_one_vote_per_judgement'")
    for judgement, vote in [(1, "A"), (1, "B"), (2, "tie"), (None, "A"), (None, "B")]:
        old.db.execute("insert into votes (judgement_id, prompt, vote) values (?, 'p', ?)", [judgement, vote])
    old.close()
    opened = SessionStore(tmp_path / "studio.db")
    assert [(v["judgement_id"], v["vote"]) for v in opened.votes()] == [(1, "B"), (2, "tie"), (None, "A"), (None, "B")]
    opened.close()


def test_a_replaced_vote_is_committed_for_other_connections(store):
    import sqlite3

    judgement = store.save_judgement(task="t2i", prompt="p", image_a_id=1, image_b_id=2)
    store.save_vote(vote="A", task="t2i", prompt="p", image_a_id=1, image_b_id=2, judgement_id=judgement)
    store.save_vote(vote="tie", task="t2i", prompt="p", image_a_id=1, image_b_id=2, judgement_id=judgement)
    other = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    assert other.execute("select vote from votes").fetchall() == [("tie",)]
    other.close()


def _hold_write_lock(path, seconds: float | None) -> sqlite3.Connection:
    """A second connection holding the store's write lock, released after ``seconds`` (None: never)."""
    other = sqlite3.connect(str(path), check_same_thread=False)
    other.execute("begin immediate")
    if seconds is not None:
        threading.Timer(seconds, other.commit).start()
    return other


def test_a_write_waits_out_a_lock_held_past_the_busy_timeout(tmp_path, caplog):
    store = SessionStore(tmp_path / "studio.db", busy_timeout_s=0.1, lock_retries=4, lock_backoff_s=0.2)
    _hold_write_lock(store.path, 0.6)
    with caplog.at_level(logging.WARNING, logger="studio.store_lock"):
        sid = store.create_session(task="t2i", prompt="a red cube", settings={})
    assert store.get_session(sid)["prompt"] == "a red cube"
    assert "the store (studio.db) is locked by another connection; retry 1 of 4" in caplog.text


def test_a_lock_that_outlasts_every_retry_is_a_readable_error(tmp_path):
    store = SessionStore(tmp_path / "studio.db", busy_timeout_s=0.05, lock_retries=2, lock_backoff_s=0.05)
    other = _hold_write_lock(store.path, None)
    with pytest.raises(BackendUnavailableError, match=r"The store \(studio.db\) stayed locked by another program") as e:
        store.create_session(task="t2i", prompt="a red cube", settings={})
    assert "3 tries" in str(e.value) and str(tmp_path) not in str(e.value)
    other.rollback()
    assert store.create_session(task="t2i", prompt="a red cube", settings={})  # usable again once released


def test_a_session_runs_through_a_lock_taken_mid_round(tmp_path):
    """Another program takes the write lock while a round generates: the loop's next writes wait
    it out, the session finishes, and no round is left running."""
    from studio.config import LoopSettings
    from studio.loop import RefineRequest, Stopped, refine
    from studio.services import Services
    from tests.studio_fakes import ScriptedCritic, SquaresGenerator, poor

    store = SessionStore(tmp_path / "studio.db", busy_timeout_s=0.1, lock_retries=4, lock_backoff_s=0.2)

    class LockingGenerator(SquaresGenerator):
        def generate(self, request):
            if len(self.requests) == 1:  # during round 2
                _hold_write_lock(store.path, 0.8)
            return super().generate(request)

    services = Services(store=store, critic=ScriptedCritic([poor(2.0)]), t2i_generator=LockingGenerator())
    events = list(refine(RefineRequest("t2i", "a red square"), services, LoopSettings(max_rounds=3, plateau_rounds=0)))
    assert isinstance(events[-1], Stopped) and events[-1].reason == "max_rounds"
    assert [r["status"] for r in store.rounds(events[-1].session_id)] == ["done"] * 3


def test_a_visitor_sees_only_their_own_sessions_judgements_and_votes(store, tmp_path):
    mine = session_with_best(store, "a red cat", {"text_faithfulness": 3.0}, visitor="browser:me")
    theirs = session_with_best(store, "a red dog", {"text_faithfulness": 3.0}, visitor="browser:them")
    assert [r["id"] for r in store.search_sessions(text="red", visitor="browser:me")] == [mine]
    assert {r["id"] for r in store.search_sessions(text="red")} == {mine, theirs}  # no visitor: everyone's
    for read in (store.get_session, store.session_timeline,
                 lambda sid, visitor: store.export_session(sid, tmp_path / "x", visitor=visitor)):
        with pytest.raises(NotFoundError, match=f"No session with id '{theirs}'"):
            read(theirs, visitor="browser:me")
    assert store.session_timeline(mine, visitor="browser:me")["session"]["visitor"] == "browser:me"
    judgement = store.save_judgement(task="t2i", prompt="p", image_a_id=1, image_b_id=2, visitor="browser:them")
    with pytest.raises(NotFoundError, match="No judgement with id"):
        store.get_judgement(judgement, visitor="browser:me")
    store.save_vote(vote="A", task="t2i", prompt="p", image_a_id=1, image_b_id=2, visitor="browser:them")
    store.save_vote(vote="B", task="t2i", prompt="p", image_a_id=1, image_b_id=2, visitor="browser:me")
    assert [v["vote"] for v in store.votes(visitor="browser:me")] == ["B"]
    assert [v["vote"] for v in store.votes()] == ["A", "B"]


def test_recent_round_seconds_are_newest_first(store):
    sid = store.create_session(task="t2i", prompt="p", settings={})
    for index, (gen, crit) in enumerate([(1.0, 0.5), (2.0, 1.0)], start=1):
        store.update_round(store.start_round(sid, index, "p", 0), status="done", generate_s=gen, critique_s=crit)
    store.start_round(sid, 3, "p", 0)  # still running: no duration yet
    assert store.recent_round_seconds() == [3.0, 1.5]
