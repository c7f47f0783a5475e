"""Where a tuned generator's short-prompt gain lies: the held-out short prompts drawn with the
studio's generator (its own steps and guidance, one image each, seed = the scene's index) with and
without each LoRA, exact by the analyzer's short match, split by whether the shipped generator
trained on the prompt's text (``bench.heldout``: "seen") or not ("unseen", the prompts
``bench.refinement_gain`` uses).

    python -m bench.rl_seen_split --t2i runs/shapes-t2i-cont/shapes-t2i runs/rl-short30x-s0/lora [LORA ...] [--n 200]

Prints one JSON line per generator: exact over all prompts, and [right, n] for seen and unseen.
"""

from __future__ import annotations

import argparse
import json

from bench.generator_accuracy import short_match
from bench.heldout import shipped
from studio.rl.data import HELDOUT_SCENES


def main(argv: list[str] | None = None) -> int:
    """Draw the held-out short prompts with the base generator and each LoRA; print the split."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loras", nargs="*", help="LoRA folders (an RL run's lora/) loaded into --t2i")
    parser.add_argument("--t2i", required=True, help="the generator folder the LoRAs were trained on")
    parser.add_argument("--assets", default="assets", help="folder holding the shipped shapes-t2i")
    parser.add_argument("--n", type=int, default=HELDOUT_SCENES, help=f"held-out scenes (at most {HELDOUT_SCENES}, "
                                                                        "the ones RL never trains on)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= HELDOUT_SCENES:
        parser.error(f"--n must be 1 to {HELDOUT_SCENES}: later held-out scenes' prompts may be RL training prompts")

    import torch

    from models.generator_diffusers import DiffusersGenerator
    from models.shapes import world
    from models.shapes.analyzer import analyze
    from models.shapes.train_generator import heldout_scenes
    from models.types import GenerationRequest

    torch.set_num_threads(args.threads)
    seen = shipped("t2i", args.assets)
    scenes = heldout_scenes(args.n)
    prompts = [world.short_prompt(scene) for scene in scenes]
    is_seen = [seen.is_seen(scene, prompt) for scene, prompt in zip(scenes, prompts)]
    for lora in [None, *args.loras]:
        generator = DiffusersGenerator(model=args.t2i, lora=lora)
        right = [short_match(prompt, analyze(generator.generate(GenerationRequest("t2i", prompt, seed=i)).images[0]))
                 for i, prompt in enumerate(prompts)]
        split = {name: [sum(r for r, s in zip(right, is_seen) if s == want), is_seen.count(want)]
                 for name, want in (("seen", True), ("unseen", False))}
        print(json.dumps({"t2i": args.t2i, "lora": lora, "exact": round(sum(right) / len(right), 3), **split}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
