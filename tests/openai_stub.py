"""A local OpenAI-compatible server for tests and benchmarks: no network, no model.

It speaks just enough HTTP/1.1 (keep-alive, ``Content-Length`` bodies) to serve
``GET /v1/models`` and ``POST /v1/chat/completions`` on 127.0.0.1, on a free port, from an
asyncio loop in a daemon thread, so hundreds of slow requests can be in flight at once.

Use it as a context manager::

    with OpenAIStub(latency_s=0.1, script=[Scripted(500)]) as stub:
        chat = OpenAIChat(base_url=stub.url)   # the first chat request gets HTTP 500
        ...
    assert stub.max_in_flight <= 32

Or as a separate process (the benchmark does this, so its CPU time is not the client's)::

    python -m tests.openai_stub --latency-ms 100

which prints one JSON line ``{"url": "http://127.0.0.1:PORT/v1"}`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import orjson

from models.types import task_dimensions

logger = logging.getLogger(__name__)

Reply = Callable[[dict[str, Any]], "str | None"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


def sample_critique(task: str = "t2i", score: float = 3.0) -> str:
    """A well-formed critique in the protocol layout for ``task``, every dimension at ``score``."""
    lines = ["# User Request Analysis", "The request asks for a simple scene.", "# Detailed Judgement"]
    for number, dim in enumerate(task_dimensions(task), start=1):
        lines += [f"{number}. {dim.heading}:", "## Justification: Stub justification.", f"## Score: {score}"]
    lines += [
        "# Summary: A stub critique.",
        "# User Request Refinement:",
        "## Refinement Comments: Say more about the scene.",
        "## Refined Request: A simple scene, described in more detail.",
    ]
    return "\n".join(lines)


def _default_reply(request: dict[str, Any]) -> str:
    return sample_critique("t2i")


@dataclass(frozen=True)
class Scripted:
    """A canned answer that replaces the normal reply of one chat request.

    ``status`` other than 200 answers with an OpenAI-style error (``message``) and, when
    ``retry_after`` is set, a ``Retry-After`` header. ``status == 200`` answers normally. ``delay_s``
    replaces the stub's latency for this request. ``drop`` closes the connection without answering.
    """

    status: int = 500
    message: str = "scripted failure"
    retry_after: str | None = None
    delay_s: float | None = None
    drop: bool = False


@dataclass
class Received:
    """One request as the stub saw it (header names lower-cased; ``body`` is the parsed JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class OpenAIStub:
    """An OpenAI-compatible server on 127.0.0.1 with configurable latency and failures.

    :param latency_s: how long each chat request waits before its answer.
    :param reply: ``reply(request_json) -> str | None`` writes the assistant's content
        (``None`` answers with ``"content": null``); default: a valid t2i critique.
    :param script: answers for the first ``len(script)`` chat requests, in arrival order.
    :param models: the ids ``GET /v1/models`` lists.
    :param record: keep every request in ``received`` (turn off for long benchmarks).
    :param gate: when given, chat answers go out only while this event is set (after the latency),
        so a test can hold a caller mid-request for as long as it needs and then release it.

    Counters: ``chat_requests`` (all chat requests, scripted ones included), ``model_requests``,
    ``in_flight`` and ``max_in_flight`` (chat requests between arrival and answer).
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        reply: Reply | None = None,
        script: Sequence[Scripted] = (),
        models: Sequence[str] = ("stub-critic",),
        record: bool = True,
        gate: threading.Event | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.gate = gate
        self.reply = reply or _default_reply
        self.models = list(models)
        self.record = record
        self._script = list(script)
        self.chat_requests = 0
        self.model_requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.received: list[Received] = []
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The base URL clients use, ending in ``/v1``."""
        if self.port is None:
            raise RuntimeError("The stub is not running; call start() or use it as a context manager.")
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_bodies(self) -> list[Any]:
        """The JSON bodies of the recorded chat requests, in arrival order."""
        return [r.body for r in self.received if r.path == "/v1/chat/completions"]

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, sock: socket.socket | None = None) -> "OpenAIStub":
        """Bind a free port on 127.0.0.1 (or accept on the listening ``sock``, which several
        stub processes may share) and serve from a daemon thread."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-stub", daemon=True)
        self._thread.start()
        if sock is None:
            start = asyncio.start_server(self._serve_connection, "127.0.0.1", 0, backlog=1024)
        else:
            start = asyncio.start_server(self._serve_connection, sock=sock)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result()
        self.port = self._server.sockets[0].getsockname()[1]
        logger.debug("OpenAI stub serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> "OpenAIStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            pass  # stop() is closing the server
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection should close."""
        request_line = await reader.readline()
        if not request_line.strip():
            return False
        arrived = time.monotonic()  # the latency counts from here, not after the stub's own parsing
        method, path, _version = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            await self._write(writer, 411, {"error": {"message": "send a Content-Length body"}}, close=True)
            return False
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = headers.get("connection", "").lower() != "close"
        if method == "GET" and path == "/v1/models":
            self.model_requests += 1
            self._remember(method, path, headers, None)
            models = [{"id": m, "object": "model", "owned_by": "stub"} for m in self.models]
            listing = {"object": "list", "data": models}
            await self._write(writer, 200, listing, close=not keep_alive)
            return keep_alive
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(writer, headers, raw, keep_alive, arrived)
        self._remember(method, path, headers, None)
        await self._write(writer, 404, _error(404, f"no route {method} {path}"), close=not keep_alive)
        return keep_alive

    async def _chat(self, writer: asyncio.StreamWriter, headers: dict[str, str], raw: bytes, keep_alive: bool,
                    arrived: float) -> bool:
        self.chat_requests += 1
        scripted = self._script.pop(0) if self._script else Scripted(status=200)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            self._remember("POST", "/v1/chat/completions", headers, body)
            delay = self.latency_s if scripted.delay_s is None else scripted.delay_s
            await asyncio.sleep(max(0.0, arrived + delay - time.monotonic()))
            while self.gate is not None and not self.gate.is_set():
                await asyncio.sleep(0.01)
            if scripted.drop:
                return False
            status, payload, extra = self._answer(body, scripted)
            await self._write(writer, status, payload, extra, close=not keep_alive)
            return keep_alive
        finally:
            self.in_flight -= 1

    def _answer(self, body: Any, scripted: Scripted) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON payload and extra headers of the answer to one chat request."""
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return 400, _error(400, "the body must be JSON with a 'messages' list"), {}
        if scripted.status != 200:
            extra = {"Retry-After": scripted.retry_after} if scripted.retry_after is not None else {}
            return scripted.status, _error(scripted.status, scripted.message), extra
        return 200, self._completion(body), {}

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-stub-{self.chat_requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.reply(body), "reasoning_content": None},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _remember(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        if self.record:
            self.received.append(Received(method, path, headers, body))

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter,
        status: int,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        data = orjson.dumps(payload)
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json",
                f"Content-Length: {len(data)}", f"Connection: {'close' if close else 'keep-alive'}"]
        head += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _REASONS.get(status, "Error"), "code": status}}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a stub until SIGTERM/SIGINT; print ``{"url": ...}`` as the first stdout line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency of each chat request")
    parser.add_argument("--task", choices=("t2i", "edit"), default="t2i", help="task of the critique it replies")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes accepting on the one port, as a real server answers requests in parallel")
    args = parser.parse_args(argv)
    text = sample_critique(args.task)
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:  # a worker: serve until the parent ends it
            _serve_until_signalled(args.latency_ms, text, sock)
            os._exit(0)
        children.append(pid)
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}/v1"}), flush=True)
    _serve_until_signalled(args.latency_ms, text, sock)
    for pid in children:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def _serve_until_signalled(latency_ms: float, text: str, sock: socket.socket) -> None:
    stub = OpenAIStub(latency_s=latency_ms / 1000, reply=lambda request: text, record=False).start(sock)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    stub.stop()


if __name__ == "__main__":
    main()
