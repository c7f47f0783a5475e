"""Can a shapes base's language model check one requested object against a *written* description?

``parrot pretrain --object-checks`` asks a base whether one object of its request is drawn as asked,
and no base learns it (AUC about 0.7: ``docs/parrot.md``, sixteenth and eighteenth steps). This bench
takes the seeing away. Each check's prompt carries, after the request, the analyzer's description of
the image as text (the caption the bases write at 0.98 per attribute): the task is text against text,
is the asked object among the described ones, with the asked shape and colour, and the asked size and
place where the request gives them? That rule answers ``rule_accuracy`` of the held-out checks (1.0
at the defaults). The bench trains the language model of ``--base`` (vision tower frozen; the folder
is never modified, nothing is saved) or of a fresh untrained base (``--fresh phrase`` or ``--fresh
atomic``: its tokenizer with ``--atomic-words`` or without; ``--layers`` and ``--hidden-size`` its
language model's size) to answer "yes" or "no" on checks balanced half and half, drawn from
``--pairs`` known-truth pairs (held-out requests left out), and prints one JSON row every
``--eval-every`` steps: the held-out checks' AUC of the "no" - "yes" first-token logit (0.5 blind),
the accuracy of its sign, and per fault kind the share leaning further to "no" than the median right
one.

    python -m bench.parrot_text_checks --base runs/captions-first/model --steps 1000
    python -m bench.parrot_text_checks --fresh atomic --steps 1000 --run-dir runs/text-checks
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.shapes.analyzer import analyze
from models.shapes.assess import object_findings
from models.shapes.pairs import make_pair
from models.shapes.world import ObjectSpec, describe, parse_prompt
from studio.parrot import pretrain
from studio.parrot.captions import (
    EMPTY_IMAGE, INSTRUCTION_PREFIX, OBJECT_CHECK, YES, heldout_requests, scene_description,
)
from studio.parrot.examples import sharegpt_to_messages
from studio.parrot.pairs import HELDOUT_SEED
from studio.parrot.student_data import collate, encode

NO = "no"
DESCRIPTION_PREFIX = "The image shows: "


@dataclass(frozen=True)
class TextCheck:
    """One requested object (``asked``) checked against a description of an image drawn for
    ``request``; ``problems`` as ``ObjectCheck`` has them (empty: drawn as asked)."""

    request: str
    description: str
    asked: str
    problems: tuple[str, ...]

    @property
    def question(self) -> str:
        """The request line, the description line, then the one-object question."""
        return f"{INSTRUCTION_PREFIX}{self.request}\n{DESCRIPTION_PREFIX}{self.description}\n" \
               f"{OBJECT_CHECK.format(self.asked)}"

    def record(self, answer: str) -> dict[str, Any]:
        """A text-only sharegpt example of this check answered ``answer``."""
        return {"messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": answer}],
                "images": []}


def text_checks(pairs: int, seed: int, exclude: set[str]) -> list[TextCheck]:
    """Every requested object of both images of ``pairs`` fresh known-truth pairs (a request in
    ``exclude`` is skipped), checked by one reading of the analyzer."""
    rng, checks = random.Random(seed), []
    for _ in range(pairs):
        pair = make_pair(rng, "t2i", size=64)
        if pair.prompt in exclude:
            continue
        spec = parse_prompt(pair.prompt)
        for image in (pair.image_a, pair.image_b):
            seen = analyze(image)
            checks += [TextCheck(pair.prompt, scene_description(seen), describe(asked, article=False), problems)
                       for asked, problems in object_findings(spec, seen).items()]
    return checks


def rule_says_faithful(check: TextCheck) -> bool:
    """The one-line rule: some described object has the asked shape and colour, and the asked size
    and place where the request gives them."""
    asked = parse_prompt(f"a {check.asked}").objects[0]
    seen = parse_prompt(check.description).objects if check.description != EMPTY_IMAGE else ()
    return any(_matches(asked, shown) for shown in seen)


def _matches(asked: ObjectSpec, shown: ObjectSpec) -> bool:
    return (shown.shape, shown.colour) == (asked.shape, asked.colour) \
        and asked.size in (None, shown.size) and asked.position in (None, shown.position)


def no_leaning(model: Any, processor: Any, checks: list[TextCheck]) -> list[float]:
    """The first answer token's "no" minus "yes" logit for each check."""
    def inputs(check: TextCheck) -> dict[str, Any]:
        messages, _ = sharegpt_to_messages(check.record(""))
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return processor(text=[text], return_tensors="pt")

    return pretrain.first_token_leaning(model, processor, map(inputs, checks), (NO, YES))


def split(checks: list[TextCheck], heldout: int, seed: int) -> tuple[list[TextCheck], list[TextCheck],
                                                                      list[TextCheck]]:
    """(faulty, right, held out). Requests are taken in a seeded order and set apart until their
    checks hold ``heldout`` faulty ones; those and as many right ones of the same requests are held
    out, and no check of a set-apart request is trained on (the rest are returned by kind)."""
    faults = Counter(c.request for c in checks if c.problems)
    requests = list(dict.fromkeys(c.request for c in checks))
    random.Random(seed).shuffle(requests)
    apart, found = set(), 0
    for request in requests:
        if found >= heldout:
            break
        apart.add(request)
        found += faults[request]
    held = [c for c in checks if c.request in apart]
    faulty_out = [c for c in held if c.problems][:heldout]
    right_out = [c for c in held if not c.problems][:len(faulty_out)]
    trained = [c for c in checks if c.request not in apart]
    faulty = [c for c in trained if c.problems]
    if len(faulty_out) < heldout or not faulty:
        raise SystemExit(f"Too few faulty checks from these pairs for {heldout} held out; draw more --pairs.")
    return faulty, [c for c in trained if not c.problems], faulty_out + right_out


def base_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and processor to train: ``--base``'s, or a fresh untrained base built in ``--run-dir``."""
    if args.base:
        return AutoModelForImageTextToText.from_pretrained(args.base, dtype=torch.float32), load_processor(args.base)
    config = pretrain.PretrainConfig(atomic_words=args.fresh == "atomic", request_tasks=0.2, flaw_questions=0.1,
                                     object_checks=0.5, request_first=True, seed=args.seed,
                                     layers=args.layers, hidden_size=args.hidden_size)
    requests, _, _ = pretrain.heldout_split(config)
    folder = Path(args.run_dir) / f"fresh-{args.fresh}-{args.layers}x{args.hidden_size}"
    return pretrain.build_base(config, folder, requests)


def main(argv: list[str] | None = None) -> None:
    """Train on text checks and print the held-out separation every ``--eval-every`` steps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--base", help="a base folder (parrot pretrain's model/) whose language model is trained")
    which.add_argument("--fresh", choices=("phrase", "atomic"), help="a fresh untrained base with this tokenizer")
    parser.add_argument("--run-dir", default="runs/text-checks", help="where --fresh builds its base")
    parser.add_argument("--layers", type=int, default=4, help="--fresh: language model layers")
    parser.add_argument("--hidden-size", type=int, default=256, help="--fresh: language model width")
    parser.add_argument("--pairs", type=int, default=4000, help="known-truth pairs whose checks are drawn")
    parser.add_argument("--exclude-heldout", type=int, default=2000,
                        help="requests of the bench's held-out pairs never drawn (as parrot pretrain leaves out)")
    parser.add_argument("--heldout", type=int, default=200, help="faulty held-out checks (and as many right)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    exclude = heldout_requests(args.exclude_heldout, HELDOUT_SEED)
    faulty, right, heldout = split(text_checks(args.pairs, args.seed + 11, exclude), args.heldout, args.seed)
    model, processor = base_model(args)
    pretrain.freeze_vision(model)
    config = pretrain.PretrainConfig(learning_rate=args.lr, vision_learning_rate=0.0, warmup_steps=min(30, args.steps),
                                     max_steps=args.steps)
    optimizer, scheduler = pretrain.optimisation(model, config)
    rng, losses = random.Random(args.seed + 1), []
    name = args.base or f"fresh {args.fresh}, {args.layers} layers of {args.hidden_size}"
    print(json.dumps({"base": name, "train_faulty": len(faulty), "train_right": len(right),
                      "heldout": len(heldout), "rule_accuracy": round(
                          sum(rule_says_faithful(c) != bool(c.problems) for c in heldout) / len(heldout), 4),
                      "checks_seconds": round(time.perf_counter() - started, 1)}), flush=True)
    started = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            leaning = no_leaning(model, processor, heldout)
            model.train()
            sign = sum((lean > 0) == bool(c.problems) for lean, c in zip(leaning, heldout)) / len(heldout)
            found = pretrain.separation(leaning, heldout)
            print(json.dumps({"step": step, "seconds": round(time.perf_counter() - started, 1),
                              "loss": round(statistics.mean(losses[-args.eval_every:]), 4) if losses else None,
                              "auc": found["auc"], "sign_accuracy": round(sign, 4),
                              "above_right_median": {k: v["share"] for k, v in found["above_right_median"].items()}}),
                  flush=True)
        if step == args.steps:
            break
        drawn = [rng.choice(faulty if rng.random() < 0.5 else right) for _ in range(args.batch)]
        batch = collate([encode(c.record(NO if c.problems else YES), processor, 512) for c in drawn],
                        processor.tokenizer.pad_token_id)
        losses.append(pretrain.train_step(model, batch, optimizer, scheduler))


if __name__ == "__main__":
    main()
