"""Exact-scene accuracy of the shipped shapes-world generators, as read by the analyzer.

Held-out scenes (``heldout_scenes``; the training run never draws them) are prompted in the short
form and in the detailed form; each image is read back with ``models.shapes.analyzer.analyze``
and compared with ``parse_prompt`` of its prompt:

- short form: the multiset of (shape, colour) and the word must match (sizes and positions are
  free, since the prompt leaves them open);
- detailed form: the exact objects (shape, colour, size, position) and the word must match.

Edit success: held-out edits (``heldout_edits``) are applied by the editing pipeline to the
source render; an edit succeeds when the analyzed result equals the exact target scene.

``--tasks t2i`` or ``--tasks edit`` measures one pipeline (its folder alone is needed). Image ``i``
uses seed ``--seed + i``. Prints one JSON line; ``--grid`` writes a PNG of samples
(rows: target render, short-prompt sample, detailed-prompt sample, edit source, edit result,
edit target; the measured tasks' rows only). ``detailed_object_recall`` gives partial credit: the share of the detailed prompts'
objects that were found exactly; ``detailed_accuracy_by_objects`` splits the detailed accuracy by
the number of objects a scene holds.

Held-out items past the first 200 (and some prompt texts) occur in the shipped models' training
stream (``bench.heldout``): every rate is also given on the unseen items alone (``*_unseen``),
with the share of seen ones (``*_seen_share``).

Run from the repository root:
    python -m bench.generator_accuracy [--n 200] [--offset 0] [--tasks t2i,edit] [--steps 16] [--guidance 3] [--shift 1] [--grid assets/samples_grid.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from PIL import Image

from bench.heldout import TrainingStream, shipped
from models.errors import ConfigError
from models.shapes import world
from models.shapes.analyzer import AnalyzedScene, analyze
from models.shapes.train_generator import DEFAULTS_FILE, FOLDERS, IMAGE_SIZE, heldout_edits, heldout_scenes, parse_tasks

logger = logging.getLogger(__name__)

GRID_COLUMNS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="assets", help="folder holding shapes-t2i and shapes-edit")
    parser.add_argument("--tasks", default="t2i,edit", help="what to measure: t2i, edit or both (each needs its folder)")
    parser.add_argument("--n", type=int, default=200, help="held-out prompts per form, and edits")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: studio_defaults.json)")
    parser.add_argument("--guidance", type=float, default=None, help="true_cfg_scale (default: studio_defaults.json)")
    parser.add_argument("--shift", type=float, default=None, help="scheduler shift (default: the shipped scheduler's)")
    parser.add_argument("--offset", type=int, default=0,
                        help="skip the first held-out items (e.g. 200: choose between models on items 200-399 and "
                             "leave 0-199, the ones RL evaluates on, to measure the chosen one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image")
    parser.add_argument("--batch", type=int, default=25, help="images per pipeline call")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="where the pipelines run (cpu, cuda)")
    parser.add_argument("--grid", type=Path, default=None, help="write a sample grid PNG here")
    return parser.parse_args(argv)


def short_match(prompt: str, found: AnalyzedScene) -> bool:
    """Same multiset of (shape, colour) and the same word as the short ``prompt`` asks for, and
    every relation it asks for holds ("two red circles above a blue square")."""
    spec = world.parse_prompt(prompt)
    asked = Counter((o.shape, o.colour) for o in spec.objects)
    held = all(c.share == 0 for c in world.check_relations(spec, [(o.colour, o.shape, o.position) for o in found.objects]))
    return asked == Counter((o.shape, o.colour) for o in found.objects) and spec.word == found.word and held


def objects_only_match(prompt: str, found: AnalyzedScene) -> bool:
    """``short_match`` without judging the word: the (shape, colour) multiset and the relations
    the prompt asks for (what ``bench.independent_grader`` reads, by the analyzer)."""
    return short_match(prompt, dataclasses.replace(found, word=world.parse_prompt(prompt).word))


def detailed_match(prompt: str, found: AnalyzedScene) -> bool:
    """Exactly the objects (shape, colour, size, position) and the word the detailed ``prompt`` asks for."""
    spec = world.parse_prompt(prompt)
    asked = sorted((o.shape, o.colour, o.size, o.position) for o in spec.objects)
    got = sorted((o.shape, o.colour, o.size, o.position) for o in found.objects)
    return asked == got and spec.word == found.word


def object_recall(prompt: str, found: AnalyzedScene) -> tuple[int, int]:
    """(objects of the detailed ``prompt`` found exactly, objects asked): partial credit."""
    spec = world.parse_prompt(prompt)
    got = Counter((o.shape, o.colour, o.size, o.position) for o in found.objects)
    asked = Counter((o.shape, o.colour, o.size, o.position) for o in spec.objects)
    return sum((asked & got).values()), sum(asked.values())


def word_rates(scenes: list[world.Scene], found: list[AnalyzedScene]) -> dict[str, float]:
    """On the scenes that ask for a word: the share drawn exactly (``word_exact``), and the share
    of asked letters drawn in their slot of a word of the right length (``letters``; 1/26 by
    chance once the length is right)."""
    pairs = [(scene.word, seen.word) for scene, seen in zip(scenes, found) if scene.word]
    letters = [a == b for asked, got in pairs if got is not None and len(got) == len(asked) for a, b in zip(asked, got)]
    total = sum(len(asked) for asked, _ in pairs)
    return {"word_exact": _rate([asked == got for asked, got in pairs]),
            "letters": round(sum(letters) / total, 3) if total else float("nan")}


def edit_match(target: world.Scene, found: AnalyzedScene) -> bool:
    """The analyzed edit result is exactly the target scene."""
    return bool(found.objects) and found.to_scene() == target


def _settings(folder: Path, steps: int | None, guidance: float | None) -> dict[str, object]:
    defaults = json.loads((folder / DEFAULTS_FILE).read_text())
    return {
        "num_inference_steps": steps if steps is not None else defaults["steps"],
        "true_cfg_scale": guidance if guidance is not None else defaults["guidance"],
        "negative_prompt": defaults["negative_prompt"],
        "height": IMAGE_SIZE,
        "width": IMAGE_SIZE,
        "max_sequence_length": defaults["max_sequence_length"],
    }


def _generators(first: int, count: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(first + i) for i in range(count)]


def generate(pipe: DiffusionPipeline, prompts: list[str], settings: dict[str, object], seed: int, batch: int,
             sources: list[Image.Image] | None = None) -> list[Image.Image]:
    """Images for ``prompts`` (edits of ``sources`` when given), image ``i`` with seed ``seed + i``."""
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        kwargs = dict(settings, prompt=chunk, generator=_generators(seed + start, len(chunk)))
        if sources is not None:
            kwargs.update(image=sources[start : start + batch], max_area=IMAGE_SIZE * IMAGE_SIZE, _auto_resize=False)
        images += pipe(**kwargs).images
        logger.info("%d/%d images", len(images), len(prompts))
    return images


def write_grid(path: Path, rows: list[list[Image.Image]]) -> None:
    """Paste ``rows`` of images (the first ``GRID_COLUMNS`` of each) into one PNG."""
    grid = Image.new("RGB", (IMAGE_SIZE * GRID_COLUMNS, IMAGE_SIZE * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row[:GRID_COLUMNS]):
            grid.paste(image.resize((IMAGE_SIZE, IMAGE_SIZE)), (c * IMAGE_SIZE, r * IMAGE_SIZE))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def _rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 3) if flags else float("nan")


def _unseen(name: str, ok: list[bool], seen: list[bool]) -> dict[str, object]:
    """The rate over the items the shipped model never trained on, their number and the seen share."""
    unseen = [o for o, s in zip(ok, seen) if not s]
    key = "edit_success" if name == "edit" else f"{name}_accuracy"
    return {f"{key}_unseen": _rate(unseen), f"{name}_unseen_n": len(unseen), f"{name}_seen_share": _rate(seen)}


def t2i_report(pipe: DiffusionPipeline, settings: dict[str, object], n: int, seed: int, batch: int,
               stream: TrainingStream | None = None, offset: int = 0) -> tuple[dict[str, object], list[list[Image.Image]]]:
    """Short and detailed accuracy on ``n`` held-out scenes from the ``offset``-th on (and on those
    ``stream`` never trained on); with the grid rows (targets, short and detailed samples)."""
    scenes = heldout_scenes(offset + n)[offset:]
    short = [world.short_prompt(s) for s in scenes]
    detailed = [world.detailed_prompt(s) for s in scenes]
    short_images = generate(pipe, short, settings, seed, batch)
    detailed_images = generate(pipe, detailed, settings, seed, batch)
    short_found = [analyze(im) for im in short_images]
    short_ok = [short_match(p, found) for p, found in zip(short, short_found)]
    detailed_found = [analyze(im) for im in detailed_images]
    detailed_ok = [detailed_match(p, found) for p, found in zip(detailed, detailed_found)]
    recall = [object_recall(p, found) for p, found in zip(detailed, detailed_found)]
    no_word = [i for i, s in enumerate(scenes) if s.word is None]
    report: dict[str, object] = {}
    if stream is not None:
        report.update(_unseen("short", short_ok, [stream.is_seen(s, p) for s, p in zip(scenes, short)]))
        report.update(_unseen("detailed", detailed_ok, [stream.is_seen(s, p) for s, p in zip(scenes, detailed)]))
    report |= {
        "short_accuracy": _rate(short_ok),
        "detailed_accuracy": _rate(detailed_ok),
        "short_accuracy_no_word": _rate([short_ok[i] for i in no_word]),
        "detailed_accuracy_no_word": _rate([detailed_ok[i] for i in no_word]),
        "detailed_accuracy_by_objects": {
            str(k): _rate([ok for s, ok in zip(scenes, detailed_ok) if len(s.objects) == k])
            for k in sorted({len(s.objects) for s in scenes})
        },
        "detailed_object_recall": round(sum(f for f, _ in recall) / sum(a for _, a in recall), 3),
        **{f"short_{k}": v for k, v in word_rates(scenes, short_found).items()},
        **{f"detailed_{k}": v for k, v in word_rates(scenes, detailed_found).items()},
    }
    return report, [[world.render(s) for s in scenes], short_images, detailed_images]


def edit_report(pipe: DiffusionPipeline, settings: dict[str, object], n: int, seed: int, batch: int,
                stream: TrainingStream | None = None, offset: int = 0) -> tuple[dict[str, object], list[list[Image.Image]]]:
    """Edit success on ``n`` held-out edits from the ``offset``-th on, overall and by kind (and on
    those ``stream`` never trained on); with the grid rows (sources, results, targets)."""
    edits = heldout_edits(offset + n)[offset:]
    sources = [world.render(source) for source, _ in edits]
    edited = generate(pipe, [e.instruction for _, e in edits], settings, seed, batch, sources=sources)
    edit_ok = [edit_match(e.target, analyze(im)) for (_, e), im in zip(edits, edited)]
    by_kind: dict[str, list[bool]] = {}
    for (_, e), ok in zip(edits, edit_ok):
        by_kind.setdefault(e.kind, []).append(ok)
    report: dict[str, object] = {}
    if stream is not None:
        report.update(_unseen("edit", edit_ok, [stream.edit_seen(source, e.instruction) for source, e in edits]))
    report |= {"edit_success": _rate(edit_ok), "edit_success_by_kind": {k: _rate(v) for k, v in sorted(by_kind.items())}}
    return report, [sources, edited, [world.render(e.target) for _, e in edits]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.time()
    assets = Path(args.assets)
    report: dict[str, object] = {"n": args.n, "offset": args.offset}
    rows: list[list[Image.Image]] = []
    settings: dict[str, object] = {}
    guidance: dict[str, object] = {}
    tasks = parse_tasks(args.tasks)
    if args.n < 1 or args.offset < 0:
        raise ConfigError(f"--n must be at least 1 and --offset at least 0; got {args.n} and {args.offset}.")
    missing = [str(assets / FOLDERS[t]) for t in tasks if not (assets / FOLDERS[t] / "model_index.json").is_file()]
    if missing:
        raise ConfigError(f"No pipeline folder at {', '.join(missing)}; pass --assets, or --tasks for the folders there.")
    for task in tasks:
        folder = assets / FOLDERS[task]
        pipe = DiffusionPipeline.from_pretrained(folder).to(args.device)
        pipe.set_progress_bar_config(disable=True)
        if args.shift is not None:
            pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=args.shift)
        settings = _settings(folder, args.steps, args.guidance)
        guidance[task] = settings["true_cfg_scale"]
        measure = t2i_report if task == "t2i" else edit_report
        try:
            stream = shipped(task, str(assets))
        except ConfigError as e:  # not a shipped folder: no record of what it trained on
            logger.warning("%s; reporting on all held-out items only.", e)
            stream = None
        task_report, task_rows = measure(pipe, settings, args.n, args.seed, args.batch, stream, args.offset)
        report.update(task_report)
        rows += task_rows
    report.update(steps=settings["num_inference_steps"], guidance=guidance,
                  shift=pipe.scheduler.config.shift, seconds=round(time.time() - started, 1))
    if args.grid:
        write_grid(args.grid, rows)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
