"""Client CPU and size of the critic's lossless PNG encodings, per image size, photo-like content.

Compares, on the images of ``bench.critic_http`` (photo-like, 64/512/1024 px): Pillow's PNG
writer at level 1 (what a client written like the public scripts pays, at their default level 6
it is slower still), and the studio's two settings ``none`` and ``fast``
(``models.critic.chat.png_data_uri``). The methods run in turn, image by image (A, B, C, A, B, C),
so a load drift on a shared machine hits all of them alike. Prints, per size and method, the
median milliseconds of process CPU per image (the data URI, base64 included) and the PNG bytes,
and the ratio of each method's time to Pillow's; then one JSON line.

Run from the repository root:  python -m bench.png_encode [--sizes 64,512,1024] [--images 8]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time
from typing import Callable

from PIL import Image

from bench.critic_http import photo_like
from models.critic.chat import png_data_uri


def pillow_uri(image: Image.Image) -> str:
    """The data URI a client written like the public scripts builds (Pillow's writer, level 1)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


METHODS: dict[str, Callable[[Image.Image], str]] = {
    "pillow_level1": pillow_uri,
    "none": lambda image: png_data_uri(image, "none"),
    "fast": lambda image: png_data_uri(image, "fast"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512,1024", help="image sizes in px (default 64,512,1024)")
    parser.add_argument("--images", type=int, default=8, help="images per size, each encoded once per method (default 8)")
    args = parser.parse_args(argv)
    if args.images <= 0:
        parser.error(f"--images must be above 0; got {args.images}.")
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be whole numbers separated by commas; got {args.sizes!r}.")
    results = []
    for size in sizes:
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        sizes_bytes: dict[str, int] = {}
        for seed in range(args.images):
            image = Image.fromarray(photo_like(size, seed), "RGB")
            for name, encode in METHODS.items():  # alternate the methods image by image
                started = time.process_time()
                uri = encode(image)
                times[name].append(time.process_time() - started)
                sizes_bytes[name] = len(uri.split(",", 1)[1]) * 3 // 4
        baseline = statistics.median(times["pillow_level1"])
        for name, spent in times.items():
            ms = statistics.median(spent) * 1000
            ratio = statistics.median(spent) / baseline
            print(f"{size} px, {name}: {ms:.2f} ms CPU per image ({ratio:.2f} of Pillow's), "
                  f"PNG {sizes_bytes[name] / 1e6:.3f} MB")
            results.append({"size": size, "method": name, "cpu_ms": round(ms, 3), "ratio_to_pillow": round(ratio, 3),
                            "png_bytes": sizes_bytes[name]})
    print(json.dumps({"bench": "png_encode", "images": args.images, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
