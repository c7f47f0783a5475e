"""The transformers critic end to end on tiny random Qwen-VL checkpoints built in the test."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id must never reach the network here

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from models.critic.chat import ChatPrompt, CompletionError
from models.critic.critic_transformers import (
    QWEN_CHAT_TEMPLATE,
    ImageOnlyQwenVLProcessor,
    TransformersChat,
    TransformersCritic,
    is_image_text_processor,
    load_processor,
    resolve_dtype,
)
from models.critic.tiny_qwen import build_tiny_qwen3vl, build_tiny_qwen25vl
from models.errors import BackendUnavailableError, ConfigError
from models.registry import load_backend
from models.types import CritiqueFailure, CritiqueRequest

COLOURS = ["red", "green", "blue", "yellow", "purple"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machines have two shared cores; one thread keeps timings steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny_qwen3vl"), seed=0)


@pytest.fixture(scope="module")
def critic(tiny_folder) -> TransformersCritic:
    return TransformersCritic(model=str(tiny_folder), dtype="float32", temperature=0, max_new_tokens=16)


def _prompt(i: int) -> ChatPrompt:
    """A distinct prompt per ``i``: its own text length, colour and image size."""
    image = Image.new("RGB", (64 + 16 * i, 64), COLOURS[i % len(COLOURS)])
    text = f"Request {i}: a {COLOURS[i % len(COLOURS)]} square. " * (i + 1)
    messages = [
        {"role": "system", "content": "You judge images."},
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image"}, {"type": "text", "text": "Judge it."}],
        },
    ]
    return ChatPrompt(kind="pointwise", messages=messages, images=[image], request=CritiqueRequest("t2i", text, image))


def _chat(folder: Path, **settings) -> TransformersChat:
    """Greedy, float32 (bit-stable batching on any device), short outputs."""
    defaults = {"dtype": "float32", "temperature": 0, "max_new_tokens": 16}
    return TransformersChat(model=str(folder), **{**defaults, **settings})


def test_complete_batched_equals_one_at_a_time_in_order(tiny_folder):
    prompts = [_prompt(i) for i in range(5)]
    batched = _chat(tiny_folder, batch_size=8)
    single = _chat(tiny_folder, batch_size=1)
    together = batched.complete(prompts)
    alone = single.complete(prompts)
    assert together == alone
    assert all(isinstance(text, str) and text for text in together)
    assert len(set(together)) > 1, "the prompts should give different texts, or order is not tested"
    assert (batched.stats.batches, single.stats.batches) == (1, 5)


def test_static_and_dynamic_kv_cache_write_the_same_greedy_texts(tiny_folder):
    prompts = [_prompt(i) for i in range(5)]  # different lengths: left padding in the batch
    static = _chat(tiny_folder, batch_size=8, kv_cache="static")
    dynamic = _chat(tiny_folder, batch_size=8, kv_cache="dynamic")
    assert static.complete(prompts) == dynamic.complete(prompts)
    assert static.to_config()["kv_cache"] == "static"


def test_complete_greedy_repeats_exactly(tiny_folder):
    chat = _chat(tiny_folder, batch_size=4)
    prompts = [_prompt(i) for i in range(3)]
    assert chat.complete(prompts) == chat.complete(prompts)


def test_complete_sampling_with_seed_repeats(tiny_folder):
    chat = _chat(tiny_folder, temperature=1.0, seed=7)
    prompts = [_prompt(0), _prompt(1)]
    assert chat.complete(prompts) == chat.complete(prompts)


def test_complete_counts_new_tokens_only(tiny_folder):
    chat = _chat(tiny_folder, max_new_tokens=12, min_new_tokens=12)
    texts = chat.complete([_prompt(0), _prompt(3)])
    assert chat.stats.last_token_counts == [12, 12]
    assert chat.stats.new_tokens == 24
    assert not any("Request" in text for text in texts), "the prompt must not be echoed back"


def test_complete_bad_batch_becomes_completion_errors_for_that_batch_only(tiny_folder):
    broken = _prompt(2)
    broken.images = []  # an image placeholder without its image
    chat = _chat(tiny_folder, batch_size=2)
    results = chat.complete([_prompt(0), _prompt(1), broken])
    assert [type(r) for r in results] == [str, str, CompletionError]
    assert str(tiny_folder) in results[2].reason
    assert chat.stats.failed_batches == 1


def _repack_for_avx512bf16(weight: torch.Tensor, quant_state) -> None:
    """What bitsandbytes does to a 4-bit weight at its layer's first inference call on a CPU with
    AVX512-BF16, done on a copy so that it runs (and can fail) on every CPU."""
    import copy

    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    _convert_weight_packed_for_cpu(weight.clone(), copy.deepcopy(quant_state))


def test_4bit_loading_generates_text(tiny_folder):
    import bitsandbytes as bnb

    chat = _chat(tiny_folder, quantization="4bit", max_new_tokens=8, min_new_tokens=8)
    quantized = [m for m in chat.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) > 10  # the tiny model's widths let every layer but lm_head be quantized
    for layer in quantized:
        _repack_for_avx512bf16(layer.weight.data, layer.weight.quant_state)
    texts = chat.complete([_prompt(0), _prompt(1)])
    assert all(isinstance(text, str) and text for text in texts)
    assert chat.stats.last_token_counts == [8, 8]


def test_4bit_on_cpu_keeps_layers_the_bf16_kernel_cannot_repack_in_full_precision(tmp_path, monkeypatch, caplog):
    """A vision tower 32 wide cannot be repacked for bitsandbytes' AVX512-BF16 kernel (input widths
    must divide by 64). Forcing the flag bitsandbytes reads makes every 4-bit layer take that path
    on any CPU: the critic must leave the narrow layers unquantized and still generate."""
    import bitsandbytes as bnb
    import bitsandbytes.nn.modules

    folder = build_tiny_qwen3vl(tmp_path / "narrow_vision", seed=0, vision_hidden_size=32)
    monkeypatch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: True)
    with caplog.at_level("WARNING", logger="models.critic.quantization"):
        chat = _chat(folder, quantization="4bit", max_new_tokens=4, min_new_tokens=4)
    assert "model.visual.blocks.0.attn.qkv" in caplog.text
    modules = dict(chat.model.named_modules())
    narrow = modules["model.visual.blocks.0.attn.qkv"]
    assert type(narrow) is torch.nn.Linear and narrow.in_features == 32
    quantized = [m for m in modules.values() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.support_avx512bf16_for_cpu for m in quantized)
    for layer in quantized:
        _repack_for_avx512bf16(layer.weight.data, layer.weight.quant_state)


def test_repacking_a_narrow_4bit_layer_fails_which_is_why_it_is_skipped():
    """The control for the test above: quantized anyway, a 32-wide layer breaks the repacking."""
    from bitsandbytes.functional import quantize_4bit

    weight, quant_state = quantize_4bit(torch.nn.Linear(32, 96).weight.data, quant_type="nf4")
    with pytest.raises(RuntimeError, match="invalid for input"):
        _repack_for_avx512bf16(weight, quant_state)
    _repack_for_avx512bf16(*quantize_4bit(torch.nn.Linear(64, 96).weight.data, quant_type="nf4"))


def test_critique_of_garbage_retries_once_then_reports_failure(critic):
    image = Image.new("RGB", (64, 64), "red")
    requests = [
        CritiqueRequest("t2i", "a red square", image),
        CritiqueRequest("edit", "make it blue", Image.new("RGB", (64, 64), "blue"), source_image=image),
    ]
    asked_before = critic.completer.stats.prompts
    results = critic.critique(requests)
    assert [type(r) for r in results] == [CritiqueFailure, CritiqueFailure]
    for result in results:
        assert result.attempts == 2
        assert isinstance(result.raw, str) and result.raw
        assert "did not parse" in result.reason
        assert not hasattr(result, "scores")
    assert critic.completer.stats.prompts - asked_before == 4
    assert critic.stats.parse_retries >= 2 and critic.stats.parse_failures >= 2


def test_to_config_rebuilds_the_critic_through_the_registry(critic, tiny_folder):
    config = critic.to_config()
    assert config["model"] == str(tiny_folder)
    assert (config["dtype"], config["temperature"], config["max_new_tokens"]) == ("float32", 0, 16)
    assert config["parse_retries"] == 1
    rebuilt = load_backend("critic", "transformers", **config)
    assert isinstance(rebuilt, TransformersCritic)
    assert rebuilt.to_config() == config


def test_autoprocessor_trap_is_detected_and_fixed(tiny_folder):
    # Without torchvision AutoProcessor quietly gives a bare tokenizer for this folder.
    assert not is_image_text_processor(AutoProcessor.from_pretrained(tiny_folder))
    processor = load_processor(str(tiny_folder))
    assert isinstance(processor, ImageOnlyQwenVLProcessor)
    assert is_image_text_processor(processor)


def test_load_processor_with_stock_qwen_processor_class(tiny_folder, tmp_path):
    """A released checkpoint names Qwen3VLProcessor, which cannot be built without torchvision."""
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "stock"))
    for name in ("processor_config.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text())
        config["processor_class"] = "Qwen3VLProcessor"
        (folder / name).write_text(json.dumps(config))
    chat = _chat(folder)
    assert isinstance(chat.processor, ImageOnlyQwenVLProcessor)
    assert isinstance(chat.complete([_prompt(0)])[0], str)


def test_load_processor_without_chat_template_uses_qwen_template(tiny_folder, tmp_path):
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "no_template"))
    (folder / "chat_template.jinja").unlink()
    processor = load_processor(str(folder))
    assert processor.chat_template == QWEN_CHAT_TEMPLATE
    text = processor.apply_chat_template(_prompt(0).messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_qwen25vl_checkpoint_batches_like_one_at_a_time(tmp_path):
    folder = build_tiny_qwen25vl(tmp_path / "tiny_qwen25vl", seed=0)
    prompts = [_prompt(i) for i in range(3)]
    assert _chat(folder, batch_size=8).complete(prompts) == _chat(folder, batch_size=1).complete(prompts)


def test_missing_folder_raises_backend_unavailable_naming_the_path(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(BackendUnavailableError, match=str(missing)):
        TransformersCritic(model=str(missing))


def test_folder_without_config_raises_backend_unavailable(tmp_path):
    with pytest.raises(BackendUnavailableError, match="config.json"):
        TransformersCritic(model=str(tmp_path))


def test_unknown_hub_id_offline_raises_backend_unavailable(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at call time
    with pytest.raises(BackendUnavailableError, match="nobody-here/no-such-critic"):
        TransformersCritic(model="nobody-here/no-such-critic")


def test_non_qwen_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(BackendUnavailableError, match="'llama'"):
        TransformersCritic(model=str(tmp_path))


@pytest.mark.parametrize(
    "settings, names",
    [
        ({"batch_sise": 4}, "batch_sise"),
        ({"batch_size": 0}, "batch_size"),
        ({"temperature": -0.5}, "temperature"),
        ({"dtype": "float8"}, "dtype"),
        ({"quantization": "3bit"}, "quantization"),
        ({"max_new_tokens": 8, "min_new_tokens": 9}, "min_new_tokens"),
        ({"kv_cache": "paged"}, "kv_cache"),
    ],
)
def test_bad_settings_raise_config_error_before_loading(settings, names):
    with pytest.raises(ConfigError, match=names):
        TransformersCritic(model="/nowhere/at/all", **settings)


@pytest.mark.parametrize(
    "cuda, bf16, expected",
    [(False, False, torch.float32), (True, True, torch.bfloat16), (True, False, torch.float16)],
)
def test_resolve_dtype_auto_follows_the_hardware(monkeypatch, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_dtype("auto") == expected
    assert resolve_dtype("float32") == torch.float32


def test_close_frees_the_model_and_can_repeat(tiny_folder):
    chat = _chat(tiny_folder)
    chat.close()
    chat.close()
    assert not hasattr(chat, "model")
    with pytest.raises(BackendUnavailableError, match="was closed"):  # e.g. replaced by another critic
        chat.complete([_prompt(0)])
