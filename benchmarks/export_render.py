"""Lineage exports: how long each format takes for real traces of a synthetic graph.

Builds the graph-store benchmark's synthetic lineage graph (``graph_store.LineageGenerator``)
in a SQLite file, traces upstream (depth 5) from sampled model versions and deployments and
downstream (depth 3) from sampled raw datasets, and times ``export_lineage`` for every format
on the same traces (rendering with Graphviz's ``dot`` for svg/png/pdf). Pictures of downstream
traces collapse the runs of one experiment above 60 nodes (the default), as users see them.

    python benchmarks/export_render.py --nodes 100000 --samples 20
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_store import LineageGenerator, build, percentile

from lineagehub.graph import Direction, open_store
from lineagehub.services.export import export_lineage
from lineagehub.vocabulary import LINEAGE_EDGE_KINDS

FORMATS = ("dot", "svg", "png", "mmd", "graphml", "json", "prov", "openlineage")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000, help="graph size to build")
    ap.add_argument("--samples", type=int, default=20, help="traces per direction")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lineagehub-export-bench-"))
    store = open_store(f"sqlite:///{tmp / 'graph.db'}")
    build(store, LineageGenerator(args.nodes, seed=args.seed), 5000, f"{args.nodes:,}", True)
    rng = random.Random(args.seed)
    kinds = sorted(k.value for k in LINEAGE_EDGE_KINDS)
    ups = [n.id for n in store.iter_nodes("ModelVersion", page_size=1000)]
    ups += [n.id for n in store.iter_nodes("Deployment", page_size=1000)]
    downs = [n.id for n in store.iter_nodes("DatasetVersion", page_size=1000)]
    traces = [
        (
            "upstream d5",
            store.traverse([r], Direction.UPSTREAM, 5, edge_kinds=kinds, max_nodes=2000),
        )
        for r in rng.sample(ups, min(args.samples, len(ups)))
    ] + [
        (
            "downstream d3",
            store.traverse([r], Direction.DOWNSTREAM, 3, edge_kinds=kinds, max_nodes=2000),
        )
        for r in rng.sample(downs, min(args.samples, len(downs)))
    ]
    rows: list[dict[str, Any]] = []
    for which in ("upstream d5", "downstream d3"):
        subs = [s for w, s in traces if w == which]
        sizes = [len(s.nodes) for s in subs]
        for fmt in FORMATS:
            lat = []
            for sub in subs:
                focus = [i for i, t in sub.nodes.items() if t.reached_from is None]
                t0 = time.perf_counter()
                export_lineage(sub, fmt, focus=focus)
                lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            rows.append(
                {
                    "trace": which,
                    "format": fmt,
                    "n": len(lat),
                    "mean_nodes": sum(sizes) / len(sizes),
                    "max_nodes": max(sizes),
                    "p50_ms": percentile(lat, 0.5),
                    "p95_ms": percentile(lat, 0.95),
                }
            )
    store.close()
    if args.json:
        print(json.dumps({"graph_nodes": args.nodes, "rows": rows}, indent=2))
        return 0
    print(f"export_lineage on a {args.nodes:,}-node synthetic graph")
    print(f"{'trace':<15}{'format':<13}{'n':>4}{'nodes':>8}{'max':>7}{'p50 ms':>9}{'p95 ms':>9}")
    for r in rows:
        print(
            f"{r['trace']:<15}{r['format']:<13}{r['n']:>4}{r['mean_nodes']:>8.0f}"
            f"{r['max_nodes']:>7}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
