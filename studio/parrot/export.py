"""PARROT stage 3a, export: kept rationales become LLaMA-Factory sharegpt data.

Each kept rationale gives, by ``formats``: two pointwise examples (image A and image B, each with
its refinement) and a pairwise example (plus the swapped B/A order with ``swap_pairs``, so the
student does not learn a position bias). A share ``eval_fraction`` of the *pairs* (never single
examples of a pair) goes to the eval split. The run folder becomes a LLaMA-Factory dataset folder:

    train.json, eval.json      lists of {"messages": [...], "images": [...]}
    images/                    the images, paths relative to the folder
    dataset_info.json          {"<name>": {...}, "<name>_eval": {...}}

Train at scale with ``llamafactory-cli train ... dataset_dir=<run folder> dataset=<name>``, or
here with ``python -m studio parrot distill --dataset <run folder>``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.critic.parser import parse_critique
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, InvalidInputError
from models.images import prepare_image
from studio.config import _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.examples import pairwise_answer, pairwise_prompt, pointwise_answer, pointwise_prompt, to_sharegpt
from studio.parrot.rationale import Rationale, read_rationales

logger = logging.getLogger(__name__)

TRAIN_FILE, EVAL_FILE, INFO_FILE = "train.json", "eval.json", "dataset_info.json"


@dataclass
class ExportConfig:
    """PARROT export: kept rationales to LLaMA-Factory sharegpt student examples."""

    kept: str = field(default="", metadata={"help": "the kept.jsonl written by filter"})
    name: str = field(default="parrot", metadata={"help": "dataset name in dataset_info.json"})
    formats: list[str] = field(default_factory=lambda: ["pointwise", "pairwise"],
                               metadata={"help": "example formats: pointwise, pairwise"})
    swap_pairs: bool = field(default=True, metadata={"help": "also write each pairwise example in B/A order"})
    eval_fraction: float = field(default=0.1, metadata={"help": "share of pairs held out for the eval split"})
    tie_tolerance: float = field(default=0.02, metadata={"help": "the pairwise overall winner's tie tolerance"})
    seed: int = field(default=0, metadata={"help": "seed of the train/eval split"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        if not self.kept:
            raise ConfigError("kept: give the kept.jsonl that filter wrote.")
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"name must be letters, digits, '-' or '_', got {self.name!r}.")
        if not self.formats or set(self.formats) - {"pointwise", "pairwise"}:
            raise ConfigError(f"formats must name pointwise and/or pairwise, got {self.formats!r}.")
        _check_float("eval_fraction", self.eval_fraction, low=0, high=0.9)
        _check_float("tie_tolerance", self.tie_tolerance, low=0, high=1)
        _check_int("seed", self.seed, low=0)


def run(config: ExportConfig, ctx: JobContext) -> dict[str, Any]:
    """Write train.json, eval.json, images/ and dataset_info.json; report the counts."""
    source = Path(config.kept)
    out = Path(ctx.run_dir)
    rationales = list(read_rationales(source))
    if not rationales:
        raise InvalidInputError(f"{source} holds no kept rationales; nothing to export.")
    eval_pairs = split_pairs(sorted({r.pair_id for r in rationales}), config.eval_fraction, config.seed)
    policy = ScoringPolicy(tie_tolerance=config.tie_tolerance)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for n, rationale in enumerate(rationales, start=1):
        split = "eval" if rationale.pair_id in eval_pairs else "train"
        splits[split] += rationale_examples(rationale, source.parent, out, config, policy)
        if n % 50 == 0 or n == len(rationales):
            ctx.progress(n, len(rationales), "rationales exported")
    (out / TRAIN_FILE).write_text(json.dumps(splits["train"], ensure_ascii=False), encoding="utf-8")
    (out / EVAL_FILE).write_text(json.dumps(splits["eval"], ensure_ascii=False), encoding="utf-8")
    (out / INFO_FILE).write_text(json.dumps(dataset_info(config.name), indent=2), encoding="utf-8")
    ctx.artifact("sharegpt dataset", out, "dataset")
    summary = {
        "stage": "export", "dataset_dir": str(out), "name": config.name, "rationales": len(rationales),
        "train_examples": len(splits["train"]), "eval_examples": len(splits["eval"]), "eval_pairs": len(eval_pairs),
    }
    ctx.result(summary)
    return summary


def split_pairs(pair_ids: list[str], fraction: float, seed: int) -> set[str]:
    """The pair ids held out for evaluation: ``round(fraction * n)`` of them, chosen by ``seed``
    (at least one when ``fraction`` > 0 and there are two pairs or more)."""
    count = round(fraction * len(pair_ids))
    if fraction > 0 and len(pair_ids) >= 2:
        count = max(1, count)
    return set(random.Random(seed).sample(pair_ids, count))


def rationale_examples(
    rationale: Rationale, source_dir: Path, out: Path, config: ExportConfig, policy: ScoringPolicy
) -> list[dict[str, Any]]:
    """The sharegpt examples of one kept rationale (images copied under ``out/images``)."""
    paths = {key: _copy_image(source_dir, path, out) for key, path in rationale.images.items() if path}
    images = {
        key: prepare_image(out / path, what=f"{rationale.rationale_id}: image {key}") for key, path in paths.items()
    }
    source, source_path = images.get("source"), ([paths["source"]] if "source" in paths else [])
    critiques = {}
    for key, side in (("a", rationale.a), ("b", rationale.b)):
        if side.raw is None or side.failure:
            raise InvalidInputError(
                f"{rationale.rationale_id}: side {key} has no critique; export only kept rationales.")
        critiques[key] = parse_critique(side.raw, rationale.task)
    examples = []
    if "pointwise" in config.formats:
        for key in ("a", "b"):
            prompt = pointwise_prompt(rationale.task, rationale.prompt, images[key], source)
            examples.append(to_sharegpt(prompt, pointwise_answer(critiques[key]), source_path + [paths[key]]))
    if "pairwise" in config.formats:
        orders = [("a", "b"), ("b", "a")] if config.swap_pairs else [("a", "b")]
        for first, second in orders:
            prompt = pairwise_prompt(rationale.task, rationale.prompt, images[first], images[second], source)
            answer = pairwise_answer(critiques[first], critiques[second], policy)
            examples.append(to_sharegpt(prompt, answer, source_path + [paths[first], paths[second]]))
    return examples


def _copy_image(source_dir: Path, path: str, out: Path) -> str:
    """Copy one image into ``out/images`` (once) and return its path relative to ``out``."""
    original = source_dir / path
    target = Path("images") / original.name
    if not (out / target).is_file():
        (out / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, out / target)
    return target.as_posix()


def dataset_info(name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entries of the train and eval files (sharegpt, OpenAI-style roles)."""
    entry = {
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }
    return {name: {"file_name": TRAIN_FILE, **entry}, f"{name}_eval": {"file_name": EVAL_FILE, **entry}}


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.export --config FILE [flags]``."""
    return run_kind(ExportConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
