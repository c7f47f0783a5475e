"""``python -m studio refine|judge|diagnose|curate|eval|jobs|rl|parrot``: the engine, headless, on files and folders.

Every command prints JSON lines on stdout (one object per event or per image) and a progress
bar on stderr. A ``StudioError`` (bad input, missing backend, unknown session) ends the run with
its message on stderr and exit status 2. The store and backend flags are the app's (``--help``).

Examples::

    python -m studio refine "two red circles and a blue square" --rounds 3
    python -m studio judge --prompt "a green triangle" a.png b.png
    python -m studio diagnose --prompt "a green triangle" images/
    python -m studio curate --prompt "a green triangle" images/ --min-score 0.7 --copy-to kept/
    python -m studio eval --data shapes:t2i:500:seed0 --mode pointwise
    python -m studio jobs start diagnose --inputs images/ --prompt "a green triangle"
    python -m studio jobs wait JOB_ID
    python -m studio rl --config rl.json --max-steps 50
    python -m studio parrot generate --count 100 --run-dir runs/parrot-gen
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from PIL import Image
from tqdm import tqdm

from models.errors import InvalidInputError, StudioError
from models.images import prepare_image
from models.types import PairRequest, meets_minimums
from studio.config import DIMENSION_KEYS, LoopSettings
from studio.diagnose import IMAGE_SUFFIXES, BatchItem, DiagnosisRow, diagnose_many, load_batch, write_csv
from studio.jobs.cli import add_jobs_parser, run_jobs_command
from studio.judge import judge_pair
from studio.grammar import check_request
from studio.loop import RefineRequest, RoundFinished, Stopped, refine, resume
from studio.options import add_backend_options, config_from_args, configure_logging
from studio.services import Services
from studio.store import SessionStore

logger = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Services, TextIO], int]


# -- commands ----------------------------------------------------------------------------------


def cmd_refine(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    """Run (or, with --resume, continue) a Generate-Critique-Refine session; one line per event."""
    if args.resume:
        session = services.store.get_session(args.resume)
        if args.prompt:
            check_request(services, session["task"], args.prompt)
        settings = LoopSettings.from_dict(session["settings"])
        events = resume(args.resume, services, prompt=args.prompt)
    else:
        if args.prompt is None:
            raise InvalidInputError("refine needs a prompt (or --resume SESSION_ID).")
        check_request(services, args.task, args.prompt)  # before anything is generated
        settings = _loop_settings(args)
        source = prepare_image(args.source, what="--source") if args.source else None
        events = refine(RefineRequest(args.task, args.prompt, source), services, settings)
    stopped = None
    with tqdm(total=settings.max_rounds, unit="round", file=sys.stderr, disable=args.no_progress) as bar:
        for event in events:
            emit(out, event, services.store)
            if isinstance(event, RoundFinished):
                bar.update(1)
            stopped = event if isinstance(event, Stopped) else stopped
    return 0 if stopped is None or stopped.reason != "critic_failed" else 1


def cmd_judge(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    """Judge image A against image B (both orders unless --one-order); one line."""
    source = prepare_image(args.source, what="--source") if args.source else None
    request = PairRequest(args.task, args.prompt, prepare_image(args.image_a, what="image A"),
                          prepare_image(args.image_b, what="image B"), source)
    verdict = judge_pair(request, services, both_orders=not args.one_order)
    emit(out, verdict, services.store)
    return 0 if verdict.ok else 1


def cmd_diagnose(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    """Critique each image; one line per image, optionally a CSV table too."""
    rows = list(_diagnose(args, services, out))
    if args.csv:
        write_csv([row for row, _ in rows], args.csv)
    return 0 if all(row.ok for row, _ in rows) else 1


def cmd_curate(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    """Diagnose images and keep those whose score passes --min-score (and every --min): one line
    per image with ``kept``; kept images are copied to --copy-to when given. An image the critic
    could not score is not kept, and makes the exit status 1."""
    if not 0.0 <= args.min_score <= 1.0:
        raise InvalidInputError(f"--min-score {args.min_score:g}: the score is between 0 and 1 (e.g. 0.7); for a "
                                "1-4 dimension score use --min DIMENSION=SCORE, e.g. --min text_faithfulness=3.")
    minimums = _parse_minimums(args.min)
    if args.copy_to:
        Path(args.copy_to).mkdir(parents=True, exist_ok=True)
    kept, failed = 0, 0
    for row, item in _diagnose(args, services, None):
        keep = passes(row, args.min_score, minimums)
        if keep and args.copy_to:
            shutil.copy2(item.image, Path(args.copy_to) / Path(item.image).name)  # type: ignore[arg-type]
        kept, failed = kept + keep, failed + (not row.ok)
        emit(out, {**row_record(row, item), "kept": keep})
    logger.info("kept %d image(s); %d could not be scored", kept, failed)
    return 1 if failed else 0


def passes(row: DiagnosisRow, min_score: float, minimums: dict[str, float]) -> bool:
    """Whether a diagnosed image is kept: scored, [0, 1] score at least ``min_score``, and each
    dimension in ``minimums`` at least its value (N/A counts as passing; a critique missing a
    dimension is never kept, see ``meets_minimums``)."""
    if not row.ok or row.score is None or row.score < min_score:
        return False
    return meets_minimums(row.task, row.scores, row.missing, minimums)


def row_record(row: DiagnosisRow, item: BatchItem) -> dict[str, Any]:
    """A diagnosed image as one flat record: the CSV columns plus its file and critique id."""
    return {**row.to_dict(), "image": str(item.image), "critique_id": row.critique_id}


def cmd_eval(args: argparse.Namespace, services: Services, out: TextIO) -> int:
    """Evaluate the critic on a preference benchmark; the summary is the one (last) JSON line.
    Exit status 1 when some rows failed (they are counted and listed in the summary)."""
    from studio.evaluation.run import StderrContext, eval_config_from_args, execute, resolve_run_dir

    config = eval_config_from_args(args)
    run_dir = resolve_run_dir(args.run_dir, config, resuming=args.resume)
    ctx = StderrContext(run_dir, resuming=args.resume, quiet=args.no_progress)
    summary = execute(config, ctx, services.store)
    emit(out, summary)
    return 1 if summary["failed"] else 0


COMMANDS: dict[str, Command] = {"refine": cmd_refine, "judge": cmd_judge, "diagnose": cmd_diagnose,
                                "curate": cmd_curate, "eval": cmd_eval}


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m studio`` parser: one sub-command per engine entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m studio", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="RationalRewards Studio, headless: JSON lines on stdout, progress on stderr, exit status 0 "
                    "(done), 1 (an image or round could not be scored) or 2 (an error, explained on stderr).",
        epilog="examples:" + __doc__.split("Examples::")[1].rstrip(),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(commands, "refine", "Run a Generate-Critique-Refine session; one JSON line per event.")
    p.add_argument("prompt", nargs="?", help="what the image should show (with --resume: the edited next prompt)")
    _task_options(p)
    p.add_argument("--resume", metavar="SESSION_ID", help="continue a stored session instead of starting one")
    p.add_argument("--rounds", type=int, default=LoopSettings.max_rounds, help="maximum rounds (default %(default)s)")
    p.add_argument("--candidates", type=int, default=LoopSettings.candidates, help="images per round, best of N")
    p.add_argument("--seed", type=int, default=LoopSettings.seed, help="first seed (default %(default)s)")
    p.add_argument("--seed-policy", choices=("fixed", "vary"), default=LoopSettings.seed_policy)
    p.add_argument("--threshold", action="append", default=[], metavar="DIM=SCORE",
                   help="stop when DIM reaches SCORE (1-4); repeat per dimension; replaces the defaults")
    p.add_argument("--plateau", type=int, default=LoopSettings.plateau_rounds,
                   help="stop after this many rounds without gain (0: off)")
    p.add_argument("--stop-on-regression", action="store_true", help="stop when a round scores lower")
    p.add_argument("--on-repeat", choices=("vary_seed", "restate", "stop"), default=LoopSettings.on_repeat,
                   help="when a round's prompt was already generated with its seed (default %(default)s)")
    p.add_argument("--judge-against", choices=("round", "request"), default=LoopSettings.judge_against,
                   help="judge each round's images against its own prompt or the session's first (default %(default)s)")
    p.add_argument("--first-prompt", choices=("request", "expanded"), default=LoopSettings.first_prompt,
                   help="round 1 from the request or from the critic's expansion of it (default %(default)s)")
    p.add_argument("--max-tries-per-prompt", type=int, default=LoopSettings.max_tries_per_prompt,
                   help="most rounds one prompt may be generated in, then stop (0: no limit; default %(default)s)")
    p.add_argument("--pause", action="store_true",
                   help="pause after each round for a person: the session waits with the proposed prompt; "
                        "continue with --resume SESSION_ID [EDITED_PROMPT]")

    p = _command(commands, "judge", "Judge two images for one prompt; one JSON line with the verdict.")
    p.add_argument("image_a", help="image A")
    p.add_argument("image_b", help="image B")
    _task_options(p, prompt_flag=True)
    p.add_argument("--one-order", action="store_true", help="judge A/B only (no B/A position check)")

    for name, summary in (("diagnose", "Critique images; one JSON line per image."),
                          ("curate", "Diagnose images and keep those that pass a score threshold.")):
        p = _command(commands, name, summary)
        p.add_argument("inputs", nargs="+", help="image files, a folder of images, or one .csv/.jsonl of "
                                                  "prompt,image[,source_image][,task] rows")
        _task_options(p, prompt_flag=True, prompt_required=False)
        p.add_argument("--batch-size", type=int, default=4, help="images per critic call (default %(default)s)")
        if name == "diagnose":
            p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
        else:
            p.add_argument("--min-score", type=float, required=True, help="keep images scoring at least this (0-1)")
            p.add_argument("--min", action="append", default=[], metavar="DIM=SCORE",
                           help="also require DIM >= SCORE (1-4); repeatable")
            p.add_argument("--copy-to", metavar="DIR", help="copy kept images into DIR")

    from studio.evaluation.run import add_eval_options

    summary = "Evaluate the critic on a preference benchmark; one JSON line, the summary."
    p = commands.add_parser("eval", help=summary, description=summary, conflict_handler="resolve")
    add_eval_options(p)
    _command_options(p)  # the app's --critic/--store flags replace the config's JSON spec and store flags
    add_jobs_parser(commands)  # background jobs: store only, no backends of their own
    commands.add_parser("rl", add_help=False, help="Fine-tune a generator with the critic as reward (DiffusionNFT): "
                        "rl --config FILE; 'rl --help' lists its settings.")
    # listed for --help only: main() hands `parrot ...` to studio.parrot.cli, whose stages parse
    # their own typed configs
    commands.add_parser("parrot", add_help=False,
                        help="PARROT: generate|filter|export|distill (python -m studio parrot --help)")
    return parser


def _command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=summary, description=summary)
    _command_options(p)
    return p


def _command_options(p: argparse.ArgumentParser) -> None:
    add_backend_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _task_options(p: argparse.ArgumentParser, *, prompt_flag: bool = False, prompt_required: bool = True) -> None:
    if prompt_flag:
        p.add_argument("--prompt", required=prompt_required, help="the prompt or edit instruction")
    p.add_argument("--task", choices=("t2i", "edit"), default="t2i", help="text to image or editing (default t2i)")
    p.add_argument("--source", metavar="IMAGE", help="the source image of an edit")


# -- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None, *, services: Services | None = None, out: TextIO | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 some item failed, 2 a ``StudioError``).

    :param services: use these instead of building them from the flags (for embedding the CLI).
    :param out: where the JSON lines go (default stdout).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rl"]:  # a job kind: its own typed config and flags (studio.rl.train)
        from studio.rl.train import main as rl_main

        return rl_main(argv[1:])
    if argv[:1] == ["parrot"]:
        from studio.parrot.cli import main as parrot_main

        return parrot_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", 0), default=logging.WARNING)
    own = services is None
    try:
        if args.command == "jobs":
            return run_jobs_command(args, out or sys.stdout)
        services = services or Services.from_config(config_from_args(args))
        try:
            return COMMANDS[args.command](args, services, out or sys.stdout)
        finally:
            if own:
                services.close()
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# -- output ------------------------------------------------------------------------------------


def emit(out: TextIO, value: Any, store: SessionStore | None = None) -> None:
    """Write ``value`` (an engine event or result, or a dict) as one JSON line."""
    record = as_record(value, store)
    if is_dataclass(value):
        record = {"event": type(value).__name__, **record}
    out.write(json.dumps(record, default=str) + "\n")
    out.flush()


def as_record(value: Any, store: SessionStore | None = None) -> Any:
    """A JSON-ready copy of ``value``: dataclasses become dicts, images are left out (every
    stored image appears as ``image_id`` plus an ``image`` file path), a ``raw`` critic text is
    kept only for failures."""
    if isinstance(value, Image.Image):
        return None
    if is_dataclass(value) and not isinstance(value, type):
        record = {f.name: as_record(getattr(value, f.name), store) for f in fields(value)
                  if not isinstance(getattr(value, f.name), Image.Image)}
        if getattr(value, "ok", False) is True and "raw" in record and "scores" in record:
            del record["raw"]
        if "ok" not in record and hasattr(value, "ok"):
            record["ok"] = value.ok
        if store is not None and record.get("image_id") is not None:
            record["image"] = str(store.image_path(record["image_id"]))
        return record
    if isinstance(value, dict):
        return {k: as_record(v, store) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_record(v, store) for v in value]
    return value


# -- helpers -----------------------------------------------------------------------------------


def _diagnose(
    args: argparse.Namespace, services: Services, out: TextIO | None
) -> Iterable[tuple[DiagnosisRow, BatchItem]]:
    """Diagnose the inputs; yield each row with its item (and print it when ``out`` is given)."""
    items = load_batch(batch_source(args.inputs), prompt=args.prompt, task=args.task)
    if args.source:
        source = prepare_image(args.source, what="--source")
        for item in items:
            item.source_image = source
    with tqdm(total=len(items), unit="image", file=sys.stderr, disable=args.no_progress) as bar:
        rows = diagnose_many(items, services, batch_size=args.batch_size,
                             on_progress=lambda done, total: bar.update(done - bar.n))
        for row, item in zip(rows, items, strict=True):
            if out is not None:
                emit(out, row_record(row, item))
            yield row, item


def batch_source(inputs: list[str]) -> str | list[Path]:
    """What ``load_batch`` reads for the command line's inputs: one .csv/.jsonl table as it is,
    else every image file given plus the images of every folder given, in order.

    Raises ``InvalidInputError`` for an input that does not exist or a table among other inputs.
    """
    tables = [i for i in inputs if Path(i).suffix.lower() in (".csv", ".jsonl")]
    if tables and len(inputs) == 1:
        return inputs[0]
    if tables:
        raise InvalidInputError(f"{tables[0]}: a .csv/.jsonl table lists its own images; give it alone.")
    files: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            files += sorted(p for p in given.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif given.is_file():
            files.append(given)
        else:
            raise InvalidInputError(f"{given}: no such image file or folder.")
    if not files:
        raise InvalidInputError(f"No images in {', '.join(inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return files


def _loop_settings(args: argparse.Namespace) -> LoopSettings:
    values: dict[str, Any] = {
        "max_rounds": args.rounds, "candidates": args.candidates, "seed": args.seed, "seed_policy": args.seed_policy,
        "plateau_rounds": args.plateau, "stop_on_regression": args.stop_on_regression,
        "on_repeat": args.on_repeat, "max_tries_per_prompt": args.max_tries_per_prompt,
        "judge_against": args.judge_against, "first_prompt": args.first_prompt,
        "rewriter": "human" if args.pause else args.rewriter,
    }
    if args.threshold:
        values["thresholds"] = _parse_minimums(args.threshold)
    return LoopSettings.from_dict(values)


def _parse_minimums(pairs: list[str]) -> dict[str, float]:
    """``["text_rendering=3", ...]`` as a dict; raises ``InvalidInputError`` on a bad pair."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or key.strip() not in DIMENSION_KEYS or number is None or not 1.0 <= number <= 4.0:
            raise InvalidInputError(f"{pair!r}: write DIMENSION=SCORE with a dimension of {sorted(DIMENSION_KEYS)} "
                                    "and a score from 1 to 4, e.g. text_rendering=3.")
        parsed[key.strip()] = number
    return parsed
