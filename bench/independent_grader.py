"""A scene reader that shares nothing with ``models.shapes.analyzer``, to grade what the critic
(which uses the analyzer) picked.

Each pixel gets the nearest of the background, the six palette colours and the ink (plain
Euclidean distance in RGB, no mixing model). In each grid cell the most common palette colour
with enough pixels is the object's colour, and its hard mask is compared by IoU with the
requested scene's own rendered masks (``world.shape_mask``: every shape and size, centred on the
mask's centre of mass, stars also with blunter points, no blur model): the best soft IoU names
the shape and size. The word is not read.

``objects_match(prompt, image)``: the image shows exactly the requested multiset of (shape,
colour) and every relation the prompt asks for holds on the cells read (the word, if any, is not
judged).
Run from the repository root to check it against known truth:
    python -m bench.independent_grader [--n 300]   (clean renders and t2i VAE round-trips)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
from PIL import Image

from models.shapes import world

_SIZE = 64
_MIN_PIXELS = 6  # pixels of one colour a cell needs to hold an object
# (shape, size, star inner radius): decoders blunt a small star's points, so stars are also tried
# with shorter points
_TEMPLATES = [(shape, size, inner) for shape in world.SHAPES for size in world.SIZES
              for inner in ((world.STAR_INNER, 0.62) if shape == "star" else (world.STAR_INNER,))]


def _labels(image: Image.Image) -> np.ndarray:
    """Per-pixel class: -1 background, 0..5 palette colours, 6 ink."""
    rgb = image.convert("RGB")
    if rgb.size != (_SIZE, _SIZE):
        rgb = rgb.resize((_SIZE, _SIZE), Image.Resampling.BOX)
    pixels = np.asarray(rgb, dtype=np.float32)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    colours = np.asarray([background, *world.COLOURS.values(), world.INK], dtype=np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - colours[None, None], axis=-1)
    return distance.argmin(axis=-1) - 1


def _cell_masks() -> dict[str, np.ndarray]:
    ys, xs = np.mgrid[0:_SIZE, 0:_SIZE] + 0.5
    col = np.clip((3 * xs / _SIZE).astype(int), 0, 2)
    row = (3 * ys / (world.GRID_HEIGHT * _SIZE)).astype(int)
    return {p: (row == i // 3) & (col == i % 3) for i, p in enumerate(world.POSITIONS)}


_CELLS = _cell_masks()


def read(image: Image.Image) -> list[tuple[str, str, str, str]]:
    """The objects seen, as (shape, colour, size, position) per occupied cell."""
    labels = _labels(image)
    ys, xs = np.mgrid[0:_SIZE, 0:_SIZE]
    found = []
    for position, cell in _CELLS.items():
        counts = np.bincount(labels[cell & (labels >= 0) & (labels < 6)], minlength=6)
        if counts.max() < _MIN_PIXELS:
            continue
        colour = int(counts.argmax())
        mask = cell & (labels == colour)
        cx, cy = float(xs[mask].mean()) + 0.5, float(ys[mask].mean()) + 0.5
        best = (-1.0, "", "")
        for shape, size, inner in _TEMPLATES:
            extent = world.object_extent(size, _SIZE)
            template = world.shape_mask(shape, (cx, cy), extent, _SIZE, star_inner=inner)
            dx, dy = (template * xs).sum() / template.sum() + 0.5 - cx, (template * ys).sum() / template.sum() + 0.5 - cy
            shifted = world.shape_mask(shape, (cx - dx, cy - dy), extent, _SIZE, star_inner=inner)  # same centre of mass
            iou = np.minimum(shifted, mask).sum() / max(np.maximum(shifted, mask).sum(), 1e-6)
            best = max(best, (float(iou), shape, size))
        found.append((best[1], list(world.COLOURS)[colour], best[2], position))
    return found


def objects_match(prompt: str, image: Image.Image) -> bool:
    """Whether ``image`` shows exactly the (shape, colour) multiset ``prompt`` asks for and its
    relations hold on the cells read (any word is not judged)."""
    spec = world.parse_prompt(prompt)
    seen = read(image)
    held = all(c.share == 0 for c in world.check_relations(spec, [(c, s, p) for s, c, _, p in seen]))
    return Counter((o.shape, o.colour) for o in spec.objects) == Counter((s, c) for s, c, _, _ in seen) and held


def main(argv: list[str] | None = None) -> int:
    """Agreement with known truth on clean renders and t2i VAE round-trips (no words)."""
    import torch
    from diffusers import AutoencoderKL

    from bench.vae_ceiling import round_trip
    from models.shapes.train_generator import heldout_scenes

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--vae", default="assets/shapes-t2i/vae")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scenes = [world.Scene(s.objects) for s in heldout_scenes(args.n)]
    truth = [sorted((o.shape, o.colour, o.size, o.position) for o in s.objects) for s in scenes]
    clean = sum(sorted(read(world.render(s))) == t for s, t in zip(scenes, truth))
    with torch.no_grad():
        trips = round_trip(AutoencoderKL.from_pretrained(args.vae).eval(), scenes)
    vae = sum(sorted(read(image)) == t for image, t in zip(trips, truth))
    print(json.dumps({"bench": "independent_grader", "n": args.n, "clean_exact": round(clean / args.n, 3),
                      "vae_exact": round(vae / args.n, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
