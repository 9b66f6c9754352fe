#!/usr/bin/env python
"""``audit verify`` at scale: the time to check a log of N entries and the records it covers.

Builds a SQLite store through the public store API: N audit entries, each appended in the
transaction that writes one record (a node out of N/10, so each record has ~10 entries and
the last one counts), with signed tree heads every 1000 entries; then times
:func:`lineagehub.services.audit.verify_log` with the records (what ``audit verify`` does)
and without (``--no-records``), and reports the peak memory of the process.

It also times the write path with and without checkpoints (the same appends, heads every
1000 entries vs none), to show what the heads cost.

    python benchmarks/audit_verify.py                     # 1,000,000 entries
    python benchmarks/audit_verify.py --entries 100000 --json
    python benchmarks/audit_verify.py --store /tmp/audit-1m.db --keep   # reuse on a later run
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lineagehub.graph.audit import CheckpointPolicy
from lineagehub.graph.model import Node
from lineagehub.graph.sqlite import SqliteStore
from lineagehub.services.audit import verify_log

KEY = b"benchmark-key"
PER_TRANSACTION = 5000
NO_HEADS = CheckpointPolicy(every=None, key=KEY)


def build(store: SqliteStore, entries: int, records: int) -> float:
    """Append ``entries`` entries, each with the record it wrote; seconds per entry."""
    start = time.perf_counter()
    done = 0
    while done < entries:
        with store.transaction():
            for i in range(done, min(entries, done + PER_TRANSACTION)):
                rid = f"run:{i % records:08d}"
                store.upsert_nodes([Node(rid, "Run", {"status": "RUNNING", "step": i})])
                store.append_audit("bench", "run.log", rid, {"step": i})
        done = min(entries, done + PER_TRANSACTION)
        print(f"\r  built {done:,}/{entries:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return (time.perf_counter() - start) / entries


def write_cost(path: Path, n: int, rounds: int = 3) -> dict[str, float]:
    """µs per append (one transaction each, as the services do) with and without heads: the
    best of ``rounds`` alternating runs (the machine is shared; the minimum is the cost)."""
    policies = {"no_heads": NO_HEADS, "heads_every_1000": CheckpointPolicy(1000, None, KEY)}
    best = dict.fromkeys(policies, float("inf"))
    for r in range(rounds):
        for name, policy in policies.items():
            store = SqliteStore(path / f"write-{name}-{r}.db")
            store.configure_audit(policy)
            start = time.perf_counter()
            for i in range(n):
                with store.transaction():
                    store.upsert_nodes([Node(f"run:{i % 100}", "Run", {"step": i})])
                    store.append_audit("bench", "run.log", f"run:{i % 100}", {"step": i})
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e6)
            store.close()
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--store", help="SQLite file (built when absent or empty)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store")
    p.add_argument("--write-samples", type=int, default=20_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lineagehub-audit-bench-"))
    path = Path(args.store) if args.store else tmp / f"audit-{args.entries}.db"
    store = SqliteStore(path)
    store.configure_audit(CheckpointPolicy(every=1000, seconds=None, key=KEY))
    head = store.audit_head()
    result: dict[str, Any] = {"entries": args.entries, "store": str(path)}
    if head is None:
        result["build_us_per_entry"] = build(store, args.entries, max(1, args.entries // 10)) * 1e6
    elif head.seq != args.entries:
        sys.exit(f"{path} has {head.seq} entries, not {args.entries}")
    result["heads"] = sum(1 for _ in store.iter_checkpoints())
    result["file_mb"] = round(path.stat().st_size / 2**20, 1)

    start = time.perf_counter()
    log_only = verify_log(store, KEY, check_records=False)
    result["verify_log_s"] = round(time.perf_counter() - start, 2)
    assert log_only.ok, log_only.problem
    start = time.perf_counter()
    full = verify_log(store, KEY)
    result["verify_full_s"] = round(time.perf_counter() - start, 2)
    assert full.ok, full.problem
    result["records_checked"] = full.records_checked
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store.close()
    costs = write_cost(tmp, args.write_samples)
    result["append_us_no_heads"] = round(costs["no_heads"], 1)
    result["append_us_heads_every_1000"] = round(costs["heads_every_1000"], 1)
    if not args.keep and not args.store:
        shutil.rmtree(tmp)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:<28} {v:,}" if isinstance(v, (int, float)) else f"{k:<28} {v}")


if __name__ == "__main__":
    main()
