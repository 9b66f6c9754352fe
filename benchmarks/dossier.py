#!/usr/bin/env python
"""Compliance reports and audit proofs at scale.

1. **A report for a model with 1,000 runs upstream** (goal: the HTML in 2 s or less): through
   the SDK (embedded SQLite file), 1,000 ``transform`` runs each generate a dataset version;
   one training run uses all of them and registers the model; a card is set, the version
   promoted and deployed. Timed: :func:`~lineagehub.services.dossier.compliance_report` (the
   JSON, with the lineage picture when Graphviz is installed, and the proofs of the audit
   entries it cites), the HTML rendering, and (with WeasyPrint) the PDF; the best of
   ``--repeat``.
2. **Proofs at 1M audit entries**: a SQLite store of 1,000,000 real entries written through
   the store API (as ``benchmarks/audit_verify.py`` builds it; ``--synthetic`` builds the
   Merkle tree over 1M synthetic entry hashes instead, without a store). Timed: one
   ``audit prove`` (reading the log and building the tree), the tree's build alone, an
   inclusion proof from a built tree, its offline verification, and a consistency proof
   and its verification.

    python benchmarks/dossier.py                  # both, 1,000 runs and 1,000,000 entries
    python benchmarks/dossier.py --runs 200 --entries 100000 --json
    python benchmarks/dossier.py --synthetic      # proofs over synthetic leaves only
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lineagehub import Settings
from lineagehub.graph.audit import CheckpointPolicy, Frontier, leaf_hash
from lineagehub.graph.merkle import MerkleTree, verify_consistency, verify_inclusion
from lineagehub.graph.sqlite import SqliteStore
from lineagehub.ingest.client import Client
from lineagehub.services.dossier import compliance_report
from lineagehub.services.proofs import check_inclusion, prove
from lineagehub.services.report_render import render_html, render_pdf

KEY = "benchmark-key"


def build_lineage(folder: Path, runs: int) -> str:
    uri = f"sqlite:///{folder / 'hub.db'}"
    settings = Settings(user="ann", artifacts=str(folder / "artifacts"), audit_key=KEY)
    start = time.perf_counter()
    with Client(uri, settings=settings) as client:
        import pandas as pd

        shards = [
            pd.DataFrame({"id": [i, i + 1], "value": [i * 0.5, i * 1.5]}) for i in range(runs)
        ]
        for i, shard in enumerate(shards):
            with client.start_run(f"prepare-{i}", kind="transform", capture=False) as run:
                run.log_output_dataset(shard, name=f"shard-{i}", namespace="bench")
        with client.start_run("train", project="bench", capture=False) as run:
            run.log_params({"C": 1.0, "penalty": "l2"})
            for i, shard in enumerate(shards):  # the same content: the same dataset versions
                run.log_dataset(shard, name=f"shard-{i}", namespace="bench", role="train")
            run.log_metrics({"auc": 0.91})
            run.log_model({"weights": [1, 2, 3]}, name="bench-model")
        client.set_model_card(
            "bench-model/1",
            {"intended_use": "benchmark", "owners": ["ann"], "risk_tier": "limited"},
        )
        client.promote("bench-model/1", "Production", "benchmark")
        client.deploy("bench-model/1", "production")
    print(f"  built {runs:,} runs upstream in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return uri


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def report_bench(runs: int, repeat: int, folder: Path) -> dict[str, Any]:
    built = folder / "hub.db"
    uri = f"sqlite:///{built}" if built.exists() else build_lineage(folder, runs)
    store = SqliteStore(uri.removeprefix("sqlite:///"))
    store.configure_audit(CheckpointPolicy(every=None, key=KEY.encode()))
    try:
        t_json, report = best(lambda: compliance_report(store, "bench-model/1"), repeat)
        t_html, html = best(lambda: render_html(report), repeat)
        out: dict[str, Any] = {
            "runs_upstream": report["lineage"]["runs_upstream"],
            "lineage_nodes": report["lineage"]["nodes"],
            "picture": report["lineage"]["svg"] is not None,
            "audit_entries_cited": len(report["audit"]["entries"]),
            "report_json_s": round(t_json, 3),
            "render_html_s": round(t_html, 4),
            "html_total_s": round(t_json + t_html, 3),
            "html_bytes": len(html),
            "goal_html_s": 2.0,
        }
        try:
            t_pdf, _ = best(lambda: render_pdf(report, folder / "report.pdf"), 1)
            out["render_pdf_s"] = round(t_pdf, 2)
        except Exception as e:  # no WeasyPrint here: the figure is left out, said why
            out["render_pdf_s"] = f"not measured: {e}"[:120]
        return out
    finally:
        store.close()


def build_audit(path: Path, entries: int) -> SqliteStore:
    from audit_verify import build  # the same log audit_verify.py measures

    store = SqliteStore(path)
    store.configure_audit(CheckpointPolicy(every=1000, key=KEY.encode()))
    build(store, entries, max(1, entries // 10))
    return store


def proof_bench(entries: int, synthetic: bool, samples: int, folder: Path) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {"entries": entries, "synthetic": synthetic}
    store = None
    if synthetic:
        hashes = [f"sha256:{rng.getrandbits(256):064x}" for _ in range(entries)]
    else:
        start = time.perf_counter()
        store = build_audit(folder / "audit.db", entries)
        out["build_store_s"] = round(time.perf_counter() - start, 1)
        head = store.checkpoint_audit()
        start = time.perf_counter()
        one = prove(store, rng.randint(1, entries))
        out["audit_prove_one_s"] = round(time.perf_counter() - start, 2)
        from lineagehub.graph.audit import TreeHead

        assert check_inclusion(one, TreeHead.from_dict(one["head"]), key=KEY.encode()).ok
        hashes = [e.hash for e in store.iter_audit()]
        assert len(hashes) == head.tree_size == entries
    start = time.perf_counter()
    tree = MerkleTree.of_entries(hashes)
    out["tree_build_s"] = round(time.perf_counter() - start, 2)
    frontier = Frontier()
    for h in hashes:
        frontier.push(h)
    assert "sha256:" + tree.root().hex() == frontier.root()  # the tree the heads sign
    root = tree.root()
    picks = [rng.randrange(entries) for _ in range(samples)]
    start = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in picks]
    out["inclusion_proof_us"] = round((time.perf_counter() - start) / samples * 1e6, 1)
    out["proof_hashes"] = len(proofs[0])
    start = time.perf_counter()
    for i, p in zip(picks, proofs):
        assert verify_inclusion(leaf_hash(hashes[i]), i, entries, p, root) is None
    out["verify_inclusion_us"] = round((time.perf_counter() - start) / samples * 1e6, 1)
    first = entries // 3
    start = time.perf_counter()
    c = tree.consistency_proof(first)
    out["consistency_proof_us"] = round((time.perf_counter() - start) * 1e6, 1)
    start = time.perf_counter()
    assert verify_consistency(first, entries, tree.root(first), root, c) is None
    out["verify_consistency_us"] = round((time.perf_counter() - start) * 1e6, 1)
    if store is not None:
        store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=1000, help="runs upstream of the model (1000)")
    p.add_argument("--entries", type=int, default=1_000_000, help="audit entries (1,000,000)")
    p.add_argument("--synthetic", action="store_true", help="proofs over synthetic leaves")
    p.add_argument("--samples", type=int, default=1000, help="proofs timed (1000)")
    p.add_argument("--repeat", type=int, default=3, help="report timings: best of (3)")
    p.add_argument("--skip-report", action="store_true")
    p.add_argument("--skip-proofs", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--folder", help="keep the hub here, and reuse the one found there (built when absent)"
    )
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    folder = Path(args.folder or tempfile.mkdtemp(prefix="lh-dossier-"))
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    try:
        if not args.skip_report:
            result["report"] = report_bench(args.runs, args.repeat, folder)
        if not args.skip_proofs:
            result["proofs"] = proof_bench(args.entries, args.synthetic, args.samples, folder)
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for part, figures in result.items():
        print(f"{part}:")
        for k, v in figures.items():
            print(f"  {k:24} {v}")
    r = result.get("report")
    if r:
        print(f"HTML report in {r['html_total_s']} s: {r['html_total_s'] / 2.0:.2f}x the 2 s goal")


if __name__ == "__main__":
    main()
