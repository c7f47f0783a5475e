"""Does a share of request tasks teach the base to read its prompt, and what does it cost the captions?

Continues one pretrained base (``--init``, never modified: each arm writes its own run folder) for
``--steps`` steps of ``parrot pretrain`` on the full scene distribution (no curriculum) with each
``--request-tasks`` share, arms alternated in the order given, the same seed. Each arm prints one
JSON row from its ``pretrain.json``: the held-out requests restated word for word (greedy, the
requests of the bench's first ``--restate-requests`` held-out pairs, never drawn in training), the
``prompt_gap`` (``pretrain.prompt_reliance``: > 0 once the model copies from its prompt) and
the caption scores on ``--eval-images`` held-out renders, with the seconds and the load average.

    python -m bench.parrot_request_tasks --init /tmp/h16e/base --steps 200 --request-tasks 0.3 0 \\
        --run-root /tmp/h16e/probe
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from studio.jobs.context import RecordingContext
from studio.parrot import pretrain

CAPTION_KEYS = ("exact", "scene", "object", "shape", "colour", "size", "count", "word", "flaw")


def arm(share: float, args: argparse.Namespace) -> dict[str, object]:
    """One continued pretraining run with ``share`` request tasks; its summary row."""
    config = pretrain.PretrainConfig(
        init=args.init, request_tasks=share, curriculum=0.0, max_steps=args.steps, batch_size=args.batch,
        learning_rate=args.lr, warmup_steps=args.warmup, eval_images=args.eval_images,
        restate_requests=args.restate_requests, seed=args.seed)
    config.validate()
    started = time.perf_counter()
    summary = pretrain.run(config, RecordingContext(Path(args.run_root) / f"request-tasks-{share:g}"))
    return {"request_tasks": share, "steps": summary["step"], "last_loss": round(summary["last_loss"], 3),
            "restated": summary["restated"]["word_for_word"], "requests": summary["restated"]["requests"],
            "prompt_gap": summary["restated"].get("gap"),
            **{k: summary["captions"][k] for k in CAPTION_KEYS}, "image_gap": summary["image_reliance"]["gap"],
            "seconds": round(time.perf_counter() - started), "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    """Run the arms in the order given and print one JSON row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="the pretrained base folder (parrot pretrain's model/)")
    parser.add_argument("--request-tasks", type=float, nargs="+", default=[0.3, 0.0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--restate-requests", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-root", required=True, help="each arm's run folder goes under it")
    args = parser.parse_args()
    for share in args.request_tasks:
        print(json.dumps(arm(share, args)), flush=True)


if __name__ == "__main__":
    main()
