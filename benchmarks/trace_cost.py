#!/usr/bin/env python
"""What one lineage trace costs on a kept graph, counted rather than timed: CPU instructions.

The latency figures of ``graph_store.py`` move by 20-40% from one run to the next on a shared
machine; a change to the read path that buys 5% cannot be seen in them. This script counts,
with Valgrind's callgrind, the instructions of the first N upstream traces (depth 5, the
2,000-node budget) that ``graph_store.py`` times, on a SQLite graph that an earlier run kept
(``--store sqlite:////tmp/g-{nodes}.db --keep``), minus the count of opening it and two
warm-up traces. The same code on the same graph counts the same (string hashes seeded).

    python benchmarks/graph_store.py --nodes 1000000 --store sqlite:////tmp/g-1000000.db --keep
    python benchmarks/trace_cost.py sqlite:////tmp/g-1000000.db            # 40 traces
    python benchmarks/trace_cost.py sqlite:////tmp/g-1000000.db --traces 100 --json

To compare two versions of the code, run it on each (e.g. in a second ``git worktree``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARM = 2


def _starts(uri: str) -> tuple[list[str], list[str]]:
    from graph_store import _sidecar, trace_starts

    sidecar = _sidecar(uri)
    if sidecar is None or not Path(sidecar).exists():
        raise SystemExit(
            f"{uri}: not a graph kept by graph_store.py (no {sidecar or 'sidecar'}); build one "
            "with: python benchmarks/graph_store.py --store sqlite:////tmp/g-{nodes}.db --keep"
        )
    meta = json.loads(Path(sidecar).read_text())
    return trace_starts(random.Random(meta["seed"] + 1), meta["counters"], 200, WARM)


def run_traces(uri: str, n: int) -> tuple[int, int]:
    """Open the store, trace the warm-up starts and then the first ``n`` starts; returns the
    nodes and edges those ``n`` returned."""
    from graph_store import UPSTREAM_BUDGET

    from lineagehub.graph import Direction, open_store

    starts, warm = _starts(uri)
    nodes = edges = 0
    with open_store(uri) as store:
        for sid in warm:
            store.traverse([sid], Direction.UPSTREAM, 5, max_nodes=UPSTREAM_BUDGET)
        for sid in starts[:n]:
            sub = store.traverse([sid], Direction.UPSTREAM, 5, max_nodes=UPSTREAM_BUDGET)
            nodes, edges = nodes + len(sub.nodes), edges + len(sub.edges)
    return nodes, edges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="a SQLite graph kept by graph_store.py (sqlite:////path)")
    parser.add_argument("--traces", type=int, default=40, help="traces counted (default 40)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.store.startswith("sqlite:///"):
        parser.error(
            "the store must be a SQLite file (sqlite:////path): callgrind counts this process"
        )
    if args.run:
        print(json.dumps(run_traces(args.store, args.traces)))
        return 0
    if not 1 <= args.traces <= 200:
        parser.error("--traces must be between 1 and 200 (the benchmark's starts)")
    _starts(args.store)  # a clear error before minutes under Valgrind
    from write_cost import count_instructions

    nodes, edges = run_traces(args.store, args.traces)
    counts = [
        count_instructions([__file__, args.store, "--run", "--traces", str(n)])
        for n in (0, args.traces)
    ]
    per_trace = (counts[1] - counts[0]) / args.traces
    result = {
        "store": args.store,
        "traces": args.traces,
        "instructions_per_trace": round(per_trace),
        "nodes_returned": nodes,
        "edges_returned": edges,
        "instructions_per_returned_object": round(per_trace * args.traces / (nodes + edges)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.traces} upstream traces (depth 5, budget 2,000): "
            f"{per_trace / 1e6:.2f}M instructions a trace; {nodes:,} nodes and {edges:,} "
            f"edges returned, {result['instructions_per_returned_object']:,} instructions each"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
