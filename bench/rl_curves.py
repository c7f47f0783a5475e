"""Curves of RL runs from their ``metrics.jsonl``: held-out exact-scene accuracy per prompt form,
held-out reward, Text Faithfulness and Text Rendering, the training reward and the reward-hacking
alert against the step, one colour per run, in one small PNG (a panel only for what some run
logged: a reward without dimensions has no Text Faithfulness curve); prints each run's first and
last evaluation as one JSON line.

Run from the repository root:
    python -m bench.rl_curves RUN_DIR [RUN_DIR ...] [--labels A B ...] --out docs/rl_curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from models.errors import NotFoundError
from studio.rl.train import METRICS_FILE

PANELS = (("eval/check_detailed", "held-out exact scene, detailed"), ("eval/check_short", "held-out exact scene, short"),
          ("eval/reward", "held-out reward (the run's own)"), ("eval/text_faithfulness", "held-out Text Faithfulness"),
          ("eval/text_rendering", "held-out Text Rendering"), ("train/reward", "training reward (the run's own)"),
          ("monitor/alert", "reward-hacking alert (1: raised)"))
COLUMNS = 3
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
PANEL_W, PANEL_H, MARGIN = 300, 170, 34


def read_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """name -> [(step, value)] of a run folder, the last report of a step winning (a resumed run
    repeats the steps after its checkpoint)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise NotFoundError(f"No {METRICS_FILE} in {run_dir}: is it an RL run folder?")
    values: dict[str, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for name, value in row.items():
            if name != "step":
                values.setdefault(name, {})[int(row["step"])] = float(value)
    return {name: sorted(points.items()) for name, points in values.items()}


Runs = list[tuple[str, dict[str, list[tuple[int, float]]]]]


def logged_panels(runs: Runs) -> list[tuple[str, str]]:
    """The ``PANELS`` (metric, title) some run logged. Raises ``NotFoundError`` when none is."""
    panels = [(name, title) for name, title in PANELS if any(series.get(name) for _, series in runs)]
    if not panels:
        raise NotFoundError("None of the runs logged a curve this plot draws (no evaluation or step yet?).")
    return panels


def draw(runs: Runs, out: Path) -> Path:
    """A grid of the ``logged_panels``, ``COLUMNS`` a row, each run a coloured polyline with dots,
    a legend on top."""
    panels = logged_panels(runs)
    rows = -(-len(panels) // COLUMNS)
    image = Image.new("RGB", (COLUMNS * PANEL_W, rows * PANEL_H + 20), "white")
    pen = ImageDraw.Draw(image)
    for k, (label, _) in enumerate(runs):
        pen.text((6 + 150 * k, 4), label, fill=COLOURS[k % len(COLOURS)])
    for p, (name, title) in enumerate(panels):
        x0, y0 = (p % COLUMNS) * PANEL_W, 20 + (p // COLUMNS) * PANEL_H
        series = [(k, s[name]) for k, (_, s) in enumerate(runs) if s.get(name)]
        pen.text((x0 + MARGIN, y0 + 2), title, fill="black")
        left, top, right, bottom = x0 + MARGIN, y0 + 16, x0 + PANEL_W - 8, y0 + PANEL_H - 16
        pen.rectangle((left, top, right, bottom), outline=(160, 160, 160))
        steps = [st for _, pts in series for st, _ in pts]
        vals = [v for _, pts in series for _, v in pts]
        lo, hi = min(vals), max(vals)
        lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        s_max = max(max(steps), 1)
        pen.text((x0 + 2, top), f"{hi:.2f}", fill="black")
        pen.text((x0 + 2, bottom - 10), f"{lo:.2f}", fill="black")
        pen.text((right - 40, bottom + 2), f"step {s_max}", fill="black")
        for k, pts in series:
            xy = [(left + (right - left) * st / s_max, bottom - (bottom - top) * (v - lo) / (hi - lo)) for st, v in pts]
            colour = COLOURS[k % len(COLOURS)]
            if len(xy) > 1:
                pen.line(xy, fill=colour, width=2)
            for x, y in xy:
                pen.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="RL run folders")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: the folder names)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error("give one label per run folder")
    runs = [(label, read_series(run)) for label, run in zip(labels, args.runs)]
    for label, series in runs:
        first_last = {name: (pts[0], pts[-1]) for name, pts in series.items() if name.startswith("eval/")}
        print(json.dumps({"run": label, "steps": max((st for pts in series.values() for st, _ in pts), default=0),
                          **{name: {"step_value_first": a, "step_value_last": b} for name, (a, b) in first_last.items()}}))
    draw(runs, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
