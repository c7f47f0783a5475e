"""Time the engine spends outside model calls in a Generate-Critique-Refine round.

Stand-in models sleep a fixed time per call (``--model-ms``) and draw ``--size`` px images, so
everything else in a round is engine, store and event work: PNG encoding and hashing, SQLite
writes, scoring, event objects. Per round: ``overhead = round time - time inside model calls``,
and the share is ``overhead / round time``. Also measured: how long after a model call returns
its event reaches the consumer (the store writes on that path), and the latency of single store
writes. Repeats ``--sessions`` sessions and reports medians as one JSON line. Exits 1 when the
median share is above ``--floor`` (default 5%).

Run from the repository root:  python -m bench.loop_overhead [--sessions 7] [--size 128] [--model-ms 100]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from studio.config import LoopSettings
from studio.loop import CritiqueReady, ImageReady, RefineRequest, RoundStarted, Stopped, refine
from studio.store import SessionStore
from tests.studio_fakes import ScriptedCritic, SquaresGenerator, make_critique, make_services, poor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=7, help="sessions to run (median over their rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per session")
    parser.add_argument("--candidates", type=int, default=2, help="images per round (best-of-N)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (shapes world: 64 or 128)")
    parser.add_argument("--model-ms", type=float, default=100.0, help="sleep per generator and per critic call")
    parser.add_argument("--floor", type=float, default=0.05, help="largest acceptable overhead share")
    return parser.parse_args(argv)


def run_session(folder: Path, args: argparse.Namespace) -> tuple[list[float], list[float], list[float]]:
    """One session: per-round overhead shares and seconds, and event delays after model calls."""
    generator = SquaresGenerator(size=args.size, delay_s=args.model_ms / 1000)
    critic = ScriptedCritic([poor(1.5 + 0.2 * i) for i in range(args.rounds * args.candidates)],
                            delay_s=args.model_ms / 1000)
    services = make_services(folder, critic, generator)
    settings = LoopSettings(max_rounds=args.rounds, candidates=args.candidates, plateau_rounds=0)
    shares, overheads, delays = [], [], []
    round_start = model_before = None
    for event in refine(RefineRequest("t2i", "a red square on grey"), services, settings):
        now = time.perf_counter()
        if isinstance(event, ImageReady) and event.candidate == 0:
            delays.append(now - generator.returned_at)
        elif isinstance(event, CritiqueReady) and event.candidate == 0:
            delays.append(now - critic.returned_at)
        if isinstance(event, (RoundStarted, Stopped)):
            if round_start is not None:
                total = now - round_start
                overhead = total - (generator.seconds + critic.seconds - model_before)
                shares.append(overhead / total)
                overheads.append(overhead)
            round_start, model_before = now, generator.seconds + critic.seconds
    services.store.close()
    return shares, overheads, delays


def write_latency(folder: Path, size: int, repeats: int = 50) -> dict[str, float]:
    """Median milliseconds of single store writes: an image file + row, a critique, an update."""
    store = SessionStore(folder / "writes.db")
    sid = store.create_session(task="t2i", prompt="p", settings={})
    critique = make_critique("t2i", poor())
    images = [SquaresGenerator(size=size).draw(f"prompt {i}", i) for i in range(repeats)]

    def median_ms(call) -> float:
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times) * 1000, 3)

    image_ids: list[int] = []
    result = {
        "save_image_ms": median_ms(lambda i: image_ids.append(store.save_image(images[i], role="candidate", session_id=sid).id)),
        "save_critique_ms": median_ms(lambda i: store.save_critique(
            critique, task="t2i", prompt="p", image_id=image_ids[i], critic_name="c", score=0.3, session_id=sid)),
        "update_session_ms": median_ms(lambda i: store.update_session(sid, best_score=i / repeats)),
    }
    store.close()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    Image.init()
    shares, overheads, delays = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.sessions):
            s, o, d = run_session(Path(tmp) / f"s{n}", args)
            shares += s
            overheads += o
            delays += d
        writes = write_latency(Path(tmp), args.size)
    share = statistics.median(shares)
    report = {
        "bench": "loop_overhead",
        "rounds": len(shares),
        "size": args.size,
        "candidates": args.candidates,
        "model_ms": args.model_ms,
        "overhead_share_median": round(share, 4),
        "overhead_share_max": round(max(shares), 4),
        "overhead_ms_median": round(statistics.median(overheads) * 1000, 2),
        "event_delay_ms_median": round(statistics.median(delays) * 1000, 2),
        "event_delay_ms_max": round(max(delays) * 1000, 2),
        **writes,
        "floor": args.floor,
        "ok": share <= args.floor,
    }
    print(json.dumps(report))
    return 0 if share <= args.floor else 1


if __name__ == "__main__":
    sys.exit(main())
