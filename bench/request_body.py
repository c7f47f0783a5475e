"""Client CPU of one critic request body: data URIs through the JSON writer vs spliced in.

Builds the body of a pointwise t2i request (the shipped prompt, one photo-like image of
``bench.critic_http``) two ways, alternating request by request (A, B, A, B): ``writer`` puts
the data URI into the messages and serialises everything with ``orjson`` (the client before);
``spliced`` is ``models.critic.chat.openai_request_body`` (the client now). Each image is a new
object, so both pay the PNG encoding; the difference is the JSON writer's pass over the URI.
Prints, per size, the median milliseconds of process CPU per body and their ratio, checks that
both bodies hold the same JSON, then prints one JSON line.

Run from the repository root:  python -m bench.request_body [--sizes 64,512,1024] [--bodies 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import orjson
from PIL import Image

from bench.critic_http import photo_like
from models.critic.chat import openai_request_body, to_openai_messages
from models.critic.prompts import build_pointwise_prompt
from models.types import CritiqueRequest

FIELDS = {"model": "critic", "temperature": 0.1, "max_tokens": 2048}


def writer_body(image: Image.Image) -> bytes:
    """The body with the data URI serialised by the JSON writer."""
    prompt = build_pointwise_prompt(CritiqueRequest("t2i", "a market at dusk", image))
    return orjson.dumps({**FIELDS, "messages": to_openai_messages(prompt)})


def spliced_body(image: Image.Image) -> bytes:
    """The body with the data URI spliced in (``openai_request_body``)."""
    return openai_request_body(build_pointwise_prompt(CritiqueRequest("t2i", "a market at dusk", image)), FIELDS)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code (1 when the two bodies differ)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512,1024", help="image sizes in px (default 64,512,1024)")
    parser.add_argument("--bodies", type=int, default=16, help="bodies per size and method (default 16)")
    args = parser.parse_args(argv)
    if args.bodies < 1:
        parser.error(f"--bodies must be at least 1; got {args.bodies}.")
    methods: dict[str, Callable[[Image.Image], bytes]] = {"writer": writer_body, "spliced": spliced_body}
    results, same = [], True
    for size in (int(s) for s in args.sizes.split(",")):
        pixels = photo_like(size, seed=size)
        cpu: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.bodies):
            bodies = {}
            for name, build in methods.items():
                image = Image.fromarray(pixels, "RGB")  # a new object: no cached encoding
                started = time.process_time()
                bodies[name] = build(image)
                cpu[name].append((time.process_time() - started) * 1000)
            same = same and orjson.loads(bodies["writer"]) == orjson.loads(bodies["spliced"])
        medians = {name: statistics.median(values) for name, values in cpu.items()}
        print(f"{size} px: writer {medians['writer']:.2f} ms, spliced {medians['spliced']:.2f} ms per body "
              f"({medians['spliced'] / medians['writer']:.2f}x)")
        results.append({"size": size, **{f"{name}_ms": round(ms, 3) for name, ms in medians.items()}})
    print(f"bodies hold the same JSON: {same}")
    print(json.dumps({"bench": "request_body", "bodies": args.bodies, "results": results, "same_json": same}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
