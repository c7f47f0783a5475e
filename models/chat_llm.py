"""Text-only chat LLMs for the prompt rewriter: an OpenAI-compatible server or a local
transformers causal LM. Both turn ``[{"role": ..., "content": str}, ...]`` into the reply text.

The HTTP side is the critic's ``OpenAIChat`` (one client, health check, retries with backoff);
this module only adapts plain text messages to it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Protocol

from models.errors import BackendUnavailableError, ConfigError

logger = logging.getLogger(__name__)

Message = dict[str, str]


class ChatLLM(Protocol):
    """Answers a list of text chat messages with the assistant's reply."""

    def chat(self, messages: list[Message]) -> str: ...

    def to_config(self) -> dict[str, Any]: ...


class OpenAIChatLLM:
    """An instruction-following LLM behind an OpenAI-compatible endpoint (vLLM, OpenAI, ...).

    Takes the settings of ``models.critic.critic_openai.OpenAIChat`` (``base_url``, ``model``,
    ``api_key_env``, ``timeout_s``, ``max_retries``, ``temperature``, ``max_tokens``, ...).
    Raises ``BackendUnavailableError`` when the server cannot be reached or gives no answer.
    """

    def __init__(self, **settings: Any) -> None:
        from models.critic.critic_openai import OpenAIChat

        settings.setdefault("concurrency", 1)
        settings.setdefault("max_tokens", 512)  # a prompt, not a critique
        self._client = OpenAIChat(**settings)

    def chat(self, messages: list[Message]) -> str:
        """The assistant's reply to ``messages`` (after the client's retries)."""
        from models.critic.chat import ChatPrompt, CompletionError

        # OpenAIChat reads only ``messages`` and ``images`` of a ChatPrompt; a text-only rewrite
        # request has no critique request behind it.
        prompt = ChatPrompt(kind="pointwise", messages=list(messages), images=[],
                            request=None, meta={"purpose": "rewrite"})  # type: ignore[arg-type]
        try:
            (answer,) = self._client.complete([prompt])
        except BackendUnavailableError as e:
            raise BackendUnavailableError(_as_rewriter(str(e))) from e
        if isinstance(answer, CompletionError):
            if _EMPTY_ANSWER in answer.reason:
                return ""  # the server is up and answered nothing: the rewriter reports an unusable answer
            raise BackendUnavailableError(f"The rewriter LLM gave no answer: {_as_rewriter(answer.reason)}")
        return answer

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this backend (never the API key)."""
        return self._client.to_config()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class TransformersChatLLM:
    """A local causal LM (``AutoModelForCausalLM`` + its chat template), loaded on first use.

    :param model: hub id or local folder of a chat model whose tokenizer has a chat template.
    :param device: ``"auto"`` (CUDA when available) or a torch device string.
    :param dtype: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
    :param max_new_tokens: the most tokens one reply may have.
    :param temperature: 0 for greedy decoding, else sampling at this temperature.
    """

    _DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

    def __init__(
        self,
        *,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 300,
        temperature: float = 0.0,
    ) -> None:
        if dtype != "auto" and dtype not in self._DTYPES:
            raise ConfigError(f"dtype must be 'auto' or one of {sorted(self._DTYPES)}; got {dtype!r}.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a whole number of 1 or more; got {max_new_tokens!r}.")
        if temperature < 0:
            raise ConfigError(f"temperature must be 0 or more; got {temperature!r}.")
        self.model_id = model
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with self._lock:
            if self._loaded is None:
                device = self.device
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                name = self._DTYPES.get(self.dtype) or ("bfloat16" if device.startswith("cuda") else "float32")
                try:
                    tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                    model = AutoModelForCausalLM.from_pretrained(self.model_id, dtype=getattr(torch, name))
                except OSError as e:
                    raise BackendUnavailableError(
                        f"Could not load the rewriter LLM {self.model_id!r}: not a local folder, and not "
                        f"fetchable from the Hugging Face Hub (offline or misspelled). Details: {str(e)[:300]}"
                    ) from e
                if not getattr(tokenizer, "chat_template", None):
                    raise BackendUnavailableError(
                        f"The rewriter LLM {self.model_id!r} has no chat template; use an instruct/chat model."
                    )
                self._loaded = (tokenizer, model.to(device).eval())
            return self._loaded

    def chat(self, messages: list[Message]) -> str:
        """The model's reply to ``messages`` (special tokens removed)."""
        import torch

        tokenizer, model = self._load()
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True,
            enable_thinking=False,  # Qwen3 templates: answer directly; other templates ignore it
        ).to(model.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if self.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.temperature}
        with torch.no_grad():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return str(tokenizer.decode(new_tokens, skip_special_tokens=True))

    def to_config(self) -> dict[str, Any]:
        """The settings that rebuild this backend."""
        return {"model": self.model_id, "device": self.device, "dtype": self.dtype,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}


#: How ``OpenAIChat`` words an answer that arrived without text (a reply, not an outage).
_EMPTY_ANSWER = "answered without any message content"


#: What to do when the rewriter's server cannot be reached.
REWRITER_HINT = "Start the rewriter's server or pass --rewriter-url with its address (or use --rewriter critic)."


def _as_rewriter(reason: str) -> str:
    """``OpenAIChat``'s message about its server, naming the rewriter's server and how to start
    it (the client is shared with the critic, whose messages say "the critic server")."""
    from models.critic.critic_openai import START_HINT

    return re.sub(r"(?i)the critic server", lambda m: m.group(0)[0] + "he rewriter LLM server",
                  reason.replace(START_HINT, REWRITER_HINT))


def build_chat_llm(llm_backend: str, **settings: Any) -> ChatLLM:
    """``OpenAIChatLLM`` for ``llm_backend="openai"``, ``TransformersChatLLM`` for ``"transformers"``."""
    if llm_backend == "openai":
        return OpenAIChatLLM(**settings)
    if llm_backend == "transformers":
        return TransformersChatLLM(**settings)
    raise ConfigError(f"llm_backend must be 'openai' or 'transformers'; got {llm_backend!r}.")
