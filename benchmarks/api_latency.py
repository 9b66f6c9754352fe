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

    python benchmarks/api_latency.py --nodes 100000
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
  edges { node { id name status params metrics { key last }
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000, help="graph size to build")
    ap.add_argument("--store", help="use this existing store instead of building one")
    ap.add_argument("--samples", type=int, default=200, help="lineage queries to time")
    ap.add_argument("--pages", type=int, default=50, help="run pages to time")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lineagehub-api-bench-"))
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
            runs = summary(lat, sizes)
    finally:
        server.should_exit = True
    result = {"graph_nodes": total, "lineage_upstream_d5": lineage, "runs_page_100": runs}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"GraphQL over HTTP on a {total:,}-node graph (uvicorn, 127.0.0.1, one client)")
        print(f"{'query':<34}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'mean size':>11}")
        for name, r in (("lineage upstream d5 (MV, deploy)", lineage), ("runs page of 100", runs)):
            print(
                f"{name:<34}{r['n']:>6}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}"
                f"{r['max_ms']:>10.1f}{r['mean_size']:>11.0f}"
            )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
