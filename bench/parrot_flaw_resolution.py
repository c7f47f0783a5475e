"""Does a finer image patch let a tiny Qwen3-VL see flaws on ordinary renders? (issue 16)

The tenth step of ``docs/parrot.md`` found the flaw lost in the vision tower: on ordinary 64-px
renders (8-px patches merged 2x2: 16 visual tokens, each 16x16 pixels) a linear probe reads it
from the visual tokens at the prior, and 200 flaw-only steps teach nothing, while on 3x close-ups
the same question is learnt in 25 steps. This bench tests the resolution hypothesis directly: for
each ``--patch-sizes`` value it builds a fresh base (``parrot pretrain``'s sizes and tokenizer,
random weights), trains it for ``--steps`` steps on the flaw question alone ("What flaw does the
image have?" -> "blur" / ... / "none") about ordinary renders of every scene (with
``--close-up-steps N``, the first N steps about one object seen 3x closer and zooming out to its
true size, as the tenth step's flaw-only zoom-out), and reports:

* ``probe_before`` / ``probe_after``: the bench's linear probe on the visual tokens
  (``bench.parrot_base_flaws.probe_row``), fitted on ``--probe-renders`` renders of another seed,
  before training (what a random tower passes on) and after;
* ``answers``: the greedy answer's accuracy on the held-out renders ``parrot pretrain`` is scored
  on, per true kind, and ``flaw_answer_probs`` (equal rows: the prior; rows that differ: the answer
  depends on the image), every ``--eval-every`` steps;
* the seconds per step (median), so the cost of the finer patch is measured beside its effect.

With ``--steps 0`` only the untrained towers are probed (a minute a patch size, so the probe can be
fitted and scored on many more renders).

The first row is the reference analyzer on the same renders (what the exact critic reads: the
ceiling). One JSON row per patch size, then a summary line.

    python -m bench.parrot_flaw_resolution --patch-sizes 8 4 --steps 400
    python -m bench.parrot_flaw_resolution --patch-sizes 8 4 --steps 500 --close-up-steps 300
    python -m bench.parrot_flaw_resolution --patch-sizes 16 8 4 --steps 0 --eval-images 400 --probe-renders 1600
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.parrot_base_flaws import flaw_answer_probs, flaw_answer_scores, probe_row, reference_row
from studio.parrot import pretrain
from studio.parrot.captions import (FLAW_CLOSE_UP, FLAW_QUESTION, FLAWS, NO_FLAW, CaptionSample, caption_samples,
                                    heldout_requests, zoom_in)
from studio.parrot.pairs import HELDOUT_SEED
from studio.parrot.student_data import collate, encode


def answer_scores(model: object, processor: object, truth: list[CaptionSample]) -> dict[str, object]:
    """The flaw question's greedy answers on ``truth`` (``flaw_answer_scores``) and the answer
    probabilities per true kind (``flaw_answer_probs``)."""
    return {**flaw_answer_scores(model, processor, truth), "flaw_answer_probs": flaw_answer_probs(model, processor, truth)}


def flaw_renders(args: argparse.Namespace, exclude: set[str]) -> Callable[[int], CaptionSample]:
    """``draw(step)``: a render to ask the flaw of at ``step`` (from 1): for the first
    ``--close-up-steps`` steps one large centred object (``FLAW_CLOSE_UP``, clean half the time)
    seen 3x closer, zooming out to its true size by their end; then ordinary renders of every scene."""
    ordinary = caption_samples(random.Random(args.seed + 1), size=args.image_size, exclude=exclude)
    close_ups = caption_samples(random.Random(args.seed + 5), size=args.image_size, stage=FLAW_CLOSE_UP)

    def draw(step: int) -> CaptionSample:
        if step > args.close_up_steps:
            return next(ordinary)
        zoom = FLAW_CLOSE_UP.zoom + (1 - FLAW_CLOSE_UP.zoom) * (step - 1) / max(args.close_up_steps - 1, 1)
        return zoom_in(next(close_ups), zoom)

    return draw


def patch_row(patch_size: int, args: argparse.Namespace, exclude: set[str], truth: list[CaptionSample],
              folder: Path) -> dict[str, object]:
    """Build a fresh base with ``patch_size``-pixel patches, probe its visual tokens for the flaw on
    ``truth`` (the held-out renders), and with ``--steps`` train it on the flaw question
    (``train_on_flaws``) and measure it again."""
    # flaw_questions puts the flaw question into the base's tokenizer corpus
    config = pretrain.PretrainConfig(patch_size=patch_size, image_size=args.image_size, flaw_questions=1.0,
                                     learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                                     max_steps=max(args.steps, 1), eval_images=args.eval_images, seed=args.seed)
    config.validate()
    torch.manual_seed(config.seed)
    model, processor = pretrain.build_base(config, folder, exclude)
    probe_renders = caption_samples(random.Random(args.seed + 11), size=args.image_size, exclude=exclude)
    probe_train = [next(probe_renders) for _ in range(args.probe_renders)]
    model.eval()
    row: dict[str, object] = {"patch_size": patch_size, "image_size": args.image_size,
                              "close_up_steps": args.close_up_steps,
                              "visual_tokens": (args.image_size // patch_size // 2) ** 2,
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "probe_before": probe_row(model, processor, probe_train, truth)}
    if args.steps:
        timeline, seconds = train_on_flaws(model, processor, config, args, exclude, truth)
        row.update(probe_after=probe_row(model, processor, probe_train, truth), timeline=timeline,
                   seconds_per_step=round(statistics.median(seconds), 3))
    return {**row, "load": round(os.getloadavg()[0], 1)}


def train_on_flaws(model: object, processor: object, config: pretrain.PretrainConfig, args: argparse.Namespace,
                   exclude: set[str], truth: list[CaptionSample]) -> tuple[list[dict[str, object]], list[float]]:
    """``--steps`` steps of the flaw question alone about ``flaw_renders``; returns the answers on
    ``truth`` every ``--eval-every`` steps (``answer_scores``) and each step's seconds."""
    optimizer, scheduler = pretrain.optimisation(model, config)
    draw = flaw_renders(args, exclude)
    pad_id = processor.tokenizer.pad_token_id
    timeline, seconds = [], []
    for step in range(1, args.steps + 1):
        model.train()
        started = time.perf_counter()
        asked = [draw(step) for _ in range(args.batch_size)]
        records = [pretrain.caption_record(s, FLAW_QUESTION, s.flaw) for s in asked]
        loss = pretrain.train_step(model, collate([encode(r, processor, 512) for r in records], pad_id),
                                   optimizer, scheduler)
        seconds.append(time.perf_counter() - started)
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            timeline.append({"step": step, "loss": round(loss, 4), **answer_scores(model, processor, truth)})
            print(json.dumps({"patch_size": config.patch_size, **timeline[-1]}), flush=True)
    model.eval()
    return timeline, seconds


def main(argv: list[str] | None = None) -> int:
    """Run every patch size's arm and print its row; exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--image-size", type=int, default=64, help="render side (the PARROT pairs' 64)")
    parser.add_argument("--steps", type=int, default=300, help="flaw-only training steps (0: only the probe)")
    parser.add_argument("--close-up-steps", type=int, default=0,
                        help="first steps on close-ups of one object zooming out (0: ordinary renders throughout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="language model (tower: pretrain's 3e-4)")
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--probe-renders", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    exclude = heldout_requests(2000, HELDOUT_SEED)
    truth = pretrain.heldout_renders(pretrain.PretrainConfig(image_size=args.image_size, eval_images=args.eval_images,
                                                             seed=args.seed), exclude)
    print(json.dumps(reference_row(truth)), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for patch_size in args.patch_sizes:
            rows.append(patch_row(patch_size, args, exclude, truth, Path(tmp) / f"patch{patch_size}"))
            print(json.dumps(rows[-1]), flush=True)
    summary = {f"patch_{r['patch_size']}": {
        "probe_before": r["probe_before"]["flaw"], **({"probe_after": r["probe_after"]["flaw"],
                                                        "answers": r["timeline"][-1]["flaw"],
                                                        "seconds_per_step": r["seconds_per_step"]} if args.steps else {})}
        for r in rows}
    print(json.dumps({"summary": summary, "prior": round(sum(s.flaw == NO_FLAW for s in truth) / len(truth), 4),
                      "kinds": [NO_FLAW, *FLAWS]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
