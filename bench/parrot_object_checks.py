"""How a shapes VLM base checks one requested object at a time, threshold-free.

Asks each ``--base`` folder (``parrot pretrain``'s ``model/``, never modified) the held-out
one-object checks ``parrot pretrain --object-checks`` is scored on (``pretrain.heldout_object_checks``:
every faulty object of the held-out pairs' images and as many right ones), laid out with the request
before the image (``--request-first``, as the base was trained) or after it. One JSON row per base:
the greedy answers' scores (``flags``, ``balanced``: 0.5 for any constant answer) and the
separation of the first answer token's "no" - "yes" logit (``auc``: 0.5 blind, 1 perfect; per fault
kind, the share of faulty objects leaning further to "no" than the median right one). A base that
answers "yes" to everything can still separate: the AUC reads what greedy decoding hides. With
``--drawn N`` the checks are instead N fresh ones drawn as training draws them (half faulty, held-out
requests left out), which tells a base that never fitted its training task from one that fitted it
and does not carry it to the held-out images. With ``--verdicts`` each object is read from a verdict
list instead (``parrot pretrain --object-verdicts``): the "is wrong" - "is drawn" logit right after the
object's name, the verdicts before it as the truth has them (``pretrain.verdict_leaning``); with
``--sightings`` too (``--verdict-sightings``), given the true sighting, and as ``sighted_verdicts`` after the
model's own greedy sighting (``pretrain.own_sightings``).

    python -m bench.parrot_object_checks --base runs/objects-first/model --request-first --eval-images 400
    python -m bench.parrot_object_checks --base runs/objects-first-2/model --request-first --drawn 230
    python -m bench.parrot_object_checks --base runs/verdicts-first/model --request-first --verdicts
    python -m bench.parrot_object_checks --base runs/sightings-first/model --request-first --verdicts --sightings
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time

import torch
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from studio.parrot import pretrain
from studio.parrot.captions import heldout_requests, object_checks
from studio.parrot.pairs import HELDOUT_SEED


def main(argv: list[str] | None = None) -> None:
    """Print one JSON row per ``--base``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", nargs="+", required=True, help="base folders (parrot pretrain's model/)")
    parser.add_argument("--request-first", action="store_true", help="the request's line before the image")
    parser.add_argument("--eval-images", type=int, default=400, help="held-out pair images whose objects are asked")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--drawn", type=int, default=0,
                        help="score N fresh checks drawn as training draws them (half faulty) instead")
    parser.add_argument("--exclude-heldout", type=int, default=2000,
                        help="--drawn: requests of the bench's held-out pairs never drawn")
    parser.add_argument("--verdicts", action="store_true",
                        help="read each object's verdict from a verdict list (parrot pretrain --object-verdicts)")
    parser.add_argument("--described", action="store_true",
                        help="--verdicts: after the image's description line (parrot pretrain --check-describe)")
    parser.add_argument("--sightings", action="store_true",
                        help="--verdicts: with each object's sighting (parrot pretrain --verdict-sightings)")
    args = parser.parse_args(argv)
    if args.drawn:
        fresh = object_checks(random.Random(12345), size=args.image_size, faithful=0.5,
                              exclude=heldout_requests(args.exclude_heldout, HELDOUT_SEED))
        checks = list(itertools.islice(fresh, args.drawn))
    else:
        checks = pretrain.heldout_object_checks(args.eval_images, args.image_size)
    for folder in args.base:
        started = time.perf_counter()
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        processor = load_processor(folder)
        report = (pretrain.check_object_verdicts(model, processor, checks, request_first=args.request_first,
                                                 described=args.described, sighted=args.sightings)
                  if args.verdicts else
                  pretrain.check_objects(model, processor, checks, request_first=args.request_first))
        print(json.dumps({"base": folder, "request_first": args.request_first,
                          "checks": f"{args.drawn} drawn" if args.drawn else "held out", **report,
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
