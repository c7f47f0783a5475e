"""The shapes reference critic on a shapes-world preference benchmark, through the benchmark runner.

Runs ``python -m studio eval`` in-process (``studio.evaluation.run.execute``) on one generated
known-truth set, ``shapes:TASK:N:seedS``, for each mode (pairwise, pointwise) and each perception
noise (0: the exact reference; ``--noise``: an imperfect one), in a fresh temporary store, and
prints one table row per run: accuracy over decisive labels with its 95% Wilson interval,
accuracy with ties counted, the share of predicted ties, failures, and seconds. The last line
is a one-line JSON summary of all runs.

Run from the repository root:  python -m bench.eval_shapes [--n 500] [--task t2i] [--seed 0] [--noise 0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from studio.evaluation.run import EvalConfig, StderrContext, execute
from studio.store import SessionStore


def main(argv: list[str] | None = None) -> int:
    """Run the four evaluations and print their figures; exit 1 when a row failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="pairs in the set (default 500)")
    parser.add_argument("--task", choices=("t2i", "edit"), default="t2i")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.2, help="the imperfect critic's perception_noise")
    args = parser.parse_args(argv)
    data = f"shapes:{args.task}:{args.n}:seed{args.seed}"
    print(f"{data}: shapes reference critic, default scoring policy, tie tolerance 0.02")
    print(f"{'mode':<10} {'noise':>5} {'accuracy':>9} {'95% CI':>15} {'with ties':>9} {'pred. ties':>10} "
          f"{'failed':>6} {'seconds':>7}")
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(Path(folder) / "studio.db")
        for mode in ("pairwise", "pointwise"):
            for noise in (0.0, args.noise):
                critic = {"backend": "shapes", **({"perception_noise": noise} if noise else {})}
                config = EvalConfig(data=data, mode=mode, critic=critic, store=str(store.path))
                config.validate()
                started = time.perf_counter()
                summary = execute(config, StderrContext(Path(folder) / f"{mode}-{noise}", quiet=True), store)
                seconds = time.perf_counter() - started
                low, high = summary["accuracy_ci"]
                print(f"{mode:<10} {noise:>5} {summary['accuracy']:>9.3f} {f'[{low:.3f}, {high:.3f}]':>15} "
                      f"{summary['accuracy_with_ties']:>9.3f} {summary['predicted_ties'] / summary['answered']:>10.3f} "
                      f"{summary['failed']:>6} {seconds:>7.1f}", flush=True)
                runs.append({key: summary[key] for key in ("mode", "critic", "n", "ties", "answered", "failed",
                                                           "accuracy", "accuracy_ci", "accuracy_with_ties")})
        store.close()
    print(json.dumps({"benchmark": f"shapes-{args.task}", "data": data, "runs": runs}))
    return 1 if any(run["failed"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
