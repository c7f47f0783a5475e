"""The OpenAI-compatible critic backend against a local stub server (never the network)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from PIL import Image

from models.critic.chat import ChatPrompt, CompletionError
from models.critic.critic_openai import OpenAIChat, OpenAICritic, normalise_base_url
from models.errors import BackendUnavailableError, ConfigError
from models.registry import load_backend
from models.types import CritiqueFailure, CritiqueRequest, PairRequest
from tests.openai_stub import OpenAIStub, Scripted, sample_critique


def _prompt(text: str, with_image: bool = False) -> ChatPrompt:
    content: list[dict] = [{"type": "text", "text": text}]
    images = []
    if with_image:
        content.append({"type": "image"})
        images.append(Image.new("RGB", (8, 8), (200, 10, 10)))
    request = CritiqueRequest(task="t2i", prompt=text, image=Image.new("RGB", (8, 8)))
    return ChatPrompt(kind="pointwise", messages=[{"role": "user", "content": content}], images=images, request=request)


def _echo(body: dict) -> str:
    """Reply with the prompt's first text part, so tests can see which answer is which."""
    return body["messages"][0]["content"][0]["text"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chat_factory():
    """Builds ``OpenAIChat`` clients (fast backoff) and closes them after the test."""
    made: list[OpenAIChat] = []

    def make(url: str, **settings) -> OpenAIChat:
        client = OpenAIChat(base_url=url, **{"backoff_s": 0.01, **settings})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.mark.parametrize(
    "given",
    ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/", " http://h:8000/v1 "],
)
def test_normalise_base_url_with_or_without_v1(given):
    assert normalise_base_url(given) == "http://h:8000/v1"


@pytest.mark.parametrize("given", ["h:8000", "ftp://h/v1", "http://h:8000/v1/chat/completions"])
def test_normalise_base_url_rejects_non_base_urls(given):
    with pytest.raises(ConfigError, match="/v1"):
        normalise_base_url(given)


def test_complete_returns_answers_in_order(chat_factory):
    with OpenAIStub(reply=_echo) as stub:
        chat = chat_factory(stub.url, concurrency=8)
        prompts = [_prompt(f"prompt {i}") for i in range(30)]
        assert chat.complete(prompts) == [f"prompt {i}" for i in range(30)]


def test_complete_respects_concurrency_limit(chat_factory):
    with OpenAIStub(latency_s=0.1) as stub:
        chat = chat_factory(stub.url, concurrency=4)
        answers = chat.complete([_prompt(f"p{i}") for i in range(20)])
    assert all(isinstance(a, str) for a in answers)
    assert stub.chat_requests == 20
    assert stub.max_in_flight == 4


def test_stub_serves_64_slow_requests_at_once(chat_factory):
    # each answer waits 1.5 s after its request arrives: long enough that all 64 requests are in
    # flight together even on a loaded 2-core machine (with 0.5 s the first answer sometimes came
    # back before the 64th request arrived, and the peak read 63)
    with OpenAIStub(latency_s=1.5) as stub:
        chat = chat_factory(stub.url, concurrency=64)
        chat.health_check()
        start = time.monotonic()
        answers = chat.complete([_prompt("x")] * 64)
        elapsed = time.monotonic() - start
    assert all(isinstance(a, str) for a in answers)
    assert stub.max_in_flight == 64
    assert elapsed < 4.0  # one after another would take 96 s


def test_concurrent_callers_share_one_limit(chat_factory):
    # two threads (two Gradio workers, say) calling at once must not get 2 x concurrency
    with OpenAIStub(latency_s=0.1) as stub:
        chat = chat_factory(stub.url, concurrency=3)
        chat.health_check()
        threads = [threading.Thread(target=chat.complete, args=([_prompt("x")] * 6,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert stub.chat_requests == 12
    assert stub.max_in_flight == 3


def test_complete_sends_openai_request_with_image_data_uri(chat_factory):
    with OpenAIStub(models=["served-critic", "other"]) as stub:
        chat = chat_factory(stub.url, temperature=0.1, max_tokens=77)
        chat.complete([_prompt("look", with_image=True)])
    (body,) = stub.chat_bodies()
    assert body["model"] == "served-critic"  # model=None takes the first listed id
    assert body["temperature"] == 0.1 and body["max_tokens"] == 77
    image_part = body["messages"][0]["content"][1]
    assert image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")


def test_retry_on_500_then_success(chat_factory):
    with OpenAIStub(reply=_echo, script=[Scripted(500), Scripted(502)]) as stub:
        chat = chat_factory(stub.url)
        assert chat.complete([_prompt("hello")]) == ["hello"]
    assert stub.chat_requests == 3


def test_retry_on_dropped_connection(chat_factory):
    with OpenAIStub(reply=_echo, script=[Scripted(drop=True)]) as stub:
        chat = chat_factory(stub.url)
        assert chat.complete([_prompt("hello")]) == ["hello"]
    assert stub.chat_requests == 2


def test_429_retry_after_is_honoured(chat_factory):
    with OpenAIStub(reply=_echo, script=[Scripted(429, retry_after="1")]) as stub:
        chat = chat_factory(stub.url)
        chat.health_check()
        start = time.monotonic()
        assert chat.complete([_prompt("hello")]) == ["hello"]
        elapsed = time.monotonic() - start
    assert stub.chat_requests == 2
    assert elapsed >= 1.0  # the backoff alone would have waited about 0.01 s


def test_5xx_until_retries_run_out_gives_completion_error(chat_factory):
    with OpenAIStub(script=[Scripted(503, message="engine overloaded")] * 3) as stub:
        chat = chat_factory(stub.url, max_retries=2)
        (answer,) = chat.complete([_prompt("x")])
    assert isinstance(answer, CompletionError)
    assert f"{stub.url}/chat/completions" in answer.reason
    assert "3 attempt" in answer.reason and "engine overloaded" in answer.reason
    assert stub.chat_requests == 3


def test_client_error_fails_at_once_with_server_message(chat_factory):
    with OpenAIStub(script=[Scripted(400, message="maximum context length is 8192 tokens")]) as stub:
        chat = chat_factory(stub.url)
        (answer,) = chat.complete([_prompt("x")])
    assert isinstance(answer, CompletionError)
    assert "HTTP 400" in answer.reason and "maximum context length is 8192 tokens" in answer.reason
    assert stub.chat_requests == 1


def test_timeout_after_retries_gives_completion_error_naming_url(chat_factory):
    with OpenAIStub(latency_s=2.0) as stub:
        chat = chat_factory(stub.url, timeout_s=0.2, max_retries=1)
        chat.health_check()
        start = time.monotonic()
        (answer,) = chat.complete([_prompt("x")])
        elapsed = time.monotonic() - start
    assert isinstance(answer, CompletionError)
    assert f"{stub.url}/chat/completions" in answer.reason and "0.2 s" in answer.reason
    assert stub.chat_requests == 2
    assert elapsed < 1.5


def test_timeout_then_success(chat_factory):
    with OpenAIStub(reply=_echo, script=[Scripted(200, delay_s=2.0)]) as stub:
        chat = chat_factory(stub.url, timeout_s=0.3)
        assert chat.complete([_prompt("late")]) == ["late"]


def test_empty_content_gives_completion_error(chat_factory):
    with OpenAIStub(reply=lambda body: None) as stub:
        chat = chat_factory(stub.url)
        (answer,) = chat.complete([_prompt("x")])
    assert isinstance(answer, CompletionError)
    assert "without any message content" in answer.reason and stub.url in answer.reason


def test_unreachable_host_raises_clear_error(chat_factory):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    chat = chat_factory(url)
    with pytest.raises(BackendUnavailableError) as caught:
        chat.complete([_prompt("x")])
    message = str(caught.value)
    assert f"{url}/models" in message
    assert "vllm serve TIGER-Lab/RationalRewards-8B-T2I --port 8000" in message and "--critic-url" in message


def test_health_check_names_missing_model(chat_factory):
    with OpenAIStub(models=["a", "b"]) as stub:
        chat = chat_factory(stub.url, model="c")
        with pytest.raises(BackendUnavailableError, match=r"does not serve the model 'c'.*\['a', 'b'\]"):
            chat.health_check()


def test_health_check_refuses_non_openai_server(chat_factory):
    with OpenAIStub() as stub:
        chat = chat_factory(stub.url.removesuffix("/v1") + "/api/v1")  # a path the stub does not serve
        with pytest.raises(BackendUnavailableError, match="HTTP 404"):
            chat.health_check()


def test_health_check_runs_once_before_first_use(chat_factory):
    with OpenAIStub() as stub:
        chat = chat_factory(stub.url)
        chat.complete([_prompt("a")])
        chat.complete([_prompt("b")])
    assert stub.model_requests == 1


def test_api_key_sent_as_bearer_from_env_var(chat_factory, monkeypatch):
    monkeypatch.setenv("STUDIO_TEST_CRITIC_KEY", "sk-test-123")
    with OpenAIStub() as stub:
        chat = chat_factory(stub.url, api_key_env="STUDIO_TEST_CRITIC_KEY")
        chat.complete([_prompt("x")])
    assert {r.headers.get("authorization") for r in stub.received} == {"Bearer sk-test-123"}
    assert "sk-test-123" not in repr(chat.to_config())


def test_no_authorization_header_without_key(chat_factory, monkeypatch):
    monkeypatch.delenv("STUDIO_TEST_CRITIC_KEY", raising=False)
    with OpenAIStub() as stub:
        chat = chat_factory(stub.url, api_key_env="STUDIO_TEST_CRITIC_KEY")
        chat.complete([_prompt("x")])
    assert all("authorization" not in r.headers for r in stub.received)


@pytest.mark.parametrize("setting", [{"concurrency": 0}, {"max_retries": -1}, {"timeout_s": 0}, {"max_tokens": 1.5}])
def test_bad_settings_raise_config_error(setting):
    with pytest.raises(ConfigError):
        OpenAIChat(**setting)


def test_closed_client_refuses_work(chat_factory):
    with OpenAIStub() as stub:
        chat = chat_factory(stub.url)
        chat.complete([_prompt("x")])
        chat.close()
        with pytest.raises(RuntimeError, match="closed"):
            chat.complete([_prompt("x")])


def _critique_requests(n: int) -> list[CritiqueRequest]:
    return [CritiqueRequest(task="t2i", prompt="a red square", image=Image.new("RGB", (16, 16), "red")) for _ in range(n)]


def test_critic_parses_answers_through_registry():
    with OpenAIStub(reply=lambda body: sample_critique("t2i", score=3.5)) as stub:
        critic = load_backend("critic", "openai", base_url=stub.url, concurrency=4)
        try:
            results = critic.critique(_critique_requests(3))
        finally:
            critic.close()
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].scores["text_faithfulness"] == 3.5


def test_critic_garbage_reply_is_retried_once_then_failure():
    with OpenAIStub(reply=lambda body: "I cannot help with that.") as stub:
        critic = OpenAICritic(base_url=stub.url, parse_retries=1)
        try:
            (result,) = critic.critique(_critique_requests(1))
        finally:
            critic.close()
    assert isinstance(result, CritiqueFailure)
    assert result.attempts == 2 and result.raw == "I cannot help with that."
    assert stub.chat_requests == 2
    assert critic.stats.parse_failures == 1


def test_critic_transport_failure_is_a_failure_result_not_a_score():
    with OpenAIStub(script=[Scripted(400, message="image too large")]) as stub:
        critic = OpenAICritic(base_url=stub.url)
        try:
            (result,) = critic.critique(_critique_requests(1))
        finally:
            critic.close()
    assert isinstance(result, CritiqueFailure) and "image too large" in result.reason
    assert critic.stats.transport_failures == 1


def test_critic_to_config_round_trips_without_key():
    critic = OpenAICritic(base_url="http://h:9000", api_key="sk-secret", concurrency=8, parse_retries=2)
    config = critic.to_config()
    critic.close()
    assert "sk-secret" not in repr(config)
    assert config["base_url"] == "http://h:9000/v1" and config["parse_retries"] == 2
    rebuilt = OpenAICritic(**config)
    assert rebuilt.to_config() == config
    rebuilt.close()


@pytest.mark.parametrize("compression", ["none", "fast"])
@pytest.mark.parametrize(
    "image",
    [
        Image.effect_noise((37, 21), 60).convert("RGB"),  # the direct RGB writer
        Image.merge("RGB", [Image.linear_gradient("L").resize((64, 48))] * 3),  # smooth: Sub filter wraps
        Image.effect_noise((16, 9), 60),  # mode L: Pillow's writer
        Image.new("RGBA", (5, 7), (10, 20, 30, 40)),
    ],
)
def test_png_data_uri_is_lossless(image, compression):
    import base64
    import io

    from models.critic.chat import png_data_uri

    uri = png_data_uri(image, compression)
    assert uri.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.format == "PNG" and decoded.mode == image.mode and decoded.size == image.size
    assert decoded.tobytes() == image.tobytes()


def test_images_are_encoded_once_per_prompt_across_re_asks(monkeypatch):
    from models.critic import chat

    encoded = []
    real = chat.png_data_uri
    monkeypatch.setattr(chat, "png_data_uri", lambda image, compression: encoded.append(image) or real(image, compression))
    with OpenAIStub(reply=lambda body: "I cannot help with that.") as stub:
        critic = OpenAICritic(base_url=stub.url, parse_retries=2)
        try:
            critic.critique(_critique_requests(2))
        finally:
            critic.close()
    assert stub.chat_requests == 6
    assert len(encoded) == 2


def test_an_image_is_encoded_once_across_prompts_and_concurrent_requests(monkeypatch):
    from models.critic import chat

    encoded = []
    real = chat.png_data_uri
    monkeypatch.setattr(chat, "png_data_uri", lambda image, compression: encoded.append(image) or real(image, compression))
    a, b, source = (Image.effect_noise((96, 64), 40 + i).convert("RGB") for i in range(3))
    pairs = [PairRequest("edit", "make it blue", a, b, source), PairRequest("edit", "make it blue", b, a, source)]
    with OpenAIStub(latency_s=0.05) as stub:
        critic = OpenAICritic(base_url=stub.url, concurrency=8, parse_retries=0)
        try:
            critic.judge(pairs * 4)  # A/B and B/A, sent at once from several encoding threads
            critic.critique([CritiqueRequest("edit", "make it blue", a, source)])
        finally:
            critic.close()
    assert stub.chat_requests == 9
    assert sorted(map(id, encoded)) == sorted(map(id, (a, b, source)))


def test_encoding_cache_forgets_collected_images_and_keeps_within_its_limit():
    import gc

    from models.critic.chat import EncodingCache, png_data_uri

    cache = EncodingCache(max_chars=3 * len(png_data_uri(Image.new("RGB", (32, 32)))))
    images = [Image.new("RGB", (32, 32), (i, 0, 0)) for i in range(5)]
    uris = [cache.data_uri(image) for image in images]
    assert len(cache) == 3 and uris[4] == png_data_uri(images[4])  # the two oldest were dropped
    del images[4], uris
    gc.collect()
    assert len(cache) == 2


def test_image_compression_setting_is_checked_and_kept_in_the_config():
    with pytest.raises(ConfigError, match="image_compression"):
        OpenAIChat(image_compression="zip")
    chat = OpenAIChat(image_compression="fast")
    assert chat.to_config()["image_compression"] == "fast"
    chat.close()


def test_proxy_from_environment_is_used_unless_no_proxy(chat_factory, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    with OpenAIStub() as stub:
        with pytest.raises(BackendUnavailableError, match="Cannot reach"):
            chat_factory(stub.url).health_check()  # went to the (closed) proxy
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert chat_factory(stub.url).health_check() == "stub-critic"


def test_complete_iter_yields_each_answer_as_it_arrives(chat_factory):
    # the first request the server gets is slow: the caller gets the others before it
    with OpenAIStub(reply=_echo, script=[Scripted(200, delay_s=0.5)]) as stub:
        chat = chat_factory(stub.url, concurrency=4)
        chat.health_check()
        arrivals = list(chat.complete_iter([_prompt(f"prompt {i}") for i in range(4)]))
        slow = _echo(stub.chat_bodies()[0])
    assert sorted(arrivals) == [(i, f"prompt {i}") for i in range(4)]
    assert arrivals[-1][1] == slow


def test_closing_complete_iter_early_cancels_the_rest(chat_factory):
    with OpenAIStub(latency_s=0.3) as stub:
        chat = chat_factory(stub.url, concurrency=2)
        chat.health_check()
        answers = chat.complete_iter([_prompt(f"p{i}") for i in range(20)])
        next(answers)
        answers.close()
        time.sleep(0.8)
        assert stub.chat_requests < 6  # not all 20: the waiting ones were never sent
