"""Prompt rewriters: the critic's refined request, and an LLM over HTTP (local stub) or a tiny local model."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.errors import BackendUnavailableError, ConfigError, RewriteError  # noqa: E402
from models.prompt_limit import PromptLimit  # noqa: E402
from models.rewriter import CriticRewriter, LLMRewriter, clean_rewrite  # noqa: E402
from models.types import Critique  # noqa: E402
from tests.generator_helpers import clip_tokenizer  # noqa: E402
from tests.openai_stub import OpenAIStub  # noqa: E402
from tests.rewriter_helpers import save_tiny_chat_lm  # noqa: E402

torch.set_num_threads(1)

PROMPT = "a red circle left of a blue square"


def critique(refined: str | None = "a red circle to the left of a small blue square") -> Critique:
    return Critique(
        task="t2i",
        scores={"text_faithfulness": 2.5, "physical_quality": 4.0, "text_rendering": None},
        justifications={"text_faithfulness": "The square is green, not blue.", "physical_quality": "Clean.",
                        "text_rendering": None},
        analysis=None, summary="Wrong colour on the square.", refinement_comments="Stress the blue colour.",
        refined_request=refined, overall=0.6, raw="...",
    )


def replies(*texts: str) -> Any:
    """A stub ``reply`` hook answering ``texts`` in order (the last one repeats)."""
    answers = list(texts)

    def reply(body: dict[str, Any]) -> str:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return reply


def llm_rewriter(stub: OpenAIStub, **kw: Any) -> LLMRewriter:
    return LLMRewriter(llm_backend="openai", base_url=stub.url, max_retries=0, timeout_s=5.0, **kw)


# -- CriticRewriter -----------------------------------------------------------------------------


@pytest.mark.parametrize("refined", ["?", " ok ", ""])
def test_critic_rewriter_keeps_the_prompt_when_the_refined_request_is_no_prompt(refined: str) -> None:
    rewriter = CriticRewriter()
    assert rewriter.rewrite(PROMPT, critique(refined), "t2i") == PROMPT
    assert rewriter.last_note is not None and "kept unchanged" in rewriter.last_note


def test_critic_rewriter_uses_refined_request() -> None:
    rewriter = CriticRewriter()
    assert rewriter.rewrite(PROMPT, critique(), "t2i") == "a red circle to the left of a small blue square"
    assert rewriter.last_note is None


@pytest.mark.parametrize("refined", [None, "   "])
def test_critic_rewriter_keeps_prompt_and_says_so(refined: str | None) -> None:
    rewriter = CriticRewriter()
    assert rewriter.rewrite(f"  {PROMPT} ", critique(refined), "t2i") == PROMPT
    assert rewriter.last_note is not None and "no refined request" in rewriter.last_note


# -- cleaning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A red circle.", "A red circle."),
        ('"A red circle."', "A red circle."),
        ("Refined prompt: A red circle.", "A red circle."),
        ('**Refined Prompt:** "A red circle."', "A red circle."),
        ("Here is the rewritten prompt:\n\n\u201cA red circle.\u201d", "A red circle."),
        ("<think>The user wants red.</think>\nPrompt: A red circle.", "A red circle."),
        ("```\nA red   circle,\nsharp.\n```", "A red circle, sharp."),
        ("'\"A red circle.\"'", "A red circle."),
        ("<think>never finished", ""),
        ('""', ""),
    ],
)
def test_clean_rewrite(raw: str, clean: str) -> None:
    assert clean_rewrite(raw) == clean


# -- LLMRewriter over an OpenAI-compatible endpoint ------------------------------------------


def test_llm_rewriter_sends_critique_and_cleans_answer() -> None:
    with OpenAIStub(reply=replies('**Refined prompt:** "A red circle left of a bright blue square."')) as stub:
        rewriter = llm_rewriter(stub, limit=PromptLimit(max_chars=200))
        assert rewriter.rewrite(PROMPT, critique(), "t2i") == "A red circle left of a bright blue square."
        (body,) = stub.chat_bodies()
    system, user = body["messages"]
    assert "at most 200 characters" in system["content"]
    assert PROMPT in user["content"]
    assert "Text Faithfulness (2.5/4): The square is green, not blue." in user["content"]
    assert "Physical and Visual Quality" not in user["content"]  # scored 4: nothing to fix
    assert rewriter.last_note is None
    config = rewriter.to_config()
    assert config["llm_backend"] == "openai" and config["base_url"] == stub.url and "api_key" not in config
    assert LLMRewriter(**config).to_config() == config  # a settings file rebuilds it


def test_llm_rewriter_asks_again_when_over_the_limit() -> None:
    long = "A red circle left of a blue square, " * 5
    with OpenAIStub(reply=replies(long, "A red circle, a blue square.")) as stub:
        rewriter = llm_rewriter(stub, limit=PromptLimit(max_chars=40))
        assert rewriter.rewrite(PROMPT, critique(), "t2i") == "A red circle, a blue square."
        second = stub.chat_bodies()[1]["messages"]
    assert len(stub.chat_bodies()) == 2
    assert second[-1]["role"] == "user" and "the limit is 40 characters" in second[-1]["content"]
    assert rewriter.last_note is not None and "2 answers" in rewriter.last_note


def test_llm_rewriter_still_too_long_is_an_error() -> None:
    with OpenAIStub(reply=replies("x" * 100)) as stub:
        with pytest.raises(RewriteError, match="still 100 characters long after 2 answers"):
            llm_rewriter(stub, limit=PromptLimit(max_chars=40)).rewrite(PROMPT, critique(), "t2i")


def test_llm_rewriter_counts_generator_tokens() -> None:
    tokenizer = clip_tokenizer()  # byte-level: one token per character, plus start and end
    limit = PromptLimit(max_tokens=10, count_tokens=lambda text: len(tokenizer(text).input_ids))
    with OpenAIStub(reply=replies("red circle", "red dot")) as stub:
        # "red circle" fits any character limit but is 12 tokens: it must be re-asked
        assert llm_rewriter(stub, limit=limit).rewrite(PROMPT, critique(), "t2i") == "red dot"
        assert "the limit is 10 tokens" in stub.chat_bodies()[1]["messages"][-1]["content"]


def test_llm_rewriter_empty_answer_is_an_error_not_a_keep() -> None:
    with OpenAIStub(reply=replies("<think>hmm</think>  ")) as stub:
        with pytest.raises(RewriteError, match="no usable prompt"):
            llm_rewriter(stub).rewrite(PROMPT, critique(), "t2i")


def test_llm_rewriter_limit_function_called_once_per_task() -> None:
    calls: list[str] = []

    def limit(task: str) -> PromptLimit:
        calls.append(task)
        return PromptLimit(max_chars=300 if task == "t2i" else 10)

    with OpenAIStub(reply=replies("A red circle.")) as stub:
        rewriter = llm_rewriter(stub, limit=limit)
        assert calls == []
        rewriter.rewrite(PROMPT, critique(), "t2i")
        rewriter.rewrite(PROMPT, critique(), "t2i")
        with pytest.raises(RewriteError, match="at most 10 characters"):
            rewriter.rewrite(PROMPT, critique(), "edit")
    assert calls == ["t2i", "edit"]


def test_llm_rewriter_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    rewriter = LLMRewriter(llm_backend="openai", base_url=url, max_retries=0, timeout_s=2.0)
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        rewriter.rewrite(PROMPT, critique(), "t2i")


def test_llm_rewriter_bad_settings() -> None:
    with pytest.raises(ConfigError, match="'openai' or 'transformers'"):
        LLMRewriter(llm_backend="vllm")
    with pytest.raises(ConfigError, match="attempts"):
        LLMRewriter(llm_backend="openai", attempts=0)


# -- LLMRewriter over a local transformers model -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_lm(tmp_path_factory.mktemp("lm") / "tiny-chat")


def test_transformers_rewriter_answers_through_chat_template(tiny_lm: Path) -> None:
    rewriter = LLMRewriter(llm_backend="transformers", model=str(tiny_lm), max_new_tokens=8,
                           limit=PromptLimit(max_chars=100))
    assert rewriter.rewrite(PROMPT, critique(), "t2i") == "aaaaaaaa"  # the tiny model always writes "a"
    assert rewriter.to_config()["model"] == str(tiny_lm)


def test_transformers_rewriter_enforces_limit(tiny_lm: Path) -> None:
    rewriter = LLMRewriter(llm_backend="transformers", model=str(tiny_lm), max_new_tokens=8,
                           limit=PromptLimit(max_chars=5))
    with pytest.raises(RewriteError, match="still 8 characters long after 2 answers"):
        rewriter.rewrite(PROMPT, critique(), "t2i")


def test_transformers_rewriter_missing_model(tmp_path: Path) -> None:
    rewriter = LLMRewriter(llm_backend="transformers", model=str(tmp_path / "nothing"))
    with pytest.raises(BackendUnavailableError, match="Could not load the rewriter LLM"):
        rewriter.rewrite(PROMPT, critique(), "t2i")


@pytest.mark.parametrize("answer", ["?", "  ok. ", "**...**"])
def test_llm_rewriter_refuses_an_answer_that_is_no_prompt(answer: str) -> None:
    with OpenAIStub(reply=replies(answer)) as stub:
        with pytest.raises(RewriteError, match="The rewriter 'my-llm' answered with no usable prompt"):
            llm_rewriter(stub, name="my-llm").rewrite(PROMPT, critique(), "t2i")


def test_llm_rewriter_empty_message_is_an_unusable_answer_not_a_critic_outage() -> None:
    with OpenAIStub(reply=replies("")) as stub:
        with pytest.raises(RewriteError, match="no usable prompt") as refused:
            llm_rewriter(stub).rewrite(PROMPT, critique(), "t2i")
    assert "critic server" not in str(refused.value)


def test_llm_rewriter_server_errors_name_the_rewriter_server() -> None:
    with OpenAIStub(reply=replies("A red circle.")) as stub:
        stub.stop()
        rewriter = llm_rewriter(stub)
        with pytest.raises(BackendUnavailableError) as refused:
            rewriter.rewrite(PROMPT, critique(), "t2i")
    message = str(refused.value)
    assert "the rewriter LLM server" in message and "--rewriter-url" in message
    assert "critic server" not in message and "--critic-url" not in message


@pytest.mark.parametrize("answer", ["?", ""])
def test_a_session_whose_rewriter_answers_no_prompt_fails_naming_the_rewriter(tmp_path: Path, answer: str) -> None:
    """End to end: the loop stores the session as failed with the rewriter's message (not an
    outage of "the critic server"), and no round is left running."""
    from studio.config import LoopSettings
    from studio.loop import RefineRequest, refine
    from tests.studio_fakes import ScriptedCritic, make_services, poor

    with OpenAIStub(reply=replies(answer)) as stub:
        services = make_services(tmp_path, ScriptedCritic([poor(2.0)]), rewriter=llm_rewriter(stub, name="my-llm"))  # type: ignore[arg-type]
        with pytest.raises(RewriteError, match="no usable prompt"):
            list(refine(RefineRequest("t2i", "a red square"), services,
                        LoopSettings(max_rounds=3, plateau_rounds=0, rewriter="llm")))
    session = services.store.search_sessions()[0]
    assert session["status"] == "failed" and "The rewriter 'my-llm' answered with no usable prompt" in session["message"]
    assert "critic server" not in session["message"]
    assert [r["status"] for r in services.store.rounds(session["id"])] == ["done"]
