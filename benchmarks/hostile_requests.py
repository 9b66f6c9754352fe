#!/usr/bin/env python
"""``/health`` latency while hostile GraphQL requests run.

Starts ``lineagehub serve`` in its own process on an empty embedded store, then sends, from
another process and back to back, the fragment fan-out family (``fragment F0 on Query
{ ...F1 ...F1 }``..., 1 to 30 levels), queries at the 100,000-character limit (a comment
that fills it) and bodies at the 1 MiB limit (such a query and a large variable), while this
process times ``GET /health``. Prints the latency distribution in
milliseconds; ``--json`` for scripts.

    python benchmarks/hostile_requests.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

LIMIT = 1024 * 1024  # the request body limit (LINEAGEHUB_MAX_REQUEST_BYTES)
QUERY_LIMIT = 100_000  # characters of query text (lineagehub.schema.MAX_QUERY_LENGTH)


def fan_out(levels: int) -> str:
    lines = ["query FanOut { ...F0 }"]
    lines += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    lines.append(f"fragment F{levels} on Query {{ __typename }}")
    return "\n".join(lines)


def hostile(url: str, rounds: int, family: str) -> None:
    # The attacker is normally on another machine: here it yields the CPU to the server.
    os.nice(19)
    longest = "#" + "x" * (QUERY_LIMIT - 100) + "\n{ __typename }"
    at_limit = {"query": longest, "variables": {"pad": "x" * (LIMIT - len(longest) - 200)}}
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(rounds):
            if family in ("all", "body"):
                for _ in range(10):
                    client.post("/graphql", json={"query": longest})
                    client.post("/graphql", json=at_limit)
            if family == "none":
                time.sleep(2)  # the baseline: /health timed with nothing else sent
            if family in ("all", "fan-out"):
                for levels in range(1, 31):
                    client.post("/graphql", json={"query": fan_out(levels)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--family",
        choices=["all", "fan-out", "body", "none"],
        default="all",
        help="what to send (none: /health alone, for a baseline)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="lineagehub-hostile-") as tmp:
        env = {**os.environ, "LINEAGEHUB_DATA_DIR": tmp}
        env.pop("LINEAGEHUB_STORE", None)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lineagehub",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.get("/health")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                sender = multiprocessing.Process(
                    target=hostile, args=(url, args.rounds, args.family)
                )
                sender.start()
                latencies: list[float] = []
                while sender.is_alive():
                    started = time.perf_counter()
                    client.get("/health")
                    latencies.append((time.perf_counter() - started) * 1000)
                sender.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
    latencies.sort()
    result = {
        "health_requests": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2], 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1),
        "max_ms": round(latencies[-1], 1),
        "within_50ms_pct": round(100 * sum(t <= 50 for t in latencies) / len(latencies), 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"/health during hostile requests: {result['health_requests']} answers, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms; "
            f"{result['within_50ms_pct']}% within 50 ms"
        )


if __name__ == "__main__":
    main()
