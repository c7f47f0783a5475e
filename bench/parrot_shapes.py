"""PARROT on the shapes world: held-out pairwise accuracy against known truth, one variant a run.

Known-truth pairs get "human" labels with ``--flip-rate`` of them flipped; the noisy reference
critic (``--noise``) is the teacher. Variants, all at the same training budget (``--minutes``):

* ``parrot``: anchored generation, consistency filtering, export, distillation into a small
  Qwen3-VL student: from random weights (built from a config with a protocol tokenizer), or with
  ``--base`` from the shapes VLM base that ``python -m studio parrot pretrain`` trains to caption;
* ``no-anchoring``: the teacher critiques without the label, then filter, export, distil;
* ``no-filter``: anchored, but every rationale exported (no consistency filter);
* ``bt``: a scalar Bradley-Terry reward model (the same vision backbone and language model, the
  same ``--base``, a scalar head) trained on the same pairs' labels alone (``studio.parrot.bt``).

The trained model then judges held-out pairs (another seed; a pair whose request is among the
training pairs' requests is passed over, by text, and counted) through its critic backend, and its winner is scored against the *truth*, never against the noisy labels; an answer
that fails to parse counts as wrong. Pairs whose truth is a tie are left out. For scale, the same
pairs are judged by the noisy teacher (label-blind). Stages already finished in ``--run-dir``
(their ``summary.json``) are reused, so the variants of one pair count share the generated pairs.
Prints one JSON line and appends it to ``--results``.

Run from the repository root, in the background, nice'd (about 25 minutes a variant):
    nice python -m bench.parrot_shapes --variant parrot --pairs 1000 --run-dir runs/parrot-1000
    nice python -m bench.parrot_shapes --variant bt --pairs 1000 --run-dir runs/parrot-1000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from models.critic.critic_bt import BTCritic
from models.critic.critic_transformers import TransformersCritic
from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.types import PairResult
from studio.jobs.context import RecordingContext
from studio.parrot import bt, distill, export, filter as parrot_filter, generate
from studio.parrot.pairs import HELDOUT_SEED, LabeledPair, shapes_pairs
from studio.parrot.rationale import read_rationales

VARIANTS = ("parrot", "no-anchoring", "no-filter", "bt")


def accuracy(results: list[PairResult], pairs: list[LabeledPair], policy: ScoringPolicy) -> dict[str, Any]:
    """Accuracy against the truth over decisive pairs (failures counted wrong), the parse rate, and
    the verdicts given on those pairs (``A`` / ``B`` / ``tie``, ``failed`` for no parse)."""
    decisive = [(r, p) for r, p in zip(results, pairs) if p.truth in ("A", "B")]
    verdicts = [policy.pairwise_winner(r) if r.ok else "failed" for r, _ in decisive]  # type: ignore[arg-type]
    correct = sum(1 for v, (_, p) in zip(verdicts, decisive) if v == p.truth)
    answered = sum(1 for r, _ in decisive if r.ok)
    return {"n": len(decisive), "answered": answered, "correct": correct,
            "accuracy": round(correct / len(decisive), 4) if decisive else 0.0,
            "verdicts": {v: verdicts.count(v) for v in ("tie", "A", "B", "failed")}}


class Stages:
    """Runs studio.parrot stages into ``root/<name>``, reusing one that already wrote its summary."""

    def __init__(self, root: Path) -> None:
        self.root, self.seconds = root, {}

    def __call__(self, name: str, module: Any, config: Any) -> dict[str, Any]:
        done = self.root / name / "summary.json"
        if done.is_file():
            return json.loads(done.read_text())
        started = time.perf_counter()
        summary = module.run(config, RecordingContext(self.root / name))
        self.seconds[name] = round(time.perf_counter() - started, 1)
        done.write_text(json.dumps(summary))
        return summary


def teacher_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The noisy reference critic as the teacher (``parrot generate``'s spec), wording its Text
    Faithfulness as per-object verdicts with ``--teacher-verdicts``, and with what it sees in each
    object's place before the verdict with ``--teacher-sightings``."""
    return {"backend": "shapes", "perception_noise": args.noise, "seed": 1,
            **({"object_verdicts": True} if args.teacher_verdicts else {}),
            **({"object_sightings": True} if getattr(args, "teacher_sightings", False) else {})}


def train_student(args: argparse.Namespace, stages: Stages) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate, filter (unless ``no-filter``), export and distil; (the data counts, the distill summary)."""
    anchored = args.variant != "no-anchoring"
    suffix = "" if anchored else "-unanchored"
    gen = stages(f"generate{suffix}", generate, generate.GenerateConfig(
        count=args.pairs, flip_rate=args.flip_rate, teacher=teacher_spec(args), draws=args.draws if anchored else 1,
        anchoring=anchored))
    data: dict[str, Any] = {"generate": {k: gen[k] for k in ("rationales", "not_agreeing")}}
    if args.variant == "no-filter":
        kept, suffix = str(stages.root / "generate" / "rationales.jsonl"), "-unfiltered"
    else:
        summary = stages(f"filter{suffix}", parrot_filter,
                         parrot_filter.FilterConfig(rationales=str(stages.root / f"generate{suffix}" / "rationales.jsonl")))
        data["filter"] = {k: summary[k] for k in ("kept", "acceptance_rate", "reasons", "kept_with_wrong_label")}
        kept = str(stages.root / f"filter{suffix}" / "kept.jsonl")
    exported = stages(f"export{suffix}", export, export.ExportConfig(kept=kept, formats=["pairwise"], eval_fraction=0.02))
    data["export"] = {k: exported[k] for k in ("train_examples", "eval_examples")}
    student = stages(f"distill{suffix}", distill, distill.DistillConfig(
        dataset=str(stages.root / f"export{suffix}"), epochs=100, max_steps=args.max_steps, max_minutes=args.minutes,
        learning_rate=args.lr,
        warmup_steps=20, batch_size=args.batch, base=args.base or distill.TINY_BASE, tiny_hidden_size=args.hidden,
        tiny_layers=args.layers, tiny_patch_size=args.patch, freeze_vision=args.freeze_vision,
        vision_learning_rate=args.vision_lr, eval_limit=16,
        save_steps=200, device="cpu"))
    return data, student


def unseen_heldout(count: int, root: Path) -> tuple[list[LabeledPair], int]:
    """``count`` held-out pairs whose request no training pair of the run folder ``root`` asked
    for (every ``generate*/rationales.jsonl`` there), and how many seen ones were passed over."""
    seen = {r.prompt for path in root.glob("generate*/rationales.jsonl") for r in read_rationales(path)}
    if not seen:
        raise SystemExit(f"no generate*/rationales.jsonl in {root}: nothing to hold the pairs out from")
    kept: list[LabeledPair] = []
    skipped = 0
    for pair in shapes_pairs(1_000_000, seed=HELDOUT_SEED, flip_rate=0.0):
        if len(kept) == count:
            break
        if pair.prompt in seen:
            skipped += 1
        else:
            kept.append(pair)
    return kept, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="parrot")
    parser.add_argument("--pairs", type=int, default=1000, help="training pairs")
    parser.add_argument("--heldout", type=int, default=120, help="held-out pairs judged (ties in truth left out)")
    parser.add_argument("--flip-rate", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.2, help="the teacher's perception noise")
    parser.add_argument("--draws", type=int, default=4, help="teacher critiques per image (anchoring)")
    parser.add_argument("--teacher-verdicts", action="store_true",
                        help="the teacher's Text Faithfulness opens with every requested object's verdict (\"the "
                             "purple star is drawn; the red circle is wrong.\"); pair it with a base from `parrot "
                             "pretrain --object-verdicts` and its own --run-dir")
    parser.add_argument("--teacher-sightings", action="store_true",
                        help="as --teacher-verdicts, with what the teacher sees in each object's place between its "
                             "name and its verdict (\"the red circle (seen: red square) is wrong\"); pair it with a "
                             "base from `parrot pretrain --object-verdicts P --verdict-sightings`")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=0,
                        help="optimizer steps, over which the rate decays linearly to 0 (set it to what fits in "
                             "--minutes); 0: 100 epochs, so the time budget ends training near the peak rate")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base", default="", help="the folder both models start from (e.g. a `parrot pretrain` "
                                                   "model/); default: a tiny Qwen3-VL from random weights")
    parser.add_argument("--freeze-vision", action="store_true", help="freeze the student's vision blocks")
    parser.add_argument("--vision-lr", type=float, default=None,
                        help="the student's vision tower (blocks unless frozen, and merger) rate; default: --lr")
    parser.add_argument("--hidden", type=int, default=256, help="the student's width (text and vision)")
    parser.add_argument("--layers", type=int, default=4, help="the student's language model layers")
    parser.add_argument("--patch", type=int, default=8, help="the student's image patch (pixels)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--run-dir", default="runs/parrot-bench")
    parser.add_argument("--results", default="runs/parrot-results.jsonl", help="JSONL file the row is appended to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    stages = Stages(Path(args.run_dir))
    row: dict[str, Any] = {"variant": args.variant, "base": args.base or "random init", "pairs": args.pairs,
                           "freeze_vision": args.freeze_vision, "vision_lr": args.vision_lr,
                           "max_steps": args.max_steps,
                           "flip_rate": args.flip_rate, "teacher_noise": args.noise, "minutes": args.minutes,
                           "teacher_verdicts": args.teacher_verdicts, "teacher_sightings": args.teacher_sightings,
                           "load": round(os.getloadavg()[0], 1)}
    if args.variant == "bt":
        stages("generate", generate, generate.GenerateConfig(
            count=args.pairs, flip_rate=args.flip_rate, teacher=teacher_spec(args), draws=args.draws))
        model = stages("bt", bt, bt.BTConfig(
            rationales=str(stages.root / "generate" / "rationales.jsonl"), max_steps=args.max_steps,
            max_minutes=args.minutes,
            learning_rate=args.lr, batch_size=args.batch, base=args.base or distill.TINY_BASE,
            tiny_hidden_size=args.hidden, tiny_layers=args.layers, tiny_patch_size=args.patch,
            **({"vision_learning_rate": args.vision_lr} if args.vision_lr is not None else {})))
        row["train"] = {k: model.get(k) for k in ("pairs", "step", "epochs_seen", "last_loss", "train_seconds")}
        critic: Any = BTCritic(model=model["model"])
    else:
        row["data"], student = train_student(args, stages)
        row["train"] = {k: student.get(k) for k in ("step", "total_steps", "eval_loss_start", "eval_loss", "last_loss",
                                                     "train_seconds", "time_limit_reached")}
        critic = TransformersCritic(model=student["critic"], temperature=0, max_new_tokens=args.max_new_tokens,
                                    batch_size=8, parse_retries=0)
    heldout, row["heldout_seen_skipped"] = unseen_heldout(args.heldout, stages.root)
    requests = [p.to_request() for p in heldout]
    started = time.perf_counter()
    policy = ScoringPolicy()
    row["heldout"] = accuracy(critic.judge(requests), heldout, policy)
    stages.seconds["judging"] = round(time.perf_counter() - started, 1)
    row["noisy_teacher_heldout"] = accuracy(ShapesCritic(perception_noise=args.noise, seed=7).judge(requests),
                                            heldout, policy)
    row["seconds"] = stages.seconds
    line = json.dumps(row)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as out:
        out.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
