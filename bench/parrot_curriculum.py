"""Does the captioning base start reading the image? The curriculum against none, from random weights.

Trains the ``parrot pretrain`` model (its default sizes and learning rates) for ``--steps`` steps
with each ``--curriculum`` share, alternated A, B, A, B, and every ``--every`` steps prints the
**image-reliance gap** on fresh renders (``pretrain.image_reliance``: mean caption loss with each
caption shown another render's image minus with its own; 0 for a model that ignores the image):

* ``gap_one``: scenes of one large object anywhere (the curriculum's second stage);
* ``gap_full``: scenes of the full distribution (what the held-out captions are scored on).

Greedy captions stay blind long after this gap opens, so it tells settings apart in a few minutes.
The curriculum's stages share its ``curriculum`` of ``--steps`` (``--curriculum 1``: all of them).

    python -m bench.parrot_curriculum --steps 320 --batch 16 --curriculum 0 0.8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch

from studio.parrot import pretrain
from studio.parrot.captions import CURRICULUM, FULL, caption_samples
from studio.parrot.student_data import collate, encode


STAGE_NAMES = {CURRICULUM[0]: "one centred, zooming out", CURRICULUM[1]: "one large anywhere",
               CURRICULUM[2]: "up to two", FULL: "every scene"}


def run(curriculum: float, seed: int, args: argparse.Namespace, folder: Path) -> None:
    """One training run of ``curriculum``, printing a JSON row every ``args.every`` steps."""
    config = pretrain.PretrainConfig(curriculum=curriculum, max_steps=args.steps, batch_size=args.batch,
                                     tokenizer_pairs=args.tokenizer_pairs, seed=seed)
    torch.manual_seed(config.seed)
    model, processor = pretrain.build_base(config, folder, set())
    optimizer, scheduler = pretrain.optimisation(model, config)
    draw = pretrain.training_records(config, set())
    probes = {name: caption_samples(random.Random(1000 + config.seed), stage=stage)
              for name, stage in (("one", CURRICULUM[1]), ("full", FULL))}
    held = {name: [next(samples) for _ in range(args.eval_images)] for name, samples in probes.items()}
    started, losses = time.perf_counter(), []
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            model.eval()
            gaps = {f"gap_{name}": pretrain.image_reliance(model, processor, samples, 32)["gap"]
                    for name, samples in held.items()}
            model.train()
            recent = losses[-args.every:]
            stage = STAGE_NAMES[pretrain.stage_at(step, config)[0]]
            print(json.dumps({"curriculum": curriculum, "step": step, "stage": stage,
                              "train_loss": round(sum(recent) / len(recent), 3) if recent else None, **gaps,
                              "seconds": round(time.perf_counter() - started), "load": round(os.getloadavg()[0], 1)}),
                  flush=True)
        if step == args.steps:
            break
        batch = collate([encode(draw(step), processor, 512) for _ in range(config.batch_size)],
                        processor.tokenizer.pad_token_id)
        losses.append(pretrain.train_step(model, batch, optimizer, scheduler))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16, help="captions per step")
    parser.add_argument("--curriculum", type=float, nargs="+", default=[0.0, 0.8], help="settings alternated")
    parser.add_argument("--every", type=int, default=40, help="steps between gap measurements")
    parser.add_argument("--eval-images", type=int, default=32, help="renders per gap measurement")
    parser.add_argument("--tokenizer-pairs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="A, B rounds (seed = round)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            for share in args.curriculum:
                run(share, round_, args, Path(tmp) / f"{share}-{round_}")


if __name__ == "__main__":
    main()
