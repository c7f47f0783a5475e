"""Long-run benchmark on the shapes world (CPU): many sessions in a row against one app, with the
app's memory and its temporary folder measured as they go.

Each session is a new ``gradio_client.Client`` (a new browser session, as a new visitor is) that
runs one ``refine`` to its end and opens it (``history_open``, as the History tab does). Every
``--every`` sessions one line is printed: the sessions done, the app's RSS (MB), the files and MB
in its Gradio temporary folder, and the seconds so far. Each setting in ``--settings`` (app flags,
one string each) runs as its own app, one after the other; the last line per setting gives the
RSS growth per session over the second half of the run (KB per session: what still grows once
the start-up allocations are done). The app runs with ``GRADIO_TEMP_DIR`` set to a fresh folder,
so the folder sizes are the app's alone.

Usage: ``python bench/long_run.py [--sessions 200] [--every 25] [--rounds 2]
[--settings "--state-sessions 10000 --temp-max-minutes 600" "--state-sessions 50 --temp-max-minutes 0.5"]``
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import psutil
from gradio_client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio import grammar  # noqa: E402
from tests.ui_helpers import app_env, start_app, stop_app  # noqa: E402


def folder_size(folder: Path) -> tuple[int, float]:
    """Files under ``folder`` and their size in MB."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def one_setting(flags: list[str], sessions: int, every: int, rounds: int) -> dict[str, object]:
    """Run ``sessions`` sessions against a fresh app started with ``flags``; print a line every
    ``every`` sessions; return the summary."""
    work = Path(tempfile.mkdtemp(prefix="long-run-"))
    cache = work / "gradio"
    env = {**app_env(), "GRADIO_TEMP_DIR": str(cache)}
    app = start_app(work / "store", *flags, env=env)
    process = psutil.Process(app.process.pid)
    prompts = grammar.example_prompts()
    points: list[tuple[int, float]] = []
    started = time.monotonic()
    try:
        for done in range(1, sessions + 1):
            client = Client(app.url, verbose=False, download_files=False)
            session_id = client.predict("t2i", prompts[done % len(prompts)], None, rounds, 1, done, "fixed",
                                        api_name="/refine")[0]
            client.predict(session_id, api_name="/history_open")
            client.close()
            if done % every == 0 or done == 1:
                rss = process.memory_info().rss / 1e6
                files, mb = folder_size(cache)
                points.append((done, rss))
                print(json.dumps({"flags": " ".join(flags), "sessions": done, "rss_mb": round(rss, 1),
                                  "temp_files": files, "temp_mb": round(mb, 2),
                                  "elapsed_s": round(time.monotonic() - started, 1)}), flush=True)
    finally:
        stop_app(app)
    half = [p for p in points if p[0] >= sessions // 2]
    slope = (half[-1][1] - half[0][1]) * 1000 / (half[-1][0] - half[0][0]) if len(half) > 1 else None
    return {"flags": " ".join(flags), "sessions": sessions, "rss_start_mb": round(points[0][1], 1),
            "rss_end_mb": round(points[-1][1], 1),
            "rss_kb_per_session_second_half": None if slope is None else round(slope, 1),
            "temp_files_end": folder_size(cache)[0], "load_avg_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    """Parse the flags, run each setting, print one summary line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2, help="max rounds per refine")
    parser.add_argument("--settings", nargs="+", default=["--state-sessions 10000 --temp-max-minutes 600",
                                                          "--state-sessions 50 --temp-max-minutes 0.5"])
    args = parser.parse_args()
    for setting in args.settings:
        print(json.dumps({"summary": one_setting(shlex.split(setting), args.sessions, args.every, args.rounds)}),
              flush=True)


if __name__ == "__main__":
    main()
