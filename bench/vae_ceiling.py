"""The most a shapes-world generator can score: exact-scene recovery of held-out renders passed
through its VAE (encode, decode) and read back by the analyzer.

A generator's images come out of the VAE's decoder, so a scene the VAE cannot reproduce is one
the generator cannot draw exactly either. Prints one JSON line with the exact-scene rate and the
objects that came back wrong, e.g. ``"small red star -> small red diamond": 4``.

Run from the repository root:
    python -m bench.vae_ceiling [--vae assets/shapes-t2i/vae] [--checkpoint runs/shapes-t2i/ckpt.pt] [--n 200]

``--checkpoint`` reads the VAE of a training run (``models.shapes.train_generator``) instead of an
exported one, so that a VAE can be judged before its transformer is trained.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from diffusers import AutoencoderKL
from PIL import Image

from models.shapes import world
from models.shapes.analyzer import analyze
from models.shapes.tiny_flux import TinyFluxConfig, build_vae
from models.shapes.train_generator import heldout_scenes, images_to_tensor


def load_vae(args: argparse.Namespace) -> AutoencoderKL:
    """The VAE to judge, in float32 and eval mode."""
    if args.checkpoint:
        blob = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        vae = build_vae(TinyFluxConfig.from_dict(blob["config"]["model"]))
        vae.load_state_dict(blob["vae"])
    else:
        vae = AutoencoderKL.from_pretrained(args.vae)
    return vae.float().eval()


def wrong_objects(truth: world.Scene, found_objects: list) -> list[str]:
    """How each object of ``truth`` came back, where it did not come back exact."""
    found = {o.position: o for o in found_objects}
    wrong = []
    for obj in truth.objects:
        got = found.get(obj.position)
        if got is None:
            wrong.append(f"{obj.size} {obj.shape} -> missing")
        elif (got.shape, got.colour, got.size) != (obj.shape, obj.colour, obj.size):
            wrong.append(f"{obj.size} {obj.colour} {obj.shape} -> {got.size} {got.colour} {got.shape}")
    return wrong


@torch.no_grad()
def round_trip(vae: AutoencoderKL, scenes: list[world.Scene]) -> list[Image.Image]:
    """Each scene rendered at 64x64, encoded and decoded by ``vae``: what a generator can draw."""
    images: list[Image.Image] = []
    for start in range(0, len(scenes), 50):
        x = images_to_tensor([world.render(s) for s in scenes[start:start + 50]])
        out = vae.decode(vae.encode(x).latent_dist.mode()).sample
        pixels = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        images += [Image.fromarray(image) for image in pixels]
    return images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", default="assets/shapes-t2i/vae", help="an exported VAE folder")
    parser.add_argument("--checkpoint", default="", help="a training checkpoint whose VAE to judge instead")
    parser.add_argument("--n", type=int, default=200, help="held-out scenes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae = load_vae(args)
    scenes = heldout_scenes(args.n)
    exact, mistakes = 0, Counter()
    for scene, image in zip(scenes, round_trip(vae, scenes)):
        found = analyze(image)
        wrong = wrong_objects(scene, found.objects)
        extra = len(found.objects) > len(scene.objects)
        exact += not wrong and not extra and found.word == scene.word
        mistakes.update(wrong + (["extra object"] if extra else []) + (["word"] if found.word != scene.word else []))
    print(json.dumps({"bench": "vae_ceiling", "n": len(scenes), "exact_scene": round(exact / len(scenes), 3),
                      "wrong": dict(mistakes.most_common(10)), "source": args.checkpoint or args.vae}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
