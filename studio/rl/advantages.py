"""From per-image rewards to DiffusionNFT training weights: groups, normalisation, clipping, the
[0, 1] mapping, failure exclusion and retirement.

A group is every image drawn for one *prompt and source image* (an edit instruction reused on
two sources is two groups). A failed critique has no reward: it is left out of its group's
statistics and of training, and counted; it is never scored 0.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

EPS = 1e-4


@dataclass(frozen=True)
class GroupStats:
    """Mean and population std of a group's valid rewards; ``n`` valid, ``failed`` not."""

    mean: float
    std: float
    n: int
    failed: int


@dataclass(frozen=True)
class Advantages:
    """Per-image results, in input order. ``weight`` is r' in [0, 1] (``None``: not trained on,
    because its critique failed or its group had fewer than two valid rewards)."""

    advantage: list[float | None]
    weight: list[float | None]
    groups: dict[Hashable, GroupStats]
    failed: int
    undetermined: int


def group_stats(keys: Sequence[Hashable], rewards: Sequence[float | None]) -> dict[Hashable, GroupStats]:
    """Statistics of each group over its valid (not ``None``) rewards."""
    members: dict[Hashable, list[float | None]] = {}
    for key, reward in zip(keys, rewards, strict=True):
        members.setdefault(key, []).append(reward)
    stats: dict[Hashable, GroupStats] = {}
    for key, values in members.items():
        valid = [v for v in values if v is not None]
        mean = sum(valid) / len(valid) if valid else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in valid) / len(valid)) if valid else math.nan
        stats[key] = GroupStats(mean=mean, std=std, n=len(valid), failed=len(values) - len(valid))
    return stats


def compute_advantages(
    keys: Sequence[Hashable],
    rewards: Sequence[float | None],
    *,
    std_scope: Literal["group", "global"] = "group",
    clip: float = 5.0,
) -> Advantages:
    """Advantage ``(r - group mean) / std`` clipped to ``+-clip`` and mapped to
    ``r' = advantage / (2 clip) + 0.5`` in [0, 1].

    ``std_scope="group"`` divides by the group's own std, ``"global"`` by the std of every valid
    reward of the step. A group whose rewards are all equal gets advantage 0 (r' = 0.5). Images
    whose critique failed (``None``) and groups with fewer than two valid rewards get ``None``.
    """
    if clip <= 0:
        raise ValueError(f"clip must be above 0, got {clip!r}")
    stats = group_stats(keys, rewards)
    valid = [r for r in rewards if r is not None]
    global_std = 0.0
    if valid:
        mean = sum(valid) / len(valid)
        global_std = math.sqrt(sum((r - mean) ** 2 for r in valid) / len(valid))
    advantage: list[float | None] = []
    weight: list[float | None] = []
    undetermined = 0
    for key, reward in zip(keys, rewards):
        group = stats[key]
        if reward is None or group.n < 2:
            undetermined += reward is not None
            advantage.append(None)
            weight.append(None)
            continue
        std = group.std if std_scope == "group" else global_std
        a = max(-clip, min(clip, (reward - group.mean) / (std + EPS)))
        advantage.append(a)
        weight.append(min(1.0, max(0.0, a / (2 * clip) + 0.5)))
    failed = sum(r is None for r in rewards)
    return Advantages(advantage=advantage, weight=weight, groups=stats, failed=failed, undetermined=undetermined)


def solved_groups(stats: dict[Hashable, GroupStats], *, mean_above: float, std_below: float) -> list[Hashable]:
    """Groups uniformly solved (mean > ``mean_above`` and std < ``std_below``, at least two valid
    rewards): the prompts to retire."""
    return [key for key, s in stats.items() if s.n >= 2 and s.mean > mean_above and s.std < std_below]
