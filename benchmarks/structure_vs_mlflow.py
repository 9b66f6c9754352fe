#!/usr/bin/env python
"""Writes of structure, LineageHub against MLflow: registering versions and building lineage.

The tracking benchmark (``tracking_vs_mlflow.py``) times params, metrics and search; this one
times what a hub spends its life on, side by side on the same workload, embedded (both on a
SQLite file in this process) and through a server (``lineagehub serve`` and ``mlflow server``,
each a subprocess on 127.0.0.1 with one worker over a SQLite file):

(e) **register**: N versions of one model (default 200), each from a run of its own (started
    and finished), then aliased ``champion`` and moved to stage ``Staging``. MLflow:
    ``create_run`` + ``set_terminated`` + ``create_model_version(source, run_id)`` +
    ``set_registered_model_alias`` + ``transition_model_version_stage``. LineageHub, one call
    each (``start_run``/``end``, ``register_model_version``, ``set_alias``, ``promote``), and
    the same as one ``client.batch()`` per version (one transaction; one request).
(f) **alias**: fetch the version by its alias (the median of 200): ``get_model_version_by_
    alias`` against ``get_model_version("m@champion")``.
(g) **lineage**: a chain of S steps (default 1,250, about 5,000 nodes): each a run that reads
    two new datasets and the previous step's model version and registers a version. MLflow
    has no "a run used a model version" edge: its side records the previous version as a tag
    (less work than an edge, in its favour); datasets are ``log_inputs`` of ``DatasetInput``
    entities. LineageHub: ``log_dataset_ref`` x2, ``log_input_model``,
    ``register_model_version``, one call each, and one batch per step.

With ``--mlmd-python`` (a Python with ``ml-metadata``: it pins its own protobuf, so it lives
in a virtual environment of its own), ML Metadata's times for the same workloads
(``mlmd_side.py``, in process) are printed beside, for the embedded lines.

Every store is new and empty; the model and the experiment are created before the clock
starts, and each system does a throw-away warm-up. After each workload both sides are read
back and checked (counts, the alias's holder, the lineage's length). Ratios are MLflow's time
over LineageHub's: above 1, LineageHub is faster. Goal (issue 16): 10x MLflow on each line,
and 2x ML Metadata on the embedded ones; each line says PASS or MISS. With ``--repeat N`` every
workload runs N times on fresh stores (ML Metadata's side between rounds) and the table gives
each system's median.

    python benchmarks/structure_vs_mlflow.py                  # embedded and server
    python benchmarks/structure_vs_mlflow.py --mode embedded --versions 50 --steps 200
    python benchmarks/structure_vs_mlflow.py --json
    python benchmarks/structure_vs_mlflow.py --repeat 3 --mlmd-python PATH   # medians of 3

Needs the ``bench`` extra (mlflow-skinny) and, for ``--mode server``, MLflow's server
dependencies (``pip install mlflow-skinny flask aiohttp huey``). Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
# MLflow 3.18 prints a "View run ... at: URL" line for every run a client ends on a server
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

MODEL = "bench-model"
DIGEST_IN = "sha256:" + "a" * 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120.0) -> None:
    """Until ``url`` answers 200 (``proc`` killed if it exits or ``timeout`` s pass first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{what} did not start (exit {proc.poll()})")
        time.sleep(0.05)


@contextlib.contextmanager
def lineagehub_server(folder: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "LINEAGEHUB_RATE_LIMIT": "0"}
    env.pop("LINEAGEHUB_AUTH", None)
    argv = [sys.executable, "-m", "lineagehub", "serve", "--store", f"sqlite:///{folder}/hub.db",
            "--artifacts", (folder / "artifacts").as_uri(), "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, "lineagehub serve")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
            "--default-artifact-root", (folder / "mlartifacts").as_uri(), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]  # fmt: skip
    # Without its job runner: eight worker processes that serve asynchronous GenAI jobs (none
    # of these workloads) and spend ~20 s of CPU importing after /health answers, on the clock
    # of whatever is timed next; the tracking and registry endpoints do not use it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, "mlflow server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the sides ---------------------------------------------------------------------------------


class LineageHub:
    def __init__(self, target: str, folder: Path) -> None:
        from lineagehub.ingest.client import Client

        if target.startswith("http"):
            self.client = Client(target)
        else:
            self.client = Client(target, artifacts=(folder / "artifacts").as_uri())
        self.weights = self.client.backend.artifacts.put_bytes(b"model weights").digest

    def register_calls(self, i: int) -> None:
        c = self.client
        with c.start_run(f"train-{i}", project="bench", capture=False) as run:
            pass
        mv = c.register_model_version(MODEL, digest=self.weights, run_id=run.id)
        c.set_alias(mv.node_id, "champion", reason="bench")
        c.promote(mv.node_id, "Staging", reason="bench")

    def register_batch(self, i: int) -> None:
        with self.client.batch() as b:
            run = b.start_run(f"train-{i}", project="bench")
            b.end_run(run)
            mv = b.register_model_version(MODEL, digest=self.weights, run=run)
            b.set_alias(mv, "champion", reason="bench")
            b.promote(mv, "Staging", reason="bench")

    def alias(self) -> Any:
        return self.client.get_model_version(f"{MODEL}@champion")

    def step_calls(self, i: int, previous: Any) -> Any:
        c = self.client
        with c.start_run(f"step-{i}", project="bench", capture=False) as run:
            for k in range(2):
                run.log_dataset_ref(f"s3://lake/step-{i}-{k}.parquet", digest(i, k))
            if previous is not None:
                run.log_input_model(previous)
        return c.register_model_version(MODEL, digest=self.weights, run_id=run.id).node_id

    def step_batch(self, i: int, previous: Any) -> Any:
        with self.client.batch() as b:
            run = b.start_run(f"step-{i}", project="bench")
            for k in range(2):
                b.log_dataset_ref(run, f"s3://lake/step-{i}-{k}.parquet", digest(i, k))
            if previous is not None:
                b.log_input_model(run, previous)
            b.end_run(run)
            mv = b.register_model_version(MODEL, digest=self.weights, run=run)
        return mv.result().node_id

    def check(self, versions: int, alias_version: int) -> None:
        found = self.client.get_model_version(f"{MODEL}@champion")
        check(found.version == alias_version, f"LineageHub alias holder {found.version}")
        latest = self.client.get_model_version(f"{MODEL}/{versions}")
        check(latest.version == versions, "LineageHub version count")

    def lineage_length(self, last: str) -> int:
        graph = self.client.lineage([last], upstream_depth=12, max_nodes=50_000)
        return sum(1 for n in graph.nodes.values() if n.node.label == "ModelVersion")

    def close(self) -> None:
        self.client.close()


class Mlflow:
    def __init__(self, target: str, folder: Path) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=target, registry_uri=target)
        self.experiment = self.client.create_experiment(
            f"bench-{time.monotonic_ns()}", artifact_location=(folder / "mlartifacts").as_uri()
        )
        self.client.create_registered_model(MODEL)

    def register_calls(self, i: int) -> None:
        c = self.client
        run = c.create_run(self.experiment, run_name=f"train-{i}").info.run_id
        c.set_terminated(run)
        mv = c.create_model_version(MODEL, f"runs:/{run}/model", run_id=run)
        c.set_registered_model_alias(MODEL, "champion", mv.version)
        c.transition_model_version_stage(MODEL, mv.version, "Staging")

    def alias(self) -> Any:
        return self.client.get_model_version_by_alias(MODEL, "champion")

    def step_calls(self, i: int, previous: Any) -> Any:
        from mlflow.entities import Dataset, DatasetInput

        c = self.client
        tags = {"previous_model_version": str(previous)} if previous is not None else None
        run = c.create_run(self.experiment, run_name=f"step-{i}", tags=tags).info.run_id
        inputs = [
            DatasetInput(
                Dataset(f"step-{i}-{k}", digest(i, k)[7:23], "s3", f"s3://lake/step-{i}-{k}")
            )
            for k in range(2)
        ]
        c.log_inputs(run, inputs)
        c.set_terminated(run)
        return c.create_model_version(MODEL, f"runs:/{run}/model", run_id=run).version

    def check(self, versions: int, alias_version: int) -> None:
        found = self.alias()
        check(int(found.version) == alias_version, f"MLflow alias holder {found.version}")
        latest = self.client.get_latest_versions(MODEL, stages=["None", "Staging"])
        check(max(int(v.version) for v in latest) == versions, "MLflow version count")

    def close(self) -> None:
        pass


def digest(i: int, k: int) -> str:
    return "sha256:" + f"{i:08x}{k:04x}".rjust(64, "0")


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        raise SystemExit(2)


def timed(fn: Callable[[int], Any], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - started


def chain(step: Callable[[int, Any], Any], n: int) -> tuple[float, Any]:
    started = time.perf_counter()
    previous = None
    for i in range(n):
        previous = step(i, previous)
    return time.perf_counter() - started, previous


# --- one mode ----------------------------------------------------------------------------------


@contextlib.contextmanager
def sides(mode: str, root: Path, name: str) -> Iterator[tuple[LineageHub, Mlflow]]:
    """Both systems on fresh stores (and, in server mode, fresh servers)."""
    lh_dir, ml_dir = root / f"{name}-lh", root / f"{name}-ml"
    lh_dir.mkdir(parents=True)
    ml_dir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        if mode == "server":
            lh_target = stack.enter_context(lineagehub_server(lh_dir))
            ml_target = stack.enter_context(mlflow_server(ml_dir))
        else:
            lh_target, ml_target = f"sqlite:///{lh_dir}/hub.db", f"sqlite:///{ml_dir}/mlflow.db"
        lh, ml = LineageHub(lh_target, lh_dir), Mlflow(ml_target, ml_dir)
        yield lh, ml
        lh.close()
        ml.close()


#: The goals of issue 16: MLflow's time over LineageHub's, and ML Metadata's (embedded).
GOAL_MLFLOW = 10.0
GOAL_MLMD = 2.0


def one_round(
    mode: str, args: argparse.Namespace, root: Path, tag: str
) -> dict[tuple[str, str], tuple[float, float]]:
    """Each workload once on fresh stores: ``{(workload, LineageHub's line): (LH, MLflow)}``
    (seconds; the alias fetch in milliseconds)."""
    times: dict[tuple[str, str], tuple[float, float]] = {}

    def note(workload: str, line: str, lh: float, ml: float, unit: str = "s") -> None:
        times[(workload, line)] = (lh, ml)
        print(f"  {mode:8} {workload:10} {line:22} LH {lh:8.3f} {unit}  MLflow {ml:8.3f} "
              f"{unit}  x{ml / lh:5.1f}  ({tag})", file=sys.stderr, flush=True)  # fmt: skip

    n, steps = args.versions, args.steps
    # (e) registration, one call each; (f) the alias, on that store
    with sides(mode, root, f"{mode}-e-{tag}") as (lh, ml):
        t_lh, t_ml = timed(lh.register_calls, n), timed(ml.register_calls, n)
        lh.check(n, n), ml.check(n, n)
        note("register", "one call each", t_lh, t_ml)
        a_lh = statistics.median(timed(lambda _: lh.alias(), 1) for _ in range(args.fetches))
        a_ml = statistics.median(timed(lambda _: ml.alias(), 1) for _ in range(args.fetches))
        note("alias", "get_model_version", a_lh * 1e3, a_ml * 1e3, "ms")
    with sides(mode, root, f"{mode}-e2-{tag}") as (lh, ml):
        t_lh = timed(lh.register_batch, n)
        lh.check(n, n)
        note("register", "a batch per version", t_lh, t_ml)
    # (g) lineage
    with sides(mode, root, f"{mode}-g-{tag}") as (lh, ml):
        (t_lh, last), (t_ml, _) = chain(lh.step_calls, steps), chain(ml.step_calls, steps)
        check(lh.lineage_length(last) == min(steps, 7), "LineageHub lineage chain")
        note("lineage", "one call each", t_lh, t_ml)
    with sides(mode, root, f"{mode}-g2-{tag}") as (lh, ml):
        t_lh, last = chain(lh.step_batch, steps)
        check(lh.lineage_length(last) == min(steps, 7), "LineageHub lineage chain (batch)")
        note("lineage", "a batch per step", t_lh, t_ml)
    return times


def run_mode(mode: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """Every workload ``--repeat`` times on fresh stores (embedded, ML Metadata's side before
    each round), each time the median of the repetitions."""
    with sides(mode, root, f"{mode}-warm") as (lh, ml):  # imports and first-use caches
        lh.register_calls(0), lh.register_batch(1), ml.register_calls(0)
        lh.step_calls(0, None), lh.step_batch(1, None), ml.step_calls(0, None)
    rounds, mlmd_rounds = [], []
    for r in range(args.repeat):
        if mode == "embedded" and args.mlmd_python:
            mlmd_rounds.append(mlmd_times(args))
        rounds.append(one_round(mode, args, root, f"{r + 1}/{args.repeat}"))
    rows: list[dict[str, Any]] = []
    for (workload, line), _ in rounds[0].items():
        lh = statistics.median(x[(workload, line)][0] for x in rounds)
        ml = statistics.median(x[(workload, line)][1] for x in rounds)
        key = "alias_ms" if workload == "alias" else workload
        md = statistics.median(m[key] for m in mlmd_rounds) if mlmd_rounds else None
        rows.append({"mode": mode, "workload": workload, "lineagehub": line,
                     "unit": "ms" if workload == "alias" else "s", "repeat": args.repeat,
                     "lineagehub_time": lh, "mlflow_time": ml, "ratio": ml / lh,
                     "mlmd_time": md, "mlmd_ratio": md / lh if md else None,
                     "goal_met": ml / lh >= GOAL_MLFLOW and (md is None or md / lh >= GOAL_MLMD)})  # fmt: skip
    return rows


def mlmd_times(args: argparse.Namespace) -> dict[str, float]:
    """ML Metadata's times for the same workloads, from ``mlmd_side.py`` run with its own
    Python (``--mlmd-python``), or none."""
    if not args.mlmd_python:
        return {}
    argv = [args.mlmd_python, str(Path(__file__).with_name("mlmd_side.py")),
            "--versions", str(args.versions), "--steps", str(args.steps),
            "--fetches", str(args.fetches)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mlmd_side.py failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["embedded", "server", "both"], default="both")
    p.add_argument("--versions", type=int, default=200, help="versions registered, (e)")
    p.add_argument("--steps", type=int, default=1250, help="lineage steps, (g): ~4 nodes each")
    p.add_argument("--fetches", type=int, default=200, help="alias fetches, (f): the median")
    p.add_argument(
        "--repeat", type=int, default=1, help="fresh-store repetitions; each time the median"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--mlmd-python",
        metavar="PATH",
        help="a Python with ml-metadata installed: ML Metadata's times beside, embedded",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    root = Path(tempfile.mkdtemp(prefix="lh-structure-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        # MLflow's client prints a line per finished run to stdout: keep it out of the table
        with contextlib.redirect_stdout(sys.stderr):
            for mode in ("embedded", "server") if args.mode == "both" else (args.mode,):
                rows += run_mode(mode, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"Medians of {args.repeat} fresh-store repetition(s); goal: MLflow / LineageHub "
              f">= {GOAL_MLFLOW:g}x, ML Metadata / LineageHub >= {GOAL_MLMD:g}x (embedded)")  # fmt: skip
        print("| mode | workload | LineageHub | LineageHub | MLflow | MLflow / LineageHub "
              "| ML Metadata | MLMD / LineageHub | goal |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            u = r["unit"]
            md = (f"{r['mlmd_time']:.3f} {u} | {r['mlmd_ratio']:.1f}x" if r["mlmd_time"]
                  else "- | -")  # fmt: skip
            print(f"| {r['mode']} | {r['workload']} | {r['lineagehub']} | "
                  f"{r['lineagehub_time']:.3f} {u} | {r['mlflow_time']:.3f} {u} | "
                  f"{r['ratio']:.1f}x | {md} | {'PASS' if r['goal_met'] else 'MISS'} |")  # fmt: skip
        met = sum(r["goal_met"] for r in rows)
        print(f"{met}/{len(rows)} lines meet the goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
