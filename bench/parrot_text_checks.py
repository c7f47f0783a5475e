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
import dataclasses
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.shapes.analyzer import analyze
from models.shapes.assess import RIGHT, WRONG, ObjectVerdict, object_findings
from models.shapes.pairs import make_pair
from models.shapes.defects import apply_fault, feasible_faults
from models.shapes.world import ObjectSpec, describe, detailed_prompt, parse_prompt, random_scene, short_prompt
from studio.parrot import pretrain
from studio.parrot.captions import (
    EMPTY_IMAGE, INSTRUCTION_PREFIX, OBJECT_CHECK, VERDICT_QUESTION, YES, heldout_requests,
    scene_description, verdict_prefix,
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
    with_request: bool = True
    before: tuple[ObjectVerdict, ...] = ()
    """The objects the request names before this one (each checked once), each with its verdict."""
    verdicts: bool = False
    """Asked as one item of a verdict list (``target``) rather than as a yes / no question."""

    @property
    def question(self) -> str:
        """The request line (unless not ``with_request``), the description line, then the one-object
        question, or with ``verdicts`` the question for the whole list."""
        request = f"{INSTRUCTION_PREFIX}{self.request}\n" if self.with_request else ""
        asking = VERDICT_QUESTION if self.verdicts else OBJECT_CHECK.format(self.asked)
        return f"{request}{DESCRIPTION_PREFIX}{self.description}\n{asking}"

    @property
    def answer_prefix(self) -> str:
        """With ``verdicts``, the answer up to this object's verdict: the verdicts of the objects
        ``before`` it, then "the" and this object ("" for a yes / no question)."""
        if not self.verdicts:
            return ""
        return verdict_prefix(self.before, self.asked)

    @property
    def target(self) -> str:
        """What the answer says up to this object's verdict: "yes" / "no", or with ``verdicts``
        ``answer_prefix`` and the verdict (on the last object of a request, the whole answer)."""
        if self.verdicts:
            return self.answer_prefix + (WRONG if self.problems else RIGHT)
        return NO if self.problems else YES

    def record(self, answer: str) -> dict[str, Any]:
        """A text-only sharegpt example of this check answered ``answer``."""
        return {"messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": answer}],
                "images": []}


def _with_before(request: str, description: str, findings: dict[ObjectSpec, tuple[str, ...]]) -> list[TextCheck]:
    """The checks of one description's requested objects, in the request's order, each knowing those before it."""
    checks: list[TextCheck] = []
    for asked, problems in findings.items():
        before = tuple(ObjectVerdict(c.asked, not c.problems) for c in checks)
        checks.append(TextCheck(request, description, describe(asked, article=False), problems, before=before))
    return checks


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
            checks += _with_before(pair.prompt, scene_description(seen), object_findings(spec, seen))
    return checks


def scene_checks(rng: random.Random, exclude: set[str]) -> Iterator[TextCheck]:
    """Fresh checks without end and without images: a random scene's request (short or detailed at
    even odds; one in ``exclude`` is drawn again), the scene with none, one or two of its scene
    faults (odds 1:2:1), and that scene's detailed prompt as the description (a perfect reading),
    one check per requested object, in the request's order."""
    for group in scene_groups(rng, exclude):
        yield from group


def scene_groups(rng: random.Random, exclude: set[str]) -> Iterator[list[TextCheck]]:
    """``scene_checks`` a description at a time: the checks of every object its request names once."""
    while True:
        scene = random_scene(rng)
        request = short_prompt(scene) if rng.random() < 0.5 else detailed_prompt(scene)
        if request in exclude:
            continue
        drawn = scene
        for _ in range(rng.choice((0, 1, 1, 2))):
            drawn, _ = apply_fault(drawn, rng.choice(feasible_faults(drawn)), rng)
        description = detailed_prompt(drawn)
        group = _with_before(request, description, object_findings(parse_prompt(request), parse_prompt(description)))
        if group:
            yield group


def balanced(checks: Iterator[TextCheck], rng: random.Random, count: int) -> list[TextCheck]:
    """``count`` checks from ``checks``, each faulty or right at even odds (the others are skipped)."""
    drawn = []
    while len(drawn) < count:
        faulty = rng.random() < 0.5
        drawn.append(next(c for c in checks if bool(c.problems) == faulty))
    return drawn


def last_of_each(checks: list[TextCheck]) -> list[TextCheck]:
    """Of each description's checks, the last in its request's order (with ``verdicts``, its
    ``target`` is the whole answer)."""
    last: dict[tuple[str, str], TextCheck] = {}
    for check in checks:
        key = (check.request, check.description)
        if key not in last or len(check.before) > len(last[key].before):
            last[key] = check
    return list(last.values())


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
    """The verdict's "no" minus "yes" logit (with ``verdicts``, ``WRONG`` minus ``RIGHT`` after
    ``answer_prefix``, the verdicts before it as the truth has them), read where the two answers part
    (``pretrain.fork_leaning``), for each check."""
    answers = (WRONG, RIGHT) if checks and checks[0].verdicts else (NO, YES)
    with torch.no_grad():
        return pretrain.fork_leaning(
            model, processor, ((text_inputs(processor, c.record("")), c.answer_prefix) for c in checks), answers)


def text_inputs(processor: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Model inputs for the text-only ``record``'s prompt, ready for its answer's first token."""
    messages, _ = sharegpt_to_messages(record)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor(text=[text], return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


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
    config = pretrain.PretrainConfig(atomic_words=args.fresh != "phrase", object_words=args.fresh == "compound",
                                     request_tasks=0.2, flaw_questions=0.1,
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
    which.add_argument("--fresh", choices=("phrase", "atomic", "compound"),
                       help="a fresh untrained base with this tokenizer (compound: atomic words, and each "
                            "colour-shape pair one token)")
    parser.add_argument("--run-dir", default="runs/text-checks", help="where --fresh builds its base")
    parser.add_argument("--layers", type=int, default=4, help="--fresh: language model layers")
    parser.add_argument("--hidden-size", type=int, default=256, help="--fresh: language model width")
    parser.add_argument("--pairs", type=int, default=4000, help="known-truth pairs whose checks are drawn")
    parser.add_argument("--scene-checks", action="store_true",
                        help="train on fresh checks drawn every step from scenes (scene_checks: no pool to learn "
                             "by heart); --pairs then only supplies the held-out checks")
    parser.add_argument("--prompt-loss", type=float, default=0.0,
                        help="also predict the prompt's tokens, at this weight against the answer's")
    parser.add_argument("--verdicts", action="store_true",
                        help="one example per description (from --scene-checks or the pool), its answer naming "
                             "every requested object "
                             "with its verdict (\"the purple star is drawn; the red circle is wrong\"), not one "
                             "yes / no question")
    parser.add_argument("--no-request", action="store_true",
                        help="leave the request line out of the prompts (the question names the object)")
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
    apart = exclude | {c.request for c in heldout}
    fresh = scene_checks(random.Random(args.seed + 3), apart)
    scene_heldout = [next(c for c in fresh if bool(c.problems) == faulty)
                     for faulty in (True, False) for _ in range(args.heldout)]
    form = {"with_request": not args.no_request, "verdicts": args.verdicts}
    groups = ([dataclasses.replace(c, **form) for c in group]
              for group in scene_groups(random.Random(args.seed + 2), apart | {c.request for c in scene_heldout}))
    unending = (check for group in groups for check in group)
    faulty, right, heldout, scene_heldout = ([dataclasses.replace(c, **form) for c in checks]
                                             for checks in (faulty, right, heldout, scene_heldout))
    whole = last_of_each(faulty + right)
    model, processor = base_model(args)
    pretrain.freeze_vision(model)
    config = pretrain.PretrainConfig(learning_rate=args.lr, vision_learning_rate=0.0, warmup_steps=min(30, args.steps),
                                     max_steps=args.steps)
    optimizer, scheduler = pretrain.optimisation(model, config)
    rng, losses = random.Random(args.seed + 1), []
    name = args.base or f"fresh {args.fresh}, {args.layers} layers of {args.hidden_size}"
    pool = {"train_checks": "fresh from scenes"} if args.scene_checks else \
        {"train_faulty": len(faulty), "train_right": len(right), **({"train_answers": len(whole)} if args.verdicts else {})}
    print(json.dumps({"base": name, **pool,
                      "heldout": len(heldout), "rule_accuracy": round(
                          sum(rule_says_faithful(c) != bool(c.problems) for c in heldout) / len(heldout), 4),
                      "checks_seconds": round(time.perf_counter() - started, 1)}), flush=True)
    started = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            leaning = no_leaning(model, processor, heldout)
            in_distribution = pretrain.separation(no_leaning(model, processor, scene_heldout), scene_heldout)
            model.train()
            sign = sum((lean > 0) == bool(c.problems) for lean, c in zip(leaning, heldout)) / len(heldout)
            found = pretrain.separation(leaning, heldout)
            print(json.dumps({"step": step, "seconds": round(time.perf_counter() - started, 1),
                              "loss": round(statistics.mean(losses[-args.eval_every:]), 4) if losses else None,
                              "auc": found["auc"], "sign_accuracy": round(sign, 4),
                              "above_right_median": {k: v["share"] for k, v in found["above_right_median"].items()},
                              "scene_checks": {"auc": in_distribution["auc"], "above_right_median": {
                                  k: v["share"] for k, v in in_distribution["above_right_median"].items()}}}),
                  flush=True)
        if step == args.steps:
            break
        if args.verdicts and args.scene_checks:
            drawn = [next(groups)[-1] for _ in range(args.batch)]  # a request's last object: its whole answer
        elif args.verdicts:
            drawn = [rng.choice(whole) for _ in range(args.batch)]
        elif args.scene_checks:
            drawn = balanced(unending, rng, args.batch)
        else:
            drawn = [rng.choice(faulty if rng.random() < 0.5 else right) for _ in range(args.batch)]
        batch = collate([encode(c.record(c.target), processor, 512) for c in drawn], processor.tokenizer.pad_token_id)
        losses.append(pretrain.train_step(model, batch, optimizer, scheduler, prompt_weight=args.prompt_loss))


if __name__ == "__main__":
    main()
