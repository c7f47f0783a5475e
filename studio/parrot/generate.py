"""PARROT stage 1, anchored generation: a teacher critic explains each pair's label.

For every pair the teacher critiques image A and image B ``draws`` times each, through the
anchoring prompt (``studio.parrot.anchoring``), and ``samples`` agreeing (A, B) combinations are
written as rationales to ``rationales.jsonl`` in the run folder, the images beside it. A pair whose
draws never agree with its label still gets one rationale (the most typical draws), so that the
filter counts it; a critique that fails or does not parse is kept with its reason and raw text.

The pairs come from ``--source``: ``shapes`` (known-truth shapes-world pairs, noisy "human"
labels), ``jsonl`` (a ``--pairs`` file, layout in ``studio.parrot.pairs``), ``benchmark`` (a
``--data`` preference benchmark in a published layout or a vote export, read as ``python -m
studio eval`` reads it) or ``votes`` (the votes of the ``--store``, exported as History does).

With ``--resume`` the stage appends and skips pairs already written, so a stopped or crashed run
continues.

    python -m studio.parrot.generate --count 250 --flip-rate 0.1 \
        --teacher '{"backend": "shapes", "perception_noise": 0.2}' --draws 4 --run-dir runs/gen
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from models.critic.chat import ChatPrompt, CompletionError
from models.critic.parser import parse_critique
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, CritiqueParseError, InvalidInputError, NotFoundError
from models.types import Critique, CritiqueRequest
from studio.config import _check_choice, _check_float, _check_int
from studio.evaluation.layouts import LAYOUT_NAMES, LayoutName, TaskOption
from studio.evaluation.run import store_path
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.anchoring import anchored_prompt, choose_combinations, side_verdict
from studio.parrot.pairs import LabeledPair, preference_pairs, read_jsonl_pairs, save_pair_images, shapes_pairs
from studio.parrot.rationale import RATIONALES_FILE, Rationale, SideText, read_rationales, write_rationales
from studio.parrot.teacher import build_critic, check_spec
from studio.store import SessionStore

logger = logging.getLogger(__name__)

SOURCES = ("shapes", "jsonl", "benchmark", "votes")


def _default_teacher() -> dict[str, Any]:
    return {"backend": "shapes", "perception_noise": 0.2, "seed": 1}


@dataclass
class GenerateConfig:
    """PARROT anchored generation: teacher rationales that explain each pair's preference label."""

    source: Literal["shapes", "jsonl", "benchmark", "votes"] = field(
        default="shapes", metadata={"help": "shapes: known-truth shapes-world pairs; jsonl: the --pairs file; "
                                            "benchmark: the --data preference benchmark; votes: the --store's votes"})
    pairs: str = field(default="", metadata={"help": "JSONL file of labelled pairs (with --source jsonl)"})
    data: str = field(default="", metadata={"help": "with --source benchmark: a parquet file, a folder of *.parquet, "
                                                    "a vote export (.jsonl/.parquet) or shapes:TASK:N"})
    layout: LayoutName = field(default="auto", metadata={"help": "the --data file layout; auto detects it"})
    data_task: TaskOption = field(default="auto", metadata={"help": "MMRB2's task when the layout does not name it"})
    store: str = field(default=".studio", metadata={"help": "with --source votes: the session store (folder or .db)"})
    count: int = field(default=100, metadata={"help": "pairs to use (shapes: to draw; jsonl: at most)"})
    seed: int = field(default=0, metadata={"help": "seed of the shapes-world pairs and labels"})
    flip_rate: float = field(default=0.1, metadata={"help": "share of shapes-world 'human' labels flipped"})
    tasks: list[str] = field(default_factory=lambda: ["t2i"], metadata={"help": "shapes-world tasks: t2i, edit"})
    teacher: dict = field(default_factory=_default_teacher, metadata={"help": "teacher critic spec (JSON)"})
    anchoring: bool = field(default=True, metadata={"help": "show the label to the teacher and select by it"})
    draws: int = field(default=4, metadata={"help": "critiques drawn per image (anchoring selects among them)"})
    samples: int = field(default=1, metadata={"help": "rationales kept per pair (at most draws)"})
    tie_tolerance: float = field(default=0.02, metadata={"help": "scores closer than this are a tie (0-1 scale)"})
    bad_threshold: float = field(default=0.5, metadata={"help": "both_bad: both overall scores below this"})
    batch_pairs: int = field(default=8, metadata={"help": "pairs sent to the teacher at once"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        _check_choice("source", self.source, SOURCES)
        if self.source == "jsonl" and not self.pairs:
            raise ConfigError("source 'jsonl' needs --pairs FILE.")
        if self.source == "benchmark" and not self.data.strip():
            raise ConfigError("source 'benchmark' needs --data: a benchmark file or folder, a vote export, "
                              "or a shapes set like shapes:t2i:100.")
        _check_choice("layout", self.layout, LAYOUT_NAMES)
        _check_choice("data_task", self.data_task, ("auto", "t2i", "edit"))
        _check_int("count", self.count, low=1)
        _check_float("flip_rate", self.flip_rate, low=0, high=1)
        for task in self.tasks:
            _check_choice("tasks", task, ("t2i", "edit"))
        check_spec(self.teacher, "teacher")
        _check_int("draws", self.draws, low=1)
        _check_int("samples", self.samples, low=1, high=self.draws)
        _check_float("tie_tolerance", self.tie_tolerance, low=0, high=1)
        _check_float("bad_threshold", self.bad_threshold, low=0, high=1)
        _check_int("batch_pairs", self.batch_pairs, low=1)


def input_pairs(config: GenerateConfig, run_dir: Path, on_skip: Callable[[str], None] | None = None) -> Iterator[LabeledPair]:
    """The labelled pairs the config names. ``votes`` exports the store's votes to
    ``run_dir/votes/votes.jsonl`` first (History's export); rows skipped as unreadable go to ``on_skip``."""
    if config.source == "jsonl":
        return islice(read_jsonl_pairs(config.pairs), config.count)
    if config.source == "benchmark":
        return preference_pairs(config.data, layout=config.layout, task=config.data_task, limit=config.count,
                                on_skip=on_skip)
    if config.source == "votes":
        return preference_pairs(str(export_store_votes(config.store, run_dir / "votes")), layout="studio-votes",
                                limit=config.count, on_skip=on_skip)
    tasks: tuple[Any, ...] = tuple(config.tasks)  # validated: t2i and/or edit
    return shapes_pairs(config.count, seed=config.seed, flip_rate=config.flip_rate, tasks=tasks)


def export_store_votes(store: str, folder: Path) -> Path:
    """Export the votes of the session store ``store`` (a folder or its ``.db``) to ``folder``; return the file.

    Raises ``NotFoundError`` when there is no store there and ``InvalidInputError`` when it holds no vote."""
    db = store_path(store)
    if not db.is_file():
        raise NotFoundError(f"No session store at {db}; pass --store with the studio's store folder (default .studio).")
    opened = SessionStore(db)
    try:
        if not opened.votes():
            raise InvalidInputError(f"The store {db} holds no votes yet; vote in the Judge tab, or use another source.")
        return opened.export_votes(folder, format="jsonl")
    finally:
        opened.close()


def run(config: GenerateConfig, ctx: JobContext) -> dict[str, Any]:
    """Write the rationales of every pair not yet in ``rationales.jsonl``; report and return a summary."""
    out = Path(ctx.run_dir) / RATIONALES_FILE
    done = {r.pair_id for r in read_rationales(out)} if out.is_file() else set()
    if done and not ctx.resuming:
        raise ConfigError(f"{out} already holds rationales of {len(done)} pair(s); pass --resume to continue it, "
                          "or start a new run folder.")
    critic = build_critic(config.teacher, "teacher")
    policy = ScoringPolicy(tie_tolerance=config.tie_tolerance)
    counts = {"pairs": 0, "rationales": 0, "not_agreeing": 0, "side_failures": 0, "resumed_pairs": len(done)}
    skipped: list[str] = []
    try:
        todo = (pair for pair in input_pairs(config, Path(ctx.run_dir), skipped.append) if pair.pair_id not in done)
        batch = list(islice(todo, config.batch_pairs))
        while batch:
            written = _batch_rationales(batch, critic, config, policy, Path(ctx.run_dir))
            write_rationales(out, written, append=True)
            counts["pairs"] += len(batch)
            counts["rationales"] += len(written)
            counts["not_agreeing"] += sum(1 for r in written if config.anchoring and r.agreeing == 0)
            counts["side_failures"] += sum((r.a.failure is not None) + (r.b.failure is not None) for r in written)
            step = counts["pairs"] + len(done)
            total = config.count if config.source == "shapes" else None
            ctx.progress(step, total, f"{counts['rationales']} rationales")
            if config.anchoring:
                ctx.metric(step, "anchoring_agreement", 1 - counts["not_agreeing"] / counts["pairs"])
            if ctx.should_stop():
                logger.info("Stopped after %d pairs; resume (--resume) to continue.", step)
                break
            batch = list(islice(todo, config.batch_pairs))
    finally:
        critic.close()
    ctx.artifact("rationales", out, "dataset")
    summary = {"stage": "generate", "teacher": critic.name, "anchoring": config.anchoring, "file": str(out), **counts,
               "skipped_rows": len(skipped)}
    if skipped:
        summary["first_skipped"] = skipped[0]
    ctx.result(summary)
    return summary


def _batch_rationales(
    pairs: list[LabeledPair], critic: Any, config: GenerateConfig, policy: ScoringPolicy, run_dir: Path
) -> list[Rationale]:
    """The rationales of a batch of pairs; all their teacher calls go out together."""
    prompts = [prompt for pair in pairs for prompt in _prompts(pair, config)]
    texts = critic.completer.complete(prompts)
    if len(texts) != len(prompts):
        raise RuntimeError(f"{critic.name} returned {len(texts)} completions for {len(prompts)} prompts")
    per_pair = 2 * config.draws
    return [
        r
        for n, pair in enumerate(pairs)
        for r in _rationales(pair, texts[n * per_pair:(n + 1) * per_pair], critic.name, config, policy, run_dir)
    ]


def _prompts(pair: LabeledPair, config: GenerateConfig) -> list[ChatPrompt]:
    """``draws`` anchoring prompts for image A, then ``draws`` for image B."""
    prompts = []
    for side, image, other in (("a", pair.image_a, pair.image_b), ("b", pair.image_b, pair.image_a)):
        request = CritiqueRequest(pair.task, pair.prompt, image, pair.source_image)
        verdict = side_verdict(pair.label, side) if config.anchoring else None  # type: ignore[arg-type]
        prompts += [anchored_prompt(request, other, verdict) for _ in range(config.draws)]
    return prompts


def _rationales(
    pair: LabeledPair, texts: list[str | CompletionError], teacher: str, config: GenerateConfig,
    policy: ScoringPolicy, run_dir: Path,
) -> list[Rationale]:
    """One pair's rationales from its teacher texts (A's draws, then B's), combined by agreement."""
    draws = {"a": [_read(t, pair.task) for t in texts[:config.draws]],
             "b": [_read(t, pair.task) for t in texts[config.draws:]]}
    usable = {
        side: [i for i, (_, c) in enumerate(found) if c is not None and policy.score(c) is not None]
        for side, found in draws.items()
    }
    chosen, agreeing = choose_combinations(
        [draws["a"][i][1] for i in usable["a"]], [draws["b"][i][1] for i in usable["b"]],  # type: ignore[misc]
        pair.label if config.anchoring else None, policy, config.bad_threshold, config.samples,
    )
    # a side without a usable critique keeps its first draw, so that the filter counts the failure
    picks = [(usable["a"][i], usable["b"][j]) for i, j in chosen] or [(0, 0)]
    images = save_pair_images(pair, Path(run_dir))
    return [
        Rationale(
            rationale_id=f"{pair.pair_id}-s{n}", pair_id=pair.pair_id, sample=n, task=pair.task, prompt=pair.prompt,
            label=pair.label, images=images, a=draws["a"][i][0], b=draws["b"][j][0], teacher=teacher,
            anchored=config.anchoring, draws=config.draws, agreeing=agreeing, truth=pair.truth,
        )
        for n, (i, j) in enumerate(picks)
    ]


def _read(text: str | CompletionError, task: str) -> tuple[SideText, Critique | None]:
    """The teacher's answer as stored, and parsed (``None`` when it failed or did not parse)."""
    if isinstance(text, CompletionError):
        return SideText(raw=None, failure=f"teacher failed: {text.reason}"), None
    try:
        critique = parse_critique(text, task)
    except CritiqueParseError as e:
        return SideText(raw=text, failure=f"malformed: {e}"), None
    return SideText.from_critique(critique), critique


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.generate --config FILE [flags]``."""
    return run_kind(GenerateConfig, run, argv)


#: A resumed job writes the pairs not yet in ``rationales.jsonl``.
RESUMABLE = True

if __name__ == "__main__":
    raise SystemExit(main())
