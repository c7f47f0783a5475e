"""What an RL run changed in the generator's drawings, attribute by attribute: where the held-out
exact-scene accuracy of ``bench.rl_heldout`` was won or lost.

    python -m bench.rl_attributes --config docs/rl_shapes_proof_short.json RUN_DIR [RUN_DIR ...] [--n 100]
    python -m bench.rl_attributes --config docs/rl_shapes_proof_short.json --against OTHER_FOLDER [--n 100]

The first ``--n`` held-out scenes in both prompt forms, one image each (the evaluation's fixed
seeds), drawn with the shipped weights and with the run's EMA weights (or, with ``--against``, the
config's generator and another generator folder, as ``bench.rl_heldout``), read by the analyzer
and compared with the scene asked for:

- per requested object (both forms): ``found`` (an object of its shape and colour is drawn), and
  for detailed prompts, which fix them, ``at_position`` (something is drawn in its cell),
  ``shape``, ``colour``, ``position_shape_colour`` and ``exact`` (shape, colour and size in its
  cell), and the commonest wrong shapes drawn in a requested cell (``drawn_as/star->circle``: counts);
- per image: ``count`` (as many objects as asked), ``word`` (the word or its absence),
  ``extra`` (more objects than asked), ``exact`` (``bench.generator_accuracy``'s rule),
  ``colour_match`` (the share of the coloured ink in the colours the prompt names:
  ``bench.rl_sanity.colour_match``, the partial credit of ``bench.rl_partial_credit``);
- what is drawn: ``large_share`` of the drawn objects, ``objects`` per image, ``blur``,
  ``smudges`` (the analyzer's artifact measures).

Prints one JSON line per form and weights, then the after - before differences.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from statistics import mean

from PIL import Image

from bench.generator_accuracy import detailed_match, short_match
from bench.rl_heldout import comparison, run_arguments
from bench.rl_sanity import colour_match
from models.shapes.analyzer import AnalyzedScene, analyze
from models.shapes.world import Scene
from studio.rl.data import PromptItem, eval_items
from studio.rl.evaluate import draw_images


def attribute_rates(items: list[PromptItem], images: list[Image.Image]) -> dict[str, float]:
    """The per-object and per-image rates above for ``images`` drawn for ``items`` (one form)."""
    per_object: dict[str, list[bool]] = {}
    per_image: dict[str, list[float]] = {}
    confusions: Counter[str] = Counter()

    def note(table: dict[str, list], name: str, value: float | bool) -> None:
        table.setdefault(name, []).append(value)

    for item, image in zip(items, images, strict=True):
        target: Scene = item.target  # type: ignore[assignment]
        found: AnalyzedScene = analyze(image)
        drawn = Counter((o.shape, o.colour) for o in found.objects)
        by_cell = {o.position: o for o in found.objects}
        for obj in target.objects:
            note(per_object, "found", drawn[(obj.shape, obj.colour)] > 0)
            if item.form == "detailed":
                cell = by_cell.get(obj.position)
                note(per_object, "at_position", cell is not None)
                note(per_object, "shape", cell is not None and cell.shape == obj.shape)
                note(per_object, "colour", cell is not None and cell.colour == obj.colour)
                note(per_object, "position_shape_colour", cell is not None and (cell.shape, cell.colour) == (obj.shape, obj.colour))
                if cell is not None and cell.shape != obj.shape:
                    confusions[f"{obj.shape}->{cell.shape}"] += 1
                note(per_object, "exact", cell is not None and (cell.shape, cell.colour, cell.size) == (obj.shape, obj.colour, obj.size))
        match = detailed_match if item.form == "detailed" else short_match
        note(per_image, "exact", match(item.prompt, found))
        note(per_image, "count", len(found.objects) == len(target.objects))
        note(per_image, "extra", len(found.objects) > len(target.objects))
        note(per_image, "word", found.word == target.word)
        note(per_image, "colour_match", colour_match(image, item.prompt))
        note(per_image, "objects", len(found.objects))
        note(per_image, "blur", found.artifacts.blur)
        note(per_image, "smudges", found.artifacts.smudges)
        for o in found.objects:
            note(per_object, "drawn_large", o.size == "large")
    rates = {f"object_{k}" if k != "drawn_large" else "large_share": round(mean(v), 4) for k, v in per_object.items()}
    return {**rates, **{k: round(mean(v), 4) for k, v in per_image.items()},
            **{f"drawn_as/{k}": float(v) for k, v in confusions.most_common(4)}}


def main(argv: list[str] | None = None) -> int:
    """Draw, analyze and compare the shipped and the tuned weights of ``RUN_DIR`` (or the config's
    generator and the ``--against`` folder) per prompt form."""
    args = run_arguments(__doc__.split("\n\n")[0], argv)
    config, before, afters = comparison(args)
    arms = [before, *afters]
    items = eval_items("shapes", None, "t2i", args.n)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for form in ("detailed", "short"):
        subset = [it for it in items if it.form == form]
        for index, arm in enumerate(arms):
            row = attribute_rates(subset, draw_images(arm.model, subset, arm.params, config.sampling_steps))
            results[(form, index)] = row
            print(json.dumps({"form": form, "weights": arm.label, "n": len(subset), **row}), flush=True)
    for form in ("detailed", "short"):
        first = results[(form, 0)]
        for index in range(1, len(arms)):
            after = results[(form, index)]
            print(json.dumps({"form": form, "tuned": arms[index].label, "after_minus_before": {
                k: round(after[k] - first[k], 4) for k in first if k in after and not k.startswith("drawn_as/")}}))
    print(json.dumps({"load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
