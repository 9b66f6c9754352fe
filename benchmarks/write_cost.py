#!/usr/bin/env python
"""What one structure write costs, counted rather than timed: SQL statements and CPU instructions.

On a shared or virtual machine the same code's times move by 30% from one run to the next
(``docs/benchmarks.md``), more than most single changes to the write path buy. Counts do not
move: this script prints, for each workload of ``structure_vs_mlflow.py`` on an embedded
SQLite store, the SQL statements one step runs and, with ``--instructions`` (needs Valgrind),
the CPU instructions one step executes (callgrind's count over N steps minus the count over
none, divided by N; kernel time such as writing the WAL is not in it).

    python benchmarks/write_cost.py                     # statements per step
    python benchmarks/write_cost.py --instructions      # and instructions (about 2 minutes)
    python benchmarks/write_cost.py --json

Workloads: ``lineage`` (a run that reads two datasets by reference and the previous model
version, then registers a version) and ``register`` (a run, a version, an alias, a stage),
each as one call at a time (``calls``) and as one ``client.batch()`` (``batch``). To compare
two versions of the code, run it on each (e.g. in a second ``git worktree``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

WORKLOADS = ("lineage-calls", "lineage-batch", "register-calls", "register-batch")
WARM = 20  # steps before counting: first-use caches, the model and the agent written


def _hub(folder: Path) -> Any:
    from structure_vs_mlflow import LineageHub

    return LineageHub(f"sqlite:///{folder}/hub.db", folder)


def _stepper(hub: Any, workload: str) -> Any:
    kind, mode = workload.split("-")
    if kind == "register":
        run = hub.register_calls if mode == "calls" else hub.register_batch
        return lambda i, previous: run(i)
    return hub.step_calls if mode == "calls" else hub.step_batch


def run_steps(workload: str, steps: int) -> None:
    """The workload's warm-up and then ``steps`` more (what the instruction count brackets)."""
    with tempfile.TemporaryDirectory() as folder:
        hub = _hub(Path(folder))
        step, previous = _stepper(hub, workload), None
        for i in range(WARM + steps):
            previous = step(i, previous)
        hub.close()


def statements(workload: str) -> Counter[str]:
    """The statements one step runs, by their first word (SELECT, INSERT, SAVEPOINT...)."""
    with tempfile.TemporaryDirectory() as folder:
        hub = _hub(Path(folder))
        step, previous = _stepper(hub, workload), None
        for i in range(WARM):
            previous = step(i, previous)
        seen: list[str] = []
        conn = hub.client.backend.store._conn()
        conn.set_trace_callback(seen.append)
        step(WARM, previous)
        conn.set_trace_callback(None)
        hub.close()
    # Python's sqlite3 reports a statement with RETURNING twice (it steps it again to the end)
    return Counter(s.split(None, 1)[0].upper() for s in _once(seen))


def _once(seen: list[str]) -> list[str]:
    out: list[str] = []
    for s in seen:
        if out and s == out[-1] and " RETURNING " in s:
            continue
        out.append(s)
    return out


def count_instructions(args: list[str]) -> int:
    """The CPU instructions ``python args...`` executes, counted by callgrind (string hashes
    seeded, so the same code counts the same)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    argv = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the run under callgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def instructions(workload: str, steps: int) -> int:
    """CPU instructions one step executes (callgrind, ``steps`` steps minus none)."""
    counts = [
        count_instructions([__file__, "--run", workload, "--steps", str(n)]) for n in (0, steps)
    ]
    return (counts[1] - counts[0]) // steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="repeatable")
    parser.add_argument("--instructions", action="store_true", help="count them (Valgrind)")
    parser.add_argument("--steps", type=int, default=100, help="steps counted (default 100)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--run", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_steps(args.run, args.steps)
        return 0
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    results = []
    for workload in args.workload or WORKLOADS:
        counted = statements(workload)
        row: dict[str, Any] = {
            "workload": workload,
            "statements": sum(counted.values()),
            "by_kind": dict(counted.most_common()),
        }
        if args.instructions:
            row["instructions"] = instructions(workload, args.steps)
        results.append(row)
        if not args.json:
            extra = f"  {row['instructions'] / 1e6:6.2f}M instructions" if args.instructions else ""
            kinds = ", ".join(f"{k} {v}" for k, v in row["by_kind"].items())
            print(f"{workload:15} {row['statements']:3} statements{extra}  ({kinds})", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
