"""Throughput of the OpenAI-compatible critic against a local server with a fixed latency, per image size.

The stub server (``tests/openai_stub.py``) runs in its own processes (``--stub-workers`` sharing
one port, as a real server answers requests in parallel; a single Python process queues each
wave of 32 requests behind ~0.3 ms of its own work per request) and answers every chat request
``--latency-ms`` after it arrives with a valid critique, so the ideal throughput is
concurrency / latency (32 / 1 s = 32 requests/s). The client goes the full path: input checks, prompt building,
PNG data-URI encoding, HTTP, parsing. Every request carries an image of its own (a new object, so
no encoding is reused), of each ``--sizes`` in turn: photo-like content (a smooth random colour
field with sensor-like noise, which compresses about as badly as a photo) or, with
``--content drawn``, a shape on a plain ground.

Two fractions of the ideal are printed per run. The *held* fraction is the rate the client
sustains once its first wave is out: the answers after the first ``concurrency`` over the time
from the ``concurrency``-th answer to the last. The *whole-run* fraction also pays the start-up:
the first wave's images must be encoded before anything is sent, a fixed cost that a run of
``--requests`` requests spreads thinly or not (the start-up is printed, in ms). The floor applies
to the held fraction, what a long critique job sees. Also printed, per size, as medians of the
repeats: the client CPU milliseconds per request (this process only; less sensitive to a busy
machine than the throughput) and the PNG bytes per image. Exits 1 when a size's median held
fraction is below ``--floor`` or any critique failed.

Run from the repository root:  python -m bench.critic_http [--sizes 64,512,1024] [--latency-ms 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from models.critic.chat import COMPRESSIONS, png_data_uri
from models.critic.critic_openai import OpenAICritic
from models.types import CritiqueRequest

ROOT = Path(__file__).resolve().parents[1]


def start_stub(latency_ms: float, workers: int = 2) -> tuple[subprocess.Popen[str], str]:
    """Start the stub server (``workers`` processes on one port) as a child; return it and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_stub", "--latency-ms", str(latency_ms), "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        sys.exit(f"The stub server did not start (exit code {process.wait()}).")
    return process, json.loads(line)["url"]


def photo_like(size: int, seed: int) -> np.ndarray:
    """A ``size`` x ``size`` RGB array that compresses like a photo: a smooth random colour field
    (an 8 x 8 grid upsampled bicubically) plus Gaussian noise of 6 levels, as a camera sensor adds."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC)
    noisy = np.asarray(field, dtype=np.int16) + rng.normal(0, 6, (size, size, 3)).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def drawn(size: int, i: int) -> Image.Image:
    """A coloured ellipse on a plain ground (the small renders of the shapes world)."""
    image = Image.new("RGB", (size, size), ((37 * i) % 256, 200, 230))
    ImageDraw.Draw(image).ellipse((size // 10 + i % 20, size // 8, size - size // 10, size - size // 7),
                                  fill=(220, (53 * i) % 256, 40))
    return image


def make_requests(n: int, size: int = 96, content: str = "drawn") -> list[CritiqueRequest]:
    """``n`` t2i requests, each with an image object of its own. Photo-like images cycle through
    8 generated fields (generating one per request would take longer than the benchmark)."""
    fields = [photo_like(size, seed) for seed in range(min(n, 8))] if content == "photo" else []
    requests = []
    for i in range(n):
        image = Image.fromarray(fields[i % len(fields)], "RGB") if fields else drawn(size, i)
        requests.append(CritiqueRequest(task="t2i", prompt=f"a red circle on a blue ground, variant {i}", image=image))
    return requests


class ArrivalClock:
    """A critic's completer that notes when each answer arrives, in seconds after the call began."""

    def __init__(self, completer: Any) -> None:
        self.completer = completer
        self.arrivals: list[float] = []

    def complete_iter(self, prompts: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """The wrapped completer's answers as they arrive, each arrival time noted."""
        self.arrivals = []
        started = time.perf_counter()
        for answer in self.completer.complete_iter(prompts):
            self.arrivals.append(time.perf_counter() - started)
            yield answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.completer, name)


@dataclass
class Run:
    """One timed run: wall and client CPU seconds, failures, answer arrival times (sorted)."""

    wall: float
    cpu: float
    failed: int
    arrivals: list[float]

    def held_rate(self, concurrency: int) -> float:
        """Requests per second from the ``concurrency``-th answer to the last."""
        return (len(self.arrivals) - concurrency) / (self.arrivals[-1] - self.arrivals[concurrency - 1])


def run_once(critic: OpenAICritic, requests: list[CritiqueRequest]) -> Run:
    """Critique ``requests`` through ``critic`` (its completer an ``ArrivalClock``); return the run."""
    clock = critic.completer
    assert isinstance(clock, ArrivalClock)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = critic.critique(requests)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Run(wall, cpu, sum(not r.ok for r in results), sorted(clock.arrivals))


def measure_size(critics: dict[str, OpenAICritic], args: argparse.Namespace, size: int) -> list[dict[str, object]]:
    """Warm up each client, then time ``args.repeats`` runs of ``args.requests`` critiques at
    ``size`` px per PNG compression, alternating them run by run (A, B, A, B)."""
    ideal = args.concurrency / (args.latency_ms / 1000)
    for critic in critics.values():
        run_once(critic, make_requests(args.concurrency, size, args.content))  # warm-up: connections, threads
    runs: dict[str, list[Run]] = {name: [] for name in critics}
    for _ in range(args.repeats):
        for name, critic in critics.items():
            requests = make_requests(args.requests, size, args.content)  # fresh objects: nothing cached
            runs[name].append(run_once(critic, requests))
            del requests
    sample = make_requests(1, size, args.content)[0].image
    results = []
    for name, mode in runs.items():
        png_bytes = len(png_data_uri(sample, name).split(",", 1)[1]) * 3 // 4  # type: ignore[arg-type]
        for i, run in enumerate(mode, start=1):
            print(f"{size} px, compression {name}, run {i}: {args.requests} critiques in {run.wall:.3f} s, "
                  f"held fraction {run.held_rate(args.concurrency) / ideal:.3f}, whole-run fraction "
                  f"{args.requests / run.wall / ideal:.3f}, start-up {_startup_ms(run, args):.0f} ms, "
                  f"client CPU {run.cpu / args.requests * 1000:.2f} ms per request, {run.failed} failed")
        held = statistics.median(run.held_rate(args.concurrency) for run in mode) / ideal
        whole = statistics.median(args.requests / run.wall for run in mode) / ideal
        startup_ms = statistics.median(_startup_ms(run, args) for run in mode)
        cpu_ms = statistics.median(run.cpu / args.requests for run in mode) * 1000
        print(f"{size} px, compression {name}: median held fraction of ideal {held:.3f}, whole-run {whole:.3f}, "
              f"start-up {startup_ms:.0f} ms; client CPU {cpu_ms:.2f} ms per request; "
              f"PNG {png_bytes / 1e6:.3f} MB per image")
        results.append({"size": size, "compression": name, "held_fraction": round(held, 3),
                        "whole_run_fraction": round(whole, 3), "startup_ms": round(startup_ms),
                        "client_cpu_ms_per_request": round(cpu_ms, 3), "png_bytes": png_bytes,
                        "failures": sum(run.failed for run in mode)})
    return results


def _startup_ms(run: Run, args: argparse.Namespace) -> float:
    """How much later than one latency the first wave was all answered: the first wave's encoding."""
    return (run.arrivals[args.concurrency - 1] - args.latency_ms / 1000) * 1000


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512,1024", help="image sizes in px, comma-separated (default 64,512,1024)")
    parser.add_argument("--content", choices=("photo", "drawn"), default="photo", help="image content (default photo)")
    parser.add_argument("--compression", default="none",
                        help=f"PNG compression(s) of the client, comma-separated, from {list(COMPRESSIONS)}; "
                             "two are measured in alternating runs (default none, the client's default)")
    parser.add_argument("--requests", type=int, default=256, help="critiques per run (default 256)")
    parser.add_argument("--concurrency", type=int, default=32, help="client concurrency limit (default 32)")
    parser.add_argument("--latency-ms", type=float, default=1000.0,
                        help="server latency per request (default 1000: a critic writes for seconds)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size; the median is reported (default 3)")
    parser.add_argument("--floor", type=float, default=0.95, help="least fraction of ideal that passes (default 0.95)")
    parser.add_argument("--stub-workers", type=int, default=2, help="stub server processes (default 2)")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "latency_ms", "repeats", "stub_workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0; got {getattr(args, name)}.")
    if args.requests < 2 * args.concurrency:
        parser.error(f"--requests must be at least twice --concurrency ({2 * args.concurrency}) to measure a held "
                     f"rate after the first wave; got {args.requests}.")
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be whole numbers separated by commas; got {args.sizes!r}.")
    if not sizes or min(sizes) < 16:
        parser.error(f"--sizes must each be at least 16 px; got {args.sizes!r}.")
    compressions = args.compression.split(",")
    if not set(compressions) <= set(COMPRESSIONS) or len(set(compressions)) != len(compressions):
        parser.error(f"--compression must name distinct values of {list(COMPRESSIONS)}; got {args.compression!r}.")
    logging.basicConfig(level=logging.WARNING)

    stub, url = start_stub(args.latency_ms, args.stub_workers)
    critics = {name: OpenAICritic(base_url=url, concurrency=args.concurrency, image_compression=name)
               for name in compressions}
    for critic in critics.values():
        critic.completer = ArrivalClock(critic.completer)
    try:
        for critic in critics.values():
            critic.health_check()
        results = [result for size in sizes for result in measure_size(critics, args, size)]
    finally:
        for critic in critics.values():
            critic.close()
        stub.terminate()
        stub.wait()

    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_s = server_cpu.ru_utime + server_cpu.ru_stime  # the stub, start-up included
    failures = sum(int(r["failures"]) for r in results)  # type: ignore[call-overload]
    worst = min(float(r["held_fraction"]) for r in results)  # type: ignore[arg-type]
    print(f"ideal {args.concurrency / (args.latency_ms / 1000):.1f} req/s (concurrency {args.concurrency} / latency "
          f"{args.latency_ms:g} ms); lowest median held fraction {worst:.3f} (floor {args.floor:g}); "
          f"stub server CPU {server_cpu_s:.2f} s in all")
    passed = worst >= args.floor and failures == 0
    print(json.dumps({
        "bench": "critic_http", "requests": args.requests, "concurrency": args.concurrency,
        "latency_ms": args.latency_ms, "repeats": args.repeats, "stub_workers": args.stub_workers,
        "content": args.content, "results": results, "server_cpu_s": round(server_cpu_s, 2), "failures": failures,
        "floor": args.floor, "passed": passed,
    }))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
