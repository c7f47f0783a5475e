"""The PARROT proof's table and data-efficiency plot from ``bench.parrot_shapes`` result rows.

Reads the JSONL rows, prints a Markdown table (variant, training pairs, held-out accuracy against
known truth, answered, training steps) and draws held-out accuracy against training pairs (log
scale), one line per variant (a model started from a pretrained ``--base`` is its own line, "(base)"),
as a small PNG (drawn with Pillow; the latest row of each line and pair count counts).

    python -m bench.parrot_plot --results runs/parrot-results.jsonl --png docs/parrot_data_efficiency.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"parrot": (200, 60, 30), "bt": (40, 90, 200), "no-anchoring": (120, 120, 120), "no-filter": (40, 150, 60)}
WIDTH, HEIGHT, MARGIN = 480, 300, 50


def series(row: dict) -> str:
    """A row's line on the plot: its variant, marked when the model started from a pretrained base."""
    base = row.get("base", "random init")
    return row["variant"] if base == "random init" else f"{row['variant']} (base)"


def latest_rows(path: Path) -> dict[tuple[str, int], dict]:
    """The latest row of each (series, pairs) in the JSONL file ``path``."""
    rows: dict[tuple[str, int], dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(series(row), row["pairs"])] = row
    return rows


def table(rows: dict[tuple[str, int], dict]) -> str:
    """A Markdown table of the rows, by pair count then variant."""
    lines = ["| variant | pairs | held-out accuracy | answered | training steps | noisy teacher |",
             "|---|---|---|---|---|---|"]
    for (variant, pairs), row in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        held, teacher = row["heldout"], row["noisy_teacher_heldout"]
        lines.append(f"| {variant} | {pairs} | {held['accuracy']:.2f} ({held['correct']}/{held['n']}) | "
                     f"{held['answered']}/{held['n']} | {row['train'].get('step')} | {teacher['accuracy']:.2f} |")
    return "\n".join(lines)


def plot(rows: dict[tuple[str, int], dict], out: Path) -> None:
    """Held-out accuracy (0-1) against training pairs (log scale), one line per variant."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    counts = sorted({pairs for _, pairs in rows})
    low, high = math.log(min(counts) / 1.5), math.log(max(counts) * 1.5)

    def xy(pairs: int, accuracy: float) -> tuple[float, float]:
        x = MARGIN + (math.log(pairs) - low) / (high - low) * (WIDTH - 1.5 * MARGIN)
        return x, HEIGHT - MARGIN - accuracy * (HEIGHT - 1.5 * MARGIN)

    draw.line([(MARGIN, HEIGHT - MARGIN), (WIDTH - MARGIN / 2, HEIGHT - MARGIN)], fill="black")
    draw.line([(MARGIN, MARGIN / 2), (MARGIN, HEIGHT - MARGIN)], fill="black")
    for accuracy in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0):
        _, y = xy(counts[0], accuracy)
        draw.line([(MARGIN - 4, y), (WIDTH - MARGIN / 2, y)], fill=(225, 225, 225) if accuracy else "black")
        draw.text((8, y - 6), f"{accuracy:.1f}", fill="black")
    for pairs in counts:
        x, _ = xy(pairs, 0.0)
        draw.text((x - 12, HEIGHT - MARGIN + 6), str(pairs), fill="black")
    draw.text((WIDTH / 2 - 70, HEIGHT - 20), "training pairs (log scale)", fill="black")
    draw.text((MARGIN + 4, 6), "held-out pairwise accuracy vs known truth", fill="black")
    for n, variant in enumerate(sorted({v for v, _ in rows})):
        colour = COLOURS.get(variant.removesuffix(" (base)"), (0, 0, 0))
        if variant.endswith(" (base)"):  # from the pretrained base: the variant's colour, darker
            colour = tuple(c // 2 for c in colour)
        points = [xy(pairs, rows[(variant, pairs)]["heldout"]["accuracy"]) for pairs in counts if (variant, pairs) in rows]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        draw.text((WIDTH - 150, MARGIN / 2 + 14 * n), f"- {variant}", fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="runs/parrot-results.jsonl")
    parser.add_argument("--png", default="docs/parrot_data_efficiency.png")
    args = parser.parse_args()
    rows = latest_rows(Path(args.results))
    print(table(rows))
    plot(rows, Path(args.png))


if __name__ == "__main__":
    main()
