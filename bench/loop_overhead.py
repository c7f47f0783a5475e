"""Time the engine spends outside model calls in a Generate-Critique-Refine round.

Every model call goes through a timing wrapper, so everything else in a round is engine, store
and event work: pixel hashing, SQLite writes, scoring, event objects, waiting for the PNG files
(written on a worker thread while the critic runs). Per round, ``overhead = round time - time
inside model calls`` and the share is ``overhead / round time``. Also measured: how long after a
model call returns its first event reaches the consumer (the store writes on that path), and the
latency of single store writes. Reports medians over ``--sessions`` sessions as one JSON line and
exits 1 when the median share is above ``--floor`` (default 5%).

Worlds:

- ``shapes`` (default): the shapes-world reference critic (``ShapesCritic``: real protocol
  text, parser and retry loop) and the shapes renderer from the tests (always one wrong colour,
  so no session stops early), which sleeps ``--model-ms`` per call: a fixed, known model time,
  so that the share measures the engine rather than the generator's speed on a busy machine.
- ``fake``: both model calls are stand-ins that sleep ``--model-ms``.

Run from the repository root:  python -m bench.loop_overhead [--world shapes] [--size 128]
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
from typing import Any, Sequence

from studio.config import LoopSettings
from studio.loop import CritiqueReady, ImageReady, RefineRequest, RoundStarted, Stopped, refine
from studio.services import Services
from studio.store import SessionStore
from tests.studio_fakes import ScriptedCritic, ShapesRenderer, SquaresGenerator, make_critique, poor

PROMPT = {"shapes": "a red circle, a blue square and a green triangle", "fake": "a red square on grey"}


class Timed:
    """Forwards ``generate``/``critique`` to a backend after sleeping ``delay_s``, and records
    the seconds spent inside and the ``perf_counter`` time the last call returned."""

    def __init__(self, backend: Any, delay_s: float = 0.0) -> None:
        self.backend = backend
        self.delay_s = delay_s
        self.name = backend.name
        self.tasks = getattr(backend, "tasks", ())
        self.seconds = 0.0
        self.returned_at = 0.0

    def _timed(self, call: Any, *args: Any) -> Any:
        started = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        result = call(*args)
        self.returned_at = time.perf_counter()
        self.seconds += self.returned_at - started
        return result

    def generate(self, request: Any) -> Any:
        """The backend's ``generate``, timed."""
        return self._timed(self.backend.generate, request)

    def critique(self, requests: Sequence[Any]) -> Any:
        """The backend's ``critique``, timed."""
        return self._timed(self.backend.critique, requests)

    def to_config(self) -> dict[str, Any]:
        """The backend's config."""
        return self.backend.to_config()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=("shapes", "fake"), default="shapes", help="which models (see above)")
    parser.add_argument("--sessions", type=int, default=5, help="sessions to run (median over their rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per session")
    parser.add_argument("--candidates", type=int, default=2, help="images per round (best-of-N)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (shapes world: 64 or 128)")
    parser.add_argument("--model-ms", type=float, default=100.0,
                        help="sleep per stand-in model call (the generator; in the fake world the critic too)")
    parser.add_argument("--floor", type=float, default=0.05, help="largest acceptable overhead share")
    return parser.parse_args(argv)


def backends(args: argparse.Namespace) -> tuple[Timed, Timed]:
    """The timed generator and critic of the chosen world."""
    delay = args.model_ms / 1000
    if args.world == "shapes":
        from models.shapes.critic_shapes import ShapesCritic

        return Timed(ShapesRenderer(size=args.size, faulty_calls=sys.maxsize), delay), Timed(ShapesCritic())
    script = [poor(1.5 + 0.2 * i) for i in range(args.rounds * args.candidates)]
    return Timed(SquaresGenerator(size=args.size), delay), Timed(ScriptedCritic(script), delay)


def run_session(folder: Path, args: argparse.Namespace) -> tuple[list[float], list[float], list[float]]:
    """One session: per-round overhead shares and seconds, and event delays after model calls."""
    generator, critic = backends(args)
    services = Services(store=SessionStore(folder / "studio.db"), critic=critic, t2i_generator=generator)
    unreachable = {"text_faithfulness": 4.0, "physical_quality": 4.0}  # with the faulty renderer: all rounds run
    settings = LoopSettings(max_rounds=args.rounds, candidates=args.candidates, plateau_rounds=0, thresholds=unreachable)
    shares, overheads, delays = [], [], []
    round_start = model_before = None
    for event in refine(RefineRequest("t2i", PROMPT[args.world]), services, settings):
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
    """Median milliseconds of single store writes on the engine thread: an image row (pixel hash
    and a queued file write), a critique, a session update; and of writing every queued file."""
    store = SessionStore(folder / "writes.db")
    sid = store.create_session(task="t2i", prompt="p", settings={})
    critique = make_critique("t2i", poor())
    images = [SquaresGenerator(size=size).draw(f"prompt {i}", i) for i in range(2 * repeats)]  # no two alike

    def median_ms(call: Any) -> float:
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times) * 1000, 3)

    image_ids: list[int] = []

    def save_and_flush(i: int) -> None:
        image_ids.append(store.save_image(images[repeats + i], role="candidate", session_id=sid).id)
        store.flush()

    result = {
        "save_image_ms": median_ms(lambda i: image_ids.append(store.save_image(images[i], role="candidate").id)),
        "save_image_and_file_ms": median_ms(save_and_flush),
        "save_critique_ms": median_ms(lambda i: store.save_critique(
            critique, task="t2i", prompt="p", image_id=image_ids[i], critic_name="c", score=0.3, session_id=sid)),
        "update_session_ms": median_ms(lambda i: store.update_session(sid, best_score=i / repeats)),
    }
    store.close()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
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
        "world": args.world,
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
