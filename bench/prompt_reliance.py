"""Which parts of a prompt a shapes-world text-to-image model reads, and through which encoder.

FLUX conditions its transformer two ways: the T5 token states (the text stream every image token
can attend to, so an attribute can be tied to one object) and the pooled CLIP vector (one global
modulation of every image token, so it can say *which* colours a scene has, not *where*).

For held-out scenes with at least two colours, the flow-matching loss of the true prompt is
compared with the loss when the prompt is altered, at fixed noise levels and the same noise:

- ``colours``: the objects' colours permuted among them (same colours, other places);
- ``shapes``: the shapes permuted the same way;
- ``scene``: another held-out scene's prompt.

Each alteration is fed through both encoders (``both``), through T5 only (the pooled vector of the
true prompt is kept: ``t5``) and through CLIP only (``pooled``). A model that binds colours to
objects loses accuracy when ``colours`` goes through ``t5``; a value near 0 there means colours are
not read from the text stream at all. Prints one JSON line.

Run from the repository root:
    python -m bench.prompt_reliance [--assets assets] [--n 64] [--sigmas 0.95,0.8,0.6]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diffusers import FluxPipeline

from models.shapes import world
from models.shapes.train_generator import DEFAULTS_FILE, T2I_FOLDER, heldout_scenes, packed_latents

PromptEmbeds = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # T5 states, pooled CLIP, text ids


def permute(scene: world.Scene, attribute: str, rng: random.Random) -> world.Scene:
    """The scene with one attribute of its objects ("colour" or "shape") permuted among them,
    everything else kept; unchanged when all objects share the value."""
    values = [getattr(o, attribute) for o in scene.objects]
    order = values[:]
    while len(set(values)) > 1 and order == values:
        rng.shuffle(order)
    return world.Scene(tuple(dataclasses.replace(o, **{attribute: v}) for o, v in zip(scene.objects, order)),
                       scene.word)


@torch.no_grad()
def reliance(pipe: FluxPipeline, scenes: list[world.Scene], sigmas: list[float], max_len: int,
             seed: int = 0) -> dict[str, object]:
    """Loss of the true prompts and the loss increase of each alteration and encoder, per noise
    level (T5 padded to ``max_len`` tokens, as in training)."""
    rng = random.Random(seed)
    images = torch.from_numpy(np.stack([np.asarray(world.render(s)) for s in scenes]))
    x0 = packed_latents(pipe.vae, images)
    side = images.shape[1] // pipe.vae_scale_factor // 2
    image_ids = FluxPipeline._prepare_latent_image_ids(1, side, side, x0.device, x0.dtype)

    def encode(prompted: list[world.Scene]) -> PromptEmbeds:
        prompts = [world.detailed_prompt(s) for s in prompted]
        return pipe.encode_prompt(prompt=prompts, prompt_2=None, device=x0.device, max_sequence_length=max_len)

    own = encode(scenes)
    altered = {
        "colours": encode([permute(s, "colour", rng) for s in scenes]),
        "shapes": encode([permute(s, "shape", rng) for s in scenes]),
        "scene": encode(scenes[1:] + scenes[:1]),
    }
    report: dict[str, object] = {}
    for sigma in sigmas:
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=x0.dtype)
        noisy = (1 - sigma) * x0 + sigma * eps
        timestep = torch.full((len(scenes),), sigma, dtype=x0.dtype)

        def loss(t5: PromptEmbeds, pooled: PromptEmbeds) -> float:
            pred = pipe.transformer(hidden_states=noisy, timestep=timestep, pooled_projections=pooled[1],
                                    encoder_hidden_states=t5[0], txt_ids=t5[2], img_ids=image_ids,
                                    return_dict=False)[0]
            return float(((pred - (eps - x0)) ** 2).mean())

        base = loss(own, own)
        row: dict[str, object] = {"loss": round(base, 4)}
        for name, embeds in altered.items():
            row[name] = {
                "both": round(loss(embeds, embeds) - base, 4),
                "t5": round(loss(embeds, own) - base, 4),
                "pooled": round(loss(own, embeds) - base, 4),
            }
        report[f"sigma_{sigma:g}"] = row
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="assets", help="folder holding shapes-t2i")
    parser.add_argument("--n", type=int, default=64, help="held-out scenes with at least two colours")
    parser.add_argument("--sigmas", default="0.95,0.8,0.6", help="noise levels, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(args.assets) / T2I_FOLDER
    pipe = FluxPipeline.from_pretrained(folder)
    max_len = json.loads((folder / DEFAULTS_FILE).read_text())["max_sequence_length"]
    pool = heldout_scenes(max(200, 4 * args.n))
    scenes = [s for s in pool if len({o.colour for o in s.objects}) >= 2][: args.n]
    report = {"n": len(scenes), **reliance(pipe, scenes, [float(s) for s in args.sigmas.split(",")], max_len)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
