"""Why a critique can beat a blind expansion: does a fixed seed keep the objects that came out
right when only the clause of a wrong one changes?

For each unseen held-out short prompt (``bench.refinement_gain.unseen_prompts``) the shipped t2i
model draws the blind expansion (``models.shapes.expand``) with seed ``i``. Where the analyzer
finds some requested objects right (shape and colour in their cell) and some wrong, the image is
redrawn five ways, and each way counts how many right objects stay right ("kept"), how many wrong
ones come out right ("fixed"), and how often the whole request's objects are right (same multiset
of shape and colour, no extra; "objects_ok"):

- ``new_seed``: the same prompt with a new seed (what a blind re-draw or ``on_repeat=vary_seed`` does);
- ``move_same_seed`` / ``move_new_seed``: the wrong objects moved to free cells;
- ``resize_same_seed``: the wrong objects asked for at the other size (the critic's ``resize_failed``);
- ``enlarge_same_seed``: the small wrong objects asked for large (sessions with one).

Two more sets of round-1 results (the ``word_*`` and ``mw_*`` rates):

- every object right, the word wrong: redrawn with two new seeds (``word_new_seed``,
  ``word_new_seed_2``) and the word asked for as "the text" with the same seed
  (``word_text_same_seed``); each counts the word right, the objects right, and both ("exact");
- most objects wrong (fewer than half right): the wrong objects at the other size with the same
  seed (``mw_resize_same_seed``, what ``resize_failed`` does), a fresh expansion with the same seed
  (``mw_fresh_same_seed``, what the critic's ``fresh_layout`` does) and with a new seed
  (``mw_fresh_new_seed``, a blind re-draw); each counts the objects right.

Prints one JSON line. Run from the repository root:
    python -m bench.loop_diagnostics [--n 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.refinement_gain import unseen_prompts
from models.shapes import world
from models.shapes.analyzer import AnalyzedScene, analyze
from models.shapes.expand import expand, expansion_rng
from models.types import GenerationRequest

NEW_SEED = 1000  # seed offset of a re-draw


def _scene(prompt: str) -> world.Scene:
    spec = world.parse_prompt(prompt)
    return world.Scene(tuple(world.ShapeObject(o.shape, o.colour, o.size, o.position) for o in spec.objects), spec.word)


def right_objects(scene: world.Scene, seen: AnalyzedScene) -> list[bool]:
    """For each object of ``scene``: whether the image shows its shape and colour in its cell."""
    at = {o.position: (o.shape, o.colour) for o in seen.objects}
    return [at.get(o.position) == (o.shape, o.colour) for o in scene.objects]


def objects_ok(prompt: str, seen: AnalyzedScene) -> bool:
    """The short ``prompt``'s objects exactly: the same multiset of (shape, colour), nothing extra."""
    asked = Counter((o.shape, o.colour) for o in world.parse_prompt(prompt).objects)
    return asked == Counter((o.shape, o.colour) for o in seen.objects)


def _other_size(obj: world.ShapeObject) -> world.ShapeObject:
    return replace(obj, size="large" if obj.size == "small" else "small")


def variants(scene: world.Scene, wrong: list[world.ShapeObject], seed: int, rng) -> dict[str, tuple[world.Scene, int]]:
    """The redraws of a mixed result: (scene to ask for, seed) by name."""
    moved = scene
    for obj in wrong:
        cell = rng.choice([p for p in world.POSITIONS if moved.at(p) is None])
        moved = world.Scene(tuple(o for o in moved.objects if o != obj) + (replace(obj, position=cell),), scene.word)
    out = {
        "new_seed": (scene, seed + NEW_SEED),
        "move_same_seed": (moved, seed),
        "move_new_seed": (moved, seed + NEW_SEED),
        "resize_same_seed": (world.Scene(tuple(_other_size(o) if o in wrong else o for o in scene.objects), scene.word), seed),
    }
    if any(o.size == "small" for o in wrong):
        big = tuple(replace(o, size="large") if o in wrong else o for o in scene.objects)
        out["enlarge_same_seed"] = (world.Scene(big, scene.word), seed)
    return out


def word_variants(scene: world.Scene, seed: int) -> dict[str, tuple[str, int]]:
    """The redraws of a result whose objects are right and word wrong: (prompt, seed) by name."""
    text = world.detailed_prompt(scene)
    return {"word_new_seed": (text, seed + NEW_SEED), "word_new_seed_2": (text, seed + 2 * NEW_SEED),
            "word_text_same_seed": (text.replace(' with the word "', ' with the text "'), seed)}


def mostly_wrong_variants(prompt: str, scene: world.Scene, wrong: list[world.ShapeObject],
                          seed: int) -> dict[str, tuple[str, int]]:
    """The redraws of a result with most objects wrong: (prompt, seed) by name."""
    resized = world.Scene(tuple(_other_size(o) if o in wrong else o for o in scene.objects), scene.word)
    fresh = expand(prompt, random.Random(f"fresh/{seed}"))
    return {"mw_resize_same_seed": (world.detailed_prompt(resized), seed), "mw_fresh_same_seed": (fresh, seed),
            "mw_fresh_new_seed": (fresh, seed + NEW_SEED)}


def run(n: int, assets: str) -> dict[str, object]:
    """The counts over ``n`` unseen prompts (see the module docstring)."""
    from models.generator_diffusers import DiffusersGenerator
    from models.shapes.train_generator import T2I_FOLDER

    generator = DiffusersGenerator(model=str(Path(assets) / T2I_FOLDER))

    def draw(scene: world.Scene | str, seed: int) -> AnalyzedScene:
        text = scene if isinstance(scene, str) else world.detailed_prompt(scene)
        return analyze(generator.generate(GenerationRequest("t2i", text, seed=seed, num_images=1)).images[0])

    prompts, _ = unseen_prompts(n, assets)
    stats: Counter[str] = Counter()
    for i, prompt in enumerate(prompts):
        rng = expansion_rng(i)
        scene = _scene(expand(prompt, rng))
        seen = draw(scene, i)
        right = right_objects(scene, seen)
        stats["first_objects_ok"] += objects_ok(prompt, seen)
        if objects_ok(prompt, seen) and scene.word and seen.word != scene.word:
            stats["word_only"] += 1
            for name, (text, seed) in word_variants(scene, i).items():
                again = draw(text, seed)
                stats[f"{name}/n"] += 1
                stats[f"{name}/word"] += again.word == scene.word
                stats[f"{name}/objects_ok"] += objects_ok(prompt, again)
                stats[f"{name}/exact"] += again.word == scene.word and objects_ok(prompt, again)
        if 2 * sum(right) < len(right):
            stats["mostly_wrong"] += 1
            wrong = [o for o, ok in zip(scene.objects, right) if not ok]
            for name, (text, seed) in mostly_wrong_variants(prompt, scene, wrong, i).items():
                stats[f"{name}/n"] += 1
                stats[f"{name}/objects_ok"] += objects_ok(prompt, draw(text, seed))
        if all(right) or not any(right):
            stats["all_right" if all(right) else "none_right"] += 1
            continue
        stats["mixed"] += 1
        wrong = [o for o, ok in zip(scene.objects, right) if not ok]
        kept = {o.position for o, ok in zip(scene.objects, right) if ok}
        for name, (asked, seed) in variants(scene, wrong, i, rng).items():
            again = draw(asked, seed)
            flags = list(zip(asked.objects, right_objects(asked, again)))
            stats[f"{name}/n"] += 1
            stats[f"{name}/kept"] += sum(ok for o, ok in flags if o.position in kept)
            stats[f"{name}/kept_of"] += len(kept)
            stats[f"{name}/fixed"] += sum(ok for o, ok in flags if o.position not in kept)
            stats[f"{name}/fixed_of"] += len(wrong)
            stats[f"{name}/objects_ok"] += objects_ok(prompt, again)
    return dict(stats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="unseen held-out prompts")
    parser.add_argument("--assets", default="assets", help="folder holding shapes-t2i")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    stats = run(args.n, args.assets)
    rates = {}
    for name in ("new_seed", "move_same_seed", "move_new_seed", "resize_same_seed", "enlarge_same_seed"):
        if stats.get(f"{name}/n"):
            rates[name] = {"kept": round(stats[f"{name}/kept"] / stats[f"{name}/kept_of"], 3),
                           "fixed": round(stats[f"{name}/fixed"] / stats[f"{name}/fixed_of"], 3),
                           "objects_ok": round(stats[f"{name}/objects_ok"] / stats[f"{name}/n"], 3),
                           "n": stats[f"{name}/n"]}
    for name in ("word_new_seed", "word_new_seed_2", "word_text_same_seed"):
        if stats.get(f"{name}/n"):
            rates[name] = {key: f"{stats[f'{name}/{key}']}/{stats[f'{name}/n']}" for key in ("word", "objects_ok", "exact")}
    for name in ("mw_resize_same_seed", "mw_fresh_same_seed", "mw_fresh_new_seed"):
        if stats.get(f"{name}/n"):
            rates[name] = {"objects_ok": f"{stats[f'{name}/objects_ok']}/{stats[f'{name}/n']}"}
    print(json.dumps({"bench": "loop_diagnostics", "n": args.n, "first_objects_ok": stats.get("first_objects_ok", 0),
                      "mixed": stats.get("mixed", 0), "all_right": stats.get("all_right", 0),
                      "none_right": stats.get("none_right", 0), "word_only": stats.get("word_only", 0),
                      "mostly_wrong": stats.get("mostly_wrong", 0), **rates, "seconds": round(time.time() - started, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
