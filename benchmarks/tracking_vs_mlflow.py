#!/usr/bin/env python
"""Tracking benchmark: the LineageHub SDK against MLflow's client, both on SQLite.

The same workloads, with the same seeded random data, go through LineageHub's embedded SDK
(:class:`lineagehub.ingest.client.Client` on ``sqlite:////<tmp>/hub.db``) and through
``mlflow.MlflowClient`` on ``sqlite:////<tmp>/mlflow.db``, in one process:

(a) 200 params on one run. LineageHub: one ``log_params`` of 200, then ``flush()`` (so the
    params are in the database, not only in the SDK's buffer). MLflow: one ``log_batch`` of
    200 ``Param`` (its fastest path); MLflow's one ``log_param`` call per param is a
    secondary line.
(b) 10,000 metric points on one run (5 keys x 2,000 steps). LineageHub: one ``log_metric``
    call per point, then ``end()``; one ``log_metrics`` call per step is a secondary line.
    MLflow: ``log_batch`` in chunks of 1,000 metrics (its documented per-request limit),
    then ``set_terminated``.
(c) 2,000 runs with 10 params, 5 metrics and 3 tags each. LineageHub: ``start_run`` +
    ``log_params`` + ``log_metrics`` + ``set_tags`` + ``end()`` per run, with
    ``capture=True`` (the default a user has: git state, environment, user, host);
    ``capture=False`` is a secondary line. MLflow: ``create_run`` + ``log_batch`` +
    ``set_terminated`` per run (its fastest client path).
(d) Search those 2,000 runs: ``metrics.m0 > 0.5`` ordered by ``m0`` descending, at most 1,000
    runs, scoped to the experiment (MLflow ``search_runs``; LineageHub ``search_runs``
    with the equivalent ``where`` / ``order_by`` / ``limit``), repeated 20 times: the median.

Method:

* Every workload gets fresh stores in fresh temporary directories. Creating a store (for
  MLflow: its Alembic migrations, about 1.5 s on first use of a SQLite file; for
  LineageHub: its schema) and the experiment happens before the clock starts.
* Before any workload, each system does a throwaway warm-up (one run with a param, a
  metric, a tag and a search) in a store of its own, so imports and first-use caches are
  not timed on either side.
* MLflow's entity objects (``Param``, ``Metric``, ``RunTag``) are built before the clock
  starts; LineageHub's times include all of its per-call work (validation, buffering).
  Both choices favour MLflow.
* ``time.perf_counter``; (a) and (b) are the median of several runs (``--repeat``), each on
  a new run in the workload's store; (c) is one pass; (d) the median of 20 searches.
* After each workload both stores are read back and checked (counts, values, the ordered
  search result), so neither side can be fast by being wrong. A failed check exits 2.
* MLflow's telemetry is disabled (``MLFLOW_DISABLE_TELEMETRY``): this machine has no network.

With ``--mode server`` the same workloads go through servers instead: ``lineagehub serve``
(the SDK's ``Client(url)``) and ``mlflow server --workers 1`` (``MlflowClient`` with an
``http://`` tracking URI), each a subprocess on 127.0.0.1 over a SQLite file of its own, a
fresh server for every store; starting them is not timed. The checks read both back through
their servers.

Target: LineageHub at least 10x faster than MLflow on each primary line (PASS/MISS).

    python benchmarks/tracking_vs_mlflow.py
    python benchmarks/tracking_vs_mlflow.py --mode server --repeat 3
    python benchmarks/tracking_vs_mlflow.py --json
    python benchmarks/tracking_vs_mlflow.py --runs 500 --repeat 1     # quicker
    python benchmarks/tracking_vs_mlflow.py --profile c               # cProfile LineageHub's (c)

Needs ``mlflow>=3.17`` (the ``bench`` extra) and, for ``--mode server``, MLflow's server
dependencies (``pip install flask aiohttp huey``). Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TARGET_RATIO = 10.0
SEED = 20261127
MLFLOW_BATCH_LIMIT = 1000  # metrics per log_batch request (MLflow's documented limit)
SEARCH_LIMIT = 1000
METRIC_KEYS = ("loss", "accuracy", "auc", "precision", "recall")
PROFILE_CHOICES = ("a", "b", "b-step", "c", "c-nocapture", "d")


class CheckFailed(AssertionError):
    """A store does not hold what the workload logged."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --- results ------------------------------------------------------------------------------------


@dataclass
class Line:
    """One row of the table: a LineageHub time against an MLflow time."""

    workload: str
    name: str
    lineagehub_s: float
    mlflow_s: float
    primary: bool = True
    detail: str = ""
    samples_lineagehub_s: list[float] = field(default_factory=list)
    samples_mlflow_s: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.mlflow_s / self.lineagehub_s if self.lineagehub_s > 0 else float("inf")

    @property
    def verdict(self) -> str:
        return "PASS" if self.ratio >= TARGET_RATIO else "MISS"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = round(self.ratio, 2)
        d["target_ratio"] = TARGET_RATIO
        d["result"] = self.verdict
        return d


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    lines: list[Line] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    profiler: cProfile.Profile | None = None

    def tmp(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True)
        return path

    def passed(self, message: str) -> None:
        self.checks.append(message)
        if not self.args.json:
            print(f"  ok  {message}", file=sys.stderr)

    @contextlib.contextmanager
    def profiled(self, workload: str) -> Iterator[None]:
        """Profile the LineageHub side of ``workload`` when ``--profile`` names it."""
        if self.profiler is not None and self.args.profile == workload:
            self.profiler.enable()
            try:
                yield
            finally:
                self.profiler.disable()
        else:
            yield


def median_time(samples: list[float]) -> float:
    return statistics.median(samples)


# --- data ---------------------------------------------------------------------------------------


def make_params(rng: random.Random, n: int, prefix: str = "p") -> dict[str, Any]:
    """``n`` hyper-parameters of mixed JSON-scalar types."""
    params: dict[str, Any] = {}
    for i in range(n):
        kind = i % 4
        if kind == 0:
            value: Any = rng.randint(1, 1000)
        elif kind == 1:
            value = round(rng.uniform(1e-5, 1.0), 6)
        elif kind == 2:
            value = rng.choice(["adam", "sgd", "rmsprop", "adagrad"]) + f"-{rng.randint(0, 99)}"
        else:
            value = rng.random() < 0.5
        params[f"{prefix}{i:03d}"] = value
    return params


def make_series(rng: random.Random, steps: int) -> list[tuple[float, ...]]:
    """One tuple of ``len(METRIC_KEYS)`` values per step."""
    return [tuple(rng.random() for _ in METRIC_KEYS) for _ in range(steps)]


@dataclass
class SweepRun:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]


def make_sweep(rng: random.Random, n: int) -> list[SweepRun]:
    runs = []
    for i in range(n):
        params = make_params(rng, 10)
        metrics = {f"m{j}": rng.random() for j in range(5)}
        tags = {
            "team": rng.choice(["growth", "risk", "search"]),
            "stage": rng.choice(["exploration", "tuning", "candidate"]),
            "seed": str(rng.randint(0, 10_000)),
        }
        runs.append(SweepRun(f"run-{i:05d}", params, metrics, tags))
    return runs


# --- the two systems ----------------------------------------------------------------------------


#: "embedded" or "server" (``--mode``): where the sides below keep their stores.
MODE = "embedded"
#: MLflow's servers started in server mode, stopped when the benchmark ends.
SERVERS = contextlib.ExitStack()


class LineageHubSide:
    """A LineageHub SDK client on a fresh SQLite file, artifacts beside it (server mode: a
    client of a ``lineagehub serve`` over that file)."""

    def __init__(self, folder: Path) -> None:
        from lineagehub.ingest.client import Client

        self.server = contextlib.ExitStack()
        if MODE == "server":
            from structure_vs_mlflow import lineagehub_server

            self.client = Client(self.server.enter_context(lineagehub_server(folder)))
        else:
            db = folder / "hub.db"
            self.client = Client(f"sqlite:///{db}", artifacts=(folder / "artifacts").as_uri())

    def close(self) -> None:
        self.client.close()
        self.server.close()


class MlflowSide:
    """An ``MlflowClient`` on a fresh SQLite file; creating it runs MLflow's migrations
    (server mode: a client of an ``mlflow server`` over that file)."""

    def __init__(self, folder: Path, experiment: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        if MODE == "server":
            from structure_vs_mlflow import mlflow_server

            self.uri = SERVERS.enter_context(mlflow_server(folder))
        else:
            self.uri = f"sqlite:///{folder / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        # The first use of the database file runs MLflow's Alembic migrations: untimed.
        self.experiment_id = self.client.create_experiment(
            experiment, artifact_location=(folder / "mlartifacts").as_uri()
        )

    def all_runs(self) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs


def mlflow_entities() -> tuple[Any, Any, Any]:
    from mlflow.entities import Metric, Param, RunTag

    return Metric, Param, RunTag


def now_ms() -> int:
    return int(time.time() * 1000)


# --- warm-up ------------------------------------------------------------------------------------


def warm_up(bench: Bench) -> None:
    """One throwaway run through each system, in stores of their own: imports, SQLAlchemy's
    statement caches and the SDK's first-use work are not timed by any workload."""
    Metric, Param, RunTag = mlflow_entities()
    lh = LineageHubSide(bench.tmp("warmup-lineagehub"))
    run = lh.client.start_run("warm-up", project="bench", experiment="warm-up")
    run.log_params({"x": 1})
    run.log_metric("m0", 0.7, step=0)
    run.set_tags({"t": "v"})
    run.end()
    lh.client.search_runs(where={"metrics.m0": {"$gt": 0.5}}, order_by="-metrics.m0", limit=10)
    lh.close()

    ml = MlflowSide(bench.tmp("warmup-mlflow"), "warm-up")
    run_id = ml.client.create_run(ml.experiment_id, run_name="warm-up").info.run_id
    ml.client.log_batch(
        run_id,
        metrics=[Metric("m0", 0.7, now_ms(), 0)],
        params=[Param("x", "1")],
        tags=[RunTag("t", "v")],
    )
    ml.client.log_param(run_id, "y", "2")
    ml.client.set_terminated(run_id)
    ml.client.search_runs(
        [ml.experiment_id], "metrics.m0 > 0.5", order_by=["metrics.m0 DESC"], max_results=10
    )


# --- (a) params ---------------------------------------------------------------------------------


def workload_params(bench: Bench, rng: random.Random) -> None:
    n = bench.args.params
    repeat = bench.args.repeat
    params = make_params(rng, n)
    _, Param, _ = mlflow_entities()

    lh = LineageHubSide(bench.tmp("a-lineagehub"))
    lh_times = []
    for i in range(repeat):
        run = lh.client.start_run(f"params-{i}", project="bench", experiment="a")
        with bench.profiled("a"):
            t0 = time.perf_counter()
            run.log_params(params)
            run.flush()
            lh_times.append(time.perf_counter() - t0)
        run.end()
        got = lh.client.get_run(run.id).params
        check(got == params, f"(a) LineageHub run {i}: params differ from those logged")
    bench.passed(f"(a) LineageHub: {repeat} run(s) each hold the {n} params as logged")

    ml = MlflowSide(bench.tmp("a-mlflow"), "a")
    batch = [Param(k, str(v)) for k, v in params.items()]
    ml_times, ml_single = [], []
    for i in range(repeat):
        run_id = ml.client.create_run(ml.experiment_id, run_name=f"params-{i}").info.run_id
        t0 = time.perf_counter()
        ml.client.log_batch(run_id, params=batch)
        ml_times.append(time.perf_counter() - t0)
        ml.client.set_terminated(run_id)
        got = ml.client.get_run(run_id).data.params
        check(got == {k: str(v) for k, v in params.items()}, f"(a) MLflow run {i}: params differ")
    for i in range(repeat):
        run_id = ml.client.create_run(ml.experiment_id, run_name=f"params-1by1-{i}").info.run_id
        t0 = time.perf_counter()
        for key, value in params.items():
            ml.client.log_param(run_id, key, value)
        ml_single.append(time.perf_counter() - t0)
        ml.client.set_terminated(run_id)
        got = ml.client.get_run(run_id).data.params
        check(got == {k: str(v) for k, v in params.items()}, f"(a) MLflow 1-by-1 {i}: params")
    bench.passed(f"(a) MLflow: {2 * repeat} run(s) each hold the {n} params as logged")

    lh_median = median_time(lh_times)
    bench.lines.append(
        Line(
            "a",
            f"(a) {n} params, one run: log_params+flush vs log_batch",
            lh_median,
            median_time(ml_times),
            detail=f"median of {repeat}",
            samples_lineagehub_s=lh_times,
            samples_mlflow_s=ml_times,
        )
    )
    bench.lines.append(
        Line(
            "a",
            f"    MLflow one log_param per param ({n} calls)",
            lh_median,
            median_time(ml_single),
            primary=False,
            detail=f"median of {repeat}",
            samples_lineagehub_s=lh_times,
            samples_mlflow_s=ml_single,
        )
    )
    lh.close()


# --- (b) metric points --------------------------------------------------------------------------


def workload_metrics(bench: Bench, rng: random.Random) -> None:
    steps = bench.args.points // len(METRIC_KEYS)
    points = steps * len(METRIC_KEYS)
    repeat = bench.args.repeat
    series = make_series(rng, steps)
    keys = METRIC_KEYS
    Metric, _, _ = mlflow_entities()

    def expect_lh(client: Any, run_id: str, label: str) -> None:
        for j, key in enumerate(keys):
            hist = client.metric_history(run_id, key)
            check(len(hist) == steps, f"{label}: {key} has {len(hist)} points, not {steps}")
            check(
                [p.step for p in hist] == list(range(steps))
                and [p.value for p in hist] == [row[j] for row in series],
                f"{label}: {key} values or steps differ from those logged",
            )

    lh = LineageHubSide(bench.tmp("b-lineagehub"))
    per_point, per_step = [], []
    for i in range(repeat):
        run = lh.client.start_run(f"points-{i}", project="bench", experiment="b")
        log_metric = run.log_metric
        with bench.profiled("b"):
            t0 = time.perf_counter()
            for step, row in enumerate(series):
                for key, value in zip(keys, row):
                    log_metric(key, value, step=step)
            run.end()
            per_point.append(time.perf_counter() - t0)
        expect_lh(lh.client, run.id, f"(b) LineageHub per-point run {i}")

        run = lh.client.start_run(f"steps-{i}", project="bench", experiment="b")
        log_metrics = run.log_metrics
        with bench.profiled("b-step"):
            t0 = time.perf_counter()
            for step, row in enumerate(series):
                log_metrics(dict(zip(keys, row)), step=step)
            run.end()
            per_step.append(time.perf_counter() - t0)
        expect_lh(lh.client, run.id, f"(b) LineageHub per-step run {i}")
    bench.passed(
        f"(b) LineageHub: {2 * repeat} run(s) each hold {points} points "
        f"({len(keys)} keys x {steps} steps) with the logged values"
    )

    ml = MlflowSide(bench.tmp("b-mlflow"), "b")
    ts = now_ms()
    entities = [
        Metric(k, v, ts, step) for step, row in enumerate(series) for k, v in zip(keys, row)
    ]
    chunks = [
        entities[i : i + MLFLOW_BATCH_LIMIT] for i in range(0, len(entities), MLFLOW_BATCH_LIMIT)
    ]
    ml_times = []
    for i in range(repeat):
        run_id = ml.client.create_run(ml.experiment_id, run_name=f"points-{i}").info.run_id
        t0 = time.perf_counter()
        for chunk in chunks:
            ml.client.log_batch(run_id, metrics=chunk)
        ml.client.set_terminated(run_id)
        ml_times.append(time.perf_counter() - t0)
        for j, key in enumerate(keys):
            hist = sorted(ml.client.get_metric_history(run_id, key), key=lambda m: m.step)
            check(len(hist) == steps, f"(b) MLflow run {i}: {key} has {len(hist)} points")
            check(
                [m.value for m in hist] == [row[j] for row in series],
                f"(b) MLflow run {i}: {key} values differ from those logged",
            )
    bench.passed(f"(b) MLflow: {repeat} run(s) each hold {points} points with the logged values")

    ml_median = median_time(ml_times)
    bench.lines.append(
        Line(
            "b",
            f"(b) {points:,} points, one run: log_metric/point vs log_batch x{len(chunks)}",
            median_time(per_point),
            ml_median,
            detail=f"median of {repeat}; both include ending the run",
            samples_lineagehub_s=per_point,
            samples_mlflow_s=ml_times,
        )
    )
    bench.lines.append(
        Line(
            "b",
            f"    LineageHub one log_metrics per step ({steps:,} calls)",
            median_time(per_step),
            ml_median,
            primary=False,
            detail=f"median of {repeat}",
            samples_lineagehub_s=per_step,
            samples_mlflow_s=ml_times,
        )
    )
    lh.close()


# --- (c) many runs and (d) search ---------------------------------------------------------------


def lineagehub_sweep(bench: Bench, sweep: list[SweepRun], capture: bool) -> tuple[Any, float]:
    lh = LineageHubSide(bench.tmp(f"c-lineagehub-{'capture' if capture else 'nocapture'}"))
    client = lh.client
    with bench.profiled("c" if capture else "c-nocapture"):
        t0 = time.perf_counter()
        for r in sweep:
            run = client.start_run(r.name, project="bench", experiment="sweep", capture=capture)
            run.log_params(r.params)
            run.log_metrics(r.metrics, step=0)
            run.set_tags(r.tags)
            run.end()
        elapsed = time.perf_counter() - t0
    check_lineagehub_sweep(lh, sweep, capture)
    return lh, elapsed


def check_lineagehub_sweep(lh: LineageHubSide, sweep: list[SweepRun], capture: bool) -> None:
    scope = {"project": "bench", "experiment": "sweep"}
    n = len(sweep)
    label = f"(c) LineageHub capture={capture}"
    runs: list[Any] = []
    cursor = None
    while True:
        page, cursor = lh.client.search_runs(scope, order_by="name", after=cursor, limit=1000)
        runs += page
        if cursor is None:
            break
    check(len(runs) == n, f"{label}: {len(runs)} runs, not {n}")
    done = sum(1 for run in runs if run.status.value == "FINISHED")
    check(done == n, f"{label}: {done} runs FINISHED, not {n}")
    by_name = {run.name: run for run in runs}
    check(len(by_name) == n, f"{label}: {len(by_name)} distinct run names, not {n}")
    for r in sweep:
        got = by_name[r.name]
        check(got.params == r.params, f"{label}: {r.name} params differ")
        check(got.metrics == r.metrics, f"{label}: {r.name} metrics differ")
        check(all(got.tags.get(k) == v for k, v in r.tags.items()), f"{label}: {r.name} tags")
    for r in sweep[:: max(1, n // 20)]:
        hist = lh.client.metric_history(by_name[r.name].id, "m0")
        check(
            [(p.step, p.value) for p in hist] == [(0, r.metrics["m0"])],
            f"{label}: {r.name} metric series differs",
        )


def mlflow_sweep(bench: Bench, sweep: list[SweepRun]) -> tuple[MlflowSide, float]:
    Metric, Param, RunTag = mlflow_entities()
    ml = MlflowSide(bench.tmp("c-mlflow"), "sweep")
    ts = now_ms()
    batches = [
        (
            r.name,
            [Metric(k, v, ts, 0) for k, v in r.metrics.items()],
            [Param(k, str(v)) for k, v in r.params.items()],
            [RunTag(k, v) for k, v in r.tags.items()],
        )
        for r in sweep
    ]
    client, experiment_id = ml.client, ml.experiment_id
    t0 = time.perf_counter()
    for name, metrics, params, tags in batches:
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run_id)
    elapsed = time.perf_counter() - t0

    runs = ml.all_runs()
    n = len(sweep)
    check(len(runs) == n, f"(c) MLflow: {len(runs)} runs, not {n}")
    check(all(r.info.status == "FINISHED" for r in runs), "(c) MLflow: a run is not FINISHED")
    by_name = {r.info.run_name: r for r in runs}
    check(len(by_name) == n, f"(c) MLflow: {len(by_name)} distinct run names, not {n}")
    for r in sweep:
        got = by_name[r.name].data
        check(got.params == {k: str(v) for k, v in r.params.items()}, f"(c) MLflow {r.name}")
        check(got.metrics == r.metrics, f"(c) MLflow: {r.name} metrics differ")
        check(all(got.tags.get(k) == v for k, v in r.tags.items()), f"(c) MLflow: {r.name} tags")
    return ml, elapsed


def workload_runs_and_search(bench: Bench, rng: random.Random) -> None:
    n = bench.args.runs
    sweep = make_sweep(rng, n)

    lh, lh_capture = lineagehub_sweep(bench, sweep, capture=True)
    bench.passed(f"(c) LineageHub capture=True: {n} FINISHED runs with their params/metrics/tags")
    lh_plain, lh_nocapture = lineagehub_sweep(bench, sweep, capture=False)
    lh_plain.close()
    bench.passed(f"(c) LineageHub capture=False: {n} FINISHED runs with their params/metrics/tags")
    ml, ml_time = mlflow_sweep(bench, sweep)
    bench.passed(f"(c) MLflow: {n} FINISHED runs with their params/metrics/tags")

    bench.lines.append(
        Line(
            "c",
            f"(c) {n:,} runs x (10 params, 5 metrics, 3 tags), capture=True",
            lh_capture,
            ml_time,
            detail=f"{lh_capture / n * 1e3:.2f} ms vs {ml_time / n * 1e3:.2f} ms per run",
        )
    )
    bench.lines.append(
        Line(
            "c",
            "    LineageHub capture=False",
            lh_nocapture,
            ml_time,
            primary=False,
            detail=f"{lh_nocapture / n * 1e3:.2f} ms per run",
        )
    )

    # (d) the expected answer, from the data itself
    matching = sorted((r for r in sweep if r.metrics["m0"] > 0.5), key=lambda r: -r.metrics["m0"])
    expected = [r.name for r in matching[:SEARCH_LIMIT]]
    where = {"project": "bench", "experiment": "sweep", "metrics.m0": {"$gt": 0.5}}
    lh_times, ml_times = [], []
    for i in range(bench.args.search_repeat):
        with bench.profiled("d"):
            t0 = time.perf_counter()
            runs, _cursor = lh.client.search_runs(
                where=where, order_by="-metrics.m0", limit=SEARCH_LIMIT
            )
            lh_times.append(time.perf_counter() - t0)
        check([r.name for r in runs] == expected, f"(d) LineageHub search {i}: wrong runs/order")
        t0 = time.perf_counter()
        found = ml.client.search_runs(
            [ml.experiment_id],
            filter_string="metrics.m0 > 0.5",
            order_by=["metrics.m0 DESC"],
            max_results=SEARCH_LIMIT,
        )
        ml_times.append(time.perf_counter() - t0)
        check([r.info.run_name for r in found] == expected, f"(d) MLflow search {i}: wrong runs")
    bench.passed(
        f"(d) both searches return the same {len(expected)} runs in the same order, "
        f"{bench.args.search_repeat} times ({len(matching)} of {n} runs match)"
    )
    bench.lines.append(
        Line(
            "d",
            f"(d) search {n:,} runs: m0 > 0.5, order m0 desc, limit {SEARCH_LIMIT}",
            median_time(lh_times),
            median_time(ml_times),
            detail=f"median of {bench.args.search_repeat}; {len(expected)} runs returned",
            samples_lineagehub_s=lh_times,
            samples_mlflow_s=ml_times,
        )
    )
    lh.close()


# --- environment and output ---------------------------------------------------------------------


def versions() -> dict[str, Any]:
    import mlflow
    import sqlalchemy

    import lineagehub

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "mlflow": mlflow.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "lineagehub": lineagehub.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        # Other processes on the machine show in these times (MLflow's fsyncs most).
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cwd": os.getcwd(),
        # What capture=True records for every run of (c): the git state of this script's
        # checkout. A dirty tree means a diff, whose bytes go to the artifact store.
        "code_state": code_state(),
    }


def code_state() -> dict[str, Any] | None:
    from lineagehub.ingest.capture import capture_code

    code = capture_code()
    if code is None:
        return None
    commit = code.commit
    return {
        "repo": commit.repo,
        "sha": commit.sha,
        "dirty": commit.dirty,
        "diff_bytes": len(code.diff) if code.diff is not None else 0,
    }


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def print_table(bench: Bench, env: dict[str, Any]) -> None:
    print(
        f"{env['mode']}: LineageHub {env['lineagehub']} vs MLflow {env['mlflow']} (SQLAlchemy "
        f"{env['sqlalchemy']}), Python {env['python']}, SQLite {env['sqlite']}, "
        f"{env['cpus']} CPUs, {env['platform']}"
    )
    code = env["code_state"]
    if code is not None:
        print(
            f"capture=True records {code['repo']} @ {code['sha'][:12]}"
            + (f", dirty: a {code['diff_bytes']:,}-byte diff" if code["dirty"] else ", clean")
        )
    print(
        f"load average (1, 5, 15 min) at start {env['load_average_at_start']}, "
        f"at end {env['load_average_at_end']}"
    )
    print(
        "Store creation (MLflow migrations) and a warm-up run are excluded from all times; "
        f"target: MLflow/LineageHub >= {TARGET_RATIO:g}x"
    )
    print()
    width = max(len(line.name) for line in bench.lines)
    header = f"{'workload':<{width}}  {'LineageHub':>11}  {'MLflow':>10}  {'ratio':>8}  result"
    print(header)
    print("-" * len(header))
    for line in bench.lines:
        verdict = line.verdict if line.primary else f"({line.verdict.lower()})"
        print(
            f"{line.name:<{width}}  {fmt_time(line.lineagehub_s):>11}  "
            f"{fmt_time(line.mlflow_s):>10}  {line.ratio:>7.1f}x  {verdict}"
        )
        if line.detail:
            print(f"{'':<{width}}    {line.detail}")
    primary = [line for line in bench.lines if line.primary]
    misses = [line.workload for line in primary if line.verdict == "MISS"]
    print()
    print(
        f"{len(primary) - len(misses)}/{len(primary)} workloads PASS"
        + (f"; MISS: {', '.join(misses)}" if misses else "")
        + f"; {len(bench.checks)} correctness checks passed"
    )


def print_profile(profiler: cProfile.Profile, workload: str, out: Any) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.strip_dirs()
    for order in ("cumulative", "tottime"):
        buf.write(f"\n=== LineageHub side of ({workload}), sorted by {order} ===\n")
        stats.sort_stats(order).print_stats(30)
    print(buf.getvalue(), file=out)


# --- main ---------------------------------------------------------------------------------------


WORKLOADS: dict[str, Callable[[Bench, random.Random], None]] = {
    "a": workload_params,
    "b": workload_metrics,
    "cd": workload_runs_and_search,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--mode",
        choices=["embedded", "server"],
        default="embedded",
        help="both in this process, or each through its server (a subprocess)",
    )
    p.add_argument("--params", type=int, default=200, help="params on one run, (a)")
    p.add_argument("--points", type=int, default=10_000, help="metric points on one run, (b)")
    p.add_argument("--runs", type=int, default=2_000, help="runs, (c) and (d)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of (a) and (b)")
    p.add_argument("--search-repeat", type=int, default=20, help="repetitions of (d)")
    p.add_argument(
        "--only", choices=sorted(WORKLOADS), action="append", help="run only these workloads"
    )
    p.add_argument(
        "--profile",
        choices=PROFILE_CHOICES,
        help="cProfile the timed LineageHub part of one workload (printed to stderr)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary stores")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # This machine has no network: MLflow's usage telemetry would only try and fail.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow  # configures its own loggers on import: quieten them after that

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    del mlflow

    global MODE
    MODE = args.mode
    root = Path(tempfile.mkdtemp(prefix="lh-bench-tracking-"))
    bench = Bench(args, root, profiler=cProfile.Profile() if args.profile else None)
    started = datetime.now(timezone.utc)
    try:
        env = {"mode": args.mode, **versions()}
        # MLflow's client prints a line per run to stdout with a server: keep the table clean
        with contextlib.redirect_stdout(sys.stderr):
            warm_up(bench)
            for name, workload in WORKLOADS.items():
                if args.only and name not in args.only:
                    continue
                # Each workload gets its own data stream, the same for both systems.
                workload(bench, random.Random(f"{SEED}-{name}"))
    except CheckFailed as e:
        print(f"CORRECTNESS CHECK FAILED: {e}", file=sys.stderr)
        return 2
    finally:
        SERVERS.close()
        if args.keep:
            print(f"stores kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        primary = [line for line in bench.lines if line.primary]
        print(
            json.dumps(
                {
                    "benchmark": "tracking_vs_mlflow",
                    "started_at": started.isoformat(),
                    "environment": env,
                    "config": {
                        "params": args.params,
                        "points": args.points,
                        "runs": args.runs,
                        "repeat": args.repeat,
                        "search_repeat": args.search_repeat,
                        "seed": SEED,
                        "mlflow_batch_limit": MLFLOW_BATCH_LIMIT,
                        "search_limit": SEARCH_LIMIT,
                    },
                    "target_ratio": TARGET_RATIO,
                    "results": [line.as_dict() for line in bench.lines],
                    "all_pass": all(line.verdict == "PASS" for line in primary),
                    "checks": bench.checks,
                },
                indent=2,
            )
        )
    else:
        print_table(bench, env)
    if bench.profiler is not None:
        print_profile(bench.profiler, args.profile, sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
