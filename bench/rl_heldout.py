"""Held-out shapes-world numbers of an RL run, before (the shipped model) and after (the run's EMA
weights), per prompt form: the analyzer's exact-scene accuracy with its Wilson 95% interval and
the reference critic's scores (the RL preset reward and each dimension), whatever the run was
rewarded with.

    python -m bench.rl_heldout --config docs/rl_shapes_proof_tf.json RUN_DIR [--n 100]

The first ``--n`` held-out scenes, prompted in the short and the detailed form (one image each,
the evaluation's fixed seeds, the run's sampling settings); the weights are those of the run
folder's latest checkpoint (its ``base`` and ``ema`` sets). Prints one JSON line per form and
weights, then the after - before differences.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from models.critic.scoring import ScoringPolicy
from models.errors import NotFoundError
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
    """The command line of a bench that compares an RL run's shipped and tuned weights: the run
    folder, its ``--config`` and ``--n`` held-out scenes per prompt form."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=Path, help="the RL run folder (its checkpoints/)")
    parser.add_argument("--config", required=True, help="the run's config JSON")
    parser.add_argument("--n", type=int, default=100, help="held-out scenes per prompt form (unseen: at most 200)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Evaluate the base and the tuned weights of ``RUN_DIR`` on the held-out scenes."""
    args = run_arguments(__doc__.split("\n\n")[0], argv)
    config, model, weights, state = load_run(args.run_dir, args.config)
    critic = build_critic({"backend": "shapes"})
    items = eval_items("shapes", None, "t2i", args.n)
    results: dict[tuple[str, str], dict[str, float]] = {}
    for form in ("detailed", "short"):
        subset = [it for it in items if it.form == form]
        for label in ("base", "ema"):
            metrics = evaluate(model, subset, weights[label], steps=config.sampling_steps, critic=critic,
                               policy=ScoringPolicy.rl_reward(), shapes=True).metrics
            exact = round(metrics["eval/check"] * len(subset))
            row = {"form": form, "weights": "shipped" if label == "base" else f"tuned step {state['step']}",
                   "n": len(subset), "exact": metrics["eval/check"], "exact_ci95": wilson_interval(exact, len(subset)),
                   **{k.removeprefix("eval/"): round(v, 4) for k, v in metrics.items()
                      if k not in ("eval/check", f"eval/check_{form}")}}
            results[(form, label)] = row
            print(json.dumps(row), flush=True)
    for form in ("detailed", "short"):
        before, after = results[(form, "base")], results[(form, "ema")]
        print(json.dumps({"form": form, "after_minus_before": {
            k: round(after[k] - before[k], 4) for k in before if isinstance(before[k], float) and k in after}}))
    print(json.dumps({"load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
