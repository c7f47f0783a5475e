"""Shapes-world analyzer and reference-critic accuracy against known truth.

1. Exact-scene recovery: N random scenes rendered at 64x64 with random blur, noise and jitter
   (``models.shapes.defects.degrade``); a scene counts only when every object's shape, colour,
   size and position and the word are all right. Per-attribute error counts are printed too.
2. Pairwise accuracy of the reference critic on known-truth preference pairs (half t2i, half
   edit): each image is critiqued pointwise and the two critiques are compared with
   ``ScoringPolicy.prefer``; once with the exact critic and once with ``perception_noise``.

The last line is a one-line JSON summary. Exits 1 when the recovery rate is under the floor.

Run from the repository root:  python -m bench.analyzer_accuracy [--scenes 1000] [--pairs 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter

from models.critic.scoring import ScoringPolicy
from models.shapes.analyzer import analyze
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.defects import degrade
from models.shapes.pairs import PreferencePair, make_pair
from models.shapes.world import random_scene
from models.types import CritiqueRequest

FLOOR = 0.99


def recovery(n: int, seed: int) -> tuple[float, Counter[str]]:
    """Exact-scene recovery rate over ``n`` degraded scenes, and per-attribute error counts."""
    rng = random.Random(seed)
    errors: Counter[str] = Counter()
    exact = 0
    for _ in range(n):
        scene = random_scene(rng)
        seen = analyze(degrade(scene, rng))
        want = {o.position: o for o in scene.objects}
        got = {o.position: o.as_object() for o in seen.objects}
        errors["missing"] += len(want.keys() - got.keys())
        errors["extra"] += len(got.keys() - want.keys())
        for position in want.keys() & got.keys():
            for attribute in ("shape", "colour", "size"):
                errors[attribute] += getattr(want[position], attribute) != getattr(got[position], attribute)
        errors["word"] += seen.word != scene.word
        exact += want == got and seen.word == scene.word
    return exact / n, errors


def pair_accuracy(pairs: list[PreferencePair], critic: ShapesCritic) -> dict[str, float | int]:
    """Share of ``pairs`` whose label the critic's pointwise scores reproduce, overall and per
    task; failed critiques are counted, never scored."""
    policy = ScoringPolicy.default()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    failures = 0
    for pair in pairs:
        a, b = critic.critique(
            [CritiqueRequest(pair.task, pair.prompt, image, pair.source_image) for image in (pair.image_a, pair.image_b)]
        )
        total[pair.task] += 1
        if not (a.ok and b.ok):
            failures += 1
            continue
        right[pair.task] += policy.prefer(a, b) == pair.label  # type: ignore[arg-type]
    result: dict[str, float | int] = {"accuracy": round(sum(right.values()) / len(pairs), 4), "failures": failures}
    for task in sorted(total):
        result[task] = round(right[task] / total[task], 4)
    return result


def main() -> int:
    """Run both measurements, print them, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1000, help="degraded scenes for exact-scene recovery")
    parser.add_argument("--pairs", type=int, default=200, help="known-truth preference pairs (half t2i, half edit)")
    parser.add_argument("--noise", type=float, default=0.2, help="perception_noise of the imperfect critic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    rate, errors = recovery(args.scenes, args.seed)
    print(f"exact-scene recovery: {rate:.4f} on {args.scenes} scenes (floor {FLOOR})")
    print("errors: " + ", ".join(f"{k} {errors[k]}" for k in ("missing", "extra", "shape", "colour", "size", "word")))

    rng = random.Random(args.seed + 1)
    pairs = [make_pair(rng, "t2i" if i % 2 == 0 else "edit") for i in range(args.pairs)]
    labels = Counter(p.label for p in pairs)
    exact = pair_accuracy(pairs, ShapesCritic())
    noisy = pair_accuracy(pairs, ShapesCritic(perception_noise=args.noise, seed=args.seed))
    print(f"pairs: {args.pairs} ({dict(labels)})")
    print(f"reference critic pairwise accuracy: {exact}")
    print(f"reference critic with perception_noise {args.noise}: {noisy}")
    summary = {
        "scenes": args.scenes,
        "exact_scene_recovery": round(rate, 4),
        "attribute_errors": dict(errors),
        "pairs": args.pairs,
        "pair_accuracy": exact,
        "pair_accuracy_noisy": {"perception_noise": args.noise, **noisy},
        "seconds": round(time.perf_counter() - start, 1),
        "passed": rate >= FLOOR,
    }
    print(json.dumps(summary))
    return 0 if rate >= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
