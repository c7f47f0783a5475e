"""Held-out shapes-world numbers of an RL run, before (the shipped model) and after (the run's EMA
weights), per prompt form: the analyzer's exact-scene accuracy with its Wilson 95% interval and
the reference critic's scores (the RL preset reward and each dimension), whatever the run was
rewarded with.

    python -m bench.rl_heldout --config docs/rl_shapes_proof_tf.json RUN_DIR [--n 100]
    python -m bench.rl_heldout --config docs/rl_shapes_proof_tf.json --against OTHER_FOLDER [--n 100]

The first ``--n`` held-out scenes, prompted in the short and the detailed form (one image each,
the evaluation's fixed seeds, the run's sampling settings); the weights are those of the run
folder's latest checkpoint (its ``base`` and ``ema`` sets). With ``--against FOLDER`` instead of
a run folder, it compares the config's generator with another generator folder (e.g. one
continued by ``models.shapes.train_generator --init-from``), each with its own weights and the
same prompts and seeds. Prints one JSON line per form and weights, then the after - before
differences.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def load_run(run_dir: Path, config_path: str) -> tuple[RLConfig, FlowModel, dict[str, Params], dict[str, Any]]:
    """An RL run's config, its model with the run's LoRA adapters, and the weight sets and state of
    its latest checkpoint (``base`` is the shipped model, ``ema`` the tuned one). Raises
    ``NotFoundError`` when the run has no checkpoint."""
    import torch

    config: RLConfig = config_from_dict(RLConfig, load_config_values(config_path))
    torch.set_num_threads(config.threads or 1)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise NotFoundError(f"{run_dir} has no checkpoint to evaluate.")
    model = load_flow_model(config)
    NFTTrainer(config, model, build_critic({"backend": "shapes"}), prompts=None)  # type: ignore[arg-type]  # adds the LoRA adapters
    weights, _, state = load_checkpoint(checkpoint, model.device)
    return config, model, weights, state


def run_arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line of a bench that compares two sets of generator weights: an RL run folder
    (its shipped and tuned weights) or ``--against`` another generator folder, the ``--config``
    and ``--n`` held-out scenes per prompt form. Raises ``ConfigError`` unless exactly one of the
    run folder and ``--against`` is given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=Path, nargs="?", help="the RL run folder (its checkpoints/)")
    parser.add_argument("--config", required=True, help="the run's config JSON (its model is the base)")
    parser.add_argument("--against", default="", help="instead of a run folder: a generator folder to compare "
                                                      "with the config's model (no RL run)")
    parser.add_argument("--n", type=int, default=100, help="held-out scenes per prompt form (unseen: at most 200)")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (not args.against):
        raise ConfigError("Give either an RL run folder or --against GENERATOR_FOLDER (exactly one of them).")
    return args


@dataclass
class Arm:
    """One set of weights a comparison draws with: its label, the model and the parameters
    swapped into its transformer (``None``: the model's own)."""

    label: str
    model: FlowModel
    params: Params | None


def comparison(args: argparse.Namespace) -> tuple[RLConfig, Arm, Arm]:
    """The config and the two arms ``run_arguments`` names, before then after: an RL run's
    shipped and tuned (EMA) weights, or the config's generator and the ``--against`` folder."""
    if args.run_dir is not None:
        config, model, weights, state = load_run(args.run_dir, args.config)
        return config, Arm("shipped", model, weights["base"]), Arm(f"tuned step {state['step']}", model, weights["ema"])
    import torch

    config: RLConfig = config_from_dict(RLConfig, load_config_values(args.config))
    torch.set_num_threads(config.threads or 1)
    other = load_flow_model(dataclasses.replace(config, model=args.against))
    return config, Arm(config.model, load_flow_model(config), None), Arm(args.against, other, None)


def main(argv: list[str] | None = None) -> int:
    """Evaluate the base and the tuned weights of ``RUN_DIR`` on the held-out scenes."""
    args = run_arguments(__doc__.split("\n\n")[0], argv)
    config, *arms = comparison(args)
    critic = build_critic({"backend": "shapes"})
    items = eval_items("shapes", None, "t2i", args.n)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for form in ("detailed", "short"):
        subset = [it for it in items if it.form == form]
        for index, arm in enumerate(arms):
            metrics = evaluate(arm.model, subset, arm.params, steps=config.sampling_steps, critic=critic,
                               policy=ScoringPolicy.rl_reward(), shapes=True).metrics
            exact = round(metrics["eval/check"] * len(subset))
            row = {"form": form, "weights": arm.label,
                   "n": len(subset), "exact": metrics["eval/check"], "exact_ci95": wilson_interval(exact, len(subset)),
                   **{k.removeprefix("eval/"): round(v, 4) for k, v in metrics.items()
                      if k not in ("eval/check", f"eval/check_{form}")}}
            results[(form, index)] = row
            print(json.dumps(row), flush=True)
    for form in ("detailed", "short"):
        before, after = results[(form, 0)], results[(form, 1)]
        print(json.dumps({"form": form, "after_minus_before": {
            k: round(after[k] - before[k], 4) for k in before if isinstance(before[k], float) and k in after}}))
    print(json.dumps({"load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
