#!/usr/bin/env python
"""GraphQL API latency over real HTTP: lineage queries and run pages.

Builds (or reuses, with ``--store``) a synthetic lineage graph with the generator of
``graph_store.py``, serves it with uvicorn on 127.0.0.1, and times, with a real HTTP client:

- ``lineage``: depth-5 upstream traces from random model versions and deployments, asking for
  every node (id, kind, distance, reachedFrom) and every edge (source, target, kind,
  ingestedAt);
- ``runs``: pages of 100 runs with params, metric summaries, inputs (with roles), code and
  environment — the dataloader path.

Prints p50 / p95 / max in milliseconds and the mean result sizes; ``--json`` for scripts.

``--overhead`` measures the server's per-request cost instead, against a real
``lineagehub serve`` subprocess through the SDK's :class:`HubConnection` (kept-alive HTTP/1.1):
p50 / p95 at the client of ``{ __typename }``, a small read (one run by id) and a small
mutation (``logBatch`` with one param); then throughput with ``--workers`` 1, 2 and 4 and 8
concurrent clients (each its own process and connection), reads and writes. ``--store-uri`` serves another
store (e.g. ``neo4j://...``); the default is a fresh SQLite file.

    python benchmarks/api_latency.py --nodes 100000
    python benchmarks/api_latency.py --overhead [--store-uri neo4j://...]
    python benchmarks/graph_store.py --nodes 1000000 --keep   # then:
    python benchmarks/api_latency.py --store sqlite:////tmp/lineagehub-bench-.../graph-1000000.db
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_store import LineageGenerator, build, percentile

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.server import create_app

LINEAGE = """query($root: String!) { lineage(input: {roots: [$root], upstreamDepth: 5,
  maxNodes: 2000}) { nodes { node { id kind } distance reachedFrom }
  edges { source target kind ingestedAt } truncated truncationReason } }"""

RUNS = """query($after: String) { runs(first: 100, after: $after) {
  edges { node { id status params metrics { key last }
    inputs { node { id } edge { role } } code { id } environment { id } } }
  pageInfo { hasNextPage endCursor } } }"""


def serve(store: GraphStore, artifacts_dir: Path) -> tuple[uvicorn.Server, str]:
    app = create_app(store=store, artifacts=open_artifact_store(artifacts_dir.as_uri()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


def timed(http: httpx.Client, query: str, variables: dict[str, Any]) -> tuple[float, dict]:
    t = time.perf_counter()
    response = http.post("/graphql", json={"query": query, "variables": variables})
    ms = (time.perf_counter() - t) * 1000
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise SystemExit(f"query failed: {response.status_code} {body}")
    return ms, body["data"]


def summary(lat: list[float], sizes: list[int]) -> dict[str, float]:
    return {
        "n": len(lat),
        "p50_ms": percentile(lat, 0.5),
        "p95_ms": percentile(lat, 0.95),
        "max_ms": max(lat),
        "mean_size": sum(sizes) / len(sizes),
    }


TYPENAME = "{ __typename }"
RUN_BY_ID = "query($id: ID!) { run(id: $id) { id name status params } }"
LOG_BATCH = (
    "mutation($runId: ID!, $params: JSON) { logBatch(runId: $runId, params: $params) { runId } }"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_process(store_uri: str, artifacts: Path, workers: int) -> tuple[Any, str]:
    """``lineagehub serve`` in a subprocess, answering /health."""
    import os
    import subprocess

    port = free_port()
    env = {**os.environ, "LINEAGEHUB_RATE_LIMIT": "0"}
    env.pop("LINEAGEHUB_AUTH", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lineagehub",
            "serve",
            "--store",
            store_uri,
            "--artifacts",
            artifacts.as_uri(),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"lineagehub serve did not start (exit {proc.poll()})")
        time.sleep(0.05)
    return proc, url


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far; NaN without Linux's /proc. Less
    sensitive than wall-clock latency to what else runs on the machine."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()
        proc.wait()


def overhead_calls(connection: Any, run_id: str) -> dict[str, Any]:
    """The three calls, as the SDK sends them."""
    params = iter(range(10**9))
    return {
        "{ __typename }": lambda: connection.graphql(TYPENAME, idempotent=True),
        "run by id": lambda: connection.graphql(RUN_BY_ID, {"id": run_id}, idempotent=True),
        "logBatch (1 param)": lambda: connection.graphql(
            LOG_BATCH, {"runId": run_id, "params": {f"p{next(params)}": 1}}, idempotent=True
        ),
    }


def calls_for(url: str, run_id: str, name: str, start: float, seconds: float) -> int:
    """How many ``name`` calls one client (its own process and connection) made from the
    wall-clock time ``start`` for ``seconds`` (after 20 to warm up): all clients at once."""
    from lineagehub.ingest.http import HubConnection

    connection = HubConnection(url, token="")
    call = overhead_calls(connection, run_id)[name]
    for _ in range(20):
        call()
    time.sleep(max(0.0, start - time.time()))
    n, end = 0, start + seconds
    while time.time() < end:
        call()
        n += 1
    connection.close()
    return n


def new_run(connection: Any) -> str:
    data = connection.graphql(
        "mutation($name: String!) { startRun(input: {name: $name}) { id } }",
        {"name": "bench"},
        idempotent=False,
    )
    return str(data["startRun"]["id"])


def overhead(
    store_uri: str, tmp: Path, samples: int, worker_counts: list[int], seconds: float
) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    from lineagehub.ingest.http import HubConnection

    result: dict[str, Any] = {"latency": {}, "throughput": {}}
    proc, url = serve_process(store_uri, tmp / "artifacts", 1)
    try:
        connection = HubConnection(url, token="")
        calls = overhead_calls(connection, new_run(connection))
        for name, call in calls.items():
            for _ in range(50):  # warm-up: connection, caches
                call()
            lat = []
            cpu = cpu_seconds(proc.pid)
            for _ in range(samples):
                t = time.perf_counter()
                call()
                lat.append((time.perf_counter() - t) * 1000)
            cpu = cpu_seconds(proc.pid) - cpu
            result["latency"][name] = {
                "n": samples,
                "p50_ms": percentile(lat, 0.5),
                "p95_ms": percentile(lat, 0.95),
                "server_cpu_ms": cpu / samples * 1000,
            }
        connection.close()
    finally:
        stop(proc)
    for workers in worker_counts:
        proc, url = serve_process(store_uri, tmp / "artifacts", workers)
        try:
            connection = HubConnection(url, token="")
            runs = [new_run(connection) for _ in range(8)]  # one run per client
            connection.close()
            per = {}
            for name in ("run by id", "logBatch (1 param)"):
                with ProcessPoolExecutor(8) as pool:  # processes: no shared GIL on this side
                    start = [time.time() + 3] * 8  # the clients' start-up is not timed
                    counts = pool.map(calls_for, [url] * 8, runs, [name] * 8, start, [seconds] * 8)
                    per[name] = sum(counts) / seconds
            result["throughput"][workers] = per
        finally:
            stop(proc)
    return result


def print_overhead(store_uri: str, r: dict[str, Any]) -> None:
    print(
        f"Server overhead: lineagehub serve over {store_uri.split(':')[0]}, SDK HubConnection "
        "(kept-alive HTTP/1.1), 127.0.0.1"
    )
    print(f"{'call':<22}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'server CPU ms':>15}")
    for name, x in r["latency"].items():
        print(
            f"{name:<22}{x['n']:>6}{x['p50_ms']:>9.2f}{x['p95_ms']:>9.2f}"
            f"{x['server_cpu_ms']:>15.2f}"
        )
    print("throughput, 8 concurrent clients (requests/s)")
    print(f"{'workers':<10}{'run by id':>12}{'logBatch':>12}")
    for workers, per in r["throughput"].items():
        print(f"{workers:<10}{per['run by id']:>12.0f}{per['logBatch (1 param)']:>12.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000, help="graph size to build")
    ap.add_argument("--store", help="use this existing store instead of building one")
    ap.add_argument("--samples", type=int, default=200, help="lineage queries to time")
    ap.add_argument("--pages", type=int, default=50, help="run pages to time")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--overhead", action="store_true", help="per-request server cost instead")
    ap.add_argument("--store-uri", help="--overhead: the store to serve (default: a new SQLite)")
    ap.add_argument("--workers", default="1,2,4", help="--overhead: worker counts to compare")
    ap.add_argument("--seconds", type=float, default=5.0, help="--overhead: per throughput run")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lineagehub-api-bench-"))
    if args.overhead:
        uri = args.store_uri or f"sqlite:///{tmp / 'hub.db'}"
        counts = [int(w) for w in args.workers.split(",") if w]
        r = overhead(uri, tmp, max(args.samples, 500), counts, args.seconds)
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            print_overhead(uri, r)
        return 0
    if args.store:
        store = open_store(args.store)
    else:
        store = open_store(f"sqlite:///{tmp / 'graph.db'}")
        build(store, LineageGenerator(args.nodes, seed=args.seed), 5000, f"{args.nodes:,}")
    rng = random.Random(args.seed)
    roots = [n.id for n in store.iter_nodes("ModelVersion", page_size=1000)]
    roots += [n.id for n in store.iter_nodes("Deployment", page_size=1000)]
    sample = rng.sample(roots, min(args.samples, len(roots)))
    total = store.count_nodes()
    server, url = serve(store, tmp / "artifacts")
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            for root in sample[:10]:  # warm-up: connections, caches
                timed(http, LINEAGE, {"root": root})
            lat, sizes = [], []
            for root in sample:
                ms, data = timed(http, LINEAGE, {"root": root})
                lat.append(ms)
                sizes.append(len(data["lineage"]["nodes"]))
            lineage = summary(lat, sizes)
            lat, sizes, after = [], [], None
            for _ in range(args.pages):
                ms, data = timed(http, RUNS, {"after": after})
                lat.append(ms)
                sizes.append(len(data["runs"]["edges"]))
                after = data["runs"]["pageInfo"]["endCursor"]
                if after is None:
                    break
            runs: dict[str, Any] | None = summary(lat, sizes) if lat else None  # --pages 0
    finally:
        server.should_exit = True
    result = {"graph_nodes": total, "lineage_upstream_d5": lineage, "runs_page_100": runs}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"GraphQL over HTTP on a {total:,}-node graph (uvicorn, 127.0.0.1, one client)")
        print(f"{'query':<34}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'mean size':>11}")
        rows: list[tuple[str, dict[str, Any] | None]] = [
            ("lineage upstream d5 (MV, deploy)", lineage),
            ("runs page of 100", runs),
        ]
        for name, row in rows:
            if row is None:
                continue
            print(
                f"{name:<34}{row['n']:>6}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}"
                f"{row['max_ms']:>10.1f}{row['mean_size']:>11.0f}"
            )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
