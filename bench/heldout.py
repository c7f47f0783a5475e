"""Which held-out evaluation items the shipped generators saw in training, and the unseen rest.

The shipped models were trained (``models.shapes.train_generator``, seed 0) on a seeded stream
that skipped the first 200 held-out scenes and edit sources by scene identity only, so later
held-out items and their prompt texts can occur in it. ``TrainingStream`` replays that stream
step by step, without rendering, and records every scene and prompt text the transformer saw;
``is_seen`` says whether an evaluation prompt (its scene, or its exact text) was among them.
Benchmarks report on the unseen items and state the share of seen ones.

Run from the repository root to print the counts:  python -m bench.heldout [--n 400]
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from models.errors import ConfigError
from models.shapes import world
from models.shapes.train_generator import (
    DEFAULTS_FILE,
    ExcludedKeys,
    SceneStream,
    StepBatches,
    TrainConfig,
    heldout_edits,
    heldout_scenes,
)

#: What the shipped runs excluded: the first 200 held-out scenes and edit sources, by scene only.
SHIPPED_EXCLUDED = 200
_STEPS = re.compile(r"(\d+) steps")


@dataclass
class TrainingStream:
    """Every scene and text a transformer run trained on (t2i scenes and prompts; edit sources
    with their instructions)."""

    scenes: set[world.Scene] = field(default_factory=set)
    prompts: set[str] = field(default_factory=set)
    edits: set[tuple[world.Scene, str]] = field(default_factory=set)

    def is_seen(self, scene: world.Scene, prompt: str) -> bool:
        """Whether the run trained on ``scene`` (with any prompt) or on the text ``prompt``."""
        return scene in self.scenes or prompt in self.prompts

    def edit_seen(self, source: world.Scene, instruction: str) -> bool:
        """Whether the run trained on ``source`` as an edit source or on this exact edit."""
        return source in self.scenes or (source, instruction) in self.edits


def shipped_steps(folder: Path) -> int:
    """The transformer steps of a shipped pipeline, from its ``studio_defaults.json``."""
    description = json.loads((folder / DEFAULTS_FILE).read_text()).get("description", "")
    found = _STEPS.search(description)
    if not found:
        raise ConfigError(f"{folder / DEFAULTS_FILE} does not say how many steps the model was trained for.")
    return int(found.group(1))


@lru_cache(maxsize=4)
def replay(task: str, steps: int, seed: int = 0) -> TrainingStream:
    """The stream a ``--tasks task`` run with ``seed`` and the default batch settings trained on
    for ``steps`` transformer steps, with the shipped runs' exclusions."""
    cfg = TrainConfig(tasks=task, seed=seed)
    excluded = ExcludedKeys(
        frozenset(heldout_scenes(SHIPPED_EXCLUDED)) | {s for s, _ in heldout_edits(SHIPPED_EXCLUDED)}, frozenset()
    )
    batches = StepBatches(cfg, SceneStream(seed, excluded), 0)
    seen = TrainingStream()
    for step in range(steps):
        samples = batches.samples(step)
        if task == "t2i":
            seen.scenes.update(samples.scenes)
            seen.prompts.update(p for p in samples.prompts if p)
        else:
            sources = samples.scenes[: cfg.batch_edit]
            seen.scenes.update(sources)
            seen.edits.update((s, p) for s, p in zip(sources, samples.edit_prompts) if p)
    return seen


def shipped(task: str, assets: str = "assets") -> TrainingStream:
    """What the shipped ``task`` model (``assets/shapes-t2i`` or ``assets/shapes-edit``) saw."""
    return replay(task, shipped_steps(Path(assets) / ("shapes-t2i" if task == "t2i" else "shapes-edit")))


def main(argv: list[str] | None = None) -> int:
    """Print how many of the first ``--n`` held-out items each shipped model saw."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--assets", default="assets")
    args = parser.parse_args(argv)
    t2i, edit = shipped("t2i", args.assets), shipped("edit", args.assets)
    scenes = heldout_scenes(args.n)
    edits = heldout_edits(args.n)
    print(json.dumps({
        "bench": "heldout", "n": args.n,
        "t2i_scene_seen": sum(s in t2i.scenes for s in scenes),
        "detailed_prompt_seen": sum(world.detailed_prompt(s) in t2i.prompts for s in scenes),
        "short_prompt_seen": sum(world.short_prompt(s) in t2i.prompts for s in scenes),
        "short_seen_any": sum(t2i.is_seen(s, world.short_prompt(s)) for s in scenes),
        "detailed_seen_any": sum(t2i.is_seen(s, world.detailed_prompt(s)) for s in scenes),
        "edit_seen": sum(edit.edit_seen(s, e.instruction) for s, e in edits),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
