"""Tokens per example and training examples per minute of the tiny student: byte-level tokenizer
vs the protocol tokenizer (``models.critic.protocol_tokenizer``), same model size, same examples.

Both students are built from the same config (only the tokenizer differs) and trained on the
same exported examples in the same batches; training steps alternate A, B, A, B and the medians
are reported. Prints one JSON line.

    nice python -m bench.parrot_tokens --dataset runs/parrot-1000/export
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.critic.protocol_tokenizer import sharegpt_texts, template_texts, train_protocol_tokenizer
from models.critic.tiny_qwen import build_tiny_qwen3vl
from studio.parrot.student_data import collate, encode, load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a folder written by `studio parrot export`")
    parser.add_argument("--examples", type=int, default=32, help="examples whose token counts are measured")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per tokenizer (alternating)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_split(Path(args.dataset), "parrot")
    tokenizers = {"bytes": None,
                  "protocol": train_protocol_tokenizer([*template_texts(), *sharegpt_texts(train)])}
    setups = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tokenizer in tokenizers.items():
            folder = build_tiny_qwen3vl(Path(tmp) / name, hidden_size=args.hidden, num_layers=args.layers,
                                        patch_size=args.patch, tokenizer=tokenizer)
            processor = load_processor(str(folder))
            model = AutoModelForImageTextToText.from_pretrained(str(folder))
            encoded = [encode(record, processor, 1 << 16) for record in train[: args.examples]]
            setups[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), processor, encoded)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for step in range(args.rounds + 1):  # the first round warms up, untimed
        for name, (model, optimizer, processor, encoded) in setups.items():
            start = step * args.batch % max(1, len(encoded) - args.batch)
            batch = collate(encoded[start:start + args.batch], processor.tokenizer.pad_token_id)
            began = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:
                times[name].append(time.perf_counter() - began)
    report = {"examples": len(setups["bytes"][3]), "batch": args.batch, "load": round(os.getloadavg()[0], 1)}
    for name, (model, _, processor, encoded) in setups.items():
        report[name] = {
            "vocab": len(processor.tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "tokens_per_example": round(statistics.mean(len(e.input_ids) for e in encoded), 1),
            "answer_tokens_per_example": round(statistics.mean(int((e.labels != -100).sum()) for e in encoded), 1),
            "seconds_per_step": round(statistics.median(times[name]), 2),
            "examples_per_minute": round(60 * args.batch / statistics.median(times[name]), 1),
        }
    report["speedup"] = round(report["protocol"]["examples_per_minute"] / report["bytes"]["examples_per_minute"], 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
