"""Who is calling: in public mode every visitor sees, opens, exports and continues only their own
sessions, judgements and votes.

A visitor is, in this order:

1. the Hugging Face user signed in with **Sign in with Hugging Face** (``hf:<username>``), when
   the Space enables OAuth (``hf_oauth: true`` in its README, which sets ``OAUTH_CLIENT_ID``);
2. the browser (``browser:<token>``): a random token kept in the browser's localStorage
   (``gr.BrowserState``), so a reload or a second tab of the same browser is the same visitor.
   ``gr.Request.session_hash`` alone changes with every page load, which would hide a visitor's
   own sessions after a reload; a token in localStorage survives it, and is as private as a
   cookie (128 random bits, readable only by that browser);
3. the API client (``client:<session_hash>``): a ``gradio_client.Client`` keeps one session hash
   for its lifetime, so one client object is one visitor.

A call that carries none of these is refused in public mode. Gradio's MCP server is stateless:
its store-only tools (History, votes) arrive without a session and are refused, and its model
tools are relayed through one Gradio client, so every MCP agent is one visitor there.

The browser token reaches the server once per page load (``register``), which maps that page's
``session_hash`` to it; every later event of the page carries the same ``session_hash``.

With a shared gallery (``--shared-gallery``) everyone sees everyone's sessions and votes, but a
session can only be continued, and a judgement only voted on, by its own visitor.
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import gradio as gr

from models.errors import InvalidInputError

#: Page loads remembered (session hash → browser token); the oldest is forgotten first.
MAX_PAGES = 20_000
_TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Visitor:
    """One caller. ``id`` is ``None`` in local mode, where the one person running the studio owns
    everything; ``shared`` is the operator's shared-gallery setting."""

    id: str | None
    shared: bool = False

    @property
    def reads(self) -> str | None:
        """The visitor filter for listing and opening (``None``: every row)."""
        return None if self.shared else self.id

    @property
    def writes(self) -> str | None:
        """The visitor filter for changing something (continuing a session, voting on a judgement),
        and the visitor recorded with what this caller creates."""
        return self.id

    def check_can_continue(self, session: Mapping[str, Any]) -> None:
        """Raise ``InvalidInputError`` when ``session`` (readable by this visitor) is someone else's."""
        if self.id is not None and session.get("visitor") != self.id:
            raise InvalidInputError(
                f"Session {session['id']} was started by another visitor: the shared gallery lets you open and "
                "export it, not continue it. Start your own session with Run.")


class Visitors:
    """Tells the visitor of each request (see the module docstring).

    :param public: public mode; otherwise every request is the local ``Visitor(None)``.
    :param shared: the shared-gallery setting (public mode only).
    :param key_file: where the key that encrypts the browser token in localStorage is kept, so
        that tokens still read after a restart (created on first use).
    """

    def __init__(self, *, public: bool = False, shared: bool = False, key_file: Path | None = None) -> None:
        self.public = public
        self.shared = shared and public
        self.key_file = key_file
        self._pages: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def of(self, request: gr.Request | None) -> Visitor:
        """The visitor making ``request``. Raises ``InvalidInputError`` in public mode when the
        request carries no identity at all (no sign-in, no session)."""
        if not self.public:
            return Visitor(None)
        return self.of_parts(getattr(request, "session_hash", None), _session_of(request))

    def of_parts(self, session_hash: str | None, session: Mapping[str, Any]) -> Visitor:
        """The visitor of a page or client (``session_hash``) with the server-side login
        ``session`` (Starlette's; holds ``oauth_info`` once signed in with Hugging Face)."""
        user = _oauth_username(session)
        if user:
            return Visitor(f"hf:{user}", self.shared)
        if not session_hash:
            raise InvalidInputError(
                "This shared studio could not tell who you are: the web page, a gradio_client.Client and a signed-in "
                "Hugging Face user each carry an identity, a stateless call (such as an MCP tool of the History) "
                "does not. Reload the page, or use gradio_client.")
        with self._lock:
            token = self._pages.get(session_hash)
            if token is not None:
                self._pages.move_to_end(session_hash)
        return Visitor(f"browser:{token}" if token else f"client:{session_hash}", self.shared)

    def register(self, token: str | None, request: gr.Request) -> str:
        """On page load: remember the browser's token (a new one when it has none or a malformed
        one) for this page's session hash; return it to be kept in the browser."""
        if not (isinstance(token, str) and _TOKEN.fullmatch(token)):
            token = secrets.token_hex(16)
        if request is not None and request.session_hash:
            with self._lock:
                self._pages[request.session_hash] = token
                self._pages.move_to_end(request.session_hash)
                while len(self._pages) > MAX_PAGES:
                    self._pages.popitem(last=False)
        return token

    def attach(self, demo: gr.Blocks) -> None:
        """Add what identifies visitors to ``demo`` (call inside its ``with`` block): the browser
        token, registered on every page load, and a **Sign in with Hugging Face** button when the
        Space enables OAuth. Nothing in local mode."""
        if not self.public:
            return
        if os.environ.get("OAUTH_CLIENT_ID"):
            gr.LoginButton()
        stored = gr.BrowserState(None, storage_key="rationalrewards-visitor", secret=self._secret())
        demo.load(self.register, stored, stored, api_visibility="private", queue=False)

    def _secret(self) -> str:
        """The key of the browser token's encryption, read from ``key_file`` (written once)."""
        if self.key_file is None:
            return secrets.token_hex(16)
        if not self.key_file.exists():
            partial = self.key_file.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.part")
            partial.write_text(secrets.token_hex(16), encoding="utf-8")
            os.chmod(partial, 0o600)
            os.replace(partial, self.key_file)
        return self.key_file.read_text(encoding="utf-8").strip()


def _session_of(request: gr.Request | None) -> Mapping[str, Any]:
    """The Starlette session of ``request`` (empty when there is none: no OAuth middleware)."""
    underlying = getattr(request, "request", None)
    scope = getattr(underlying, "scope", None)
    if isinstance(scope, dict):
        return scope.get("session") or {}
    kwargs = getattr(request, "kwargs", None) or {}
    return kwargs.get("session") or {}


def _oauth_username(session: Mapping[str, Any]) -> str | None:
    """The Hugging Face username of a signed-in session (``None``: not signed in, or expired)."""
    info = session.get("oauth_info") if session else None
    if not info:
        return None
    expires = info.get("expires_at")
    if expires is not None and expires < time.time():
        return None
    user = (info.get("userinfo") or {}).get("preferred_username")
    return str(user) if user else None
