"""Does a distilled PARROT student read the images? Its pairwise critiques against the exact ones.

For held-out shapes-world pairs (``bench.parrot_shapes``'s, the run folder's training requests
passed over), the student's pairwise critique and the exact reference critic's (no perception
noise) go through the same parser. Each justification reads "Image A: ... Image B: ..."; each
image's part is split into its clauses (the findings, "; "-separated, or the praise when there are
none), and the student's clauses are compared with the exact critic's, per dimension:

* ``exact``: images whose clause set equals the truth's; ``exact_other``: equals the truth of the
  *other* image of the pair (a student that does not tell the images apart scores about the same
  on both); ``recall`` / ``precision`` of the true clauses; ``same_both``: pairs whose two images
  get the same clauses (the truth's share beside it).
* Scores, per dimension: pairs with equal scores for A and B (student and truth); ``flag_right``,
  images the student flags (scores below 4) exactly when the truth does (``flag_prior``: always
  answering the truth's commoner flag); ``order_right``, of the ``truth_differs`` pairs whose true
  scores differ, those the student orders the same way (a tie counts wrong).
* The same pairs with A and B swapped: ``swap_same``, images that get the same Text Faithfulness
  clauses in either position (a student that reads the image keeps them).
* ``request_copied``: parsed answers whose "# User Request Analysis" (a restatement of the
  request, no image needed) is the exact critic's, word for word.
* ``requested_objects_named``: of the "<colour> <shape>" objects the Text Faithfulness clauses
  name, the share the request asks for (the exact critic's beside it: below 1 by the extra
  objects it reports); a student that does not read the request names others.
* ``decided_by``: the decisive pairs by the dimensions whose exact scores differ.
* Each decisive pair's failure, in order: ``format`` (no parse), ``perception`` (some image's
  clauses wrong on some dimension), ``comparison`` (every clause right, the verdict wrong), or
  ``right``; and the overall verdicts (A / B / tie) beside the truth's.

With ``--verdicts`` (a student distilled with ``bench.parrot_shapes --teacher-verdicts``) the exact
critic words its Text Faithfulness as per-object verdicts too, and ``object_verdicts`` reads them: of
the truth's "the <object> is drawn / is wrong" items, the share the student states at all, states with
the true verdict (``right``; on the truth's wrong objects ``wrong_found``, on its drawn ones
``drawn_kept``), and states as the *other* image's truth has it (``other_image``, where the two differ).
With ``--sightings`` (``--teacher-sightings``) each item also says what is seen in the object's place,
and ``sightings_right`` is the share of the truth's sightings the student writes word for word
(``sightings_right_wrong`` on the truth's wrong objects).

Prints one JSON line; ``--show N`` also prints the first N pairs' justifications side by side.

    OMP_NUM_THREADS=1 nice python -m bench.parrot_student_reads --critic RUN/distill/critic --run-dir RUN
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench.parrot_shapes import unseen_heldout
from models.critic.critic_transformers import TransformersCritic
from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.world import COLOURS, SHAPES, parse_prompt
from models.types import PairRequest, PairResult, PairwiseJudgement, task_dimensions

Clauses = frozenset[str]
_NAMED = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})s?\b")
# "the red circle is wrong", or with a sighting "the red circle (seen: red square) is wrong"; not a finding's "is drawn as a star"
_VERDICT = re.compile(r"\bthe ([a-z ]+?)(?: \(seen: ([a-z ]+)\))? is (drawn|wrong)\b(?! as)")


def image_clauses(justification: str | None) -> tuple[Clauses, Clauses] | None:
    """The clauses of "Image A: ... Image B: ..." for A and for B (lower case, no final stop);
    ``None`` when the justification does not name both images in that order."""
    parts = _halves(justification)
    return (_split(parts[0]), _split(parts[1])) if parts else None


def _halves(justification: str | None) -> tuple[str, str] | None:
    """The "Image A:" and "Image B:" parts of a justification; ``None`` unless it names both, in that order."""
    head, _, rest = (justification or "").partition("Image A:")
    part_a, found, part_b = rest.partition("Image B:")
    return (part_a, part_b) if found and not head.strip() else None


def _split(part: str) -> Clauses:
    return frozenset(c.strip().rstrip(".").strip().lower() for c in part.split(";") if c.strip().rstrip("."))


def read_pair(result: PairResult) -> dict[str, tuple[Clauses, Clauses] | None] | None:
    """Per dimension key, the two images' clauses; ``None`` for an answer that did not parse."""
    if not isinstance(result, PairwiseJudgement):
        return None
    return {key: image_clauses(verdict.justification) for key, verdict in result.dimensions.items()}


def request_analysis(raw: str) -> str:
    """The answer's "# User Request Analysis" section (it restates the request), stripped."""
    return raw.partition("# User Request Analysis")[2].partition("# Detailed Judgement")[0].strip()


def named_objects(clauses: Clauses) -> list[tuple[str, str]]:
    """The (colour, shape) of every "<colour> <shape>" the clauses name."""
    return [(m.group(1), m.group(2)) for clause in clauses for m in _NAMED.finditer(clause)]


def stated_verdicts(part: str) -> dict[str, str]:
    """The "the <object> is drawn / is wrong" items of one image's justification: object -> verdict."""
    return {m.group(1): m.group(3) for m in _VERDICT.finditer(part.lower())}


def stated_sightings(part: str) -> dict[str, str]:
    """The sightings of one image's verdict items ("the red circle (seen: red square) is wrong"): object -> what is seen."""
    return {m.group(1): m.group(2) for m in _VERDICT.finditer(part.lower()) if m.group(2)}


def verdict_measures(student: list[PairResult], truth: list[PairResult]) -> dict[str, Any]:
    """``object_verdicts`` of the module docstring: the student's per-object Text Faithfulness
    verdicts against the exact verdict-worded critic's, image by image (unparsed answers state none)."""
    counts: Counter[str] = Counter()
    key = task_dimensions("t2i")[0].key
    for mine, exact in zip(student, truth, strict=True):
        want = _parts(exact, key)
        if want is None:
            raise RuntimeError("the exact reference critic's answer did not parse")
        got = _parts(mine, key) or ("", "")
        true = [stated_verdicts(part) for part in want]
        for side in (0, 1):
            said, other = stated_verdicts(got[side]), true[1 - side]
            seen, own = stated_sightings(want[side]), stated_sightings(got[side])
            for name, sighting in seen.items():
                counts["sighted"] += 1
                counts["sighted_right"] += own.get(name) == sighting
                counts["sighted_wrong"] += true[side].get(name) == "wrong"
                counts["sighted_wrong_right"] += true[side].get(name) == "wrong" and own.get(name) == sighting
            for name, verdict in true[side].items():
                counts["objects"] += 1
                counts["stated"] += name in said
                counts["right"] += said.get(name) == verdict
                counts[f"true_{verdict}"] += 1
                counts[f"right_{verdict}"] += said.get(name) == verdict
                if other.get(name) not in (None, verdict):
                    counts["differs"] += 1
                    counts["other_image"] += said.get(name) == other[name]
    return {"objects": counts["objects"], "stated": _share(counts["stated"], counts["objects"]),
            "right": _share(counts["right"], counts["objects"]),
            "wrong_found": _share(counts["right_wrong"], counts["true_wrong"]),
            "drawn_kept": _share(counts["right_drawn"], counts["true_drawn"]),
            "differs": counts["differs"], "other_image": _share(counts["other_image"], counts["differs"]),
            **({"sightings_right": _share(counts["sighted_right"], counts["sighted"]),
                "sightings_right_wrong": _share(counts["sighted_wrong_right"], counts["sighted_wrong"])}
               if counts["sighted"] else {})}


def _parts(result: PairResult, key: str) -> tuple[str, str] | None:
    """One dimension's justification as its "Image A:" and "Image B:" parts; ``None`` if unreadable."""
    verdict = result.dimensions.get(key) if isinstance(result, PairwiseJudgement) else None
    return _halves(verdict.justification) if verdict else None


def _share(count: int, total: int) -> float:
    return round(count / total, 3) if total else 0.0


def compare(student: list[PairResult], truth: list[PairResult], swapped: list[PairResult], winners: list[str],
            prompts: list[str], policy: ScoringPolicy) -> dict[str, Any]:
    """The measures of the module docstring for pairs judged by the student (as given and swapped)
    and by the exact critic; ``winners`` are the pairs' true winners (A, B or tie), ``prompts``
    their requests."""
    keys = [d.key for d in task_dimensions("t2i")]
    per_dim: dict[str, Counter[str]] = {k: Counter() for k in keys}
    kinds: Counter[str] = Counter()
    verdicts: dict[str, Counter[str]] = {"student": Counter(), "truth": Counter()}
    swap_same = swap_images = 0
    named: Counter[str] = Counter()
    decided_by: Counter[str] = Counter()
    for mine, exact, flipped, winner, prompt in zip(student, truth, swapped, winners, prompts, strict=True):
        got, want = read_pair(mine), read_pair(exact)
        if want is None:
            raise RuntimeError("the exact reference critic's answer did not parse")
        decisive = winner in ("A", "B")
        verdicts["truth"][winner] += 1
        if decisive:
            decided_by["+".join(k for k in keys if _scores(exact, k)[0] != _scores(exact, k)[1]) or "none"] += 1
        if got is None:
            verdicts["student"]["unparsed"] += 1
            if decisive:
                kinds["format"] += 1
            continue
        _count_named(named, prompt, got.get(keys[0]), want.get(keys[0]))
        named["request_copied"] += request_analysis(mine.raw) == request_analysis(exact.raw)  # type: ignore[union-attr]
        said = policy.pairwise_winner(mine)  # type: ignore[arg-type]
        verdicts["student"][said] += 1
        perceived = True
        for key in keys:
            counts, true_sets, mine_sets = per_dim[key], want.get(key), got.get(key)
            if true_sets is None:
                continue
            counts["pairs"] += 1
            counts["truth_same_both"] += true_sets[0] == true_sets[1]
            counts["truth_equal_scores"] += _equal_scores(exact, key)
            counts["equal_scores"] += _equal_scores(mine, key)
            _score_measures(counts, _scores(mine, key), _scores(exact, key))
            if mine_sets is None:
                counts["unreadable"] += 1
                perceived = False
                continue
            counts["same_both"] += mine_sets[0] == mine_sets[1]
            for side in (0, 1):
                counts["exact"] += mine_sets[side] == true_sets[side]
                counts["exact_other"] += mine_sets[side] == true_sets[1 - side]
                counts["true_clauses"] += len(true_sets[side])
                counts["said_clauses"] += len(mine_sets[side])
                counts["hits"] += len(mine_sets[side] & true_sets[side])
            perceived &= mine_sets == true_sets
        back = read_pair(flipped)
        key = keys[0]
        if back is not None and back.get(key) and got.get(key):
            swap_images += 2
            swap_same += (got[key][0] == back[key][1]) + (got[key][1] == back[key][0])  # type: ignore[index]
        if decisive:
            kinds["right" if said == winner else "perception" if not perceived else "comparison"] += 1
    dims = {}
    for key, c in per_dim.items():
        pairs = c["pairs"]
        dims[key] = {
            "pairs": pairs, "unreadable": c["unreadable"], "exact": _share(c["exact"], 2 * pairs),
            "exact_other": _share(c["exact_other"], 2 * pairs), "recall": _share(c["hits"], c["true_clauses"]),
            "precision": _share(c["hits"], c["said_clauses"]), "same_both": _share(c["same_both"], pairs),
            "truth_same_both": _share(c["truth_same_both"], pairs), "equal_scores": _share(c["equal_scores"], pairs),
            "truth_equal_scores": _share(c["truth_equal_scores"], pairs),
            "flag_right": _share(c["flag_right"], c["flag_images"]),
            "flag_prior": _share(max(c["true_flags"], c["flag_images"] - c["true_flags"]), c["flag_images"]),
            "truth_differs": c["truth_differs"], "order_right": _share(c["order_right"], c["truth_differs"]),
        }
    return {"pairs": len(student), "decisive": sum(w in ("A", "B") for w in winners), "decided_by": dict(decided_by),
            "failure": dict(kinds),
            "verdicts": {k: dict(v) for k, v in verdicts.items()}, "dimensions": dims,
            "swap_same": _share(swap_same, swap_images),
            "request_copied": _share(named["request_copied"], len(student) - verdicts["student"]["unparsed"]),
            "requested_objects_named": {"student": _share(named["student_requested"], named["student"]),
                                        "truth": _share(named["truth_requested"], named["truth"])}}


def _count_named(counts: Counter[str], prompt: str, mine: tuple[Clauses, Clauses] | None,
                 true: tuple[Clauses, Clauses] | None) -> None:
    """Count the objects the Text Faithfulness clauses name, and those the request asks for."""
    asked = {(o.colour, o.shape) for o in parse_prompt(prompt).objects}
    for who, sets in (("student", mine), ("truth", true)):
        for named in named_objects(sets[0] | sets[1]) if sets else []:
            counts[who] += 1
            counts[f"{who}_requested"] += named in asked


def _equal_scores(result: PairResult, key: str) -> bool:
    a, b = _scores(result, key)
    return a is not None and a == b


def _scores(result: PairResult, key: str) -> tuple[float | None, float | None]:
    verdict = result.dimensions.get(key)  # type: ignore[union-attr]
    return (verdict.score_a, verdict.score_b) if verdict is not None else (None, None)


def _score_measures(counts: Counter[str], mine: tuple[float | None, float | None],
                    true: tuple[float | None, float | None]) -> None:
    """Count the flags (an image scored below the top, 4) and, where the true scores differ, the
    student's order of the two images."""
    if None in true:
        return
    answered = None not in mine  # N/A where the truth scores counts wrong
    for side in (0, 1):
        counts["flag_images"] += 1
        counts["true_flags"] += true[side] < 4  # type: ignore[operator]
        counts["flag_right"] += answered and (mine[side] < 4) == (true[side] < 4)  # type: ignore[operator]
    if true[0] != true[1]:
        counts["truth_differs"] += 1
        counts["order_right"] += answered and mine[0] != mine[1] and (mine[0] > mine[1]) == (true[0] > true[1])  # type: ignore[operator]


def _show(count: int, student: list[PairResult], truth: list[PairResult], requests: list[PairRequest]) -> None:
    key = task_dimensions("t2i")[0].key
    for mine, exact, request in list(zip(student, truth, requests))[:count]:
        print(f"\n== {request.prompt}")
        for who, result in (("truth", exact), ("student", mine)):
            verdict = result.dimensions.get(key) if isinstance(result, PairwiseJudgement) else None
            text = verdict.justification if verdict else getattr(result, "reason", "?")
            scores = f"{verdict.score_a} / {verdict.score_b}" if verdict else "-"
            print(f"  {who:8s} [{scores}] {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic", required=True, help="the student's folder (a `parrot distill` critic/)")
    parser.add_argument("--run-dir", required=True, help="the run folder whose training requests are held out")
    parser.add_argument("--pairs", type=int, default=40, help="held-out pairs (ties in truth included, not scored)")
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--show", type=int, default=0, help="print the first N pairs' Text Faithfulness")
    parser.add_argument("--verdicts", action="store_true",
                        help="a student of a verdict-worded teacher (parrot_shapes --teacher-verdicts): the truth is "
                             "worded so too, and its per-object verdicts are read (object_verdicts)")
    parser.add_argument("--sightings", action="store_true",
                        help="with --verdicts: a student of parrot_shapes --teacher-sightings; the truth says what is "
                             "seen in each object's place too, and the student's sightings are scored")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heldout, _ = unseen_heldout(args.pairs, Path(args.run_dir))
    requests = [p.to_request() for p in heldout]
    swapped = [PairRequest(r.task, r.prompt, r.image_b, r.image_a, r.source_image) for r in requests]
    student = TransformersCritic(model=args.critic, temperature=0, max_new_tokens=args.max_new_tokens, batch_size=8,
                                 parse_retries=0)
    truth = ShapesCritic(perception_noise=0.0, object_verdicts=args.verdicts,
                         object_sightings=args.sightings).judge(requests)
    mine, flipped = student.judge(requests), student.judge(swapped)
    row = {"critic": args.critic, **compare(mine, truth, flipped, [str(p.truth) for p in heldout],
                                            [p.prompt for p in heldout], ScoringPolicy())}
    if args.verdicts:
        row["object_verdicts"] = verdict_measures(mine, truth)
    if args.show:
        _show(args.show, mine, truth, requests)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
