#!/usr/bin/env python
"""Registry writes as a model's history grows: ``log_model``, ``set_alias`` and ``promote``.

Registers N versions of one model (default 400) through the SDK in embedded mode, each from
its own run, then points the alias ``champion`` at it and promotes it to Production (which
archives the previous Production version), in a store that already holds M other runs
(default 5,000, finished training runs with a few params). Prints the p50/p95 of each call
per bucket of 20 versions (1-20, 21-40, ... the last 20), so a cost that grows with the
number of versions shows as a slope, and the total time.

    python benchmarks/registry_writes.py                         # SQLite file in a temp dir
    python benchmarks/registry_writes.py --versions 200 --runs 0
    python benchmarks/registry_writes.py --store neo4j://localhost:7687 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lineagehub import open_store
from lineagehub.ingest.client import Client
from lineagehub.vocabulary import Run, RunKind, RunStatus

BUCKET = 20
CALLS = ("log_model", "set_alias", "promote")


def seed_runs(store: Any, runs: int) -> None:
    """M finished training runs, written in bulk (they only have to be there)."""
    start = datetime.now(timezone.utc) - timedelta(days=1)
    for first in range(0, runs, 1000):
        nodes = [
            Run(
                name=f"seed-{i}",
                kind=RunKind.TRAIN,
                status=RunStatus.FINISHED,
                started_at=start,
                ended_at=start + timedelta(seconds=i),
                params={"lr": 0.01, "model": f"arch-{i % 7}", "epochs": i % 50},
                metrics={"loss": 1.0 / (i + 1)},
            ).to_node()
            for i in range(first, min(runs, first + 1000))
        ]
        with store.transaction():
            store.upsert_nodes(nodes)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(store_uri: str, artifacts: str, versions: int, runs: int) -> dict[str, Any]:
    store = open_store(store_uri)
    seed_runs(store, runs)
    client = Client(store, artifacts=artifacts)
    times: dict[str, list[float]] = {c: [] for c in CALLS}
    started = time.perf_counter()
    for i in range(1, versions + 1):
        with client.start_run(f"train-{i}") as r:
            r.log_metric("auc", 0.5 + i / (2 * versions))
            t0 = time.perf_counter()
            mv = r.log_model(b"weights %d" % i, name="bench-model", flavor="bytes")
            times["log_model"].append(time.perf_counter() - t0)
        ref = mv.node_id
        t0 = time.perf_counter()
        client.set_alias(ref, "champion", reason="bench")
        times["set_alias"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = client.promote(ref, "Production", reason="bench")
        times["promote"].append(time.perf_counter() - t0)
        if getattr(result, "run_id", None) is None:
            raise SystemExit(f"promotion of {ref} refused: {result}")
        if i % 50 == 0:
            print(f"\r  {i}/{versions}", end="", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    print(file=sys.stderr)
    client.close()
    buckets = []
    for first in range(0, versions, BUCKET):
        row: dict[str, Any] = {"versions": f"{first + 1}-{min(versions, first + BUCKET)}"}
        for c in CALLS:
            chunk = times[c][first : first + BUCKET]
            row[c] = {"p50_ms": pct(chunk, 0.5) * 1e3, "p95_ms": pct(chunk, 0.95) * 1e3}
        buckets.append(row)
    overall = {
        c: {"p50_ms": statistics.median(times[c]) * 1e3, "p95_ms": pct(times[c], 0.95) * 1e3}
        for c in CALLS
    }
    return {
        "store": store_uri.split(":", 1)[0],
        "versions": versions,
        "runs": runs,
        "total_s": total,
        "per_version_ms": total / versions * 1e3,
        "overall": overall,
        "buckets": buckets,
    }


def show(result: dict[str, Any]) -> None:
    print(
        f"{result['store']}: {result['versions']} versions, {result['runs']} other runs; "
        f"total {result['total_s']:.2f} s ({result['per_version_ms']:.1f} ms a version, "
        "its run included)"
    )
    head = "| versions | " + " | ".join(f"{c} p50 / p95 (ms)" for c in CALLS) + " |"
    print(head)
    print("|---" * (len(CALLS) + 1) + "|")
    rows = result["buckets"]
    shown = (
        rows
        if len(rows) <= 6
        else [*rows[:3], *rows[len(rows) // 2 : len(rows) // 2 + 1], *rows[-2:]]
    )
    for row in [*shown, {"versions": "all", **result["overall"]}]:
        cells = [f"{row[c]['p50_ms']:.1f} / {row[c]['p95_ms']:.1f}" for c in CALLS]
        print(f"| {row['versions']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=400)
    parser.add_argument("--runs", type=int, default=5000, help="other runs in the store")
    parser.add_argument("--store", help="store URI (default: a SQLite file in a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lh-registry-bench-"))
    try:
        store_uri = args.store or f"sqlite:///{tmp / 'hub.db'}"
        result = run(store_uri, (tmp / "artifacts").as_uri(), args.versions, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)


if __name__ == "__main__":
    main()
