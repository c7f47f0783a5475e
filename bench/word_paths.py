"""Where a shapes-world generator could lose the requested word: its VAE, its T5, or its transformer.

For a pipeline folder, prints one JSON line:

- ``vae_words_read_back``: random words rendered, encoded and decoded by the folder's VAE, then
  read by the analyzer: the share read back exactly (a VAE that blurs letters away caps every
  generator on it);
- ``t5_letter_cosine``: the cosine between the T5's final states at the letter token of
  ``... with the word "X"`` for pairs of different letters, and ``t5_other_cosine`` the same at
  every other token (near 1: the prompts differ only in the letter, so a low letter cosine means
  the text encoder tells letters apart);
- for the transformer's part, ``python -m bench.generator_accuracy`` reports the letters drawn.

Run from the repository root:
    python -m bench.word_paths [--model assets/shapes-t2i] [--words 60]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.vae_ceiling import round_trip  # noqa: E402
from models.errors import NotFoundError  # noqa: E402
from models.shapes import world  # noqa: E402
from models.shapes.analyzer import analyze  # noqa: E402

LETTERS = ("A", "B", "Q", "X")


def vae_read_back(folder: Path, n: int, seed: int = 0) -> float:
    """Share of ``n`` random one-to-three-letter words the analyzer reads back after the VAE."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
    rng = random.Random(seed)
    scenes = [world.random_scene(rng, word_prob=1.0) for _ in range(n)]
    return sum(analyze(image).word == s.word for image, s in zip(round_trip(vae, scenes), scenes)) / n


def t5_cosines(folder: Path) -> tuple[float, float]:
    """Mean cosine of the T5 states at the letter token, and at the other tokens, over pairs of
    prompts that differ only in a one-letter word."""
    from transformers import T5EncoderModel, T5TokenizerFast

    tokenizer = T5TokenizerFast.from_pretrained(folder / "tokenizer_2")
    encoder = T5EncoderModel.from_pretrained(folder / "text_encoder_2").eval()
    with torch.no_grad():
        states = {c: encoder(**tokenizer(f'a red circle with the word "{c}"', return_tensors="pt")).last_hidden_state[0]
                  for c in LETTERS}
    position = tokenizer.tokenize(f'a red circle with the word "{LETTERS[0]}"').index(LETTERS[0])
    letter, other = [], []
    for a, b in itertools.combinations(LETTERS, 2):
        cosine = F.cosine_similarity(states[a], states[b], dim=-1)
        letter.append(cosine[position].item())
        other += [v.item() for i, v in enumerate(cosine[:-1]) if i != position]  # the last state is </s>
    return sum(letter) / len(letter), sum(other) / len(other)


def main(argv: list[str] | None = None) -> int:
    """Print the VAE's and the T5's part for one pipeline folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("assets/shapes-t2i"), help="shapes pipeline folder")
    parser.add_argument("--words", type=int, default=60, help="random words through the VAE")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        raise NotFoundError(f"{args.model} is not a pipeline folder (no model_index.json).")
    torch.set_num_threads(1)
    letter, other = t5_cosines(args.model)
    print(json.dumps({"model": str(args.model), "vae_words_read_back": round(vae_read_back(args.model, args.words), 3),
                      "t5_letter_cosine": round(letter, 3), "t5_other_cosine": round(other, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
