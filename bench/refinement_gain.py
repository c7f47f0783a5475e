"""Refinement gain on the shapes world, with the controls that isolate the critique: exact-scene
accuracy of the best image after each round, on held-out short prompts the shipped generator
never saw (``--form relation``: prompts with a relation, "two red circles above a blue square",
which the generators were never trained on; exact then also means the relation holds).

Each arm gives every session ``--rounds`` rounds of ``--candidates`` images and keeps the best
image so far as the studio does (a candidate meeting every threshold first, then the higher
critic score):

- ``loop``: the studio's own engine (``studio.loop.refine``), the shapes reference critic's
  refined request as the next prompt, ``--on-repeat`` when a prompt repeats, ``--first-prompt``
  (the request, or its expansion), ``--judge-against``, and the critic's refined-request settings,
  on by default: ``--no-fresh-layout`` (most objects failed: a fresh expansion instead of the
  drawn layout), ``--no-move-failed`` (a wrongly drawn object in the next free cell) and
  ``--no-resize-failed`` (at the other size where its position is fixed).
- ``blind``: the *blind-expansion control*: each round a new detailed prompt written from the
  short one without seeing any image (``models.shapes.expand``: every object gets a random free
  cell and size), the critic judging each image against the original request. Round 1 uses the
  same expansion and seed as a loop started from ``--first-prompt expanded``. Only the loop's
  margin over this arm is the critique's own contribution.
- ``best-of-n``: the equal-cost control: the original prompt with a new seed each round.

Every arm's round 1 uses seed ``i`` for prompt ``i`` (so ``loop`` and ``best-of-n`` share their
first images). The best image after each round is graded twice against the original prompt:
by the analyzer (the same multiset of (shape, colour), and the word; and objects only) and by
``bench.independent_grader``, which shares no code with the analyzer the critic uses (objects
only). Prompts the shipped model trained on (scene or exact text, ``bench.heldout``) are skipped
and counted. Prints one JSON line with Wilson 95% intervals; ``--out`` keeps per-session
results, and ``--compare A.json B.json`` prints the paired difference of two arms run on the
same prompts (bootstrap 95% interval). ``--t2i-lora`` (an RL run's exported ``lora`` folder,
loaded into the shipped generator) or ``--t2i`` (a fully fine-tuned run's ``pipeline`` folder)
runs an arm with a tuned generator, so a tuned and a base run of the same arm can be compared:
do test-time refinement and RL add up? With ``--t2i-lora`` the prompts come from the first 200
held-out scenes only, the ones RL leaves out (``studio.rl.data.HELDOUT_SCENES``): ``--offset`` +
``--n`` past what they hold (about 130 unseen short prompts) is refused.

Run from the repository root:
    python -m bench.refinement_gain [--arm loop|blind|best-of-n] [--form short|relation] [--n 100] [--offset 0] [--rounds 3]
        [--candidates 1] [--on-repeat vary_seed] [--judge-against request] [--first-prompt expanded]
        [--no-resize-failed] [--no-fresh-layout] [--no-move-failed] [--t2i DIR | --t2i-lora DIR] [--out results.json]
    python -m bench.refinement_gain --compare loop.json blind.json
    python -m bench.refinement_gain --compare loop.json,loop2.json blind.json,blind2.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image

from bench.generator_accuracy import objects_only_match, short_match
from bench.heldout import shipped
from bench.independent_grader import objects_match
from bench.paired import paired_difference
from models.shapes import world
from models.shapes.analyzer import analyze
from models.shapes.expand import expand, expansion_rng
from models.types import Critique

logger = logging.getLogger(__name__)

ARMS = ("loop", "blind", "best-of-n")
# the analyzer with the word, the analyzer on objects only, the independent reader (objects only)
GRADERS = ("analyzer", "analyzer_objects", "independent")
SEED_STRIDE = 1000


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3))


def _asked_word(prompt: str) -> str | None:
    return world.parse_prompt(prompt).word


def unseen_prompts(n: int, assets: str, form: str = "short", scenes: int | None = None) -> tuple[list[str], int]:
    """The first ``n`` held-out prompts the shipped t2i model never trained on (neither the
    scene nor the text), and how many seen ones were skipped on the way. ``form`` ``"short"``
    writes each scene's short prompt; ``"relation"`` one relation the scene satisfies
    (``world.relation_prompt``; scenes of a single kind of object, which have none, are passed
    over without counting). ``scenes`` limits the search to the first held-out scenes (an RL run
    leaves out only ``studio.rl.data.HELDOUT_SCENES``)."""
    from models.shapes.train_generator import heldout_scenes

    seen = shipped("t2i", assets)
    pool = heldout_scenes(scenes or max(4 * n, 400))
    chosen, skipped = [], 0
    for i, scene in enumerate(pool):
        prompt = world.short_prompt(scene) if form == "short" else world.relation_prompt(scene, random.Random(f"relation/{i}"))
        if prompt is None:
            continue
        if seen.is_seen(scene, prompt):
            skipped += 1
            continue
        chosen.append(prompt)
        if len(chosen) == n:
            return chosen, skipped
    raise SystemExit(f"only {len(chosen)} unseen prompts among the first {len(pool)} held-out scenes; ask for fewer"
                     + (" (with --t2i-lora only the scenes RL leaves out count)" if scenes else ""))


Rounds = list[tuple[Image.Image, str]]  # the best image so far after each round, and its prompt
RoundLog = list[tuple[str, int]]  # each round's own prompt and first seed


def _loop_rounds(prompt: str, index: int, services: Any, args: argparse.Namespace) -> tuple[Rounds, RoundLog]:
    """The studio loop's best image so far after each round, with the prompt that made it, and
    the rounds' own prompts and seeds."""
    from studio.config import LoopSettings
    from studio.loop import RefineRequest, Stopped, meets_thresholds, refine

    settings = LoopSettings(max_rounds=args.rounds, candidates=args.candidates, plateau_rounds=0, seed=index,
                            on_repeat=args.on_repeat, max_tries_per_prompt=0, judge_against=args.judge_against,
                            first_prompt=args.first_prompt)
    stopped = [e for e in refine(RefineRequest("t2i", prompt), services, settings) if isinstance(e, Stopped)][-1]
    store, best, out = services.store, None, []
    rows = store.rounds(stopped.session_id, status="done")
    for row in rows:
        critique = store.get_critique(row["best_critique_id"])
        key = (isinstance(critique, Critique) and meets_thresholds(critique, settings.thresholds), row["best_score"])
        if best is None or key > best[0]:
            best = (key, row["best_image_id"], row["prompt"])
        out.append((store.load_image(best[1]), best[2]))
    log = [(row["prompt"], row["seed"]) for row in rows]
    return out + [out[-1]] * (args.rounds - len(out)), log  # a session that met its thresholds keeps its best


def _control_rounds(prompt: str, index: int, services: Any, args: argparse.Namespace,
                    write: Callable[[str, random.Random], str]) -> tuple[Rounds, RoundLog]:
    """A control arm: round ``k`` generates from ``write(prompt, rng)`` with a new seed; the
    critic judges every image against the original ``prompt``; the best so far after each round."""
    from studio.config import LoopSettings
    from studio.loop import meets_thresholds
    from models.types import CritiqueRequest, GenerationRequest

    thresholds, policy = LoopSettings().thresholds, LoopSettings().scoring_policy()
    rng = expansion_rng(index)
    best, out, log = None, [], []
    for k in range(args.rounds):
        text = write(prompt, rng)
        log.append((text, index + k * SEED_STRIDE))
        result = services.t2i_generator.generate(
            GenerationRequest("t2i", text, seed=index + k * SEED_STRIDE, num_images=args.candidates))
        for image, critique in zip(result.images, services.critic.critique(
                [CritiqueRequest("t2i", prompt, image) for image in result.images])):
            if not isinstance(critique, Critique):
                raise RuntimeError(f"the critic failed on {prompt!r}: {critique}")
            key = (meets_thresholds(critique, thresholds), policy.score(critique))
            if best is None or key > best[0]:
                best = (key, image, text)
        out.append((best[1], best[2]))
    return out, log


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    """Run one arm over the unseen prompts; per-session grades after each round."""
    from studio.rl.data import HELDOUT_SCENES

    # an RL-tuned generator trained on every scene past the first HELDOUT_SCENES held-out ones
    prompts, skipped = unseen_prompts(args.offset + args.n, args.assets, args.form,
                                      scenes=HELDOUT_SCENES if args.t2i_lora else None)
    import torch

    from models.generator_diffusers import DiffusersGenerator
    from models.shapes.critic_shapes import ShapesCritic
    from models.shapes.train_generator import T2I_FOLDER
    from studio.services import Services
    from studio.store import SessionStore

    torch.set_num_threads(args.threads)
    sessions = []
    with tempfile.TemporaryDirectory() as tmp:
        services = Services(store=SessionStore(Path(tmp) / "studio.db"), critic=ShapesCritic(resize_failed=args.resize_failed,
                                                                                       fresh_layout=args.fresh_layout,
                                                                                       move_failed=args.move_failed),
                            t2i_generator=DiffusersGenerator(model=args.t2i or str(Path(args.assets) / T2I_FOLDER),
                                                             lora=args.t2i_lora or None))
        for i, prompt in enumerate(prompts[args.offset:], start=args.offset):
            if args.arm == "loop":
                rounds, log = _loop_rounds(prompt, i, services, args)
            else:
                write = expand if args.arm == "blind" else (lambda p, _rng: p)
                rounds, log = _control_rounds(prompt, i, services, args, write)
            seen = [analyze(image) for image, _ in rounds]
            sessions.append({
                "prompt": prompt,
                "analyzer": [short_match(prompt, found) for found in seen],
                "analyzer_objects": [objects_only_match(prompt, found) for found in seen],
                "independent": [objects_match(prompt, image) for image, _ in rounds],
                "prompts": [text for _, text in rounds],
                "round_prompts": log,
            })
            logger.info("%d/%d %s %s", i + 1, len(prompts), prompt, sessions[-1]["analyzer"])
        services.close()
    return {"prompts_skipped_as_seen": skipped, "sessions": sessions}


def summary(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """Exact rate after each round, by grader, with Wilson intervals."""
    sessions, n = result["sessions"], len(result["sessions"])
    out: dict[str, Any] = {"bench": "refinement_gain", "arm": args.arm, "form": args.form, "n": n, "offset": args.offset,
                           "rounds": args.rounds,
                           "candidates": args.candidates, "t2i": args.t2i or None, "t2i_lora": args.t2i_lora or None,
                           "on_repeat": args.on_repeat if args.arm == "loop" else None,
                           "judge_against": args.judge_against if args.arm == "loop" else None,
                           "first_prompt": args.first_prompt if args.arm == "loop" else None,
                           "resize_failed": args.resize_failed, "fresh_layout": args.fresh_layout,
                           "move_failed": args.move_failed,
                           "seen_skipped": result["prompts_skipped_as_seen"],
                           "seen_share": round(result["prompts_skipped_as_seen"]
                                                / (args.offset + n + result["prompts_skipped_as_seen"]), 3)}
    for grader in GRADERS:
        per_round = [sum(s[grader][k] for s in sessions) for k in range(args.rounds)]
        out[grader] = {f"round_{k + 1}": {"exact": round(c / n, 3), "ci95": wilson(c, n)} for k, c in enumerate(per_round)}
    worded = [s for s in sessions if _asked_word(s["prompt"])]
    # the analyzer's exact rate needs the word too: how many prompts ask for one, and how many of those end exact
    out["with_word"] = {"n": len(worded), "analyzer_exact_last_round": sum(s["analyzer"][-1] for s in worded)}
    return out


def _label(run: dict[str, Any]) -> str:
    """An arm's name, with the tuned generator's LoRA when it had one."""
    tuned = run["summary"].get("t2i_lora") or run["summary"].get("t2i")
    return run["summary"]["arm"] + (f" with {tuned}" if tuned else "")


def _load(paths: str) -> dict[str, Any]:
    """One run, or several (comma-separated ``--out`` files, e.g. two ``--offset`` sets) as one."""
    runs = [json.loads(Path(path).read_text()) for path in paths.split(",")]
    return {"summary": runs[0]["summary"], "sessions": [s for run in runs for s in run["sessions"]]}


def compare(path_a: str, path_b: str) -> dict[str, Any]:
    """Paired differences, A minus B, after the last round (and, within A, last round minus round 2).
    Each of ``path_a`` and ``path_b`` is an ``--out`` file or several, comma-separated, taken together."""
    a, b = _load(path_a), _load(path_b)
    if [s["prompt"] for s in a["sessions"]] != [s["prompt"] for s in b["sessions"]]:
        raise SystemExit("the two runs did not use the same prompts; run both arms with the same --n and --offset")
    out: dict[str, Any] = {"bench": "refinement_compare", "a": _label(a), "b": _label(b),
                           "n": len(a["sessions"])}
    for grader in GRADERS:
        last_a = [s[grader][-1] for s in a["sessions"]]
        out[grader] = {"a_minus_b_round_1": paired_difference([s[grader][0] for s in a["sessions"]],
                                                              [s[grader][0] for s in b["sessions"]]),
                       "a_minus_b_last_round": paired_difference(last_a, [s[grader][-1] for s in b["sessions"]])}
        if len(a["sessions"][0][grader]) >= 3:
            out[grader]["a_last_minus_a_round_2"] = paired_difference(last_a, [s[grader][1] for s in a["sessions"]])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", choices=ARMS, default="loop")
    parser.add_argument("--assets", default="assets", help="folder holding shapes-t2i")
    parser.add_argument("--n", type=int, default=100, help="unseen held-out prompts")
    parser.add_argument("--offset", type=int, default=0,
                        help="pass over the first OFFSET unseen prompts (a second set: --offset 100 --n 100)")
    parser.add_argument("--form", choices=("short", "relation"), default="short",
                        help="prompts in the short form, or with a relation (\"two red circles above a blue square\")")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per session")
    parser.add_argument("--candidates", type=int, default=1, help="images per round (best-of-N)")
    parser.add_argument("--on-repeat", choices=("vary_seed", "restate", "stop"), default="vary_seed",
                        help="loop arm: what a round whose prompt repeats does")
    parser.add_argument("--judge-against", choices=("round", "request"), default="request",
                        help="loop arm: judge each round against its own prompt or the original request")
    parser.add_argument("--first-prompt", choices=("request", "expanded"), default="expanded",
                        help="loop arm: round 1 from the request or from its expansion (as the blind arm's round 1)")
    parser.add_argument("--no-resize-failed", dest="resize_failed", action="store_false",
                        help="the critic's refined request keeps a wrongly drawn object's size")
    parser.add_argument("--fresh-layout", action=argparse.BooleanOptionalAction, default=True,
                        help="when most objects failed, the critic's refined request is a fresh expansion")
    parser.add_argument("--move-failed", action=argparse.BooleanOptionalAction, default=True,
                        help="the critic's refined request moves a wrongly drawn object to another free cell")
    parser.add_argument("--t2i", default="", help="generator folder instead of the shipped one (an RL run's pipeline)")
    parser.add_argument("--t2i-lora", default="", help="LoRA folder loaded into the generator (an RL run's lora)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="", help="write per-session results (JSON) here")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="paired difference of two --out files (each may be several, comma-separated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return 0
    started = time.time()
    result = run_arm(args)
    result["summary"] = {**summary(args, result), "seconds": round(time.time() - started, 1)}
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
