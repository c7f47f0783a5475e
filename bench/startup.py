"""Start-up benchmark on the shapes world (CPU): how long from ``python app.py`` to the page
serving (HTTP 200 on ``/``), and from a ``refine`` call (what the Run button sends) to the first
streamed image.

Each of ``--runs`` runs starts a fresh app with an empty store. After it serves, one ``refine``
call is timed as ``cold_first_image_s`` (it may wait for the models that load in the background
while the page starts), then another as ``first_image_s`` (models loaded: what a user sees on
every later Run). ``gradio_import_s`` (a bare ``import gradio`` in a fresh interpreter, timed in
the same run) shows how much of ``serve_s`` is Gradio's own import on this machine right now.
Medians are compared with the floors (15 s and 2 s). Prints one JSON line; exits 1 when a median
is above its floor.

Usage: ``python bench/startup.py [--runs 3] [app flags...]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ui_helpers import app_env, start_app, stop_app  # noqa: E402

SERVE_FLOOR_S = 15.0
FIRST_IMAGE_FLOOR_S = 2.0
PROMPT = "a red circle and a blue square"


def first_image_s(client: Client) -> float:
    """Seconds from submitting a one-round ``refine`` to the first streamed update with an image."""
    started = time.monotonic()
    job = client.submit("t2i", PROMPT, None, 1, 1, 0, "fixed", "critic", 3.5, 3.5, 3.5, 3.5, 1, False,
                        api_name="/refine")
    for update in job:
        if update[2]:  # the "Latest image" output
            elapsed = time.monotonic() - started
            job.result()  # let the round finish before the next measurement
            return elapsed
    raise RuntimeError(f"refine streamed no image; last status: {job.outputs()[-1][1] if job.outputs() else None}")


def gradio_import_s() -> float:
    """Seconds a bare ``python -c "import gradio"`` takes now: the floor under ``serve_s`` that no
    app code can go below, measured in the same run because CPU timings here are noisy."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, env=app_env(one_thread=False))
    return time.monotonic() - started


def one_run(flags: list[str]) -> dict[str, float]:
    """Start an app, time it to serving and to the first image (cold, then warm), stop it."""
    baseline = gradio_import_s()
    store = Path(tempfile.mkdtemp(prefix="bench-startup-")) / "store"
    app = start_app(store, *flags, timeout_s=300, env=app_env(one_thread=False))
    try:
        serve = time.monotonic() - app.started
        client = Client(app.url, verbose=False)
        cold = first_image_s(client)
        warm = first_image_s(client)
    finally:
        stop_app(app)
    return {"serve_s": round(serve, 2), "gradio_import_s": round(baseline, 2), "cold_first_image_s": round(cold, 2),
            "first_image_s": round(warm, 2)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one JSON line; 1 when a median is above its floor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh app starts (default 3)")
    args, flags = parser.parse_known_args(argv)
    runs = [one_run(flags) for _ in range(args.runs)]
    medians = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
    ok = medians["serve_s"] <= SERVE_FLOOR_S and medians["first_image_s"] <= FIRST_IMAGE_FLOOR_S
    print(json.dumps({
        "bench": "startup", **medians, "floors": {"serve_s": SERVE_FLOOR_S, "first_image_s": FIRST_IMAGE_FLOOR_S},
        "ok": ok, "runs": runs, "flags": flags, "load_avg_1m": round(os.getloadavg()[0], 2),
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
