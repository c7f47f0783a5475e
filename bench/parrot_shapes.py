"""PARROT on the shapes world, end to end: held-out pairwise accuracy against known truth.

Known-truth pairs get "human" labels with ``--flip-rate`` of them flipped; the noisy reference
critic (``--noise``) is the teacher; generation, filtering, export and distillation run through
the studio's own stages (``studio.parrot``) into a tiny Qwen3-VL student built from a config with
the byte-level tokenizer (no weights exist to start from). The student then judges held-out
pairs (another seed, never trained on) through the transformers critic backend, and its winner
is scored against the *truth*, never against the noisy labels; a critique that fails to parse
counts as wrong. For scale, the same held-out pairs are judged by the noisy teacher (label-blind).
Pairs whose truth is a tie are left out of the accuracy (the known-truth decisive pairs only).
Prints one JSON line.

Run from the repository root (the whole run in the background, nice'd):
    nice python -m bench.parrot_shapes --pairs 250 --heldout 24 --minutes 6 --run-dir runs/parrot-250
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from models.critic.critic_transformers import TransformersCritic
from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.types import PairResult
from studio.jobs.context import RecordingContext
from studio.parrot import distill, export, filter as parrot_filter, generate
from studio.parrot.pairs import LabeledPair, shapes_pairs

HELDOUT_SEED = 10_000


def accuracy(results: list[PairResult], pairs: list[LabeledPair], policy: ScoringPolicy) -> dict[str, float | int]:
    """Accuracy against the truth over decisive pairs (failures counted wrong), and the parse rate."""
    decisive = [(r, p) for r, p in zip(results, pairs) if p.truth in ("A", "B")]
    correct = sum(1 for r, p in decisive if r.ok and policy.pairwise_winner(r) == p.truth)  # type: ignore[arg-type]
    answered = sum(1 for r, _ in decisive if r.ok)
    return {"n": len(decisive), "answered": answered, "correct": correct,
            "accuracy": correct / len(decisive) if decisive else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=250, help="training pairs")
    parser.add_argument("--heldout", type=int, default=24, help="held-out pairs judged by the student")
    parser.add_argument("--flip-rate", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.2, help="the teacher's perception noise")
    parser.add_argument("--draws", type=int, default=4, help="teacher critiques per image (anchoring)")
    parser.add_argument("--minutes", type=float, default=6.0, help="distillation time budget")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=64, help="the tiny student's width")
    parser.add_argument("--max-new-tokens", type=int, default=1400)
    parser.add_argument("--run-dir", default="runs/parrot-bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    root = Path(args.run_dir)
    timings: dict[str, float] = {}

    def stage(name: str, module, config) -> dict:
        started = time.perf_counter()
        summary = module.run(config, RecordingContext(root / name))
        timings[name] = round(time.perf_counter() - started, 1)
        return summary

    teacher = {"backend": "shapes", "perception_noise": args.noise, "seed": 1}
    gen = stage("generate", generate, generate.GenerateConfig(
        count=args.pairs, flip_rate=args.flip_rate, teacher=teacher, draws=args.draws))
    rationales = str(root / "generate" / "rationales.jsonl")
    kept = stage("filter", parrot_filter, parrot_filter.FilterConfig(rationales=rationales))
    data = stage("export", export, export.ExportConfig(
        kept=str(root / "filter" / "kept.jsonl"), formats=["pairwise"], eval_fraction=0.05))
    student = stage("distill", distill, distill.DistillConfig(
        dataset=str(root / "export"), epochs=50, max_minutes=args.minutes, learning_rate=args.lr,
        tiny_hidden_size=args.hidden, eval_limit=4, save_steps=100, device="cpu"))

    heldout = list(shapes_pairs(args.heldout, seed=HELDOUT_SEED, flip_rate=0.0))
    requests = [p.to_request() for p in heldout]
    policy = ScoringPolicy()
    started = time.perf_counter()
    critic = TransformersCritic(model=student["critic"], temperature=0, max_new_tokens=args.max_new_tokens,
                                batch_size=4, parse_retries=0)
    student_results = critic.judge(requests)
    timings["student_judging"] = round(time.perf_counter() - started, 1)
    noisy_teacher = ShapesCritic(perception_noise=args.noise, seed=7).judge(requests)
    print(json.dumps({
        "pairs": args.pairs, "flip_rate": args.flip_rate, "teacher_noise": args.noise, "draws": args.draws,
        "generate": {k: gen[k] for k in ("rationales", "not_agreeing")},
        "filter": {k: kept[k] for k in ("kept", "acceptance_rate", "reasons", "kept_with_wrong_label")},
        "export": {k: data[k] for k in ("train_examples", "eval_examples")},
        "distill": {k: student.get(k) for k in ("step", "total_steps", "eval_loss_start", "eval_loss", "last_loss",
                                                 "train_seconds", "time_limit_reached")},
        "student_heldout": accuracy(student_results, heldout, policy),
        "noisy_teacher_heldout": accuracy(noisy_teacher, heldout, policy),
        "seconds": timings,
    }))


if __name__ == "__main__":
    main()
