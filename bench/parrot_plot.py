"""The PARROT proof's table and data-efficiency plot from ``bench.parrot_shapes`` result rows.

Reads the JSONL rows of one or more files, prints a Markdown table (variant, base, training pairs,
held-out accuracy against known truth, answered, verdicts, training steps) and draws held-out
accuracy against training pairs (log scale), one line per variant and base, labelled "variant
(base)": a row's base is named by its ``--base`` folder (``runs/shapes-vlm/model`` is
"shapes-vlm"), so models from two bases are two lines, never one. Each base has its own shade
of the variant's colour and its own marker. Drawn as a small PNG with Pillow; the latest row of
each line and pair count counts; each line's points are set a few pixels apart, so equal
values stay visible.

    python -m bench.parrot_plot --results runs/parrot-results.jsonl --png docs/parrot_data_efficiency.png
    python -m bench.parrot_plot --results docs/parrot_results.jsonl --bases captions checks-described  # two bases only
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"parrot": (200, 60, 30), "bt": (40, 90, 200), "no-anchoring": (120, 120, 120), "no-filter": (40, 150, 60)}
WIDTH, HEIGHT, MARGIN, LEGEND = 600, 320, 50, 210

Key = tuple[str, str, int]  # (variant, base name, training pairs)


def base_name(row: dict) -> str:
    """The name of a row's base: "random init", or its folder's name (the parent of a ``model`` folder)."""
    base = Path(str(row.get("base") or "random init"))
    if str(base) == "random init":
        return "random init"
    return base.parent.name if base.name == "model" and base.parent.name else base.name


def latest_rows(paths: list[Path]) -> dict[Key, dict]:
    """The latest row of each (variant, base, pairs) in the JSONL files ``paths``, read in order."""
    rows: dict[Key, dict] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["variant"], base_name(row), row["pairs"])] = row
    return rows


def only_bases(rows: dict[Key, dict], names: list[str] | None) -> dict[Key, dict]:
    """The rows whose base is one of ``names`` (all of them when ``names`` is None); an unknown
    name is an error, so a typo does not silently drop a line."""
    if names is None:
        return rows
    known = {base for _, base, _ in rows}
    if unknown := set(names) - known:
        raise SystemExit(f"no rows from base(s) {sorted(unknown)}; the results name {sorted(known)}")
    return {key: row for key, row in rows.items() if key[1] in names}


def table(rows: dict[Key, dict]) -> str:
    """A Markdown table of the rows, by base, pair count, then variant."""
    lines = ["| variant | base | pairs | held-out accuracy | answered | verdicts tie / A / B | training steps | noisy teacher |",
             "|---|---|---|---|---|---|---|---|"]
    for (variant, base, pairs), row in sorted(rows.items(), key=lambda item: (item[0][1], item[0][2], item[0][0])):
        held, teacher = row["heldout"], row["noisy_teacher_heldout"]
        verdicts = held.get("verdicts")
        said = " / ".join(str(verdicts[v]) for v in ("tie", "A", "B")) if verdicts else "—"
        lines.append(f"| {variant} | {base} | {pairs} | {held['accuracy']:.2f} ({held['correct']}/{held['n']}) | "
                     f"{held['answered']}/{held['n']} | {said} | {row['train'].get('step')} | {teacher['accuracy']:.2f} |")
    return "\n".join(lines)


def _shade(colour: tuple[int, int, int], kind: int) -> tuple[int, ...]:
    """The variant's colour for the rows' first base, darker for the second, lighter for the third,
    a little darker for the rest."""
    if kind == 0:
        return colour
    if kind == 1:
        return tuple(int(c * 0.55) for c in colour)
    if kind == 2:
        return tuple(int(c + (255 - c) * 0.45) for c in colour)
    return tuple(int(c * 0.8) for c in colour)


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, kind: int, colour: tuple[int, ...]) -> None:
    """A point: a disc for the first base, a square for the second, a diamond for the third, a
    triangle for the rest."""
    if kind == 0:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
    elif kind == 1:
        draw.rectangle([x - 4, y - 4, x + 4, y + 4], fill=colour)
    elif kind == 2:
        draw.polygon([(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)], fill=colour)
    else:
        draw.polygon([(x, y - 6), (x + 6, y + 5), (x - 6, y + 5)], fill=colour)


def plot(rows: dict[Key, dict], out: Path) -> None:
    """Held-out accuracy (0-1) against training pairs (log scale), one line per variant and base."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    counts = sorted({pairs for _, _, pairs in rows})
    bases = list(dict.fromkeys(base for _, base, _ in rows))  # in the order the rows first name them
    low, high = math.log(min(counts) / 1.5), math.log(max(counts) * 1.5)
    right = WIDTH - LEGEND

    def xy(pairs: int, accuracy: float) -> tuple[float, float]:
        x = MARGIN + (math.log(pairs) - low) / (high - low) * (right - MARGIN)
        return x, HEIGHT - MARGIN - accuracy * (HEIGHT - 1.5 * MARGIN)

    draw.line([(MARGIN, HEIGHT - MARGIN), (right, HEIGHT - MARGIN)], fill="black")
    draw.line([(MARGIN, MARGIN / 2), (MARGIN, HEIGHT - MARGIN)], fill="black")
    for accuracy in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0):
        _, y = xy(counts[0], accuracy)
        draw.line([(MARGIN - 4, y), (right, y)], fill=(225, 225, 225) if accuracy else "black")
        draw.text((8, y - 6), f"{accuracy:.1f}", fill="black")
    for pairs in counts:
        x, _ = xy(pairs, 0.0)
        draw.text((x - 12, HEIGHT - MARGIN + 6), str(pairs), fill="black")
    draw.text((right / 2 - 50, HEIGHT - 20), "training pairs (log scale)", fill="black")
    draw.text((MARGIN + 4, 6), "held-out pairwise accuracy vs known truth", fill="black")
    lines = sorted({(variant, base) for variant, base, _ in rows}, key=lambda line: (bases.index(line[1]), line[0]))
    for n, (variant, base) in enumerate(lines):
        kind = bases.index(base)
        colour = _shade(COLOURS.get(variant, (0, 0, 0)), kind)
        dodge = (n - (len(lines) - 1) / 2) * 5  # lines side by side, so equal points stay visible
        points = [(x + dodge, y) for x, y in (xy(pairs, rows[(variant, base, pairs)]["heldout"]["accuracy"])
                                               for pairs in counts if (variant, base, pairs) in rows)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            _marker(draw, x, y, kind, colour)
        y = MARGIN / 2 + 16 * n
        _marker(draw, right + 16, y + 6, kind, colour)
        draw.text((right + 26, y), f"{variant} ({base})", fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", nargs="+", default=["runs/parrot-results.jsonl"],
                        help="bench.parrot_shapes JSONL files, read in order (a later row replaces an earlier one)")
    parser.add_argument("--png", default="docs/parrot_data_efficiency.png")
    parser.add_argument("--bases", nargs="+", default=None,
                        help="only the rows of these bases (named as in the table: \"random init\", a folder name); "
                             "default: every base")
    args = parser.parse_args()
    rows = only_bases(latest_rows([Path(p) for p in args.results]), args.bases)
    print(table(rows))
    plot(rows, Path(args.png))


if __name__ == "__main__":
    main()
