"""Throughput of the OpenAI-compatible critic against a local server with a fixed latency.

The stub server (``tests/openai_stub.py``) runs in its own processes (``--stub-workers`` sharing
one port, as a real server answers requests in parallel; a single Python process queues each
wave of 32 requests behind ~0.3 ms of its own work per request) and answers every chat request
``--latency-ms`` after it arrives with a valid critique, so the ideal throughput is
concurrency / latency (32 / 0.1 s = 320 requests/s). The client goes the full path: input checks, prompt building,
PNG data-URI encoding, HTTP, parsing. Prints, for each run and as the median of the repeats, the
throughput as a fraction of the ideal and the client CPU milliseconds per request (this process
only; less sensitive to a busy machine than the throughput). Exits 1 when the median fraction is
below ``--floor`` or any critique failed.

Run from the repository root:  python -m bench.critic_http [--requests 512] [--concurrency 32]
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
from pathlib import Path

from PIL import Image, ImageDraw

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


def make_requests(n: int, size: int = 96) -> list[CritiqueRequest]:
    """``n`` t2i requests, each with a small drawn image (a coloured shape on a plain ground)."""
    requests = []
    for i in range(n):
        image = Image.new("RGB", (size, size), ((37 * i) % 256, 200, 230))
        ImageDraw.Draw(image).ellipse((10 + i % 20, 12, size - 10, size - 14), fill=(220, (53 * i) % 256, 40))
        requests.append(CritiqueRequest(task="t2i", prompt=f"a red circle on a blue ground, variant {i}", image=image))
    return requests


def run_once(critic: OpenAICritic, requests: list[CritiqueRequest]) -> tuple[float, float, int]:
    """Critique ``requests``; return wall seconds, client CPU seconds and the number of failures."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = critic.critique(requests)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, sum(not r.ok for r in results)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512, help="critiques per run (default 512)")
    parser.add_argument("--concurrency", type=int, default=32, help="client concurrency limit (default 32)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="server latency per request (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported (default 3)")
    parser.add_argument("--floor", type=float, default=0.9, help="least fraction of ideal that passes (default 0.9)")
    parser.add_argument("--stub-workers", type=int, default=2, help="stub server processes (default 2)")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "latency_ms", "repeats", "stub_workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0; got {getattr(args, name)}.")
    logging.basicConfig(level=logging.WARNING)

    stub, url = start_stub(args.latency_ms, args.stub_workers)
    critic = OpenAICritic(base_url=url, concurrency=args.concurrency)
    try:
        critic.health_check()
        run_once(critic, make_requests(args.concurrency))  # warm-up: opens the connections
        requests = make_requests(args.requests)
        runs = [run_once(critic, requests) for _ in range(args.repeats)]
    finally:
        critic.close()
        stub.terminate()
        stub.wait()

    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_s = server_cpu.ru_utime + server_cpu.ru_stime  # the stub, start-up included
    ideal = args.concurrency / (args.latency_ms / 1000)
    throughputs = [args.requests / wall for wall, _, _ in runs]
    throughput = statistics.median(throughputs)
    cpu_per_request = statistics.median(cpu / args.requests for _, cpu, _ in runs)
    failures = sum(f for _, _, f in runs)
    fraction = throughput / ideal
    for i, (wall, cpu, failed) in enumerate(runs, start=1):
        print(f"run {i}: {args.requests} critiques in {wall:.3f} s = {args.requests / wall:.1f} req/s, "
              f"fraction {args.requests / wall / ideal:.3f}, client CPU {cpu / args.requests * 1000:.2f} ms "
              f"per request, {failed} failed")
    print(f"median throughput {throughput:.1f} req/s; ideal {ideal:.1f} req/s "
          f"(concurrency {args.concurrency} / latency {args.latency_ms:g} ms); fraction {fraction:.3f}; "
          f"client CPU {cpu_per_request * 1000:.2f} ms per request; stub server CPU {server_cpu_s:.2f} s in all")
    passed = fraction >= args.floor and failures == 0
    print(json.dumps({
        "bench": "critic_http", "requests": args.requests, "concurrency": args.concurrency,
        "latency_ms": args.latency_ms, "repeats": args.repeats, "stub_workers": args.stub_workers,
        "throughput_rps": round(throughput, 1), "ideal_rps": round(ideal, 1), "fraction_of_ideal": round(fraction, 3),
        "client_cpu_ms_per_request": round(cpu_per_request * 1000, 3), "server_cpu_s": round(server_cpu_s, 2), "failures": failures,
        "floor": args.floor, "passed": passed,
    }))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
