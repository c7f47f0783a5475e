"""Public mode's parts without a server: who a request's visitor is, what each setting allows,
what a waiting visitor is told, and server paths cut out of messages and records."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from models.errors import ConfigError, InvalidInputError
from studio.store import SessionStore
from studio.ui import errors
from studio.ui.limits import Admission, ModelQueue, wait_notice
from studio.ui.quotas import Limits
from studio.ui.redact import redact, redact_paths
from studio.ui.visitors import Visitor, Visitors


def request(session_hash: str | None, session: dict | None = None) -> SimpleNamespace:
    """A stand-in for ``gr.Request``: the page's session hash and its Starlette request scope."""
    return SimpleNamespace(session_hash=session_hash, request=SimpleNamespace(scope={"session": session or {}}))


def signed_in(user: str, *, expires_in: float = 3600) -> dict:
    return {"oauth_info": {"userinfo": {"preferred_username": user}, "expires_at": time.time() + expires_in}}


def test_a_signed_in_hugging_face_user_is_the_visitor_on_every_page(tmp_path):
    visitors = Visitors(public=True, key_file=tmp_path / "key")
    assert visitors.of(request("page-1", signed_in("alice"))) == Visitor("hf:alice")
    assert visitors.of(request("page-2", signed_in("alice"))) == Visitor("hf:alice")
    assert visitors.of(request("page-3", signed_in("alice", expires_in=-1))).id == "client:page-3"  # expired


def test_a_browser_token_survives_a_reload_and_a_malformed_one_is_replaced(tmp_path):
    visitors = Visitors(public=True, key_file=tmp_path / "key")
    token = visitors.register(None, request("page-1"))
    assert visitors.of(request("page-1")).id == f"browser:{token}"
    assert visitors.register(token, request("page-2")) == token  # the reload sends the stored token back
    assert visitors.of(request("page-2")).id == f"browser:{token}"
    assert visitors.register("../alice", request("page-3")) != "../alice"
    assert visitors.of(request("api-client")).id == "client:api-client"  # never registered: an API client


def test_no_identity_at_all_is_refused_in_public_mode_and_anyone_is_the_owner_locally(tmp_path):
    with pytest.raises(InvalidInputError, match="could not tell who you are"):
        Visitors(public=True, key_file=tmp_path / "key").of(request(None))
    assert Visitors().of(request(None)) == Visitor(None)
    assert Visitors(shared=True).of(request("x")).reads is None


def test_the_key_of_the_browser_tokens_outlives_a_restart(tmp_path):
    first = Visitors(public=True, key_file=tmp_path / "key")._secret()
    assert Visitors(public=True, key_file=tmp_path / "key")._secret() == first and len(first) == 32
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0  # readable by the app's user only


def test_the_shared_gallery_reads_everything_and_writes_only_ones_own():
    alice = Visitor("browser:a", shared=True)
    assert (alice.reads, alice.writes) == (None, "browser:a")
    alice.check_can_continue({"id": "s1", "visitor": "browser:a"})
    with pytest.raises(InvalidInputError, match="Session s2 was started by another visitor"):
        alice.check_can_continue({"id": "s2", "visitor": "browser:b"})
    Visitor(None).check_can_continue({"id": "s3", "visitor": "browser:b"})  # local: the operator owns all


def test_limits_default_by_mode_and_name_their_setting():
    assert Limits.for_mode(False) == Limits(None, None, 32)
    assert Limits.for_mode(True) == Limits(12, 2, 32)
    assert Limits.for_mode(True, session_images=0, visitor_requests=5, queue_size=4) == Limits(None, 5, 4)
    with pytest.raises(InvalidInputError, match="--queue-size must be 1 or more"):
        Limits.for_mode(True, queue_size=0)
    Limits(12).check_session(4, 3)
    with pytest.raises(InvalidInputError, match=r"5 × 3 = 15.*--max-session-images, STUDIO_MAX_SESSION_IMAGES"):
        Limits(12).check_session(5, 3)


def test_the_wait_notice_counts_the_requests_ahead_and_estimates_from_recent_rounds(tmp_path):
    store = SessionStore(tmp_path / "studio.db")
    queue = ModelQueue(Visitors())
    queue.requests = lambda: ([object()], [])  # type: ignore[method-assign]
    assert wait_notice(queue, store) == "Waiting for the model: 1 request(s) ahead of yours (1 running)."
    sid = store.create_session(task="t2i", prompt="p", settings={})
    for index, seconds in enumerate((2.0, 4.0, 9.0), start=1):
        store.update_round(store.start_round(sid, index, "p", 0), generate_s=seconds, critique_s=0.0)
    queue.requests = lambda: ([object()], [object(), object()])  # type: ignore[method-assign]
    notice = wait_notice(queue, store)
    assert notice is not None and "3 request(s) ahead of yours (1 running)" in notice
    assert "4.0 s each (median of the last 3)" in notice and "about 12 s" in notice
    queue.requests = lambda: ([], [])  # type: ignore[method-assign]
    assert wait_notice(queue, store) is None  # the model is free: nothing to wait for
    store.close()


def test_server_paths_are_cut_to_their_last_part_and_urls_are_kept():
    assert redact_paths("Cannot load /srv/models/flux: missing") == "Cannot load flux: missing"
    assert redact_paths("diffusers:/work/assets/shapes-t2i") == "diffusers:shapes-t2i"
    assert redact_paths("see http://10.0.0.2:8000/v1/models and images/ab/c.png") == \
        "see http://10.0.0.2:8000/v1/models and images/ab/c.png"
    assert redact({"model": "/m/a/b", "steps": [1, "~/x/y"]}) == {"model": "b", "steps": [1, "y"]}


def test_public_error_messages_leave_out_server_paths(monkeypatch):
    monkeypatch.setattr(errors, "_hide_paths", True)
    shown = errors.to_gradio_error(ConfigError("Cannot read the template /srv/app/prompts/pointwise.txt."))
    assert shown.message == "Cannot read the template pointwise.txt."
    monkeypatch.setattr(errors, "_hide_paths", False)
    assert "/srv/app" in errors.to_gradio_error(ConfigError("Cannot read /srv/app/x.txt")).message


def test_a_failed_sessions_message_is_shown_without_server_paths_in_public_mode(tmp_path):
    from studio.ui import adapt

    store = SessionStore(tmp_path / "studio.db")
    sid = store.create_session(task="t2i", prompt="a red circle", settings={},
                               names={"generator": "diffusers:/srv/m/flux"})
    store.update_session(sid, status="failed", message="BackendUnavailableError: cannot load /srv/models/critic-8b.")
    html = adapt.session_view(store, sid, public=True)[3]
    assert "cannot load critic-8b." in html and "/srv/" not in html
    record = adapt.session_record(store.session_timeline(sid), public=True)
    assert record["message"].endswith("cannot load critic-8b.") and record["generator"] == "flux"
    assert "/srv/models" in adapt.session_view(store, sid)[3]  # the operator's own studio keeps them
    store.close()


def test_requests_admitted_at_the_same_moment_count_before_gradio_queues_them():
    """Gradio queues a request only after its validator returned: two submitted together must not
    both see an empty queue."""
    queue = ModelQueue(Visitors(public=True))
    queue.requests = lambda: ([], [])  # type: ignore[method-assign]
    queue.enqueued = lambda: []  # type: ignore[method-assign]
    seen: list[tuple[int, int]] = []
    alice, bob = Visitor("client:a"), Visitor("client:b")
    for session_hash, who in (("a", alice), ("a", alice), ("b", bob)):
        queue.admit(lambda waiting, held: seen.append((waiting, held)), session_hash, who)
    assert seen == [(0, 0), (1, 1), (2, 0)]
    queued = SimpleNamespace(session_hash="a", enqueue_time=time.monotonic(), request=None)
    queue.requests = lambda: ([], [queued])  # type: ignore[method-assign]
    queue.enqueued = lambda: [(time.time(), "a")]  # type: ignore[method-assign]
    queue.admit(lambda waiting, held: seen.append((waiting, held)), "b", bob)
    assert seen[-1] == (3, 1)  # one of alice's two is in the queue now: counted once, not twice


def test_a_request_that_already_ran_and_finished_no_longer_counts_for_its_visitor():
    """A fast request can run and finish between two admissions without ever being seen in the
    queue; once Gradio has recorded it as queued it holds nothing, so the visitor's next request
    (an API client calling again at once) is let in under a limit of one."""
    queue = ModelQueue(Visitors(public=True))
    queue.requests = lambda: ([], [])  # type: ignore[method-assign]
    queue.enqueued = lambda: []  # type: ignore[method-assign]
    alice = Visitor("client:a")
    limit_one = Admission(Limits(visitor_requests=1))._check
    queue.admit(limit_one, "a", alice)
    with pytest.raises(InvalidInputError, match="1 request"):  # not queued yet: still counted
        queue.admit(limit_one, "a", alice)
    queue.enqueued = lambda: [(time.time(), "a")]  # type: ignore[method-assign]  # it was queued, ran, finished
    queue.admit(limit_one, "a", alice)
