"""``python -m studio parrot vision|pretrain|generate|filter|export|distill|bt [--config FILE] [flags]``.

Each sub-command is the stage's own ``main``: the flags are generated from its config dataclass
(``--help`` lists them), the config is saved as ``config.json`` in ``--run-dir``, and the last
line on stdout is the stage's result as one JSON object.
"""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "vision": "a shapes-world VLM base whose vision tower is trained first, with supervised heads",
    "pretrain": "a shapes-world VLM base (captioning) that distill and bt start from",
    "generate": "anchored generation: a teacher critic explains each pair's label",
    "filter": "consistency filtering: keep rationales whose own scores re-predict the label",
    "export": "kept rationales to LLaMA-Factory sharegpt student examples",
    "distill": "train a student critic on the exported examples",
    "bt": "baseline: a scalar Bradley-Terry reward model trained on the pairs' labels alone",
}


def main(argv: list[str] | None = None) -> int:
    """Run one stage; 0 when done, 2 for an error (explained on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        lines = "\n".join(f"  {name:<9} {summary}" for name, summary in STAGES.items())
        print(f"usage: python -m studio parrot STAGE [--config FILE] [flags]\n\nstages:\n{lines}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(f"studio.parrot.{argv[0]}")
    return module.main(argv[1:])
