"""Does a pretrained base see flaws and words? Per flaw kind and per letter, beside the reference analyzer.

Scores each ``--base`` folder (``parrot pretrain``'s ``model/``, never modified) on the held-out
renders ``parrot pretrain`` itself is scored on (``pretrain.heldout_renders``: the same seed, size,
flaw share and held-out exclusion), so its rows line up with a run's ``pretrain.json``: greedy
captions (shape, colour, size, the word, its letters, the flaw and the flaw per true kind) and the
answers to the flaw and word questions (a base never trained on them answers at random or not at
all), and per true kind the mean probability of each kind as the flaw answer (``flaw_answer_probs``). The first row is the reference analyzer (``models.shapes.analyzer``, what the exact critic
reads) on the same renders: per true kind, the share where it measures that kind past the critic's
own thresholds (``models.shapes.assess``), and the word it reads. One JSON row per model.

``--probe-renders N`` also asks whether the flaw reaches the language model at all: a linear
(multinomial logistic) probe on the visual tokens the language model reads (the merger's output,
mean- and max-pooled over the image's tokens) is fitted on N fresh renders of another seed and
scored per true kind on the held-out renders (``probe`` in the row). A probe that reads a kind the
captions miss means the tower passes it on and the language model does not use it. With
``--layer-probe`` the same probe is fitted on the language model's hidden states after the embedding
and after each layer, at the answer position (``answer_N``: the flaw question's last prompt token)
and over the visual tokens (``visual_N``, mean and max), which shows where the flaw is lost.

    python -m bench.parrot_base_flaws --base /tmp/h16f/base0 /tmp/h16f/flawq/model --eval-images 100 \
        --probe-renders 800
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

import torch
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.shapes.analyzer import AnalyzedScene, analyze
from models.shapes.assess import BLEED_START, BLUR_START, NOISE_START
from studio.parrot import pretrain
from studio.parrot.captions import FLAW_CLOSE_UP, FLAW_QUESTION, FLAWS, NO_FLAW, CaptionSample, caption_samples, flaw_kind_scores, heldout_requests, letter_share, zoom_in
from studio.parrot.pairs import HELDOUT_SEED
from studio.parrot.vision import visual_tokens

CAPTION_KEYS = ("shape", "colour", "size", "object", "word", "letters", "flaw", "flaw_kinds")


def measured_flaws(seen: AnalyzedScene) -> list[str]:
    """The flaw kinds the analyzer measures in an image past the reference critic's thresholds."""
    art = seen.artifacts
    flags = {"blur": art.blur > BLUR_START, "noise": art.noise > NOISE_START, "broken": art.broken > 0,
             "merged": art.merged > 0, "smudge": art.smudges > 0, "colour_bleed": art.colour_bleed > BLEED_START}
    return [k for k, on in flags.items() if on]


def reference_row(truth: list[CaptionSample]) -> dict[str, object]:
    """The analyzer on ``truth``: its flaw call per true kind (the true kind among what it
    measures; a clean image right when it measures nothing) and the word it reads."""
    seen = [analyze(s.image) for s in truth]
    calls = []
    for sample, scene in zip(truth, seen):
        flaws = measured_flaws(scene)
        right = sample.flaw in flaws if sample.flaw != NO_FLAW else not flaws
        calls.append(sample.flaw if right else "other")
    words = [scene.word for scene in seen]
    return {"model": "reference analyzer", "images_per_kind": {k: sum(s.flaw == k for s in truth)
                                                               for k in flaw_kind_scores(calls, truth)},
            "flaw": round(sum(c == s.flaw for c, s in zip(calls, truth)) / len(truth), 4),
            "flaw_kinds": flaw_kind_scores(calls, truth),
            "word": round(sum(w == s.scene.word for w, s in zip(words, truth)) / len(truth), 4),
            "letters": letter_share(words, truth)}


@torch.no_grad()
def visual_features(model: object, processor: object, samples: list[CaptionSample]) -> torch.Tensor:
    """Per image, the mean and the max over the visual tokens the language model reads."""
    rows = []
    for start in range(0, len(samples), 64):
        tokens = visual_tokens(model, processor, samples[start:start + 64])
        rows.append(torch.cat([tokens.mean(1), tokens.amax(1)], dim=1))
    return torch.cat(rows)


def probe_row(model: object, processor: object, train: list[CaptionSample], truth: list[CaptionSample]) -> dict:
    """A linear probe for the flaw kind on ``visual_features`` (``fit_probe``), fitted on
    ``train``, scored per true kind on ``truth``."""
    return fit_probe(visual_features(model, processor, train), train, visual_features(model, processor, truth), truth)


def fit_probe(x_train: torch.Tensor, train: list[CaptionSample], x_test: torch.Tensor,
              truth: list[CaptionSample]) -> dict:
    """A multinomial logistic probe for the flaw kind on features ``x_train`` of ``train``
    (standardised, L2 1e-3, 300 L-BFGS steps), scored per true kind on ``x_test`` of ``truth``."""
    kinds = [NO_FLAW, *FLAWS]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y = torch.tensor([kinds.index(s.flaw) for s in train])
    probe = torch.nn.Linear(x_train.shape[1], len(kinds))
    optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=300)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), y) + 1e-3 * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        guesses = [kinds[i] for i in probe(x_test).argmax(1).tolist()]
    return {"flaw": round(sum(g == s.flaw for g, s in zip(guesses, truth)) / len(truth), 4),
            "flaw_kinds": flaw_kind_scores(guesses, truth), "train_renders": len(train)}


@torch.no_grad()
def layer_states(model: object, processor: object, samples: list[CaptionSample]) -> dict[str, torch.Tensor]:
    """Per image asked the flaw question, the language model's hidden state at the answer position
    (the prompt's last token, whose output is the answer's first token) after the embedding
    (``answer_0``) and after each layer (``answer_1`` ...), and the visual tokens' mean and max
    over the image at the same depths (``visual_0`` ...)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": FLAW_QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image_id = model.config.image_token_id
    rows: dict[str, list[torch.Tensor]] = {}
    for sample in samples:
        inputs = processor(text=[text], images=[sample.image], return_tensors="pt")
        states = model(**inputs, output_hidden_states=True).hidden_states
        visual = inputs["input_ids"][0] == image_id
        for depth, state in enumerate(states):
            rows.setdefault(f"answer_{depth}", []).append(state[0, -1])
            rows.setdefault(f"visual_{depth}", []).append(torch.cat([state[0, visual].mean(0),
                                                                     state[0, visual].amax(0)]))
    return {name: torch.stack(rows[name]) for name in sorted(rows, key=lambda n: (n[0] != "v", n))}


def layer_probe_rows(model: object, processor: object, train: list[CaptionSample],
                     truth: list[CaptionSample]) -> dict[str, dict]:
    """``fit_probe`` on each of ``layer_states``: where between the visual tokens and the answer
    position the flaw stops being linearly readable."""
    fitted, tested = layer_states(model, processor, train), layer_states(model, processor, truth)
    return {name: fit_probe(fitted[name], train, tested[name], truth) for name in fitted}


@torch.no_grad()
def flaw_answer_probs(model: object, processor: object, truth: list[CaptionSample]) -> dict[str, dict[str, float]]:
    """Per true flaw kind, the mean probability of each kind's first answer token after the flaw
    question: rows that differ mean the answer depends on the image, equal rows are the prior."""
    kinds = [NO_FLAW, *FLAWS]
    first = [processor.tokenizer(k, add_special_tokens=False)["input_ids"][0] for k in kinds]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": FLAW_QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    rows: dict[str, list[torch.Tensor]] = {}
    for sample in truth:
        inputs = processor(text=[text], images=[sample.image], return_tensors="pt")
        rows.setdefault(sample.flaw, []).append(model(**inputs).logits[0, -1].softmax(-1)[first])
    return {k: dict(zip(kinds, (round(v, 3) for v in torch.stack(rows[k]).mean(0).tolist())))
            for k in kinds if k in rows}


def flaw_answer_scores(model: object, processor: object, samples: list[CaptionSample]) -> dict[str, object]:
    """The flaw question's greedy answers about ``samples``: accuracy (``flaw``), per true kind
    (``flaw_kinds``) and the distinct answers given (``answers``)."""
    answers = [pretrain.generate_caption(model, processor, s.image, FLAW_QUESTION, 8) for s in samples]
    return {"flaw": round(sum(a == s.flaw for a, s in zip(answers, samples)) / len(samples), 4),
            "flaw_kinds": flaw_kind_scores(answers, samples), "answers": sorted(set(answers))}


def close_up_scores(model: object, processor: object, count: int, seed: int, probe_renders: int,
                    layers: bool = False) -> dict[str, object]:
    """The flaw question's greedy answers on ``count`` fresh flawed ``FLAW_CLOSE_UP`` renders seen 3x
    closer (as ``--flaw-zoom`` starts), per true kind, and with ``probe_renders`` the linear
    probe fitted on that many other close-ups and scored on these (with ``layers``, also at each
    depth of the language model: ``layer_probe``)."""
    drawn = caption_samples(random.Random(seed), flaw_prob=1.0, stage=FLAW_CLOSE_UP)
    seen = [zoom_in(next(drawn), FLAW_CLOSE_UP.zoom) for _ in range(count + probe_renders)]
    seen, train = seen[:count], seen[count:]
    scores = flaw_answer_scores(model, processor, seen)
    if probe_renders:
        scores["probe"] = probe_row(model, processor, train, seen)
        if layers:
            scores["layer_probe"] = layer_probe_rows(model, processor, train, seen)
    return scores


def base_row(folder: str, truth: list[CaptionSample], probe_train: list[CaptionSample],
             close_ups: int = 0, layers: bool = False) -> dict[str, object]:
    """One base's captions and question answers on ``truth`` (its flaw probe, with ``probe_train``;
    its answers on ``close_ups`` close-up renders; with ``layers``, the probe at each depth of the
    language model too, ``layer_probe_rows``)."""
    started = time.perf_counter()
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = load_processor(folder)
    report = pretrain.evaluate(model, processor, truth, 32, questions=True)
    row = {"model": folder, **{k: report["captions"][k] for k in CAPTION_KEYS},
           "questions": {k: report["questions"][k] for k in ("flaw", "flaw_kinds", "word", "letters")},
           "flaw_answer_probs": flaw_answer_probs(model, processor, truth),
           "image_gap": report["image_reliance"]["gap"]}
    if probe_train:
        row["probe"] = probe_row(model, processor, probe_train, truth)
        if layers:
            row["layer_probe"] = layer_probe_rows(model, processor, probe_train, truth)
    if close_ups:
        row["close_up"] = close_up_scores(model, processor, close_ups, len(truth) + 7, len(probe_train), layers)
    return {**row, "seconds": round(time.perf_counter() - started), "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    """Print the reference analyzer's row, then one row per base."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", nargs="+", required=True, help="pretrained base folders (parrot pretrain's model/)")
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="the pretraining run's seed (its held-out renders)")
    parser.add_argument("--probe-renders", type=int, default=0, help="fit a linear flaw probe on this many renders")
    parser.add_argument("--close-ups", type=int, default=0, help="also ask the flaw of this many close-up renders")
    parser.add_argument("--layer-probe", action="store_true",
                        help="with --probe-renders: also probe the language model's hidden states layer by layer, "
                             "at the answer position and over the visual tokens")
    args = parser.parse_args()
    if args.layer_probe and not args.probe_renders:
        parser.error("--layer-probe needs --probe-renders N (the renders the probes are fitted on).")
    config = pretrain.PretrainConfig(eval_images=args.eval_images, seed=args.seed)
    config.validate()
    truth = pretrain.heldout_renders(config, heldout_requests(config.exclude_heldout, HELDOUT_SEED))
    fresh = caption_samples(random.Random(args.seed + 1000), flaw_prob=config.flaw_prob)
    probe_train = [next(fresh) for _ in range(args.probe_renders)]
    print(json.dumps(reference_row(truth)), flush=True)
    for folder in args.base:
        print(json.dumps(base_row(folder, truth, probe_train, args.close_ups, args.layer_probe)), flush=True)


if __name__ == "__main__":
    main()
