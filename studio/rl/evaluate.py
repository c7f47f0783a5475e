"""Held-out evaluation and the reward-hacking monitor.

Each evaluation draws one image per held-out prompt with the EMA weights (fixed seeds, so the
sample grid compares like with like over time), scores them with the critic (mean reward and
mean per dimension) and with an independent check: in the shapes world the analyzer's
exact-scene accuracy (``bench.generator_accuracy``'s matching rules), elsewhere an optional
second critic's mean reward. ``HackingMonitor`` raises an alert when the reward rose while the
check fell, over all prompts and per prompt form (short and detailed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from models.base import Critic
from models.critic.scoring import ScoringPolicy
from models.shapes.analyzer import AnalyzedScene, analyze
from models.types import CritiqueRequest
from studio.evaluation.summary import sign_test_p
from studio.rl.data import PromptItem
from studio.rl.flow import FlowModel, Params
from studio.rl.reward import score_results

EVAL_SEED = 1234
GRID_COLUMNS = 8


@dataclass
class EvalResult:
    """One evaluation: ``metrics`` (name -> value, e.g. ``eval/reward``, ``eval/check``), every
    image (the grid shows the first ``GRID_COLUMNS``) and, in the shapes world, what the analyzer
    read in each image and each item's check (it found exactly the scene asked for), all in item
    order, for paired comparisons and further checks on the same reading."""

    metrics: dict[str, float]
    images: list[Image.Image] = field(default_factory=list)
    found: list[AnalyzedScene] = field(default_factory=list)
    checks: list[bool] = field(default_factory=list)


def draw_images(model: FlowModel, items: list[PromptItem], params: Params | None, steps: int,
                batch: int = 8, seed: int = EVAL_SEED) -> list[Image.Image]:
    """One image per item, image ``i`` from noise seeded ``seed + i``."""
    images: list[Image.Image] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        sources = [it.source_image() for it in chunk] if model.task == "edit" else None
        cond = model.encode([it.prompt for it in chunk], sources)
        uncond = model.encode([model.negative_prompt] * len(chunk), sources) if model.uses_cfg else None
        noise = torch.cat([model.noise(1, torch.Generator().manual_seed(seed + start + i)) for i in range(len(chunk))])
        images += model.decode(model.sample(cond, noise, steps, params, uncond))
    return images


def shapes_check(item: PromptItem, found: AnalyzedScene) -> bool:
    """Exact-scene match of what the analyzer ``found`` in an image: the short prompt's objects and
    word, the detailed prompt's exact scene, or an edit's exact target."""
    from bench.generator_accuracy import detailed_match, edit_match, short_match  # the benchmark's own rules

    if item.source_scene is not None:
        assert item.target is not None
        return edit_match(item.target, found)
    return short_match(item.prompt, found) if item.form == "short" else detailed_match(item.prompt, found)


def evaluate(model: FlowModel, items: list[PromptItem], params: Params | None, *, steps: int, critic: Critic,
             policy: ScoringPolicy, shapes: bool, check_critic: Critic | None = None) -> EvalResult:
    """Mean reward (overall and per dimension), failures, and the check on ``items``."""
    images = draw_images(model, items, params, steps)
    requests = [CritiqueRequest(model.task, it.prompt, im, it.source_image()) for it, im in zip(items, images)]
    scored = score_results(critic.critique(requests), policy)
    metrics: dict[str, float] = {"eval/critic_failures": float(sum(s.reward is None for s in scored))}
    valid = [s for s in scored if s.reward is not None]
    if valid:
        metrics["eval/reward"] = sum(s.reward for s in valid) / len(valid)  # type: ignore[misc]
        for key in sorted({k for s in valid for k in s.dimensions}):
            values = [s.dimensions[key] for s in valid if key in s.dimensions]
            metrics[f"eval/{key}"] = sum(values) / len(values)
    forms = sorted({it.form for it in items if it.form})
    if len(forms) > 1:  # each form's reward, for the per-form monitor
        for form in forms:
            rewards = [s.reward for it, s in zip(items, scored) if it.form == form and s.reward is not None]
            if rewards:
                metrics[f"eval/reward_{form}"] = sum(rewards) / len(rewards)  # type: ignore[arg-type]
    flags: list[bool] = []
    found: list[AnalyzedScene] = []
    if shapes:
        found = [analyze(im) for im in images]
        flags = [shapes_check(it, seen) for it, seen in zip(items, found)]
        metrics["eval/check"] = sum(flags) / len(flags)
        for form in forms:
            subset = [ok for it, ok in zip(items, flags) if it.form == form]
            metrics[f"eval/check_{form}"] = sum(subset) / len(subset)
    elif check_critic is not None:
        checked = [s.reward for s in score_results(check_critic.critique(requests), policy) if s.reward is not None]
        if checked:
            metrics["eval/check"] = sum(checked) / len(checked)
    return EvalResult(metrics=metrics, images=images, found=found, checks=flags)


class HackingMonitor:
    """Flags reward hacking against the first evaluation (the baseline): the independent check
    fell by more than ``tolerance`` while the reward, or one dimension the reward counts, rose by
    more than ``tolerance`` (a dimension's 1-4 scale is three reward units, so its tolerance is
    ``3 * tolerance``). The per-dimension alert catches a reward that stays flat overall while one
    of its dimensions is gamed at the others' expense.

    **Per form** (an evaluation with several prompt forms, e.g. short and detailed, reports
    ``eval/check_<form>`` and ``eval/reward_<form>``): form ``f`` raises ``form_<f>`` when its own
    check fell by more than ``tolerance`` while the reward of *any* form (``f`` itself included)
    rose by more than ``tolerance``. One rule covers both cases the means over forms hide:
    hacking within a form, and a trade between forms (training on short prompts raising their
    reward while the detailed prompts' check falls; the two cancel in the mean). A form whose
    check falls while no form's reward rises is degrading, not hacked: no alert, as for the mean.

    **Paired scenes.** When the evaluation passes each scene's check (``flags``: the same scenes
    and seeds every time, see ``check_flags``), a check has fallen only if, beside the fall of
    more than ``tolerance``, the scenes it lost outnumber those it gained by more than chance: the
    sign test over the changed scenes gives a p-value below ``p``. With 50 scenes one scene is
    0.02, so the tolerance alone alerts when a single borderline scene flips; with the test and
    no scene gained, 6 lost scenes alert (p = 0.031) and 5 do not (p = 0.0625).

    :param dimensions: the dimension keys the reward counts (weight above 0).
    :param p: the sign test's level (1: the tolerance alone decides, as without flags).
    """

    def __init__(self, tolerance: float, baseline: dict[str, float] | None = None,
                 dimensions: tuple[str, ...] = (), p: float = 0.05) -> None:
        self.tolerance = tolerance
        self.baseline = baseline
        self.dimensions = dimensions
        self.p = p
        self.baseline_flags: dict[str, list[bool]] = {}

    def update(self, metrics: dict[str, float], flags: dict[str, list[bool]] | None = None) -> list[str]:
        """Record an evaluation (``flags``: each scene's check per check name, e.g. ``check`` and
        ``check_short``); the names that raise an alert (``"reward"`` and/or dimension keys that
        rose while the check fell, then ``form_<form>`` for each form whose check fell while some
        form's reward rose), empty when none does."""
        if "eval/check" not in metrics:
            return []
        watched = {"reward": metrics.get("eval/reward")} | {key: metrics.get(f"eval/{key}") for key in self.dimensions}
        watched |= {name[len("eval/"):]: value for name, value in metrics.items()
                    if name.startswith(("eval/check_", "eval/reward_"))}
        watched = {name: value for name, value in watched.items() if value is not None}
        if self.baseline is None:
            self.baseline = {"check": metrics["eval/check"], **watched}
            self.baseline_flags = dict(flags or {})
            return []
        baseline = self.baseline
        watched["check"] = metrics["eval/check"]

        def change(name: str) -> float:
            return watched[name] - baseline[name] if name in watched and name in baseline else 0.0

        def fell(check: str) -> bool:
            if -change(check) <= self.tolerance:
                return False
            before, now = self.baseline_flags.get(check), (flags or {}).get(check)
            if before is None or now is None or len(before) != len(now):
                return True
            gained = sum(n and not b for b, n in zip(before, now))
            lost = sum(b and not n for b, n in zip(before, now))
            return sign_test_p(gained, lost) < self.p

        alerts: list[str] = []
        if fell("check"):
            alerts = [name for name in ("reward", *self.dimensions)
                      if change(name) > self.tolerance * (1 if name == "reward" else 3)]
        forms = self.forms()
        if any(change(f"reward_{form}") > self.tolerance for form in forms):
            alerts += [f"form_{form}" for form in forms if fell(f"check_{form}")]
        return alerts

    def forms(self) -> list[str]:
        """The prompt forms of the baseline evaluation with both a check and a reward of their own."""
        if self.baseline is None:
            return []
        return sorted(name[len("check_"):] for name in self.baseline
                      if name.startswith("check_") and f"reward_{name[len('check_'):]}" in self.baseline)

    def metrics(self, alerts: list[str]) -> dict[str, float]:
        """``monitor/alert`` (any alert), ``monitor/alert_<dimension>`` for each watched
        dimension the critic scores (none for a scalar reward model) and ``monitor/alert_form_<form>``
        for each prompt form, 1 or 0: the curves the Training tab draws."""
        scored = [key for key in self.dimensions if self.baseline is not None and key in self.baseline]
        scored += [f"form_{form}" for form in self.forms()]
        return {"monitor/alert": float(bool(alerts)), **{f"monitor/alert_{key}": float(key in alerts) for key in scored}}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the baseline's metrics and per-scene checks."""
        return {"baseline": self.baseline, "baseline_flags": self.baseline_flags}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()`` (a checkpoint from before per-scene checks has none: the
        tolerance alone decides)."""
        self.baseline = state.get("baseline")
        self.baseline_flags = state.get("baseline_flags") or {}


def check_flags(items: list[PromptItem], checks: list[bool]) -> dict[str, list[bool]]:
    """Each scene's check for the monitor: all of them (``check``) and, when the items have
    several prompt forms, each form's (``check_<form>``), in item order."""
    if not checks:
        return {}
    flags = {"check": list(checks)}
    forms = sorted({it.form for it in items if it.form})
    if len(forms) > 1:
        for form in forms:
            flags[f"check_{form}"] = [ok for it, ok in zip(items, checks) if it.form == form]
    return flags


def append_grid_row(path: Path, images: list[Image.Image]) -> Path:
    """Add one row of ``images`` under the rows already in the PNG at ``path`` (a grid over time)."""
    if not images:
        return path
    side = images[0].width
    row = Image.new("RGB", (side * GRID_COLUMNS, images[0].height), "white")
    for c, image in enumerate(images[:GRID_COLUMNS]):
        row.paste(image, (c * side, 0))
    if path.is_file():
        old = Image.open(path).convert("RGB")
        grid = Image.new("RGB", (max(old.width, row.width), old.height + row.height), "white")
        grid.paste(old, (0, 0))
        grid.paste(row, (0, old.height))
    else:
        grid = row
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
