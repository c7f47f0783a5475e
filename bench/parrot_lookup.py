"""How fast does a fresh tiny language model learn a bare lookup: is this object among those listed?

``bench.parrot_text_checks`` finds the one-object checks stuck at an AUC near 0.69 even as text, with
fresh checks every step and each colour-shape pair one token (docs/parrot.md, twentieth step). This
bench strips the task to its core: "The image shows: a red circle, a blue star\\nIs the purple star
drawn as asked?" -> "yes" or "no", with one to ``--max-objects`` colour-shape pairs listed and the asked
one among them at even odds. With ``--fresh compound`` each pair is one token, so the answer is a
presence test of one token, no binding of neighbours needed. ``--copy-steps N`` first trains N steps on
repeating such a list word for word (every answer token supervised: the copying a language model
learns in pretraining), then the lookup. It prints one JSON row every ``--eval-every`` steps: the
training loss, the copy steps' token accuracy, and on ``--eval-lookups`` fresh lookups the accuracy of the sign of the
"no" - "yes" logit (read where the two answers part, ``pretrain.fork_leaning``) and its AUC. ``--queries K`` asks K objects of one list in an example,
the answer naming each with its verdict ("the purple star is missing; the red circle is drawn"), a
verdict token per object; ``--save DIR`` keeps the trained model as a base for the text-check bench.

    python -m bench.parrot_lookup --fresh compound --steps 2000 --run-dir runs/text-checks
    python -m bench.parrot_lookup --fresh compound --copy-steps 400 --steps 2000 --run-dir runs/text-checks
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

import torch

from bench.parrot_text_checks import NO, base_model, text_inputs
from models.shapes.world import OBJECT_WORDS
from studio.parrot import pretrain
from studio.parrot.captions import YES
from studio.parrot.student_data import IGNORE, collate, encode


MULTI_QUESTION = "Which of the asked objects are drawn?"
DRAWN, MISSING = " is drawn", " is missing"


def lookup(rng: random.Random, max_objects: int, queries: int = 1,
           avoid: frozenset[tuple[str, str]] = frozenset()) -> tuple[dict[str, Any], list[bool]]:
    """One lookup as a text-only sharegpt example, and for each asked object whether it is listed
    (each at even odds). One query asks "Is the X drawn as asked?" -> "yes" / "no"; more name each
    asked object in the answer with its verdict, as a critique would: "the X is drawn; the Y is
    missing" (a verdict token for every object, and the object just before it). A draw that asks
    an object of a list as one of ``avoid`` (``lookup_key``) does is drawn again."""
    while True:
        shown = rng.sample(OBJECT_WORDS, rng.randint(1, max_objects))
        listed = [rng.random() < 0.5 for _ in range(queries)]
        asked = [rng.choice(shown) if there else rng.choice([o for o in OBJECT_WORDS if o not in shown])
                 for there in listed]
        if not any(lookup_key(shown, a) in avoid for a in asked):
            break
    if queries == 1:
        question = f"The image shows: {_listing(shown)}\nIs the {asked[0]} drawn as asked?"
        return _record(question, YES if listed[0] else NO), listed
    answer = "; ".join(f"the {a}{DRAWN if there else MISSING}" for a, there in zip(asked, listed))
    return _record(f"The image shows: {_listing(shown)}\n{MULTI_QUESTION}", answer), listed


def lookup_key(shown: list[str], asked: str) -> tuple[str, str]:
    """What identifies a lookup: its list, as written, and the object asked."""
    return _listing(shown), asked


def repeat(rng: random.Random, max_objects: int) -> dict[str, Any]:
    """One copy example: a list of colour-shape pairs (repeats allowed), to be repeated word for word."""
    shown = [rng.choice(OBJECT_WORDS) for _ in range(rng.randint(2, 2 * max_objects))]
    return _record(f"The image shows: {_listing(shown)}\nRepeat it.", _listing(shown))


def _listing(objects: list[str]) -> str:
    return ", ".join(f"a {o}" for o in objects)


def _record(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "images": []}


def _held_key(record: dict[str, Any]) -> tuple[str, str]:
    """``lookup_key`` of a one-query lookup record."""
    shown, question = record["messages"][0]["content"].split("\n")
    return shown.removeprefix("The image shows: "), question.removeprefix("Is the ").removesuffix(" drawn as asked?")


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of supervised tokens the logits predict exactly (greedy)."""
    supervised = labels[:, 1:] != IGNORE
    return float((logits[:, :-1].argmax(-1) == labels[:, 1:])[supervised].float().mean())


def lookup_scores(model: Any, processor: Any, lookups: list[tuple[dict[str, Any], list[bool]]],
                  queries: int) -> dict[str, float]:
    """The sign accuracy and AUC over one-query ``lookups`` of the verdict's logit where the two answers
    part (``pretrain.fork_leaning``), "no" minus "yes" (or, for ``queries`` above 1, " is missing" minus
    " is drawn" after the answer's "the X", X the asked object)."""
    def inputs(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
        prefix = ""
        if queries > 1:
            shown, question = record["messages"][0]["content"].split("\n")
            prefix = f"the {question.removeprefix('Is the ').removesuffix(' drawn as asked?')}"
            record = _record(f"{shown}\n{MULTI_QUESTION}", "")
        return text_inputs(processor, record), prefix

    verdicts = (NO, YES) if queries == 1 else (MISSING, DRAWN)
    with torch.no_grad():
        leaning = pretrain.fork_leaning(model, processor, (inputs(r) for r, _ in lookups), verdicts)
    absent = [lean for lean, (_, [listed]) in zip(leaning, lookups) if not listed]
    present = [lean for lean, (_, [listed]) in zip(leaning, lookups) if listed]
    auc = sum((a > p) + 0.5 * (a == p) for a in absent for p in present) / (len(absent) * len(present))
    sign = sum((lean > 0) != listed for lean, (_, [listed]) in zip(leaning, lookups)) / len(lookups)
    return {"sign_accuracy": round(sign, 4), "auc": round(auc, 4)}


def main(argv: list[str] | None = None) -> None:
    """Train on lookups (after ``--copy-steps`` of copying) and print the fresh lookups' scores."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--base", help="a base folder whose language model is trained (never modified)")
    which.add_argument("--fresh", choices=("phrase", "atomic", "compound"),
                       help="a fresh untrained base with this tokenizer (as bench.parrot_text_checks)")
    parser.add_argument("--run-dir", default="runs/text-checks", help="where the fresh base is built")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--max-objects", type=int, default=4, help="objects listed in a lookup: 1 to this")
    parser.add_argument("--queries", type=int, default=1,
                        help="asked objects per example; above 1 the answer names each with its verdict")
    parser.add_argument("--copy-steps", type=int, default=0, help="copy steps before the lookups")
    parser.add_argument("--steps", type=int, default=2000, help="steps in all, copy steps included")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--eval-lookups", type=int, default=400, help="fresh lookups scored at each reading")
    parser.add_argument("--save", help="save the trained model and processor in this folder (a base for "
                                       "bench.parrot_text_checks --base)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.copy_steps < args.steps:
        raise SystemExit("--copy-steps must be at least 0 and below --steps.")
    torch.manual_seed(args.seed)
    model, processor = base_model(args)
    pretrain.freeze_vision(model)
    config = pretrain.PretrainConfig(learning_rate=args.lr, vision_learning_rate=0.0, warmup_steps=30,
                                     max_steps=args.steps)
    optimizer, scheduler = pretrain.optimisation(model, config)
    rng, held_rng = random.Random(args.seed + 1), random.Random(args.seed + 2)
    held = [lookup(held_rng, args.max_objects) for _ in range(args.eval_lookups)]
    avoid = frozenset(_held_key(record) for record, _ in held)  # never trained on
    losses, copied, started = [], [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            row = {"step": step, "seconds": round(time.perf_counter() - started, 1),
                   "loss": round(statistics.mean(losses[-args.eval_every:]), 4) if losses else None,
                   **({"copy_token_accuracy": round(statistics.mean(copied[-args.eval_every:]), 4)}
                      if copied and step <= args.copy_steps else {}),
                   **lookup_scores(model, processor, held, args.queries)}
            model.train()
            print(json.dumps(row), flush=True)
        if step == args.steps:
            break
        copying = step < args.copy_steps
        records = [repeat(rng, args.max_objects) if copying else lookup(rng, args.max_objects, args.queries, avoid)[0]
                   for _ in range(args.batch)]
        batch = collate([encode(r, processor, 512) for r in records], processor.tokenizer.pad_token_id)
        if copying:
            with torch.no_grad():
                copied.append(token_accuracy(model(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                                             batch["labels"]))
        losses.append(pretrain.train_step(model, batch, optimizer, scheduler))
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)


if __name__ == "__main__":
    main()
