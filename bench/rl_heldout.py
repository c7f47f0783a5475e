"""Held-out shapes-world numbers of RL runs, before (the shipped model) and after (each run's EMA
weights), per prompt form: the analyzer's exact-scene accuracy with its Wilson 95% interval, the
reference critic's scores (the RL preset reward and each dimension), whatever the run was
rewarded with, and the paired per-scene difference of the exact-scene check. Beside it the same
for two checks that leave the word out: ``objects``, the analyzer's (shape, colour) multiset and
relations, and ``independent``, the same read by ``bench.independent_grader``, which shares no
code with the analyzer the reward and the exact check use.

    python -m bench.rl_heldout --config docs/rl_shapes_proof_tf.json RUN_DIR [RUN_DIR ...] [--n 100]
    python -m bench.rl_heldout --config docs/rl_shapes_proof_tf.json --against OTHER_FOLDER [--n 100]

The first ``--n`` held-out scenes, prompted in the short and the detailed form (one image each,
the evaluation's fixed seeds, the run's sampling settings); the weights are those of each run
folder's latest checkpoint (its ``base`` and ``ema`` sets; several run folders are runs of the same
config, e.g. two seeds, so they share the base). With ``--against FOLDER`` instead of run folders,
it compares the config's generator with another generator folder (e.g. one continued by
``models.shapes.train_generator --init-from``), each with its own weights and the same prompts and
seeds. Prints one JSON line per form and weights, then per form and tuned weights the after -
before differences, with ``paired_<check>`` for each check (``bench.paired``: the same
scenes and seeds before and after, so the interval is per scene: scenes gained, lost, and the sign
test); with several runs also ``pooled``, the per-scene share of runs that got the scene right,
against before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.generator_accuracy import objects_only_match
from bench.independent_grader import objects_match
from bench.paired import paired_difference
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, NotFoundError
from studio.evaluation.summary import wilson_interval
from studio.jobs.config import config_from_dict, load_config_values
from studio.rl.checkpoint import latest_checkpoint, load_checkpoint
from studio.rl.config import RLConfig
from studio.rl.data import eval_items
from studio.rl.evaluate import evaluate
from studio.rl.flow import FlowModel, Params
from studio.rl.train import build_critic, load_flow_model
from studio.rl.trainer import NFTTrainer


def load_runs(run_dirs: list[Path], config_path: str) -> tuple[RLConfig, FlowModel, list[tuple[dict[str, Params], dict[str, Any]]]]:
    """The config of RL runs, its model with the runs' LoRA adapters (loaded once: runs of one
    config share the architecture), and per run the weight sets and state of its latest checkpoint
    (``base`` is the shipped model, ``ema`` the tuned one). Raises ``NotFoundError`` when a run has
    no checkpoint."""
    import torch

    config: RLConfig = config_from_dict(RLConfig, load_config_values(config_path))
    torch.set_num_threads(config.threads or 1)
    checkpoints = [latest_checkpoint(run_dir) for run_dir in run_dirs]
    for run_dir, checkpoint in zip(run_dirs, checkpoints):
        if checkpoint is None:
            raise NotFoundError(f"{run_dir} has no checkpoint to evaluate.")
    model = load_flow_model(config)
    NFTTrainer(config, model, build_critic({"backend": "shapes"}), prompts=None)  # type: ignore[arg-type]  # adds the LoRA adapters
    loaded = [load_checkpoint(checkpoint, model.device) for checkpoint in checkpoints]
    return config, model, [(weights, state) for weights, _, state in loaded]


def run_arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line of a bench that compares generator weights with a base: RL run folders of
    one config (the shipped and each run's tuned weights) or ``--against`` another generator
    folder, the ``--config`` and ``--n`` held-out scenes per prompt form. Raises ``ConfigError``
    unless exactly one of the run folders and ``--against`` is given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dirs", type=Path, nargs="*", metavar="RUN_DIR",
                        help="RL run folders (their checkpoints/) of the --config, e.g. two seeds")
    parser.add_argument("--config", required=True, help="the run's config JSON (its model is the base)")
    parser.add_argument("--against", default="", help="instead of a run folder: a generator folder to compare "
                                                      "with the config's model (no RL run)")
    parser.add_argument("--n", type=int, default=100, help="held-out scenes per prompt form (at most 200: the ones RL never trains on)")
    args = parser.parse_args(argv)
    if bool(args.run_dirs) == bool(args.against):
        raise ConfigError("Give either RL run folders or --against GENERATOR_FOLDER (exactly one of them).")
    return args


@dataclass
class Arm:
    """One set of weights a comparison draws with: its label, the model and the parameters
    swapped into its transformer (``None``: the model's own)."""

    label: str
    model: FlowModel
    params: Params | None


def comparison(args: argparse.Namespace) -> tuple[RLConfig, Arm, list[Arm]]:
    """The config, the arm before and the arms after that ``run_arguments`` names: the shipped
    weights and each run's tuned (EMA) weights, or the config's generator and the ``--against``
    folder."""
    if args.run_dirs:
        config, model, runs = load_runs(args.run_dirs, args.config)
        named = len(args.run_dirs) > 1
        afters = [Arm(f"tuned step {state['step']}" + (f" ({run_dir})" if named else ""), model, weights["ema"])
                  for run_dir, (weights, state) in zip(args.run_dirs, runs)]
        return config, Arm("shipped", model, runs[0][0]["base"]), afters
    import torch

    config = config_from_dict(RLConfig, load_config_values(args.config))
    torch.set_num_threads(config.threads or 1)
    other = load_flow_model(dataclasses.replace(config, model=args.against))
    return config, Arm(config.model, load_flow_model(config), None), [Arm(args.against, other, None)]


def paired_rows(form: str, before: list[bool], afters: dict[str, list[bool]],
                check: str = "exact") -> list[dict[str, Any]]:
    """Per tuned weights, the paired per-scene difference of a check (``paired_<check>``) against
    ``before`` (``bench.paired``); with several, also ``pooled``: each scene's share of the tuned
    weights that passed it."""
    rows = [{"form": form, "tuned": label, f"paired_{check}": paired_difference(checks, before)}
            for label, checks in afters.items()]
    if len(afters) > 1:
        shares = [sum(column) / len(afters) for column in zip(*afters.values())]
        rows.append({"form": form, "tuned": f"pooled over {len(afters)} runs",
                     f"paired_{check}": paired_difference(shares, before)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Evaluate the base and the tuned weights of ``RUN_DIR`` on the held-out scenes."""
    args = run_arguments(__doc__.split("\n\n")[0], argv)
    config, before, afters = comparison(args)
    arms = [before, *afters]
    critic = build_critic({"backend": "shapes"})
    items = eval_items("shapes", None, "t2i", args.n)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    checks: dict[str, dict[tuple[str, int], list[bool]]] = {name: {} for name in ("exact", "objects", "independent")}
    for form in ("detailed", "short"):
        subset = [it for it in items if it.form == form]
        for index, arm in enumerate(arms):
            result = evaluate(arm.model, subset, arm.params, steps=config.sampling_steps, critic=critic,
                              policy=ScoringPolicy.rl_reward(), shapes=True)
            checks["exact"][(form, index)] = result.checks
            checks["objects"][(form, index)] = [objects_only_match(it.prompt, seen)
                                                for it, seen in zip(subset, result.found, strict=True)]
            checks["independent"][(form, index)] = [objects_match(it.prompt, im)
                                                    for it, im in zip(subset, result.images, strict=True)]
            row: dict[str, Any] = {"form": form, "weights": arm.label, "n": len(subset)}
            for name, flags in checks.items():
                passed = sum(flags[(form, index)])
                row |= {name: passed / len(subset), f"{name}_ci95": wilson_interval(passed, len(subset))}
            row |= {k.removeprefix("eval/"): round(v, 4) for k, v in result.metrics.items()
                    if k not in ("eval/check", f"eval/check_{form}")}
            results[(form, index)] = row
            print(json.dumps(row), flush=True)
    for form in ("detailed", "short"):
        first = results[(form, 0)]
        for index in range(1, len(arms)):
            after = results[(form, index)]
            print(json.dumps({"form": form, "tuned": after["weights"], "after_minus_before": {
                k: round(after[k] - first[k], 4) for k in first if isinstance(first[k], float) and k in after}}))
        for name, flags in checks.items():
            for row in paired_rows(form, flags[(form, 0)], {arms[i].label: flags[(form, i)] for i in range(1, len(arms))},
                                   name):
                print(json.dumps(row))
    print(json.dumps({"load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
