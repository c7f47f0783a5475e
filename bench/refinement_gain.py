"""Refinement gain on the shapes world: exact-scene accuracy of the first image vs the best image
after at most ``--rounds`` Generate-Critique-Refine rounds, on held-out prompts.

Each held-out scene (``heldout_scenes``; never trained on) is prompted in the short form, as a
person would type it, and run through the studio's own engine (``studio.loop.refine``) with the
shipped text-to-image generator, the shapes-world reference critic and the critic's refined
request as the next prompt. The analyzer then checks the first round's image and the session's
best image (the one the critic scored highest) against the *original* prompt: the same multiset
of (shape, colour) and the same word (``bench.generator_accuracy.short_match``). The gain is the
difference in percentage points. Prints one JSON line.

``--candidates N`` generates N images per round (best-of-N: the critic picks the one that goes on).
``--no-refine`` is the control at equal cost: one round of ``rounds x N`` images of the original
prompt, the critic picking the best, so that what refinement adds over sampling more can be told
apart from what picking the best of more images adds.

Run from the repository root:
    python -m bench.refinement_gain [--n 200] [--rounds 3] [--candidates 1] [--plateau 0]
        [--seed-policy fixed] [--no-refine]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tqdm import tqdm

from bench.generator_accuracy import short_match
from models.generator_diffusers import DiffusersGenerator
from models.shapes import world
from models.shapes.analyzer import analyze
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.train_generator import T2I_FOLDER, heldout_scenes
from models.types import MAX_IMAGES_PER_REQUEST
from studio.config import LoopSettings
from studio.loop import RefineRequest, Stopped, refine
from studio.services import Services
from studio.store import SessionStore

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="assets", help="folder holding shapes-t2i")
    parser.add_argument("--n", type=int, default=200, help="held-out prompts")
    parser.add_argument("--rounds", type=int, default=3, help="most rounds per session")
    parser.add_argument("--plateau", type=int, default=0,
                        help="stop after this many rounds without gain (0: off, so every session may use all rounds)")
    parser.add_argument("--candidates", type=int, default=1, help="images per round (best-of-N)")
    parser.add_argument("--seed-policy", choices=("fixed", "vary"), default="fixed", help="seed of each round")
    parser.add_argument("--no-refine", action="store_true",
                        help="control: one round of rounds x candidates images of the original prompt")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_refine and args.rounds * args.candidates > MAX_IMAGES_PER_REQUEST:
        raise SystemExit(f"--no-refine generates rounds x candidates images in one round; at most "
                         f"{MAX_IMAGES_PER_REQUEST}, got {args.rounds * args.candidates}.")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.time()
    if args.no_refine:
        settings = LoopSettings(max_rounds=1, candidates=args.rounds * args.candidates, plateau_rounds=0)
    else:
        settings = LoopSettings(max_rounds=args.rounds, candidates=args.candidates, plateau_rounds=args.plateau,
                                seed_policy=args.seed_policy)
    with tempfile.TemporaryDirectory() as tmp:
        services = Services(
            store=SessionStore(Path(tmp) / "studio.db"),
            critic=ShapesCritic(),
            t2i_generator=DiffusersGenerator(model=str(Path(args.assets) / T2I_FOLDER)),
        )
        first_ok, best_ok, first_scores, best_scores, rounds = [], [], [], [], []
        for i, scene in enumerate(tqdm(heldout_scenes(args.n), desc="sessions")):
            prompt = world.short_prompt(scene)
            run = LoopSettings.from_dict({**settings.to_dict(), "seed": i})
            stopped = [e for e in refine(RefineRequest("t2i", prompt), services, run) if isinstance(e, Stopped)][-1]
            timeline = services.store.session_timeline(stopped.session_id)
            done = [r for r in timeline["rounds"] if r["best_image_id"] is not None]
            if stopped.best is None or not done:
                raise RuntimeError(f"session for {prompt!r} stopped without a scored image: {stopped.message}")
            first = next(c for c in done[0]["candidates"] if c["id"] == done[0]["best_image_id"])
            first_ok.append(short_match(prompt, analyze(services.store.load_image(first["id"]))))
            best_ok.append(short_match(prompt, analyze(stopped.best.image)))
            first_scores.append(first["critique"]["score"])
            best_scores.append(stopped.best.score)
            rounds.append(stopped.rounds_done)
        services.close()
    first_rate, best_rate = sum(first_ok) / len(first_ok), sum(best_ok) / len(best_ok)
    print(json.dumps({
        "bench": "refinement_gain", "n": args.n, "max_rounds": settings.max_rounds,
        "candidates": settings.candidates, "plateau_rounds": settings.plateau_rounds,
        "seed_policy": settings.seed_policy, "refine": not args.no_refine,
        "first_image_exact": round(first_rate, 3), "best_image_exact": round(best_rate, 3),
        "gain_points": round(100 * (best_rate - first_rate), 1),
        "first_score_mean": round(statistics.mean(first_scores), 3),
        "best_score_mean": round(statistics.mean(best_scores), 3),
        "rounds_mean": round(statistics.mean(rounds), 2),
        "seconds": round(time.time() - started, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
