"""The critic over any OpenAI-compatible server, such as ``vllm serve TIGER-Lab/RationalRewards-8B-T2I``.

``OpenAIChat`` is the ``TextCompleter``: one shared ``aiohttp.ClientSession`` on a private event
loop in a daemon thread, so the synchronous ``complete()`` works from any thread (Gradio workers
included) and concurrent calls share one concurrency limit. Connection errors, timeouts, HTTP 429
(honouring ``Retry-After``) and 5xx are retried with exponential backoff and jitter; other 4xx
answers fail at once with the server's message. ``OpenAICritic`` is ``ProtocolCritic`` over it.

The client is ``aiohttp`` (C HTTP parser, a plain asyncio connection pool), not ``httpx``/``httpx2``,
whose anyio/httpcore layers cost several times aiohttp's client CPU per request; on a busy machine
that CPU kept ``bench/critic_http.py`` far below its floor. JSON goes through ``orjson``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import queue
import random
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any, Coroutine, Iterator, Sequence, TypeVar, Union
from urllib.parse import urlsplit

import aiohttp
import orjson

from models.critic.chat import COMPRESSIONS, ChatPrompt, CompletionError, Compression, openai_request_body
from models.critic.runner import ProtocolCritic
from models.errors import BackendUnavailableError, ConfigError
from models.images import ImageLimits

logger = logging.getLogger(__name__)

T = TypeVar("T")

START_HINT = (
    "Start it with `vllm serve TIGER-Lab/RationalRewards-8B-T2I --port 8000` "
    "or pass --critic-url with the address of a running server."
)
HEALTH_TIMEOUT_S = 10.0
"""Upper bound on how long the health check waits for ``GET /models``."""
MAX_WAIT_S = 60.0
"""Upper bound on one wait between attempts (backoff or the server's ``Retry-After``)."""
ENCODE_THREADS = max(2, min(8, os.cpu_count() or 2))
"""Threads that build request bodies. PNG filtering and deflate release the GIL, so the images of a
wave encode in parallel; one thread made a 1024 px wave wait on its encodings (issue 13)."""


def normalise_base_url(url: str) -> str:
    """The API base URL, ending in ``/v1`` without a trailing slash.

    ``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1/`` all become
    ``http://host:8000/v1``. Raises ``ConfigError`` for a URL that is not http(s) or that points at
    an endpoint below ``/v1`` (such as ``.../v1/chat/completions``).
    """
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"The critic URL must look like http://host:8000/v1; got {url!r}."
        )
    segments = parts.path.split("/")
    if "v1" in segments[:-1]:
        raise ConfigError(
            f"The critic URL must be the server's base URL ending in /v1, not an endpoint; got {url!r}. "
            f"Use {text.split('/v1/')[0]}/v1."
        )
    return text if segments[-1] == "v1" else text + "/v1"


def _check_number(name: str, value: object, *, least: float, whole: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is a number (an integer if ``whole``) >= ``least``."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < least:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"The critic setting {name} must be {kind} of at least {least:g}; got {value!r}.")


class _Transient(Exception):
    """An attempt failed in a way worth retrying; ``retry_after`` is the server's wish, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Answer:
    """One HTTP answer, read in full: status, body, and the ``Retry-After`` header if any."""

    status: int
    body: bytes
    retry_after: str | None = None

    @functools.cached_property
    def data(self) -> Any:
        """The body as JSON; ``None`` when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class OpenAIChat:
    """Chat completions from an OpenAI-compatible server, as a ``TextCompleter``.

    :param base_url: the server's API base, with or without the trailing ``/v1``.
    :param model: the model id to ask for; ``None`` takes the first id ``GET /v1/models`` lists.
    :param api_key: the key sent as ``Authorization: Bearer``; default: the ``api_key_env``
        environment variable, and no header when that is unset. Never logged or saved.
    :param api_key_env: the environment variable holding the key.
    :param concurrency: the most requests in flight at once, shared by all callers.
    :param timeout_s: connect and read timeout of one attempt.
    :param max_retries: retries after a connection error, timeout, HTTP 429 or 5xx.
    :param backoff_s: the first wait between attempts; it doubles each retry (with jitter).
    :param temperature: sampling temperature sent with each request.
    :param max_tokens: the most tokens the server may write per answer.
    :param image_compression: how the lossless PNGs are deflated (``models.critic.chat.COMPRESSIONS``):
        ``"none"`` (least client CPU; the default, for a server on the same machine or network) or
        ``"fast"`` (a third smaller on photos for about 25 ms more client CPU per 1024 px image;
        for a server behind a slow link).

    The server is health-checked (``health_check``) before the first request.
    """

    def __init__(
        self,
        *,
        base_url: str = "http://localhost:8000/v1",
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 32,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        temperature: float = 0.1,
        max_tokens: int = 2048,
        image_compression: Compression = "none",
    ) -> None:
        _check_number("concurrency", concurrency, least=1, whole=True)
        _check_number("max_tokens", max_tokens, least=1, whole=True)
        _check_number("max_retries", max_retries, least=0, whole=True)
        _check_number("timeout_s", timeout_s, least=0.001)
        _check_number("backoff_s", backoff_s, least=0)
        _check_number("temperature", temperature, least=0)
        if image_compression not in COMPRESSIONS:
            raise ConfigError(
                f"The critic setting image_compression must be one of {list(COMPRESSIONS)}; got {image_compression!r}."
            )
        self.image_compression: Compression = image_compression
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.served_model: str | None = None
        """The model id requests use, known after the health check."""
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._chat_url = f"{self.base_url}/chat/completions"
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy = _env_proxy(self.base_url)
        self._semaphore: asyncio.Semaphore | None = None
        self._encode_slots: asyncio.Semaphore | None = None
        self._encoder: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    # -- public -------------------------------------------------------------------------------

    def health_check(self) -> str:
        """Ask ``GET {base_url}/models`` and return the model id requests will use.

        Raises ``BackendUnavailableError`` naming the URL and what to do when the server cannot be
        reached, refuses the key, is not OpenAI-compatible, or does not serve ``model``.
        """
        with self._lock:
            self.served_model = self._run(self._pick_model())
            logger.info("critic server %s is up; using model %s", self.base_url, self.served_model)
            return self.served_model

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        """The assistant's text for each prompt, in order, or a ``CompletionError`` where the
        server gave none after the retries. Raises ``BackendUnavailableError`` when the first
        health check fails."""
        results: list[Union[str, CompletionError, None]] = [None] * len(prompts)
        for index, text in self.complete_iter(prompts):
            results[index] = text
        return results  # type: ignore[return-value]

    def complete_iter(self, prompts: Sequence[ChatPrompt]) -> Iterator[tuple[int, Union[str, CompletionError]]]:
        """``(index, text or CompletionError)`` for each prompt as its answer arrives, so that the
        caller can parse one answer while the others are still on their way. Closing the iterator
        early cancels the requests still running."""
        if not prompts:
            return
        with self._lock:
            if self.served_model is None:
                self.health_check()
        loop = self._started_loop()
        arrived: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(self._complete_all(list(prompts), arrived), loop)

        def report_crash(done: Any) -> None:  # wake the reader if the requests died of a bug
            if not done.cancelled() and done.exception() is not None:
                arrived.put((-1, done.exception()))

        future.add_done_callback(report_crash)
        try:
            for _ in range(len(prompts)):
                index, text = arrived.get()
                if index < 0:
                    raise text
                yield index, text
        finally:
            future.cancel()  # a no-op when every answer is in

    def close(self) -> None:
        """Close the HTTP client and end the event-loop thread. Later calls raise ``RuntimeError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._loop is None or self._thread is None:
                return
            assert self._session is not None
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result()
            asyncio.run_coroutine_threadsafe(self._loop.shutdown_default_executor(), self._loop).result()
            if self._encoder is not None:
                self._encoder.shutdown(wait=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this backend (the API key is never included)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "image_compression": self.image_compression,
        }

    # -- the event-loop thread ------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the private loop and wait for its result in the calling thread."""
        try:
            loop = self._started_loop()
            if threading.current_thread() is self._thread:
                raise RuntimeError("OpenAIChat cannot be called from its own event-loop thread.")
        except BaseException:
            coroutine.close()  # never started: close it so Python does not warn about it
            raise
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller was interrupted: stop the requests it started
            raise

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"The critic client for {self.base_url} is closed.")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="openai-critic-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                asyncio.run_coroutine_threadsafe(self._open_client(), loop).result()
            return self._loop

    async def _open_client(self) -> None:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=_timeout(self.timeout_s),
            # one connection more than the limit, for a health check while requests run
            connector=aiohttp.TCPConnector(limit=self.concurrency + 1),
        )
        self._semaphore = asyncio.Semaphore(self.concurrency)
        # request bodies held at once: one wave sending and one wave encoded (bounds memory)
        self._encode_slots = asyncio.Semaphore(2 * self.concurrency)
        # request bodies (PNG, base64, JSON) are built in threads: numpy and zlib run without the GIL
        self._encoder = concurrent.futures.ThreadPoolExecutor(
            max_workers=ENCODE_THREADS, thread_name_prefix="openai-critic-encode"
        )

    async def _request(
        self, method: str, url: str, body: bytes | None = None, *, timeout_s: float | None = None
    ) -> _Answer:
        """Send one request and read the whole answer.

        Raises ``TimeoutError`` when no connection or no answer comes within ``timeout_s``
        (default: the client's ``timeout_s``) and ``aiohttp.ClientError`` when the connection fails.
        """
        assert self._session is not None
        timeout = _timeout(self.timeout_s if timeout_s is None else timeout_s)
        request = self._session.request(
            method, url, data=body, timeout=timeout, proxy=self._proxy, allow_redirects=False  # as httpx did
        )
        async with request as response:
            return _Answer(response.status, await response.read(), response.headers.get("Retry-After"))

    # -- health check -------------------------------------------------------------------------

    async def _pick_model(self) -> str:
        url = f"{self.base_url}/models"
        timeout = min(self.timeout_s, HEALTH_TIMEOUT_S)
        try:
            response = await self._request("GET", url, timeout_s=timeout)
        except TimeoutError as e:
            raise BackendUnavailableError(
                f"The critic server at {url} did not answer within {timeout:g} s. Check that it is "
                f"running and reachable. {START_HINT}"
            ) from e
        except aiohttp.ClientError as e:
            raise BackendUnavailableError(
                f"Cannot reach the critic server at {url} ({_describe(e)}). {START_HINT}"
            ) from e
        if response.status in (401, 403):
            raise BackendUnavailableError(
                f"The critic server at {url} refused the API key (HTTP {response.status}). Put the "
                f"server's key in the environment variable {self.api_key_env}."
            )
        ids = _model_ids(response)
        if response.status != 200 or ids is None:
            raise BackendUnavailableError(
                f"The critic server at {url} answered HTTP {response.status} without a model list "
                f"({_server_message(response)}); it does not look OpenAI-compatible. Pass the server's "
                f"base URL, ending in /v1. {START_HINT}"
            )
        if not ids:
            raise BackendUnavailableError(f"The critic server at {url} serves no model. {START_HINT}")
        if self.model is None:
            return ids[0]
        if self.model not in ids:
            raise BackendUnavailableError(
                f"The critic server at {url} does not serve the model {self.model!r}; it serves "
                f"{ids}. Pass one of those as the critic model, or none to use the first."
            )
        return self.model

    # -- completions --------------------------------------------------------------------------

    async def _complete_all(self, prompts: list[ChatPrompt], arrived: queue.SimpleQueue[tuple[int, Any]]) -> None:
        # 2 x concurrency workers taking prompts in turn, not one task per prompt: creating 512 tasks
        # up front delayed the first request by ~10 ms
        queued = iter(enumerate(prompts))

        async def worker() -> None:
            for index, prompt in queued:
                arrived.put((index, await self._complete_one(prompt)))

        await asyncio.gather(*(worker() for _ in range(min(len(prompts), 2 * self.concurrency))))

    async def _complete_one(self, prompt: ChatPrompt) -> Union[str, CompletionError]:
        assert self._semaphore is not None and self._encode_slots is not None
        async with self._encode_slots:
            # encoded before taking a request slot, so that the next wave's bodies are ready while
            # this wave waits on the server, and off the loop: on the loop, each answer of a wave
            # set off the encoding of a later body, which delayed the next answers (0.88-0.90 of
            # the ideal throughput in bench/critic_http.py; 0.90-0.92 in a thread)
            body = await asyncio.get_running_loop().run_in_executor(self._encoder, self._request_body, prompt)
            async with self._semaphore:
                return await self._post_with_retries(body)

    async def _post_with_retries(self, body: bytes) -> Union[str, CompletionError]:
        """POST ``body``, retrying connection errors, timeouts, 429 and 5xx with backoff."""
        attempts = self.max_retries + 1
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                return await self._post(body)
            except _Transient as e:
                reason = e.reason
                if attempt == attempts:
                    break
                wait = e.retry_after if e.retry_after is not None else self._backoff(attempt)
                logger.warning(
                    "critic server %s: %s; retry %d of %d in %.2f s",
                    self._chat_url, reason, attempt, self.max_retries, wait,
                )
                await asyncio.sleep(wait)
        return CompletionError(
            f"The critic server at {self._chat_url} gave no answer after {attempts} attempt(s); "
            f"last error: {reason}."
        )

    def _request_body(self, prompt: ChatPrompt) -> bytes:
        fields = {"model": self.served_model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        return openai_request_body(prompt, fields, self.image_compression)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: ``backoff_s * 2**(attempt-1)``, times 0.5 to 1."""
        return min(MAX_WAIT_S, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _post(self, body: bytes) -> Union[str, CompletionError]:
        """One attempt. Raises ``_Transient`` for what is worth retrying."""
        try:
            response = await self._request("POST", self._chat_url, body)
        except TimeoutError as e:
            raise _Transient(f"no answer within {self.timeout_s:g} s ({type(e).__name__})") from e
        except aiohttp.ClientError as e:
            raise _Transient(f"connection failed ({_describe(e)})") from e
        status = response.status
        if status == 429 or status >= 500:
            retry_after = _retry_after_s(response.retry_after)
            raise _Transient(f"HTTP {status}: {_server_message(response)}", retry_after)
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = f" Put the server's key in the environment variable {self.api_key_env}."
            return CompletionError(
                f"The critic server at {self._chat_url} refused the request (HTTP {status}): "
                f"{_server_message(response)}.{hint}"
            )
        content = _message_content(response)
        if content is None:
            return CompletionError(
                f"The critic server at {self._chat_url} answered without any message content "
                f"(model {self.served_model})."
            )
        return content


def _env_proxy(url: str) -> str | None:
    """The proxy that ``HTTP_PROXY`` / ``HTTPS_PROXY`` (less ``NO_PROXY``) name for ``url``, if any.

    Looked up once per client: aiohttp's own ``trust_env`` looks it up on every request, which
    costs about 0.3 ms of CPU each.
    """
    host = urlsplit(url).hostname
    if host and urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urlsplit(url).scheme)


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """At most ``seconds`` to get a connection and between reads of the answer; no limit on the
    whole exchange (httpx's per-phase timeouts, which this client used before)."""
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _describe(error: aiohttp.ClientError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds, capped at ``MAX_WAIT_S``; ``None`` when absent or not a number
    of seconds (HTTP dates are not used by model servers and fall back to the backoff)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        logger.debug("ignoring Retry-After %r (not a number of seconds)", value)
        return None
    return min(max(seconds, 0.0), MAX_WAIT_S)


def _server_message(response: _Answer) -> str:
    """The error message in an OpenAI-style (``{"error": {"message"}}``) or vLLM-style
    (``{"message"}``) body, else the start of the body."""
    data = response.data
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(data.get("message"), str):
            return data["message"]
    text = response.text.strip()
    return text[:300] if text else "empty body"


def _model_ids(response: _Answer) -> list[str] | None:
    data = response.data
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    return [item["id"] for item in data["data"] if isinstance(item, dict) and isinstance(item.get("id"), str)]


def _message_content(response: _Answer) -> str | None:
    """``choices[0].message.content`` when it is non-empty text (reasoning fields are ignored)."""
    data = response.data
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) and content.strip() else None


class OpenAICritic(ProtocolCritic):
    """The RationalRewards critic served by an OpenAI-compatible server (vLLM).

    Takes the settings of ``OpenAIChat`` as keywords, plus ``parse_retries`` (how often an
    unparseable answer is re-asked), ``limits``, ``name`` and ``prompts`` (a folder of prompt
    templates, see ``ProtocolCritic``)::

        critic = OpenAICritic(base_url="http://localhost:8000/v1", concurrency=32)
        critic.health_check()            # optional: fail early with a clear message
        results = critic.critique(requests)
    """

    def __init__(
        self,
        *,
        parse_retries: int = 1,
        limits: ImageLimits | None = None,
        name: str = "openai critic",
        prompts: str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(OpenAIChat(**settings), parse_retries=parse_retries, limits=limits, name=name, prompts=prompts)
        self.completer: OpenAIChat

    def health_check(self) -> str:
        """Check the server now (see ``OpenAIChat.health_check``); return the model id in use."""
        return self.completer.health_check()
