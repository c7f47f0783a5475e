"""Batched versus one-at-a-time generation of the transformers critic on a tiny Qwen3-VL.

A tiny random Qwen3-VL (``models.critic.tiny_qwen``) is written to a temporary folder and loaded
twice through ``TransformersCritic``: with ``batch_size`` 8 and with 1. Both critique the same
requests (the full path: input checks, the RationalRewards prompt, chat template, generate,
parse) greedily with ``min_new_tokens = max_new_tokens``, so both generate exactly the same
number of tokens; the script checks that and prints the counts. The random model writes no
parseable critique, so every result is a parse failure with one attempt (``parse_retries=0``);
any other failure is an error. Each repeat runs both modes back to back; the script reports the
median generated tokens/s of each mode and the median of the per-repeat ratios (pairs measured
together are less exposed to the load drifts of a shared machine), and exits 1 when that ratio
is below ``--floor`` or the token counts differ.

The tiny model's byte-level tokenizer makes the critic prompt about 4,300 tokens, and prefill
gains nothing from batching on a CPU; decoding does. The default of 192 new tokens (a real
critique is longer) keeps decoding the larger share, as it is with a real critic.

Run from the repository root:  python -m bench.critic_local [--requests 32] [--max-new-tokens 192]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image, ImageDraw
from transformers.utils import logging as transformers_logging

from models.critic.critic_transformers import TransformersCritic
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.types import CritiqueFailure, CritiqueRequest


def make_requests(n: int, size: int = 64) -> list[CritiqueRequest]:
    """``n`` t2i requests, each with a small drawn image (a coloured shape on a plain ground)."""
    requests = []
    for i in range(n):
        image = Image.new("RGB", (size, size), ((37 * i) % 256, 200, 230))
        ImageDraw.Draw(image).rectangle((8 + i % 16, 10, size - 8, size - 12), fill=(220, (53 * i) % 256, 40))
        requests.append(CritiqueRequest(task="t2i", prompt=f"a red square on a blue ground, variant {i}", image=image))
    return requests


def run_once(critic: TransformersCritic, requests: list[CritiqueRequest]) -> tuple[float, int, list[int]]:
    """Critique ``requests``; return wall seconds, generated tokens and the per-request counts.

    Raises ``RuntimeError`` when a result is anything but the expected parse failure."""
    stats = critic.completer.stats
    tokens_before = stats.new_tokens
    started = time.perf_counter()
    results = critic.critique(requests)
    wall = time.perf_counter() - started
    unexpected = [r for r in results if not (isinstance(r, CritiqueFailure) and "did not parse" in r.reason)]
    if unexpected:
        raise RuntimeError(f"{len(unexpected)} critique(s) failed for another reason: {unexpected[0]}")
    return wall, stats.new_tokens - tokens_before, list(stats.last_token_counts)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="critiques per run (default 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size compared with 1 (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=192, help="tokens generated per critique (default 192)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode; medians are reported (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--floor", type=float, default=3.0, help="least batched/single throughput ratio (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("models.critic.runner").setLevel(logging.ERROR)  # every parse failure is expected here
    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)

    requests = make_requests(args.requests)
    settings = {
        "dtype": "float32", "temperature": 0, "parse_retries": 0,
        "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_qwen3vl(Path(tmp) / "tiny_qwen3vl", seed=0)
        critics = {size: TransformersCritic(model=str(folder), batch_size=size, **settings)
                   for size in (args.batch_size, 1)}
        for critic in critics.values():
            run_once(critic, requests[: args.batch_size])  # warm-up
        runs: dict[int, list[tuple[float, int, list[int]]]] = {size: [] for size in critics}
        for _ in range(args.repeats):
            for size, critic in critics.items():  # alternate the modes so load drifts hit both
                runs[size].append(run_once(critic, requests))

    expected = args.requests * args.max_new_tokens
    counts_ok = all(tokens == expected and set(per) == {args.max_new_tokens}
                    for mode in runs.values() for _, tokens, per in mode)
    rates = {size: statistics.median(tokens / wall for wall, tokens, _ in mode) for size, mode in runs.items()}
    ratio = statistics.median(
        (tokens_b / wall_b) / (tokens_1 / wall_1)
        for (wall_b, tokens_b, _), (wall_1, tokens_1, _) in zip(runs[args.batch_size], runs[1])
    )
    for size, mode in runs.items():
        for i, (wall, tokens, per) in enumerate(mode, start=1):
            print(f"batch {size}, run {i}: {args.requests} critiques, {tokens} tokens "
                  f"({min(per)}-{max(per)} per critique) in {wall:.2f} s = {tokens / wall:.1f} tok/s")
    print(f"median tokens/s: batch {args.batch_size} {rates[args.batch_size]:.1f}, batch 1 {rates[1]:.1f}; "
          f"median paired ratio {ratio:.2f} (floor {args.floor:g}); token counts equal: {counts_ok}")
    passed = ratio >= args.floor and counts_ok
    print(json.dumps({
        "bench": "critic_local", "requests": args.requests, "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "threads": args.threads,
        "tokens_per_run": expected, "token_counts_equal": counts_ok,
        "batched_tok_s": round(rates[args.batch_size], 1), "single_tok_s": round(rates[1], 1),
        "ratio": round(ratio, 2), "floor": args.floor, "passed": passed,
    }))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
