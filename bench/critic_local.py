"""Batched versus one-at-a-time generation of the transformers critic on a tiny Qwen3-VL.

A tiny random Qwen3-VL (``models.critic.tiny_qwen``) is written to a temporary folder and loaded
twice through ``TransformersCritic``: with ``batch_size`` 8 and with 1. Both critique the same
requests (the full path: input checks, the RationalRewards prompt, chat template, generate,
parse) greedily with ``min_new_tokens = max_new_tokens``, so both generate exactly the same
number of tokens; the script checks that and prints the counts. The random model writes no
parseable critique, so every result is a parse failure with one attempt (``parse_retries=0``);
any other failure is an error. Each repeat runs both modes back to back (A, B, A, B); the script
reports the median generated tokens/s of each mode and the median of the per-repeat ratios
(pairs measured together are less exposed to the load drifts of a shared machine), by the wall
clock and by the process's CPU time. With one torch thread (the default) the floor applies to
the CPU-time ratio: the run is single-threaded, so on an idle machine the two agree, and on a
shared one the CPU time leaves out the time spent waiting for a core that others hold (a run
lasts minutes, long enough for the load to change between the two modes). Exits 1 when the
floored ratio is below ``--floor`` or the token counts differ.

Batching speeds up decoding, not prefill, so the answer length decides the result. By default
it is chosen so that the tiny model's prompt:answer token ratio equals a real checkpoint's
(``real_token_ratio``): the shipped pointwise prompt and a real-length critique
(``bench/data/critique_t2i_real_length.txt``) counted at ``CHARS_PER_TOKEN`` characters per
Qwen token, plus the image tokens Qwen3-VL gives an ``--image-px`` square image. The tiny
model's byte-level tokenizer makes the prompt about 4,300 tokens, so the answer is about
1,800 tokens.

Run from the repository root:  python -m bench.critic_local [--requests 8] [--image-px 1024]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image, ImageDraw
from transformers.utils import logging as transformers_logging

from models.critic.critic_transformers import KV_CACHES, TransformersChat, TransformersCritic
from models.critic.prompts import build_pointwise_prompt
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.types import CritiqueFailure, CritiqueRequest

#: English text per token of a Qwen tokenizer (a byte-level BPE of about 150k entries).
CHARS_PER_TOKEN = 4.0
#: A critique of the length a released checkpoint writes (three dimensions, two deductions each).
REAL_CRITIQUE = Path(__file__).resolve().parent / "data" / "critique_t2i_real_length.txt"
#: Qwen3-VL: 16-pixel patches merged 2 x 2, so one image token per 32 x 32 pixels.
QWEN3VL_TOKEN_PX = 32


def make_requests(n: int, size: int = 64) -> list[CritiqueRequest]:
    """``n`` t2i requests, each with a small drawn image (a coloured shape on a plain ground)."""
    requests = []
    for i in range(n):
        image = Image.new("RGB", (size, size), ((37 * i) % 256, 200, 230))
        ImageDraw.Draw(image).rectangle((8 + i % 16, 10, size - 8, size - 12), fill=(220, (53 * i) % 256, 40))
        requests.append(CritiqueRequest(task="t2i", prompt=f"a red square on a blue ground, variant {i}", image=image))
    return requests


def real_token_ratio(chat: TransformersChat, request: CritiqueRequest, image_px: int) -> dict[str, float]:
    """The prompt:answer token ratio of a real checkpoint for ``request``, and what it is built from.

    The real prompt is the tiny model's prompt text (its byte-level tokenizer gives one token per
    byte, so its text tokens are the text's length) at ``CHARS_PER_TOKEN``, plus the image tokens
    Qwen3-VL gives an ``image_px`` square image; the real answer is ``REAL_CRITIQUE`` at the same
    rate plus the end token. Qwen's pre-tokenizer splits (each at least one token) are reported
    beside them as a lower bound."""
    prompt = build_pointwise_prompt(request)
    tiny_tokens, tiny_image_tokens = chat.prompt_token_counts(prompt)
    critique = REAL_CRITIQUE.read_text(encoding="utf-8")
    image_tokens = math.ceil(image_px / QWEN3VL_TOKEN_PX) ** 2
    text_tokens = (tiny_tokens - tiny_image_tokens) / CHARS_PER_TOKEN
    answer_tokens = len(critique) / CHARS_PER_TOKEN + 1
    pre_tokenize = chat.tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    return {
        "tiny_prompt_tokens": tiny_tokens,
        "real_text_tokens": round(text_tokens),
        "real_image_tokens": image_tokens,
        "real_answer_tokens": round(answer_tokens),
        "ratio": (text_tokens + image_tokens) / answer_tokens,
        "text_pre_tokens": len(pre_tokenize(chat.prompt_text(prompt))),
        "answer_pre_tokens": len(pre_tokenize(critique)) + 1,
    }


@dataclass
class Run:
    """One timed run: wall and process CPU seconds, tokens generated, and per critique."""

    wall: float
    cpu: float
    tokens: int
    per: list[int]


def run_once(critic: TransformersCritic, requests: list[CritiqueRequest]) -> Run:
    """Critique ``requests``; return the run.

    Raises ``RuntimeError`` when a result is anything but the expected parse failure."""
    stats = critic.completer.stats
    tokens_before = stats.new_tokens
    started, cpu_started = time.perf_counter(), time.process_time()
    results = critic.critique(requests)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    unexpected = [r for r in results if not (isinstance(r, CritiqueFailure) and "did not parse" in r.reason)]
    if unexpected:
        raise RuntimeError(f"{len(unexpected)} critique(s) failed for another reason: {unexpected[0]}")
    return Run(wall, cpu, stats.new_tokens - tokens_before, list(stats.last_token_counts))


def paired_ratio(batched: list[Run], single: list[Run], clock: str) -> float:
    """The median over repeats of batched / single tokens per second of ``clock`` ("wall" or "cpu")."""
    return statistics.median(
        (b.tokens / getattr(b, clock)) / (s.tokens / getattr(s, clock)) for b, s in zip(batched, single)
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="critiques per run (default 8)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size compared with 1 (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="tokens generated per critique (default: the real checkpoint's prompt:answer ratio)")
    parser.add_argument("--image-px", type=int, default=1024,
                        help="side of the real image the ratio counts (default 1024: 1,024 image tokens)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode; medians are reported (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--kv-cache", choices=KV_CACHES, default="auto",
                        help="the critic's key/value cache (default auto, the studio's default: static on the CPU)")
    parser.add_argument("--floor", type=float, default=3.0, help="least batched/single throughput ratio (default 3)")
    args = parser.parse_args(argv)
    for name in ("requests", "batch_size", "image_px", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}.")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens must be at least 1; got {args.max_new_tokens}.")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("models.critic.runner").setLevel(logging.ERROR)  # every parse failure is expected here
    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)

    requests = make_requests(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_qwen3vl(Path(tmp) / "tiny_qwen3vl", seed=0)
        settings = {"dtype": "float32", "temperature": 0, "parse_retries": 0, "kv_cache": args.kv_cache}
        probe = TransformersCritic(model=str(folder), **settings)
        real = real_token_ratio(probe.completer, requests[0], args.image_px)
        probe.close()
        new_tokens = args.max_new_tokens or round(real["tiny_prompt_tokens"] / real["ratio"])
        print(f"real checkpoint ({args.image_px} px image): prompt {real['real_text_tokens']} text + "
              f"{real['real_image_tokens']} image tokens, answer {real['real_answer_tokens']} tokens "
              f"(Qwen pre-tokens, a lower bound: {real['text_pre_tokens']} and {real['answer_pre_tokens']}); "
              f"ratio {real['ratio']:.2f}. Tiny model: prompt {real['tiny_prompt_tokens']} tokens, "
              f"answer {new_tokens} tokens (ratio {real['tiny_prompt_tokens'] / new_tokens:.2f})")
        settings.update(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        critics = {size: TransformersCritic(model=str(folder), batch_size=size, **settings)
                   for size in (args.batch_size, 1)}
        for critic in critics.values():
            run_once(critic, requests[:1])  # warm-up
        runs: dict[int, list[Run]] = {size: [] for size in critics}
        for _ in range(args.repeats):
            for size, critic in critics.items():  # alternate the modes so load drifts hit both
                runs[size].append(run_once(critic, requests))

    expected = args.requests * new_tokens
    counts_ok = all(run.tokens == expected and set(run.per) == {new_tokens} for mode in runs.values() for run in mode)
    rates = {size: statistics.median(run.tokens / run.wall for run in mode) for size, mode in runs.items()}
    ratio = paired_ratio(runs[args.batch_size], runs[1], "wall")
    cpu_ratio = paired_ratio(runs[args.batch_size], runs[1], "cpu")
    for size, mode in runs.items():
        for i, run in enumerate(mode, start=1):
            print(f"batch {size}, run {i}: {args.requests} critiques, {run.tokens} tokens "
                  f"({min(run.per)}-{max(run.per)} per critique) in {run.wall:.2f} s = {run.tokens / run.wall:.1f} "
                  f"tok/s; {run.cpu:.2f} s of CPU = {run.tokens / run.cpu:.1f} tok per CPU second")
    print(f"median tokens/s: batch {args.batch_size} {rates[args.batch_size]:.1f}, batch 1 {rates[1]:.1f}; "
          f"median paired ratio {ratio:.2f} wall, {cpu_ratio:.2f} CPU (floor {args.floor:g} on the "
          f"{'CPU' if args.threads == 1 else 'wall'} ratio); token counts equal: {counts_ok}")
    floored = cpu_ratio if args.threads == 1 else ratio
    passed = floored >= args.floor and counts_ok
    print(json.dumps({
        "bench": "critic_local", "requests": args.requests, "batch_size": args.batch_size,
        "max_new_tokens": new_tokens, "prompt_tokens": real["tiny_prompt_tokens"],
        "real_ratio": round(real["ratio"], 2), "image_px": args.image_px, "kv_cache": args.kv_cache,
        "repeats": args.repeats, "threads": args.threads, "tokens_per_run": expected, "token_counts_equal": counts_ok,
        "batched_tok_s": round(rates[args.batch_size], 1), "single_tok_s": round(rates[1], 1),
        "ratio": round(ratio, 2), "cpu_ratio": round(cpu_ratio, 2), "floor": args.floor, "passed": passed,
    }))
    return 0 if passed else 1

if __name__ == "__main__":
    sys.exit(main())
