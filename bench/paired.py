"""Paired differences of two arms measured on the same items (prompts, scenes and seeds).

A paired comparison asks, item by item, whether the second arm did better than the first, so the
variation between items (some scenes are hard for every model) cancels out: its interval is much
narrower than the difference of two independent Wilson intervals when the arms agree on most
items. Used by ``bench.refinement_gain --compare`` and ``bench.rl_heldout``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from studio.evaluation.summary import sign_test_p


def paired_difference(after: Sequence[float], before: Sequence[float], *, draws: int = 4000,
                      seed: int = 0) -> dict[str, Any]:
    """``after - before`` over paired items, in points (100 x the mean per-item difference), with
    a bootstrap 95% interval over items (``draws`` resamples, seeded), how many items gained and
    lost, and ``sign_test_p``. Values are 0/1 outcomes or per-item means of several runs (e.g. the
    share of seeds that got a scene right). Raises ``ValueError`` when the arms differ in length
    or are empty."""
    if len(after) != len(before) or not after:
        raise ValueError(f"paired arms need the same, non-zero number of items; got {len(after)} and {len(before)}.")
    diffs = [a - b for a, b in zip(after, before)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    gained, lost = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"n": n, "difference_points": round(100 * sum(diffs) / n, 1),
            "ci95_points": (round(100 * means[int(0.025 * draws)], 1), round(100 * means[int(0.975 * draws)], 1)),
            "gained": gained, "lost": lost, "sign_test_p": round(sign_test_p(gained, lost), 4)}
