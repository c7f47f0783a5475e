"""Can a tiny Qwen3-VL from random weights learn to see a shapes-world colour? A perception probe.

Trains a fresh tiny Qwen3-VL (the PARROT students' architecture) to name the colour of one
image, then names the colour of fresh images greedily and prints the accuracy (chance: 1 in 6).
Two images of one colour, alternated A, B, A, B between runs of the same seed and budget:

* ``fill``: the whole 64-pixel image is the colour;
* ``square``: one large square of the colour in the centre cell (the size of a shapes-world
  object, ~5% of the pixels), as the pairs the students judge draw their objects.

The vision tower trains at ``--vision-lr`` (the pretrain job's default, 3e-4), the rest at
``--lr``; ``--vision-lr 1e-3`` is the setting under which the square was never learnt.

    python -m bench.parrot_perception --steps 150 --repeats 1
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
from PIL import Image
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.critic.protocol_tokenizer import train_protocol_tokenizer
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.shapes.world import COLOURS, Scene, ShapeObject, render
from studio.parrot.captions import CAPTION_REQUEST, CaptionSample
from studio.parrot.pretrain import PretrainConfig, caption_record, generate_caption, parameter_groups
from studio.parrot.student_data import collate, encode

KINDS = ("fill", "square")


def colour_image(kind: str, colour: str) -> Image.Image:
    """The probe's image of ``colour``: the whole frame, or one large square in the centre."""
    if kind == "fill":
        return Image.new("RGB", (64, 64), COLOURS[colour])
    return render(Scene((ShapeObject("square", colour, "large", "centre"),)), 64)


def probe(kind: str, steps: int, lr: float, vision_lr: float, seed: int, folder: Path) -> dict[str, float | int]:
    """Train a fresh tiny Qwen3-VL ``steps`` steps on ``kind`` images; its colour accuracy on 60 fresh ones."""
    tokenizer = train_protocol_tokenizer([CAPTION_REQUEST, *COLOURS] * 20, vocab_size=600)
    build_tiny_qwen3vl(folder, seed=seed, hidden_size=128, num_layers=2, vision_hidden_size=64, vision_depth=2,
                       patch_size=8, tokenizer=tokenizer)
    processor = load_processor(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32)
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, vision_lr))
    rng = random.Random(seed)

    def sample() -> CaptionSample:
        colour = rng.choice(list(COLOURS))
        scene = Scene((ShapeObject("square", colour, "large", "centre"),))
        return CaptionSample(colour_image(kind, colour), colour, scene, "none")

    started, losses = time.perf_counter(), []
    for _ in range(steps):
        batch = collate([encode(caption_record(sample()), processor, 512) for _ in range(16)],
                        processor.tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    tests = [sample() for _ in range(60)]
    correct = sum(generate_caption(model, processor, s.image, max_new_tokens=4) == s.caption for s in tests)
    return {"kind": kind, "steps": steps, "lr": lr, "vision_lr": vision_lr, "loss_first": round(losses[0], 3),
            "loss_last10": round(sum(losses[-10:]) / len(losses[-10:]), 3),
            "colour_accuracy": round(correct / len(tests), 3),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps of 16 images")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--vision-lr", type=float, default=PretrainConfig.vision_learning_rate,
                        help="learning rate of the vision tower and its mergers")
    parser.add_argument("--repeats", type=int, default=1, help="A, B rounds")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            for kind in args.kinds:
                row = probe(kind, args.steps, args.lr, args.vision_lr, round_, Path(tmp) / f"{kind}-{round_}")
                print(json.dumps({**row, "round": round_, "load": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    main()
