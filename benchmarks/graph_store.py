#!/usr/bin/env python
"""Graph-store benchmark: bulk upsert throughput and lineage-trace latency.

Builds a synthetic but realistically shaped ML lineage graph through the public
``GraphStore`` API, then times lineage traces on it:

* raw ``DatasetVersion`` partitions (one per source per day) -VERSION_OF-> ``Dataset``;
* feature pipelines: transform ``Run`` -USED-> a window of raw partitions, the derived
  ``DatasetVersion`` -GENERATED_BY-> the run and -DERIVED_FROM-> each input (the shortcut);
* training snapshots (stage 2) built the same way from the latest feature versions; they are
  refreshed weekly or monthly, so one popular version is USED by thousands of runs;
* hyper-parameter sweeps: a parent ``Run`` (kind sweep) and child training runs (-CHILD_OF->
  parent) that USED the model's datasets (fan-in), -RAN_CODE-> a ``CodeCommit`` and
  -RAN_IN-> an ``Environment`` shared by many runs;
* the best trials register a ``ModelVersion`` (-GENERATED_BY-> run, -VERSION_OF-> ``Model``,
  -DERIVED_FROM-> its training data and, for fine-tunes, the base model version);
* evaluate runs that USED model versions, fine-tune runs that USED a base model version,
  and ``Deployment`` nodes that SERVES the promoted versions.

Edges point from the later thing to what it came from, so an UPSTREAM trace from a
deployment walks back to the raw data, and a DOWNSTREAM trace from a raw partition finds
what it affected.

Measured: nodes/s and edges/s of batched ``upsert_nodes`` / ``upsert_edges`` (time inside
the store calls; generating the synthetic objects is reported separately), latency of
depth-5 UPSTREAM traces from random model versions and deployments (budget 2,000 nodes),
and depth-3 DOWNSTREAM impact traces from partitions of the most popular raw sources.

    python benchmarks/graph_store.py                  # 100k and 1M nodes (default)
    python benchmarks/graph_store.py --nodes 100000
    python benchmarks/graph_store.py --nodes 1000000 --json
    python benchmarks/graph_store.py --nodes 100000 --store sqlite:////tmp/bench.db
    python benchmarks/graph_store.py --nodes 100000 --profile traverse
    python benchmarks/graph_store.py --nodes 100000 --rows-per-transaction 100000
    python benchmarks/graph_store.py --nodes 100000 --with-neo4j   # SQLite and Neo4j side by side
    python benchmarks/graph_store.py --nodes 100000 --store 'bolt://neo4j:PW@host:7687' --wipe

``--with-neo4j`` starts the Neo4j Community that the tests use (``tests/neo4j``: Java and Maven
needed) with a larger heap and page cache, runs every size on it after the embedded store, and
prints the query plans (``PROFILE``) of the lineage and search statements.

Not part of the test run.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import io
import json
import math
import os
import platform
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from lineagehub.graph import Direction, Edge, GraphStore, Node, open_store

DEFAULT_SIZES = (100_000, 1_000_000)

# Targets (on the 1M-node graph for the latency one).
# Targets (issue 16), on the 1M-node graph for the latency ones; throughput is the embedded
# store's (Neo4j's is printed beside it, not held to it).
TARGET_THROUGHPUT = 150_000  # nodes + edges per second, batched upserts
TARGET_UPSTREAM_P95_MS = 10.0  # depth-5 upstream trace, max_nodes 2,000, embedded store
TARGET_UPSTREAM_P95_MS_NEO4J = 20.0  # the same on Neo4j
UPSTREAM_BUDGET = 2_000
DOWNSTREAM_BUDGET = 5_000

START = datetime(2025, 1, 6, tzinfo=timezone.utc)

# --- synthetic vocabulary -------------------------------------------------------------------

_DOMAINS = ["events", "crm", "payments", "catalog", "support", "ads", "search", "risk"]
_TABLES = [
    "clicks",
    "sessions",
    "orders",
    "accounts",
    "tickets",
    "impressions",
    "queries",
    "transactions",
    "refunds",
    "pageviews",
    "signups",
    "devices",
    "reviews",
]
_REGIONS = ["eu", "us", "apac", "latam"]
_FEATURES = [
    "user_activity",
    "session_stats",
    "basket",
    "churn_signals",
    "fraud_signals",
    "ctr",
    "query_embed",
    "merchant_risk",
    "ltv",
    "engagement",
    "recency",
]
_MODEL_TASKS = [
    "churn",
    "fraud",
    "ranker",
    "ctr",
    "ltv",
    "intent",
    "eta",
    "recsys",
    "spam",
    "pricing",
    "demand",
    "toxicity",
]
_FLAVORS = ["xgboost", "lightgbm", "pytorch", "sklearn", "transformers"]
_USERS = [
    "ana",
    "bo",
    "chen",
    "dara",
    "eli",
    "fatima",
    "goran",
    "hana",
    "ivan",
    "jun",
    "kemal",
    "lena",
    "mateo",
    "nora",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tara",
]
_OPTIMIZERS = ["adam", "adamw", "sgd", "lion"]
_COLUMNS = ["user_id", "ts", "amount", "country", "device", "label", "score", "count_7d"]


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (i + 1) ** s for i in range(n)]


def _cum(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


@dataclass
class Pipeline:
    """A logical derived dataset and the pipeline that refreshes it."""

    index: int
    dataset_id: str
    name: str
    inputs: list[int]  # raw source indexes (stage 1) or stage-1 pipeline indexes (stage 2)
    window: int  # how many of each input's latest versions one run reads
    period: int  # days between runs
    offset: int
    repo: int
    env: int
    history: deque = field(default_factory=lambda: deque(maxlen=8))  # recent version ids


@dataclass
class ModelSpec:
    index: int
    model_id: str
    name: str
    flavor: str
    datasets: list[tuple[int, int]]  # (stage, pipeline index)
    repo: int
    env: int
    base: int | None  # fine-tunes: index of the base model
    versions: int = 0
    latest_mv: str | None = None


class LineageGenerator:
    """Emits the graph day by day, as (nodes, edges) lists; edges only refer to nodes
    emitted the same day or earlier. Ids are kept as counters, never as big lists."""

    def __init__(self, target_nodes: int, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.target = target_nodes
        s = max(target_nodes / 100_000, 0.05)
        self.s = s
        self.counters: dict[str, int] = {}
        self.edge_kinds: dict[str, int] = {}
        self.day = 0
        r = self.rng

        # Shared, slowly changing things.
        self.n_envs = max(6, round(25 * s))
        self.n_repos = max(6, round(15 * s))
        self.n_raw = max(8, round(30 * s))
        self.n_p1 = max(6, round(20 * s))
        self.n_p2 = max(3, round(8 * s))
        self.n_models = max(5, round(40 * s))
        self.sweeps_per_day = 10 * s

        self.env_ids = [self._id("env") for _ in range(self.n_envs)]
        self.env_cum = _cum(_zipf_weights(self.n_envs, 1.3))
        self.repo_names = [
            f"git@github.com:acme/{n}.git"
            for n in (
                ["feature-pipelines", "ml-platform"]
                + [f"{t}-model-{i}" for i, t in enumerate(_MODEL_TASKS * (1 + self.n_repos))]
            )
        ][: self.n_repos]
        self.repo_head: list[str] = []

        # Raw sources: one Dataset each, a partition per day; popularity is Zipf-like.
        self.raw_dataset_ids: list[str] = []
        self.raw_names: list[str] = []
        self.raw_schema: list[str] = []
        self.raw_history: list[deque] = []
        self.raw_cum = _cum(_zipf_weights(self.n_raw, 1.0))
        for i in range(self.n_raw):
            name = (
                f"{_DOMAINS[i % len(_DOMAINS)]}.{_TABLES[i % len(_TABLES)]}."
                f"{_REGIONS[i % len(_REGIONS)]}" + (f".{i}" if i >= 32 else "")
            )
            self.raw_names.append(name)
            self.raw_dataset_ids.append(self._id("ds"))
            self.raw_schema.append(self._digest())
            self.raw_history.append(deque(maxlen=90))
        self.raw_users = [0] * self.n_raw

        windows, wweights = [1, 7, 30, 90], [0.2, 0.4, 0.3, 0.1]
        self.p1: list[Pipeline] = []
        for i in range(self.n_p1):
            k = r.choice([1, 2, 2, 3, 4])
            inputs = sorted({self._pick(self.raw_cum) for _ in range(k)})
            for j in inputs:
                self.raw_users[j] += 1
            period = r.choices([1, 7, 30], [0.1, 0.5, 0.4])[0]
            name = f"features.{_FEATURES[i % len(_FEATURES)]}_{i}"
            self.p1.append(
                Pipeline(
                    i,
                    self._id("ds"),
                    name,
                    inputs,
                    r.choices(windows, wweights)[0],
                    period,
                    r.randrange(period),
                    0,
                    self._pick(self.env_cum),
                )
            )
        self.p1_cum = _cum(_zipf_weights(self.n_p1, 1.0))

        self.p2: list[Pipeline] = []
        for i in range(self.n_p2):
            inputs = sorted({self._pick(self.p1_cum) for _ in range(r.randint(2, 5))})
            period = r.choices([7, 30], [0.6, 0.4])[0]
            self.p2.append(
                Pipeline(
                    i,
                    self._id("ds"),
                    f"training.snapshot_{i}",
                    inputs,
                    r.choices([1, 4, 8], [0.4, 0.4, 0.2])[0],
                    period,
                    r.randrange(period),
                    1,
                    self._pick(self.env_cum),
                )
            )
        self.p2_cum = _cum(_zipf_weights(self.n_p2, 1.2))

        self.models: list[ModelSpec] = []
        for i in range(self.n_models):
            ds: set[tuple[int, int]] = set()
            for _ in range(r.randint(2, 6)):
                if r.random() < 0.7:
                    ds.add((2, self._pick(self.p2_cum)))
                else:
                    ds.add((1, self._pick(self.p1_cum)))
            base = r.randrange(i) if i >= 3 and r.random() < 0.2 else None
            self.models.append(
                ModelSpec(
                    i,
                    self._id("model"),
                    f"{_MODEL_TASKS[i % len(_MODEL_TASKS)]}-{i}",
                    r.choice(_FLAVORS),
                    sorted(ds),
                    2 + i % max(1, self.n_repos - 2),
                    self._pick(self.env_cum),
                    base,
                )
            )
        self.model_cum = _cum(_zipf_weights(self.n_models, 0.8))

        # Ids worth remembering for the traces (ints only; MVs/deployments are counters).
        self.popular_raw = sorted(range(self.n_raw), key=lambda j: -self.raw_users[j])[:5]
        self.popular_raw_dvs: list[str] = []

    # --- helpers -------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}:{n:06d}"

    def _pick(self, cum: list[float]) -> int:
        return min(bisect.bisect(cum, self.rng.random() * cum[-1]), len(cum) - 1)

    def _digest(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def _time(self, hour: float) -> datetime:
        return START + timedelta(days=self.day, hours=hour)

    # --- the world ----------------------------------------------------------------------------

    def setup(self) -> tuple[list[Node], list[Edge]]:
        r = self.rng
        nodes: list[Node] = []
        for i, env_id in enumerate(self.env_ids):
            nodes.append(
                Node(
                    env_id,
                    "Environment",
                    {
                        "python": r.choice(["3.10.14", "3.11.9", "3.12.4"]),
                        "platform": "linux-x86_64",
                        "image": f"registry.acme.io/ml/train:2025.{1 + i % 12:02d}.{i}",
                        "cuda": r.choice([None, "11.8", "12.1", "12.4"]) or "none",
                        "packages_digest": "sha256:" + self._digest(),
                    },
                )
            )
        for i in range(self.n_repos):
            self.repo_head.append(self._commit_node(i, nodes))
        for i in range(self.n_raw):
            nodes.append(
                Node(
                    self.raw_dataset_ids[i],
                    "Dataset",
                    {
                        "namespace": "s3://acme-lake",
                        "name": self.raw_names[i],
                        "owner": r.choice(_USERS),
                        "description": f"raw {self.raw_names[i]} events",
                        "tags": ["raw", self.raw_names[i].split(".")[0]],
                    },
                )
            )
        for p in self.p1 + self.p2:
            nodes.append(
                Node(
                    p.dataset_id,
                    "Dataset",
                    {
                        "namespace": "s3://acme-features",
                        "name": p.name,
                        "owner": r.choice(_USERS),
                        "refresh_days": p.period,
                        "window": p.window,
                        "tags": ["derived", "stage1" if p.repo == 0 else "stage2"],
                    },
                )
            )
        for m in self.models:
            nodes.append(
                Node(
                    m.model_id,
                    "Model",
                    {
                        "name": m.name,
                        "owner": r.choice(_USERS),
                        "flavor": m.flavor,
                        "description": f"{m.name.split('-')[0]} model",
                        "tags": ["team-" + r.choice(_DOMAINS)],
                        "base_model": None if m.base is None else self.models[m.base].name,
                    },
                )
            )
        return nodes, []

    def _commit_node(self, repo: int, nodes: list[Node]) -> str:
        cid = self._id("commit")
        nodes.append(
            Node(
                cid,
                "CodeCommit",
                {
                    "repo": self.repo_names[repo],
                    "sha": f"{self.rng.getrandbits(160):040x}",
                    "branch": "main",
                    "dirty": self.rng.random() < 0.05,
                    "author": self.rng.choice(_USERS),
                    "message": f"change #{self.counters['commit']}",
                    "committed_at": self._time(self.rng.random() * 8).isoformat(),
                },
            )
        )
        return cid

    def _run_props(self, kind: str, hour: float, **extra: Any) -> dict[str, Any]:
        r = self.rng
        start = self._time(hour)
        props = {
            "kind": kind,
            "status": "FINISHED" if r.random() > 0.03 else "FAILED",
            "started_at": start.isoformat(),
            "ended_at": (start + timedelta(minutes=r.randint(2, 600))).isoformat(),
            "user": r.choice(_USERS),
            "host": f"gpu-{r.randint(1, 64):02d}.acme.internal",
        }
        props.update(extra)
        return props

    def next_day(self) -> tuple[list[Node], list[Edge]]:
        """One simulated day of activity."""
        r = self.rng
        nodes: list[Node] = []
        edges: list[Edge] = []
        d = self.day
        date = (START + timedelta(days=d)).date().isoformat()
        t_early = self._time(2)

        def edge(src: str, dst: str, kind: str, when: datetime, props: dict | None = None) -> None:
            edges.append(
                Edge(src, dst, kind, props or {}, event_time=when, asserted_by="agent:sdk")
            )
            self.edge_kinds[kind] = self.edge_kinds.get(kind, 0) + 1

        # New commits.
        for repo in range(self.n_repos):
            if r.random() < 0.3:
                self.repo_head[repo] = self._commit_node(repo, nodes)

        # Raw partitions.
        for j in range(self.n_raw):
            dv = self._id("dsv")
            rows = r.randint(10_000, 50_000_000)
            nodes.append(
                Node(
                    dv,
                    "DatasetVersion",
                    {
                        "name": self.raw_names[j],
                        "namespace": "s3://acme-lake",
                        "version": date,
                        "uri": f"s3://acme-lake/raw/{self.raw_names[j]}/dt={date}/",
                        "digest": "sha256:" + self._digest(),
                        "format": "parquet",
                        "row_count": rows,
                        "size_bytes": rows * r.randint(80, 400),
                        "schema_digest": "sha256:" + self.raw_schema[j],
                    },
                )
            )
            edge(dv, self.raw_dataset_ids[j], "VERSION_OF", t_early)
            self.raw_history[j].append(dv)
            if j in self.popular_raw and d >= 30 and d % 7 == 0:
                self.popular_raw_dvs.append(dv)

        # Feature pipelines (stage 1: raw -> features; stage 2: features -> training sets).
        for stage, pipes in ((1, self.p1), (2, self.p2)):
            for p in pipes:
                if d % p.period != p.offset:
                    continue
                if stage == 1:
                    inputs = [dv for j in p.inputs for dv in list(self.raw_history[j])[-p.window :]]
                else:
                    inputs = [dv for j in p.inputs for dv in list(self.p1[j].history)[-p.window :]]
                if not inputs:
                    continue
                hour = 3 + stage + r.random()
                when = self._time(hour + 1)
                run = self._id("run")
                nodes.append(
                    Node(
                        run,
                        "Run",
                        self._run_props(
                            "transform",
                            hour,
                            entry_point=f"pipelines/{p.name}.py",
                            params={"window": p.window, "inputs": len(inputs), "dedupe": True},
                            metrics={
                                "rows_out": r.randint(10_000, 5_000_000),
                                "duration_s": round(r.uniform(30, 3600), 1),
                            },
                        ),
                    )
                )
                dv = self._id("dsv")
                cols = r.sample(_COLUMNS, 3)
                nodes.append(
                    Node(
                        dv,
                        "DatasetVersion",
                        {
                            "name": p.name,
                            "namespace": "s3://acme-features",
                            "version": date,
                            "uri": f"s3://acme-features/{p.name}/v={date}/",
                            "digest": "sha256:" + self._digest(),
                            "format": "parquet",
                            "row_count": r.randint(10_000, 5_000_000),
                            "column_profile": {
                                c: {
                                    "null_frac": round(r.random() * 0.1, 4),
                                    "mean": round(r.gauss(0, 10), 3),
                                }
                                for c in cols
                            },
                        },
                    )
                )
                edge(run, self.repo_head[0 if stage == 1 else 1], "RAN_CODE", when)
                edge(run, self.env_ids[p.env], "RAN_IN", when)
                for src in inputs:
                    edge(run, src, "USED", when, {"role": "input"})
                edge(dv, run, "GENERATED_BY", when)
                edge(dv, p.dataset_id, "VERSION_OF", when)
                for src in inputs:
                    edge(dv, src, "DERIVED_FROM", when)
                p.history.append(dv)

        # Training sweeps, model versions, evaluations, deployments.
        n_sweeps = max(0, round(r.gauss(self.sweeps_per_day, math.sqrt(self.sweeps_per_day))))
        for _ in range(n_sweeps):
            m = self.models[self._pick(self.model_cum)]
            data = []
            for stage, k in m.datasets:
                hist = (self.p2 if stage == 2 else self.p1)[k].history
                if hist:
                    data.append(hist[-1])
            base_mv = self.models[m.base].latest_mv if m.base is not None else None
            if not data:
                continue
            hour = 8 + r.random() * 12
            when = self._time(hour + 2)
            parent = self._id("run")
            trials = r.randint(3, 12)
            nodes.append(
                Node(
                    parent,
                    "Run",
                    self._run_props(
                        "sweep",
                        hour,
                        entry_point=f"{m.name}/sweep.py",
                        params={
                            "search": r.choice(["bayes", "random", "grid"]),
                            "trials": trials,
                            "objective": "val_auc",
                        },
                    ),
                )
            )
            commit = self.repo_head[m.repo]
            env = self.env_ids[m.env if r.random() < 0.8 else self._pick(self.env_cum)]
            edge(parent, commit, "RAN_CODE", when)
            trials_ids = []
            for _t in range(trials):
                run = self._id("run")
                auc = round(r.uniform(0.6, 0.97), 4)
                nodes.append(
                    Node(
                        run,
                        "Run",
                        self._run_props(
                            "fine-tune" if base_mv else "train",
                            hour,
                            entry_point=f"{m.name}/train.py",
                            params={
                                "learning_rate": round(10 ** r.uniform(-5, -1), 6),
                                "batch_size": r.choice([32, 64, 128, 256, 512]),
                                "epochs": r.randint(1, 50),
                                "max_depth": r.randint(3, 12),
                                "dropout": round(r.uniform(0, 0.5), 3),
                                "optimizer": r.choice(_OPTIMIZERS),
                                "seed": r.randrange(10_000),
                            },
                            metrics={
                                "train_loss": round(r.uniform(0.05, 0.7), 4),
                                "val_loss": round(r.uniform(0.1, 0.9), 4),
                                "val_auc": auc,
                                "val_f1": round(auc - r.uniform(0.05, 0.2), 4),
                            },
                        ),
                    )
                )
                trials_ids.append((auc, run))
                edge(run, parent, "CHILD_OF", when)
                edge(run, commit, "RAN_CODE", when)
                edge(run, env, "RAN_IN", when)
                for i, dv in enumerate(data):
                    edge(
                        run, dv, "USED", when, {"role": ("train", "validation", "test")[min(i, 2)]}
                    )
                if base_mv:
                    edge(run, base_mv, "USED", when, {"role": "base-model"})
            # The best one or two trials are registered.
            trials_ids.sort(reverse=True)
            for auc, run in trials_ids[: r.choice([1, 1, 2])]:
                m.versions += 1
                mv = self._id("mv")
                nodes.append(
                    Node(
                        mv,
                        "ModelVersion",
                        {
                            "name": m.name,
                            "version": m.versions,
                            "flavor": m.flavor,
                            "artifact_digest": "sha256:" + self._digest(),
                            "signature": {"inputs": "float32[-1,64]", "outputs": "float32[-1,1]"},
                            "metrics": {"val_auc": auc, "val_loss": round(r.uniform(0.1, 0.9), 4)},
                            "stage": "None",
                            "aliases": [],
                        },
                    )
                )
                edge(mv, run, "GENERATED_BY", when)
                edge(mv, m.model_id, "VERSION_OF", when)
                for dv in data:
                    edge(mv, dv, "DERIVED_FROM", when)
                if base_mv:
                    edge(mv, base_mv, "DERIVED_FROM", when)
                m.latest_mv = mv
                # Evaluations that USED the version.
                for _e in range(r.randint(1, 3)):
                    ev = self._id("run")
                    nodes.append(
                        Node(
                            ev,
                            "Run",
                            self._run_props(
                                "evaluate",
                                hour + 3,
                                entry_point=f"{m.name}/evaluate.py",
                                params={"slice": r.choice(["all", "eu", "us", "new_users"])},
                                metrics={"test_auc": round(auc - r.uniform(0, 0.03), 4)},
                            ),
                        )
                    )
                    edge(ev, mv, "USED", when, {"role": "model"})
                    edge(ev, data[-1], "USED", when, {"role": "test"})
                    edge(ev, self.repo_head[1], "RAN_CODE", when)
                    edge(ev, env, "RAN_IN", when)
                # Some versions are promoted and deployed.
                if r.random() < 0.1:
                    dep = self._id("dep")
                    envname = r.choice(["production", "staging"])
                    nodes.append(
                        Node(
                            dep,
                            "Deployment",
                            {
                                "environment": envname,
                                "status": "active",
                                "endpoint": f"https://models.acme.io/{envname}/{m.name}",
                                "replicas": r.randint(1, 12),
                                "valid_from": when.isoformat(),
                            },
                        )
                    )
                    edge(dep, mv, "SERVES", when, {"valid_from": when.isoformat()})
        self.day += 1
        return nodes, edges


# --- running ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Progress:
    def __init__(self, label: str, total: int, quiet: bool = False) -> None:
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, nodes: float, edges: float, store_s: float, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if not force and now - self.last < (0.5 if self.tty else 15.0):
            return
        self.last = now
        elapsed = now - self.t0
        frac = min(nodes / self.total, 1.0)
        eta = f"{elapsed / frac - elapsed:,.0f}s" if frac > 0 else "?"
        rate = (nodes + edges) / store_s if store_s else 0.0
        line = (
            f"[{self.label}] {nodes:,}/{self.total:,} nodes ({frac:5.1%})  {edges:,} edges  "
            f"store {rate / 1000:,.0f}k rows/s  elapsed {elapsed:,.0f}s  eta {eta}"
        )
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def build(
    store: GraphStore,
    gen: LineageGenerator,
    batch: int,
    label: str,
    quiet: bool = False,
    rows_per_txn: int = 0,
) -> dict[str, Any]:
    """Stream the generator into the store in batches; edges are sent once both of their
    ends have been written (so every batch is a full one but the last).

    By default every upsert call is its own transaction (what an SDK client does); with
    ``rows_per_txn``, consecutive calls share a ``store.transaction()`` of about that many
    rows (a bulk import)."""
    node_buf: list[Node] = []
    edge_buf: list[Edge] = []
    pending: set[str] = set()  # ids of generated, not yet written nodes
    stats: dict[str, Any] = {
        "nodes": 0,
        "edges": 0,
        "node_s": 0.0,
        "edge_s": 0.0,
        "node_batches": 0,
        "edge_batches": 0,
        "node_cpu_s": 0.0,
        "edge_cpu_s": 0.0,
    }
    progress = Progress(label, gen.target, quiet)
    t0 = time.perf_counter()
    txn: Any = None
    txn_rows = 0

    def write(upsert: Any, chunk: list, kind: str) -> None:
        nonlocal txn, txn_rows
        t, c = time.perf_counter(), time.process_time()
        if rows_per_txn and txn is None:
            txn = store.transaction()
            txn.__enter__()
        upsert(chunk)
        txn_rows += len(chunk)
        if txn is not None and txn_rows >= rows_per_txn:
            txn.__exit__(None, None, None)
            txn, txn_rows = None, 0
        stats[f"{kind}_s"] += time.perf_counter() - t
        stats[f"{kind}_cpu_s"] += time.process_time() - c
        stats[f"{kind}s"] += len(chunk)
        stats[f"{kind}_batches"] += 1

    def flush(final: bool = False) -> None:
        nonlocal node_buf, edge_buf
        while len(node_buf) >= batch or (final and node_buf):
            chunk, node_buf = node_buf[:batch], node_buf[batch:]
            write(store.upsert_nodes, chunk, "node")
            pending.difference_update(n.id for n in chunk)
        if len(edge_buf) < batch and not final:
            return
        ready: list[Edge] = []
        held: list[Edge] = []
        if pending:
            for e in edge_buf:
                (held if e.source in pending or e.target in pending else ready).append(e)
        else:
            ready = edge_buf
        while len(ready) >= batch or (final and ready):
            chunk, ready = ready[:batch], ready[batch:]
            write(store.upsert_edges, chunk, "edge")
        edge_buf = held + ready

    days = 0
    step: Iterator[tuple[list[Node], list[Edge]]] = iter([gen.setup()])
    generated = 0
    while True:
        try:
            nodes, edges = next(step)
        except StopIteration:
            if generated >= gen.target:
                break
            nodes, edges = gen.next_day()
            days += 1
        generated += len(nodes)
        node_buf.extend(nodes)
        pending.update(n.id for n in nodes)
        edge_buf.extend(edges)
        flush()
        progress.update(stats["nodes"], stats["edges"], stats["node_s"] + stats["edge_s"])
    flush(final=True)
    if txn is not None:
        t = time.perf_counter()
        txn.__exit__(None, None, None)
        stats["edge_s"] += time.perf_counter() - t
    progress.update(stats["nodes"], stats["edges"], stats["node_s"] + stats["edge_s"], True)
    progress.done()
    stats["wall_s"] = time.perf_counter() - t0
    stats["days"] = days
    store_s = stats["node_s"] + stats["edge_s"]
    stats["nodes_per_s"] = stats["nodes"] / stats["node_s"] if stats["node_s"] else 0.0
    stats["edges_per_s"] = stats["edges"] / stats["edge_s"] if stats["edge_s"] else 0.0
    stats["combined_per_s"] = (stats["nodes"] + stats["edges"]) / store_s if store_s else 0.0
    # On a shared machine wall time counts the waits for a core too: rows per second of this
    # process's CPU time inside the store calls (SQLite runs in-process) compare runs fairly.
    cpu_s = stats["node_cpu_s"] + stats["edge_cpu_s"]
    stats["combined_per_cpu_s"] = (stats["nodes"] + stats["edges"]) / cpu_s if cpu_s else 0.0
    stats["wall_per_s"] = (stats["nodes"] + stats["edges"]) / stats["wall_s"]
    return stats


def trace_starts(
    rng: random.Random, counters: dict[str, int], samples: int, warmup: int
) -> tuple[list[str], list[str]]:
    """The upstream traces' start nodes (half model versions, half deployments, shuffled)
    and the warm-up's, drawn from ``rng`` (the benchmark's is ``Random(seed + 1)``)."""
    n_mv, n_dep = counters.get("mv", 0), counters.get("dep", 0)
    half = samples // 2
    mv_starts = [f"mv:{rng.randint(1, n_mv):06d}" for _ in range(samples - half)]
    dep_starts = [f"dep:{rng.randint(1, n_dep):06d}" for _ in range(half)]
    warm = [f"mv:{rng.randint(1, n_mv):06d}" for _ in range(warmup)]
    starts = mv_starts + dep_starts
    rng.shuffle(starts)
    return starts, warm


def time_traces(
    store: GraphStore, starts: list[str], direction: Direction, depth: int, budget: int
) -> list[dict[str, Any]]:
    """Time one traversal per start id (one at a time, as a user's request would)."""
    samples = []
    for sid in starts:
        t, c = time.perf_counter(), time.process_time()
        sub = store.traverse([sid], direction, depth, max_nodes=budget)
        ms = (time.perf_counter() - t) * 1000
        cpu_ms = (time.process_time() - c) * 1000
        reason = sub.truncation_reason.value if sub.truncation_reason else None
        samples.append(
            {
                "start": sid,
                "ms": ms,
                "cpu_ms": cpu_ms,
                "nodes": len(sub.nodes),
                "edges": len(sub.edges),
                "truncated": reason if sub.truncated else None,
            }
        )
    return samples


def summarize(
    samples: list[dict[str, Any]], direction: Direction, depth: int, budget: int
) -> dict[str, Any]:
    lat = [x["ms"] for x in samples]
    sizes = [x["nodes"] for x in samples]
    truncated: dict[str, int] = {}
    for x in samples:
        if x["truncated"]:
            truncated[x["truncated"]] = truncated.get(x["truncated"], 0) + 1
    return {
        "count": len(samples),
        "direction": direction.value,
        "depth": depth,
        "max_nodes": budget,
        "p50_ms": percentile(lat, 0.5),
        "p95_ms": percentile(lat, 0.95),
        "p99_ms": percentile(lat, 0.99),
        # this process's CPU time per trace (fair on a shared machine; on Neo4j the server's
        # time is not in it)
        "cpu_p50_ms": percentile([x["cpu_ms"] for x in samples], 0.5),
        "cpu_p95_ms": percentile([x["cpu_ms"] for x in samples], 0.95),
        "max_ms": max(lat),
        "mean_ms": sum(lat) / len(lat),
        "mean_nodes": sum(sizes) / len(sizes),
        "min_nodes": min(sizes),
        "p50_nodes": percentile(sizes, 0.5),
        "max_nodes_returned": max(sizes),
        "mean_edges": sum(x["edges"] for x in samples) / len(samples),
        "truncated": truncated,
    }


def run_size(n_nodes: int, uri: str | None, args: argparse.Namespace) -> dict[str, Any]:
    tmpdir = None
    if uri is None:
        tmpdir = tempfile.mkdtemp(prefix="lineagehub-bench-")
        uri = f"sqlite:///{tmpdir}/graph-{n_nodes}.db"
    else:
        uri = uri.replace("{nodes}", str(n_nodes))
    label = f"{n_nodes // 1000}k" if n_nodes < 1_000_000 else f"{n_nodes / 1e6:g}M"
    result: dict[str, Any] = {"nodes_target": n_nodes, "store": uri}
    try:
        store = _open(uri)
        if args.wipe and hasattr(store, "_wipe"):
            store._wipe()
        sidecar = _sidecar(uri)
        reused = bool(
            args.reuse
            and sidecar is not None
            and os.path.exists(sidecar)
            and (store.count_nodes() or store.count_edges())
        )
        if reused:
            assert sidecar is not None
            with open(sidecar) as f:
                meta = json.load(f)
            if (meta["nodes_target"], meta["seed"]) != (n_nodes, args.seed):
                raise SystemExit(
                    f"{store.uri} holds the graph of --nodes {meta['nodes_target']} "
                    f"--seed {meta['seed']}, not of this run"
                )
        elif store.count_nodes() or store.count_edges():
            raise SystemExit(
                f"{store.uri} is not empty; the benchmark needs an empty store (--wipe empties "
                "a Neo4j store first)"
            )
        result["store"] = store.uri  # redacted
        gen = LineageGenerator(n_nodes, seed=args.seed)
        sidecar = _sidecar(uri)
        if reused:
            # The graph of an earlier run (--keep, --reuse): its build figures and what the
            # traces start from, as that run recorded them.
            assert sidecar is not None
            with open(sidecar) as f:
                saved = json.load(f)
            stats = saved["build"]
            stats["reused"] = True
            gen.counters = saved["counters"]
            gen.popular_raw_dvs = saved["popular_raw_dvs"]
        else:
            profiler = cProfile.Profile() if args.profile == "build" else None
            if profiler:
                profiler.enable()
            stats = build(
                store, gen, args.batch, f"build {label}", args.quiet, args.rows_per_transaction
            )
            stats["rows_per_transaction"] = args.rows_per_transaction
            if profiler:
                profiler.disable()
                _print_profile(profiler, "build")
            stats["labels"] = {k: v for k, v in sorted(gen.counters.items())}
            stats["edge_kinds"] = dict(sorted(gen.edge_kinds.items(), key=lambda kv: -kv[1]))
            if sidecar is not None and (args.keep or not tmpdir):
                with open(sidecar, "w") as f:
                    json.dump(
                        {
                            "nodes_target": n_nodes,
                            "seed": args.seed,
                            "build": stats,
                            "counters": gen.counters,
                            "popular_raw_dvs": gen.popular_raw_dvs,
                        },
                        f,
                    )
        result["build"] = stats
        if uri.startswith("sqlite:///") and tmpdir:
            path = uri[len("sqlite:///") :]
            result["db_bytes"] = sum(
                os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)
            )
        store.close()

        # A fresh connection for the reads (the OS page cache stays warm, as on a server).
        store = _open(uri)
        rng = random.Random(args.seed + 1)
        starts, warm = trace_starts(rng, gen.counters, args.samples, args.warmup)
        up, down = Direction.UPSTREAM, Direction.DOWNSTREAM
        time_traces(store, warm, up, 5, UPSTREAM_BUDGET)

        profiler = cProfile.Profile() if args.profile == "traverse" else None
        if profiler:
            profiler.enable()
        samples = time_traces(store, starts, up, 5, UPSTREAM_BUDGET)
        if profiler:
            profiler.disable()
            _print_profile(profiler, "upstream traces")
        result["upstream"] = summarize(samples, up, 5, UPSTREAM_BUDGET)
        result["upstream"]["by_label"] = {
            label: summarize(
                [x for x in samples if x["start"].startswith(prefix)], up, 5, UPSTREAM_BUDGET
            )
            for label, prefix in (("ModelVersion", "mv:"), ("Deployment", "dep:"))
        }
        popular = gen.popular_raw_dvs
        down_starts = rng.sample(popular, min(args.downstream_samples, len(popular)))
        result["downstream"] = summarize(
            time_traces(store, down_starts, down, 3, DOWNSTREAM_BUDGET), down, 3, DOWNSTREAM_BUDGET
        )
        if hasattr(store, "_driver"):
            result["plans"] = neo4j_plans(store, starts[:1])
        store.close()
    finally:
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif tmpdir:
            print(f"kept {tmpdir}", file=sys.stderr)
    b = result["build"]
    embedded = result["store"].startswith("sqlite")
    p95_target = TARGET_UPSTREAM_P95_MS if embedded else TARGET_UPSTREAM_P95_MS_NEO4J
    result["targets"] = {
        "throughput": {
            "target": TARGET_THROUGHPUT,
            "value": b["combined_per_s"],
            "met": b["combined_per_s"] >= TARGET_THROUGHPUT,
            "binding": embedded,
        },
        "upstream_p95_ms": {
            "target": p95_target,
            "value": result["upstream"]["p95_ms"],
            "met": result["upstream"]["p95_ms"] <= p95_target,
            "binding": n_nodes >= 1_000_000,
        },
        "upstream_mean_nodes": {
            "target": UPSTREAM_BUDGET,
            "value": result["upstream"]["mean_nodes"],
            "met": result["upstream"]["mean_nodes"] <= UPSTREAM_BUDGET,
        },
    }
    return result


# Operators that must not appear on a hot path: a scan of every node, or a cross product.
BAD_OPERATORS = ("AllNodesScan", "CartesianProduct")


def _operators(plan: Any) -> list[dict[str, Any]]:
    """A profiled plan as a flat list, depth-first, with rows and database hits."""
    out: list[dict[str, Any]] = []

    def walk(p: Any, depth: int) -> None:
        args = p.get("args", {})
        out.append(
            {
                "depth": depth,
                "operator": str(p.get("operatorType", "")).split("@")[0],
                "details": str(args.get("Details", ""))[:120],
                "rows": args.get("Rows"),
                "db_hits": args.get("DbHits"),
            }
        )
        for c in p.get("children", []):
            walk(c, depth + 1)

    walk(plan, 0)
    return out


def neo4j_plans(store: Any, starts: list[str]) -> dict[str, Any]:
    """``PROFILE`` of the statements behind a lineage trace (one level's expansion, both
    directions, with and without an as-of time) and behind searches (a filtered, ordered page
    of runs; a count), on the built graph."""
    from lineagehub.graph import cypher
    from lineagehub.graph.filters import parse_order, parse_where

    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    statements = {
        "lineage: expand upstream": cypher.expand(starts, True, None, None, None),
        "lineage: expand downstream, kinds, as of": cypher.expand(
            starts, False, ["USED", "GENERATED_BY", "DERIVED_FROM"], None, now
        ),
        "lineage: get nodes": cypher.get_nodes(starts),
        "search: runs by a param, ordered by a metric": cypher.find_nodes(
            "Run",
            parse_where({"status": "FINISHED", "params.lr": {"$gte": 0.001}}),
            parse_order(["-metrics.auc"]),
            100,
        ),
        "search: count runs of a kind": cypher.count_nodes("Run", parse_where({"kind": "train"})),
    }
    plans: dict[str, Any] = {}
    with store._driver.session(database=store._database) as session:
        for name, stmt in statements.items():
            summary = session.run("PROFILE " + stmt.text, stmt.params).consume()
            ops = _operators(summary.profile)
            plans[name] = {
                "operators": ops,
                "db_hits": sum(o["db_hits"] or 0 for o in ops),
                "bad": sorted({o["operator"] for o in ops if o["operator"] in BAD_OPERATORS}),
            }
    return plans


def _sidecar(uri: str) -> str | None:
    """Where a kept SQLite graph's build figures and trace starts are recorded (--reuse)."""
    if not uri.startswith("sqlite:///"):
        return None
    return uri[len("sqlite:///") :] + ".bench.json"


def _open(uri: str) -> GraphStore:
    if uri.split(":", 1)[0].lower().startswith(("neo4j", "bolt")) and "@" not in uri:
        return open_store(
            uri,
            user=os.environ.get("LINEAGEHUB_NEO4J_USER", "neo4j"),
            password=os.environ.get("LINEAGEHUB_NEO4J_PASSWORD", ""),
        )
    return open_store(uri)


def _print_profile(profiler: cProfile.Profile, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)
    sys.stderr.write(f"\n=== cProfile: {title} ===\n{out.getvalue()}\n")


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.now().date().isoformat(),
    }


def _fmt_ok(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_report(env: dict[str, Any], results: list[dict[str, Any]]) -> None:
    p = print
    p(
        f"\nLineageHub graph-store benchmark — Python {env['python']}, SQLite {env['sqlite']}, "
        f"{env['cpus']} CPUs, {env['platform']}"
    )
    for r in results:
        b, up, down = r["build"], r["upstream"], r["downstream"]
        if r.get("plans"):
            p(f"\n== query plans (PROFILE) on {r['nodes_target']:,} nodes — {r['store']} ==")
            for name, plan in r["plans"].items():
                bad = ", ".join(plan["bad"]) or "none"
                p(f"{name}: {plan['db_hits']:,} db hits; AllNodesScan/CartesianProduct: {bad}")
                for o in plan["operators"]:
                    p(
                        f"    {'  ' * o['depth']}{o['operator']:<28} rows {o['rows']!s:>6}  {o['details']}"
                    )
        p(f"\n== {r['nodes_target']:,} nodes — {r['store']} ==")
        p(
            f"graph: {b['nodes']:,} nodes, {b['edges']:,} edges ({b['edges'] / b['nodes']:.1f}/node)"
            f", {b['days']} simulated days"
            + (f", {r['db_bytes'] / 2**20:,.0f} MiB on disk" if r.get("db_bytes") else "")
        )
        p("  ids: " + ", ".join(f"{k} {v:,}" for k, v in b["labels"].items()))
        p("  edges: " + ", ".join(f"{k} {v:,}" for k, v in b["edge_kinds"].items()))
        p("")
        txn = b.get("rows_per_transaction") or 0
        head = f"bulk upsert, {b.get('batch', 0):,}/call, " + (
            f"~{txn:,} rows/txn" if txn else "1 txn/call"
        )
        if b.get("reused"):
            head += " (figures of the run that built it)"
        p(f"{head:<38}{'rows':>12}{'store s':>10}{'rows/s':>12}{'cpu s':>8}{'rows/cpu s':>12}")

        def cpu(s: float | None, n: int) -> str:
            return f"{s:>8.1f}{n / s:>12,.0f}" if s else ""

        p(
            f"{'  nodes':<38}{b['nodes']:>12,}{b['node_s']:>10.1f}{b['nodes_per_s']:>12,.0f}"
            + cpu(b.get("node_cpu_s"), b["nodes"])
        )
        p(
            f"{'  edges':<38}{b['edges']:>12,}{b['edge_s']:>10.1f}{b['edges_per_s']:>12,.0f}"
            + cpu(b.get("edge_cpu_s"), b["edges"])
        )
        p(
            f"{'  combined (store time)':<38}{b['nodes'] + b['edges']:>12,}"
            f"{b['node_s'] + b['edge_s']:>10.1f}{b['combined_per_s']:>12,.0f}"
            + cpu(b.get("node_cpu_s", 0) + b.get("edge_cpu_s", 0), b["nodes"] + b["edges"])
        )
        p(
            f"{'  incl. generating the objects':<38}{b['nodes'] + b['edges']:>12,}"
            f"{b['wall_s']:>10.1f}{b['wall_per_s']:>12,.0f}"
        )
        p("")
        p(
            f"{'trace (budget)':<34}{'n':>5}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}"
            f"{'mean nodes':>11}{'max nodes':>10}{'mean edges':>11}{'cpu p50':>8}{'cpu p95':>8}"
            "  truncated"
        )
        rows = [
            (f"upstream d5 ({up['max_nodes']:,})", up),
            ("  from ModelVersion", up["by_label"]["ModelVersion"]),
            ("  from Deployment", up["by_label"]["Deployment"]),
            (f"downstream d3, raw ({down['max_nodes']:,})", down),
        ]
        for name, t in rows:
            trunc = ", ".join(f"{k} {v}" for k, v in t["truncated"].items()) or "none"
            p(
                f"{name:<34}{t['count']:>5}{t['p50_ms']:>8.1f}{t['p95_ms']:>8.1f}"
                f"{t['max_ms']:>8.1f}{t['mean_nodes']:>11,.0f}{t['max_nodes_returned']:>10,}"
                f"{t['mean_edges']:>11,.0f}{t['cpu_p50_ms']:>8.1f}{t['cpu_p95_ms']:>8.1f}  {trunc}"
            )
        p("")
        tg = r["targets"]
        p(
            f"target: bulk upsert >= {TARGET_THROUGHPUT:,} rows/s"
            + ("" if tg["throughput"].get("binding", True) else " (embedded store's)")
            + f": {tg['throughput']['value']:,.0f} -> {_fmt_ok(tg['throughput']['met'])}"
        )
        binding = "" if tg["upstream_p95_ms"]["binding"] else " (binding on the 1M graph only)"
        p(
            f"target: upstream d5 p95 <= {tg['upstream_p95_ms']['target']:.0f} ms{binding}: "
            f"{tg['upstream_p95_ms']['value']:.1f} ms -> {_fmt_ok(tg['upstream_p95_ms']['met'])}"
        )
        p(
            f"check:  upstream mean nodes <= {UPSTREAM_BUDGET:,}: "
            f"{tg['upstream_mean_nodes']['value']:,.0f} -> "
            f"{_fmt_ok(tg['upstream_mean_nodes']['met'])}"
        )


_SERVER: Any = None


def _bundled_neo4j(args: argparse.Namespace) -> str:
    """Start the tests' Neo4j (``tests/neo4j/launch.py``) for this run; its URI."""
    global _SERVER
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "neo4j"))
    from launch import Neo4jServer

    _SERVER = Neo4jServer(heap=args.neo4j_heap, pagecache_mib=args.neo4j_pagecache)
    started = time.perf_counter()
    uri = _SERVER.start()
    if not args.quiet:
        print(f"neo4j: {uri} ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return str(uri).replace("bolt://", f"bolt://{_SERVER.user}:{_SERVER.password}@")


def _stop_bundled_neo4j() -> None:
    if _SERVER is not None:
        _SERVER.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--nodes",
        type=int,
        action="append",
        help="graph size in nodes; repeatable (default: 100000 and 1000000)",
    )
    ap.add_argument(
        "--store",
        action="append",
        help="store URI, repeatable (default: a fresh SQLite file in a temp dir); "
        "'{nodes}' in it is replaced by the size; the store must be empty (see --wipe)",
    )
    ap.add_argument(
        "--with-neo4j",
        action="store_true",
        help="also run on the bundled Neo4j (tests/neo4j; needs Java and Maven), started "
        "for the run with --neo4j-heap and --neo4j-pagecache",
    )
    ap.add_argument("--neo4j-heap", default="4g", help="heap of the bundled Neo4j (default 4g)")
    ap.add_argument(
        "--neo4j-pagecache", type=int, default=4096, metavar="MIB", help="its page cache"
    )
    ap.add_argument(
        "--wipe", action="store_true", help="empty a Neo4j store before each size (throw-away!)"
    )
    ap.add_argument("--json", action="store_true", help="print machine-readable results only")
    ap.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
    ap.add_argument("--batch", type=int, default=5000, help="rows per upsert call")
    ap.add_argument(
        "--rows-per-transaction",
        type=int,
        default=0,
        metavar="N",
        help="group consecutive upsert calls into store.transaction() blocks of about N rows "
        "(default 0: every call is its own transaction, as an SDK client does)",
    )
    ap.add_argument("--samples", type=int, default=200, help="upstream traces to time")
    ap.add_argument("--downstream-samples", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10, help="untimed traces first")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="time the traces on the graph a --store SQLite file already holds (built by an "
        "earlier run of the same --nodes and --seed) instead of building it; the build "
        "figures reported are that run's",
    )
    ap.add_argument(
        "--profile",
        choices=["build", "traverse"],
        help="cProfile one phase and print the top functions to stderr",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress line")
    args = ap.parse_args(argv)
    sizes = args.nodes or list(DEFAULT_SIZES)
    stores: list[str | None] = list(args.store or [None])
    for uri in stores:
        neo4j = bool(uri) and not str(uri).startswith("sqlite")
        if uri and len(sizes) > 1 and "{nodes}" not in uri and not (neo4j and args.wipe):
            ap.error(f"with several sizes, put '{{nodes}}' in {uri!r} (or --wipe a Neo4j store)")
    env = environment()
    results = []
    try:
        if args.with_neo4j:
            stores.append(_bundled_neo4j(args))
            args.wipe = True
        for n in sizes:
            for uri in stores:
                res = run_size(n, uri, args)
                res["build"]["batch"] = args.batch
                results.append(res)
    finally:
        _stop_bundled_neo4j()
    doc = {"environment": env, "args": vars(args), "results": results}
    if args.save:
        with open(args.save, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print_report(env, results)
        print_side_by_side(results)
    return 0


def print_side_by_side(results: list[dict[str, Any]]) -> None:
    """One line per size and store, with ratios to the first store (the embedded one)."""
    if len({r["store"].split(":", 1)[0] for r in results}) < 2:
        return
    print("\n== side by side ==")
    print(
        f"{'nodes':>10}  {'store':<8}{'rows/s':>10}{'ratio':>8}{'up p50':>9}{'up p95':>9}"
        f"{'ratio':>8}{'down p95':>10}"
    )
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_size.setdefault(r["nodes_target"], []).append(r)
    for n, rows in by_size.items():
        base = rows[0]
        for r in rows:
            kind = r["store"].split(":", 1)[0]
            tput = r["build"]["combined_per_s"]
            p95 = r["upstream"]["p95_ms"]
            print(
                f"{n:>10,}  {kind:<8}{tput:>10,.0f}{tput / base['build']['combined_per_s']:>7.2f}x"
                f"{r['upstream']['p50_ms']:>9.1f}{p95:>9.1f}"
                f"{p95 / base['upstream']['p95_ms']:>7.2f}x{r['downstream']['p95_ms']:>10.1f}"
            )


if __name__ == "__main__":
    sys.exit(main())
