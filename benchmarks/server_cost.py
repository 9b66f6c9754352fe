#!/usr/bin/env python
"""What one structure write costs the server, counted rather than timed: CPU instructions.

``write_cost.py`` counts the embedded path; this counts a real ``lineagehub serve`` (a fresh
SQLite file, authentication and rate limit off) answering the SDK over HTTP. The server runs
under callgrind with instrumentation off while it starts and the SDK warms up, on for the
counted steps only (``callgrind_control``), so the figure is the server process's own
instructions per step: uvicorn, the middlewares, strawberry and graphql-core, the resolvers
and the write, in every thread. The SDK's own work is not in it. Needs Valgrind.

    python benchmarks/server_cost.py                       # every workload, 30 steps each
    python benchmarks/server_cost.py --workload lineage-batch --steps 50 --json

Workloads: those of ``write_cost.py`` (``lineage``/``register``, one call at a time or one
``client.batch()``), and ``typename``: a bare ``{ __typename }`` request, the floor under
every call. To compare two versions of the code, run it on each (e.g. in a second
``git worktree``); counts of the same code repeat within about 0.5%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from structure_vs_mlflow import LineageHub, free_port, wait_for
from write_cost import WARM, WORKLOADS, _stepper

ALL = (*WORKLOADS, "typename")
START_TIMEOUT = 600.0  # seconds: a server starting under Valgrind on a busy machine


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is needed (Valgrind: apt-get install valgrind)")
    return found


def _driver(workload: str, hub: LineageHub) -> Callable[[int], None]:
    if workload == "typename":
        connection = hub.client.backend.tracking.connection  # the SDK's HTTP connection
        return lambda i: connection.graphql("{ __typename }", {}, idempotent=True) and None
    step, previous = _stepper(hub, workload), [None]

    def one(i: int) -> None:
        previous[0] = step(i, previous[0])

    return one


def instructions(workload: str, steps: int) -> int:
    """The server's instructions per step of ``workload`` (``steps`` counted after warming)."""
    valgrind, control = _tool("valgrind"), _tool("callgrind_control")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out, port = folder / "callgrind.out", free_port()
        env = {**os.environ, "LINEAGEHUB_RATE_LIMIT": "0", "PYTHONHASHSEED": "0"}
        env.pop("LINEAGEHUB_AUTH", None)
        argv = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                sys.executable, "-m", "lineagehub", "serve", "--store",
                f"sqlite:///{folder}/hub.db", "--artifacts", (folder / "artifacts").as_uri(),
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/health", proc, "lineagehub serve under callgrind", START_TIMEOUT)
            hub = LineageHub(url, folder)
            run = _driver(workload, hub)
            for i in range(WARM):
                run(i)
            switch = [control, "--instr=on", str(proc.pid)]
            subprocess.run(switch, check=True, capture_output=True)
            for i in range(WARM, WARM + steps):
                run(i)
            switch[1] = "--instr=off"
            subprocess.run(switch, check=True, capture_output=True)
            hub.close()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=START_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = out.read_text() if out.exists() else ""
        found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
        if found is None:
            raise SystemExit(f"callgrind wrote no count:\n{err.decode(errors='replace')[-2000:]}")
        return int(found.group(1)) // steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", choices=ALL, help="repeatable")
    parser.add_argument("--steps", type=int, default=30, help="steps counted (default 30)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    results: list[dict[str, Any]] = []
    for workload in args.workload or ALL:
        row = {"workload": workload, "server_instructions": instructions(workload, args.steps)}
        results.append(row)
        if not args.json:
            per = "request" if workload == "typename" else "step"
            print(f"{workload:15} {row['server_instructions'] / 1e6:7.2f}M instructions a {per}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
