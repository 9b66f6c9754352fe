#!/usr/bin/env python
"""Interop benchmark: OpenLineage events in, and MLflow histories imported.

(a) OpenLineage events/s, embedded: ``--events`` events (START and COMPLETE of Spark-like runs
    over 20 output tables, one input with a schema facet, column lineage on every output), as
    JSON, ingested with ``OpenLineageService.ingest`` in calls of ``--batch`` events (each call
    one transaction and one audit entry, the events kept as an artifact). Schema checks,
    mapping, writes and the audit records are all timed.
(b) OpenLineage events/s over HTTP: ``--http-events`` of them sent one request each by the stock
    ``openlineage-python`` client (HTTP transport, API key) to ``create_app`` served by uvicorn
    on 127.0.0.1 with token authentication: what an Airflow or Spark integration gets.
(c) MLflow import, runs/s: ``--runs`` runs with 10 params, 5 metrics x 100 steps each,
    written into a SQLite MLflow store with MLflow's client (``log_batch``: its fastest path,
    timed as the side-by-side reference), then imported by ``MlflowImporter`` (MLflow's client
    reading, full metric histories included, one transaction).

Every figure is checked after it is taken (all events' runs FINISHED, all runs and metric
points imported) so nothing is fast by being wrong; a failed check exits 2. ``--with-neo4j``
repeats (a) on the Neo4j that ``LINEAGEHUB_TEST_NEO4J_URI`` names (a throw-away: it is wiped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/spark"


def events(n_runs: int) -> list[dict[str, Any]]:
    """The events as JSON, as they arrive over the wire."""
    from openlineage.client.serde import Serde

    return [json.loads(Serde.to_json(e)) for e in run_events(n_runs)]


def run_events(n_runs: int) -> list[Any]:
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import column_lineage_dataset as cl
    from openlineage.client.facet_v2 import schema_dataset

    schema = schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=c, type="decimal")
            for c in ("amount", "tax")
        ]
    )
    lineage = cl.ColumnLineageDatasetFacet(
        fields={
            "revenue": cl.Fields(inputFields=[cl.InputField("postgres://db", "orders", "amount")])
        }
    )
    out: list[Any] = []
    for i in range(n_runs):
        run = str(uuid.uuid4())
        for k, state in enumerate((RunState.START, RunState.COMPLETE)):
            event = RunEvent(
                eventType=state,
                eventTime=(T0 + timedelta(seconds=2 * i + k)).isoformat(),
                run=Run(runId=run),
                job=Job(namespace="spark", name=f"job_{i % 50}"),
                producer=PRODUCER,
                inputs=[InputDataset("postgres://db", "orders", facets={"schema": schema})],
                outputs=[
                    OutputDataset("s3://lake", f"t_{i % 20}", facets={"columnLineage": lineage})
                ],
            )
            out.append(event)
    return out


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(2)


def openlineage_embedded(uri: str, n_events: int, batch: int, folder: Path) -> tuple[float, float]:
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.graph import open_store
    from lineagehub.services.openlineage_in import OpenLineageService

    data = events(n_events // 2)
    store = open_store(uri)
    if uri.startswith(("bolt", "neo4j")):
        store._wipe()  # type: ignore[attr-defined]  # a throw-away test server
    try:
        service = OpenLineageService(store, open_artifact_store((folder / "a").as_uri()))
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(data), batch):
            service.ingest(data[i : i + batch])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        check(store.count_nodes("Run", {"status": "FINISHED"}) == n_events // 2, "runs finished")
    finally:
        store.close()
    return len(data) / elapsed, len(data) / cpu


def openlineage_http(n_events: int, folder: Path) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    from lineagehub.artifacts import open_artifact_store
    from lineagehub.config import Settings
    from lineagehub.graph import open_store
    from lineagehub.interfaces.server import create_app
    from lineagehub.services.identity import IdentityService
    from tests.http_server import HubServer

    store = open_store(f"sqlite:///{folder / 'http.db'}")
    identity = IdentityService(store, actor="root")
    identity.add_user("spark", "editor")
    secret = identity.create_token("spark").secret
    app = create_app(
        Settings(user="srv", data_dir=folder, auth="tokens", rate_limit=0),
        store=store,
        artifacts=open_artifact_store((folder / "ha").as_uri()),
    )
    data = run_events(n_events // 2)
    try:
        with HubServer(app) as server:
            config = HttpConfig(url=server.url, auth=ApiKeyTokenProvider({"apiKey": secret}))
            client = OpenLineageClient(transport=HttpTransport(config))
            start = time.perf_counter()
            for event in data:  # the stock client: one event, one request
                client.emit(event)
            elapsed = time.perf_counter() - start
        check(store.count_nodes("Run", {"status": "FINISHED"}) == n_events // 2, "http runs")
    finally:
        store.close()
    return len(data) / elapsed


def mlflow_import(n_runs: int, folder: Path) -> tuple[float, float]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from lineagehub.artifacts import open_artifact_store
    from lineagehub.graph import open_store
    from lineagehub.services.mlflow_import import MlflowImporter

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench")
    params = [Param(f"p{k}", str(k * 0.1)) for k in range(10)]
    start = time.perf_counter()
    for i in range(n_runs):
        run = client.create_run(exp, start_time=1_700_000_000_000 + i)
        metrics = [
            Metric(f"m{k}", 1.0 / (s + 1 + k), 1_700_000_000_000 + s, s)
            for k in range(5)
            for s in range(100)
        ]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, end_time=1_700_000_100_000 + i)
    mlflow_write = n_runs / (time.perf_counter() - start)
    store = open_store(f"sqlite:///{folder / 'import.db'}")
    try:
        importer = MlflowImporter(
            store, open_artifact_store((folder / "ia").as_uri()), actor="bench"
        )
        start = time.perf_counter()
        summary = importer.run(uri, copy_artifacts=False)
        rate = n_runs / (time.perf_counter() - start)
        check(summary.runs == n_runs, "runs imported")
        check(summary.metric_points == n_runs * 500, "metric points imported")
    finally:
        store.close()
    return rate, mlflow_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--http-events", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--with-neo4j", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wall, cpu = openlineage_embedded(
            f"sqlite:///{folder / 'ol.db'}", args.events, args.batch, folder
        )
        results["openlineage_embedded_sqlite_events_s"] = round(wall)
        # events per second of this process's CPU: what an idle core gives, on a shared machine
        results["openlineage_embedded_sqlite_events_per_cpu_s"] = round(cpu)
        if args.with_neo4j:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.conftest import neo4j_uri

            results["openlineage_embedded_neo4j_events_s"] = round(
                openlineage_embedded(neo4j_uri(), args.events, args.batch, folder)[0]
            )
        if args.http_events:
            results["openlineage_http_events_s"] = round(openlineage_http(args.http_events, folder))
        rate, reference = mlflow_import(args.runs, folder)
        results["mlflow_import_runs_s"] = round(rate, 1)
        results["mlflow_client_write_runs_s"] = round(reference, 1)
    results["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
