"""OpenLineage events in: the stock ``openlineage-python`` client (HTTP transport, API key)
posting to a real server on each backend, then the hub's lineage, impact and column-lineage
queries over GraphQL; malformed events refused with the field named; a burst of 10,000 events
without loss; the kept events replayed into a fresh store."""

from __future__ import annotations

import copy
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    error_message_run,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    source_code_job,
    source_code_location_job,
    sql_job,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import GraphStore, ValidationError, open_store
from lineagehub.ingest.client import Client
from lineagehub.interfaces.server import create_app
from lineagehub.services.identity import IdentityService
from lineagehub.services.openlineage_in import AUDIT_ACTION, OpenLineageService
from lineagehub.services.registry import RegistryService
from lineagehub.vocabulary import Dataset, EdgeKind, Model, ModelVersion, make_edge
from tests.conftest import fresh_store_uri
from tests.http_server import HubServer

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.0.0"
T0 = datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)


def schema(*cols: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in cols]
    )


def column_lineage(
    mapping: dict[str, list[tuple[str, str, str]]],
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """{output column: [(input namespace, input name, input column)]}."""
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            out: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=ns,
                        name=name,
                        field=col,
                        transformations=[
                            column_lineage_dataset.Transformation(
                                type="DIRECT",
                                subtype="AGGREGATION" if out == "revenue" else "IDENTITY",
                            )
                        ],
                    )
                    for ns, name, col in sources
                ]
            )
            for out, sources in mapping.items()
        }
    )


PG = "postgres://warehouse:5432"
SPARK_CODE = "df = spark.table('clean').groupBy('customer_id').sum('amount_eur')\n"
S3 = "s3://lake"


@dataclass
class Pipeline:
    """The events of one day's pipeline, in the order the test sends them."""

    dag_run: str
    extract: str
    transform: str
    load: str
    spark: str
    events: list[RunEvent]


def pipeline(day: int = 0) -> Pipeline:
    """An Airflow-like DAG (extract -> transform -> load, each a task run whose parent is the
    DAG run) and a Spark job with column lineage reading the DAG's output."""
    t = T0 + timedelta(days=day)
    ids = {k: str(uuid.uuid4()) for k in ("dag", "extract", "transform", "load", "spark")}
    dag_job = Job(namespace="airflow-prod", name="daily_sales")
    parent = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=ids["dag"]),
            job=parent_run.Job(namespace="airflow-prod", name="daily_sales"),
        ),
        "nominalTime": nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=t.isoformat(), nominalEndTime=(t + timedelta(days=1)).isoformat()
        ),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version="2.10.0", name="Airflow", openlineageAdapterVersion="2.0.0"
        ),
    }
    code = source_code_location_job.SourceCodeLocationJobFacet(
        type="git",
        url="https://github.com/acme/pipelines/blob/3f4e5a6b/dags/daily_sales.py",
        repoUrl="https://github.com/acme/pipelines.git",
        path="dags/daily_sales.py",
        version="3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
        branch="main",
    )

    def task(name: str, sql: str | None = None) -> Job:
        facets: dict[str, Any] = {"sourceCodeLocation": code}
        if sql:
            facets["sql"] = sql_job.SQLJobFacet(query=sql)
        return Job(namespace="airflow-prod", name=f"daily_sales.{name}", facets=facets)

    orders = InputDataset(
        PG,
        "public.orders",
        facets={
            "schema": schema(("order_id", "int"), ("amount", "decimal"), ("customer_id", "int"))
        },
    )
    raw = OutputDataset(S3, "raw/orders", facets={"schema": schema(("order_id", "int"), ("amount", "decimal"), ("customer_id", "int"))},
                        outputFacets={"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=1200)})  # fmt: skip
    raw_in = InputDataset(S3, "raw/orders")
    clean = OutputDataset(S3, "clean/orders", facets={
        "schema": schema(("order_id", "int"), ("amount_eur", "decimal"), ("customer_id", "int")),
        "columnLineage": column_lineage({"order_id": [(S3, "raw/orders", "order_id")],
                                         "amount_eur": [(S3, "raw/orders", "amount")],
                                         "customer_id": [(S3, "raw/orders", "customer_id")]}),
    })  # fmt: skip
    clean_in = InputDataset(S3, "clean/orders")
    mart = OutputDataset(
        PG, "mart.sales", facets={"schema": schema(("customer_id", "int"), ("revenue", "decimal"))}
    )
    spark_out = OutputDataset(S3, "features/customer_revenue", facets={
        "schema": schema(("customer", "int"), ("revenue", "decimal")),
        "columnLineage": column_lineage({"customer": [(S3, "clean/orders", "customer_id")],
                                         "revenue": [(S3, "clean/orders", "amount_eur")]}),
    })  # fmt: skip

    def ev(state: RunState, run: str, job: Job, when: datetime, facets: dict[str, Any] | None = None,
           inputs: list[InputDataset] | None = None, outputs: list[OutputDataset] | None = None) -> RunEvent:  # fmt: skip
        return RunEvent(
            eventType=state,
            eventTime=when.isoformat(),
            run=Run(runId=run, facets=facets or {}),
            job=job,
            producer=PRODUCER,
            inputs=inputs or [],
            outputs=outputs or [],
        )

    m = timedelta(minutes=1)
    spark_job = Job(namespace="spark://cluster", name="customer_revenue.execute_insert",
                    facets={"sql": sql_job.SQLJobFacet(query="INSERT INTO features SELECT customer_id, sum(amount_eur) FROM clean GROUP BY 1"),
                            "sourceCode": source_code_job.SourceCodeJobFacet(language="python", sourceCode=SPARK_CODE)})  # fmt: skip
    events = [
        ev(RunState.START, ids["dag"], dag_job, t),
        ev(RunState.START, ids["extract"], task("extract"), t + m, parent, [orders], [raw]),
        ev(RunState.COMPLETE, ids["extract"], task("extract"), t + 2 * m, parent, [orders], [raw]),
        # the transform's COMPLETE arrives before its START (any order must merge)
        ev(RunState.COMPLETE, ids["transform"], task("transform", "SELECT ..."), t + 4 * m, parent, [raw_in], [clean]),
        ev(RunState.START, ids["transform"], task("transform", "SELECT ..."), t + 3 * m, parent, [raw_in], [clean]),
        ev(RunState.START, ids["load"], task("load"), t + 5 * m, parent, [clean_in], [mart]),
        ev(RunState.FAIL, ids["load"], task("load"), t + 6 * m,
           {**parent, "errorMessage": error_message_run.ErrorMessageRunFacet(message="duplicate key in mart.sales", programmingLanguage="python")},
           [clean_in], [mart]),
        ev(RunState.COMPLETE, ids["dag"], dag_job, t + 7 * m),
        ev(RunState.START, ids["spark"], spark_job, t + 8 * m, None, [clean_in], [spark_out]),
        ev(RunState.COMPLETE, ids["spark"], spark_job, t + 9 * m, None, [clean_in], [spark_out]),
    ]  # fmt: skip
    return Pipeline(ids["dag"], ids["extract"], ids["transform"], ids["load"], ids["spark"], events)


@dataclass
class Hub:
    url: str
    store: GraphStore
    secrets: dict[str, str]
    service: OpenLineageService

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=60, headers={"authorization": f"Bearer {self.secrets[who]}"}
        )

    def client(self, who: str = "airflow") -> OpenLineageClient:
        """The stock client with the stock HTTP transport and API key auth."""
        config = HttpConfig(url=self.url, auth=ApiKeyTokenProvider({"apiKey": self.secrets[who]}))
        return OpenLineageClient(transport=HttpTransport(config))

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        with self.http("analyst") as http:
            body = http.post("/graphql", json={"query": query, "variables": variables}).json()
        assert "errors" not in body, body
        return dict(body["data"])


@pytest.fixture
def hub(store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    identity = IdentityService(store, actor="root")
    identity.add_user("airflow", "editor")  # the integration's service account
    identity.add_user("analyst", "viewer")
    secrets = {u: identity.create_token(u, name="ol").secret for u in ("airflow", "analyst")}
    config = Settings(user="hub-server", data_dir=tmp_path, auth="tokens")
    try:
        with HubServer(create_app(config, store=store, artifacts=artifacts)) as server:
            yield Hub(server.url, store, secrets, OpenLineageService(store, artifacts))
    finally:
        store.close()


def dsv(hub: Hub, namespace: str, name: str) -> list[str]:
    """The ids of a dataset's versions."""
    return [
        n.id for n in hub.store.iter_nodes("DatasetVersion", {"namespace": namespace, "name": name})
    ]


def test_the_stock_client_sends_a_pipeline_and_the_hub_answers_lineage_questions(
    hub: Hub,
) -> None:
    day = pipeline()
    client = hub.client()
    for event in day.events:
        client.emit(event)

    # runs: statuses merged whatever the order, the parent, the error, the facets
    runs = {r: hub.store.get_node(f"run:{r}") for r in (day.dag_run, day.extract, day.transform, day.load, day.spark)}  # fmt: skip
    assert runs[day.dag_run].props["status"] == "FINISHED"
    assert runs[day.transform].props["status"] == "FINISHED"  # COMPLETE came before START
    assert runs[day.transform].props["started_at"] < runs[day.transform].props["ended_at"]
    assert runs[day.load].props["status"] == "FAILED"
    assert runs[day.load].props["error"] == "duplicate key in mart.sales"
    assert runs[day.extract].props["parent"] == f"run:{day.dag_run}"
    assert runs[day.extract].props["project"] == "airflow-prod"
    assert runs[day.extract].props["experiment"] == "daily_sales.extract"
    facets = runs[day.extract].props["facets"]
    assert facets["run"]["processing_engine"]["name"] == "Airflow"
    assert facets["run"]["nominalTime"]["nominalStartTime"].startswith("2026-03-01T06:00:00")
    assert "sql" in runs[day.spark].props["facets"]["job"]

    # facets are queryable: a filter on a facet's field over GraphQL
    found = hub.gql(
        "query($w: JSON) { runs(where: $w) { edges { node { id } } } }",
        w={"facets.run.processing_engine.name": "Airflow", "status": "FAILED"},
    )
    assert [e["node"]["id"] for e in found["runs"]["edges"]] == [f"run:{day.load}"]

    # sourceCodeLocation -> CodeCommit
    code = hub.store.neighbors([f"run:{day.extract}"], "UPSTREAM", ["RAN_CODE"])[
        f"run:{day.extract}"
    ]
    assert [a.node.props["sha"] for a in code] == ["3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"]
    assert code[0].node.props["branch"] == "main"
    # a sourceCode facet alone: the code's sha256 is the commit
    spark_code = hub.store.neighbors([f"run:{day.spark}"], "UPSTREAM", ["RAN_CODE"])
    [spark_commit] = spark_code[f"run:{day.spark}"]
    assert spark_commit.node.props["sha"] == hashlib.sha256(SPARK_CODE.encode()).hexdigest()

    # one version per output write, with its schema and row count; DERIVED_FROM from columns
    [raw] = dsv(hub, S3, "raw/orders")
    [clean] = dsv(hub, S3, "clean/orders")
    [features] = dsv(hub, S3, "features/customer_revenue")
    [orders] = dsv(hub, PG, "public.orders")
    raw_node = hub.store.get_node(raw)
    assert raw_node.props["row_count"] == 1200
    assert [c["name"] for c in raw_node.props["columns"]] == ["order_id", "amount", "customer_id"]
    derived = hub.store.neighbors([clean], "UPSTREAM", ["DERIVED_FROM"])[clean]
    assert [a.node.id for a in derived] == [raw]  # the transform read the version extract wrote

    # lineage: the Spark features come from the raw extract and the warehouse's orders
    lineage = hub.gql(
        "query($r: [String!]!) { lineage(input: {roots: $r, upstreamDepth: 10}) "
        "{ nodes { node { id } distance } } }",
        r=[features],
    )
    reached = {n["node"]["id"] for n in lineage["lineage"]["nodes"]}
    assert {clean, raw, orders, f"run:{day.spark}", f"run:{day.transform}"} <= reached

    # impact: a bad warehouse table reaches the runs and every dataset version downstream
    impact = hub.gql(
        "query($r: String!) { impact(ref: $r) { runs { id } datasetVersions { id } } }",
        r=orders,
    )["impact"]
    assert {raw, clean, features} <= {n["id"] for n in impact["datasetVersions"]}
    assert {f"run:{day.extract}", f"run:{day.spark}"} <= {n["id"] for n in impact["runs"]}

    # column lineage: which output columns depend on raw orders' amount (two hops)
    columns = hub.gql(
        "query($d: ID!, $c: String!) { columnLineage(dataset: $d, column: $c) "
        "{ name column fromColumn distance transformations } }",
        d=Dataset(namespace=S3, name="raw/orders").node_id,
        c="amount",
    )["columnLineage"]
    assert [(c["name"], c["column"], c["fromColumn"], c["distance"]) for c in columns] == [
        ("clean/orders", "amount_eur", "amount", 1),
        ("features/customer_revenue", "revenue", "amount_eur", 2),
    ]
    assert columns[1]["transformations"][0]["subtype"] == "AGGREGATION"
    upstream = hub.gql(
        'query($d: ID!) { columnLineage(dataset: $d, column: "customer", direction: UPSTREAM) '
        "{ name column } }",
        d=features,
    )["columnLineage"]
    assert [(c["name"], c["column"]) for c in upstream] == [
        ("clean/orders", "customer_id"),
        ("raw/orders", "customer_id"),
    ]

    # replaying the same events changes nothing (idempotent), and a second day adds a
    # version per output write
    before = (hub.store.count_nodes("Run"), hub.store.count_nodes("DatasetVersion"))
    for event in day.events:
        client.emit(event)
    assert (hub.store.count_nodes("Run"), hub.store.count_nodes("DatasetVersion")) == before
    for event in pipeline(day=1).events:
        client.emit(event)
    assert len(dsv(hub, S3, "raw/orders")) == 2
    assert hub.store.count_nodes("Run") == before[0] + 5

    # every call is one audit entry under the caller
    entries = [e for e in hub.store.iter_audit() if e.action == AUDIT_ACTION]
    assert len(entries) == 3 * len(day.events)
    assert {e.actor for e in entries} == {"airflow"}


def test_the_kept_events_replay_into_a_fresh_store(hub: Hub, tmp_path: Path) -> None:
    client = hub.client()
    for event in pipeline().events:
        client.emit(event)
    fresh = open_store(f"sqlite:///{tmp_path / 'replayed.db'}")
    try:
        target = OpenLineageService(fresh, hub.service.artifacts)
        assert hub.service.replay(target) == len(pipeline().events)
        for label in ("Run", "DatasetVersion", "Dataset", "CodeCommit", "Experiment"):
            assert fresh.count_nodes(label) == hub.store.count_nodes(label), label
        original = {n.id: n.props for n in hub.store.iter_nodes("Run")}
        assert {n.id: n.props for n in fresh.iter_nodes("Run")} == original
    finally:
        fresh.close()


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(Serde.to_json(pipeline().events[1]))
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["run"].pop("runId"), "run.runId"),
        (lambda e: e["run"].update(runId="not-a-uuid"), "run.runId"),
        (lambda e: e.update(eventTime="yesterday"), "eventTime"),
        (lambda e: e.update(eventType="DONE"), "eventType"),
        (lambda e: e["job"].pop("namespace"), "job.namespace"),
        (lambda e: e["job"].update(namespace="etl\x07"), "job.namespace"),  # a control char
        (lambda e: e["inputs"][0]["facets"]["schema"].pop("_producer"), "inputs[0].facets.schema._producer"),
        (lambda e: e["outputs"][0].update(name=""), "outputs[0].name"),
        (lambda e: e.pop("producer"), "producer"),
        # a time the hub does not keep, or one from the future (a day ahead of its clock)
        (lambda e: e.update(eventTime="9999-12-31T23:59:59Z"), "eventTime"),
        (lambda e: e.update(eventTime=(datetime.now(timezone.utc) + timedelta(days=1)).isoformat()), "eventTime"),
        # a run cannot be its own parent (a CHILD_OF loop on itself)
        (lambda e: e["run"]["facets"].update(parent={**e["run"]["facets"].get("parent", {}), "_producer": PRODUCER, "_schemaURL": PRODUCER, "run": {"runId": e["run"]["runId"]}, "job": dict(e["job"])}), "run.facets.parent.run.runId"),
    ],
)  # fmt: skip
def test_malformed_events_get_400_naming_the_field_and_nothing_is_written(
    hub: Hub, mutate: Any, field: str
) -> None:
    event = _event()
    mutate(event)
    with hub.http("airflow") as http:
        response = http.post("/api/v1/lineage", json=event)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION"
    assert error["extensions"]["field"] == field
    assert field in error["message"]
    assert hub.store.count_nodes("Run") == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["run"].update(facets={"note": {"_producer": PRODUCER, "_schemaURL": PRODUCER, "text": "a\x00b"}}),
        lambda e: e["run"].update(facets={"note": {"_producer": PRODUCER, "_schemaURL": PRODUCER, "text": "caf\udce9"}}),
        lambda e: e["run"].update(facets={"note": {"_producer": PRODUCER, "_schemaURL": PRODUCER, "k\ud800": 1}}),
        lambda e: e["job"].update(name="etl\udce9"),
        lambda e: e["outputs"][0].update(name="t\ud800"),
    ],
)  # fmt: skip
def test_text_the_hub_cannot_keep_is_refused_with_400_and_runs_still_list(
    hub: Hub, mutate: Any
) -> None:
    """A NUL in a facet (a run's facets refuse it when read), or a lone surrogate anywhere
    (not Unicode text: no store writes it), is a 400 before anything is written, not a run
    stored that no listing can read back (or a 500)."""
    event = _event()
    mutate(event)
    with hub.http("airflow") as http:
        body = json.dumps(event)  # ASCII: a lone surrogate travels as its escape
        response = http.post(
            "/api/v1/lineage", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION"
        assert hub.store.count_nodes("Run") == 0
        assert http.post("/api/v1/lineage", json=_event()).status_code == 201
    client = Client(hub.store)
    assert len(client.search_runs({})[0]) == hub.store.count_nodes("Run") > 0
    client.close()


def test_a_batch_is_all_or_nothing_and_names_the_bad_event(hub: Hub) -> None:
    good = _event()
    bad = _event()
    bad["run"]["runId"] = "nope"
    with hub.http("airflow") as http:
        response = http.post("/api/v1/lineage", json=[good, bad])
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["field"] == "events[1].run.runId"
        assert hub.store.count_nodes("Run") == 0
        response = http.post("/api/v1/lineage", json=[good, _event()])
        assert response.status_code == 201
        assert response.json()["events"] == 2


def test_a_viewer_may_not_send_events_and_no_credential_gets_401(hub: Hub) -> None:
    with hub.http("analyst") as http:
        response = http.post("/api/v1/lineage", json=_event())
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    response = httpx.post(f"{hub.url}/api/v1/lineage", json=_event(), timeout=30)
    assert response.status_code == 401
    with hub.http("airflow") as http:
        response = http.post(
            "/api/v1/lineage", content=b"{}", headers={"content-type": "text/plain"}
        )
    assert response.status_code == 415
    assert hub.store.count_nodes("Run") == 0


def test_gzip_bodies_as_the_client_compresses_them(hub: Hub) -> None:
    config = HttpConfig(
        url=hub.url,
        auth=ApiKeyTokenProvider({"apiKey": hub.secrets["airflow"]}),
        compression="gzip",  # type: ignore[arg-type]
    )
    client = OpenLineageClient(transport=HttpTransport(config))
    day = pipeline()
    client.emit(day.events[0])
    assert hub.store.get_node(f"run:{day.dag_run}").props["status"] == "RUNNING"


def burst(n_runs: int) -> list[dict[str, Any]]:
    """START and COMPLETE of ``n_runs`` Spark-like runs over a few tables, column lineage
    included, as JSON (what arrives over the wire)."""
    events: list[dict[str, Any]] = []
    cl = column_lineage({"revenue": [(PG, "public.orders", "amount")]})
    for i in range(n_runs):
        run = str(uuid.uuid4())
        job = Job(namespace="spark://cluster", name=f"job_{i % 50}")
        inputs = [
            InputDataset(PG, "public.orders", facets={"schema": schema(("amount", "decimal"))})
        ]
        outputs = [OutputDataset(S3, f"out/table_{i % 20}", facets={"columnLineage": cl})]
        for k, state in enumerate((RunState.START, RunState.COMPLETE)):
            event = RunEvent(
                eventType=state,
                eventTime=(T0 + timedelta(seconds=2 * i + k)).isoformat(),
                run=Run(runId=run),
                job=job,
                producer=PRODUCER,
                inputs=inputs,
                outputs=outputs,
            )
            events.append(json.loads(Serde.to_json(event)))
    return events


@pytest.mark.slow
def test_a_burst_of_10000_events_is_ingested_without_loss(hub: Hub) -> None:
    events = burst(5_000)
    assert len(events) == 10_000
    start = time.perf_counter()
    for i in range(0, len(events), 1_000):
        hub.service.ingest(events[i : i + 1_000])
    elapsed = time.perf_counter() - start
    print(f"\nOpenLineage ingestion: {len(events) / elapsed:,.0f} events/s ({hub.store.uri})")
    assert hub.store.count_nodes("Run", {"status": "FINISHED"}) == 5_000
    assert hub.store.count_nodes("DatasetVersion") == 5_000 + 1  # one per write + the input
    assert hub.store.count_nodes("Experiment") == 50
    orders = Dataset(namespace=PG, name="public.orders").node_id
    links = hub.service.column_lineage(orders, "amount")
    assert len(links) == 5_000


def test_a_bad_event_in_process_is_a_validation_error_naming_the_field(hub: Hub) -> None:
    bad = _event()
    bad["outputs"][0]["facets"]["columnLineage"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
        "fields": {"x": {"inputFields": "nope"}},
    }
    with pytest.raises(ValidationError) as e:
        hub.service.ingest([_event(), bad])
    assert e.value.field == "events[1].outputs[0].facets.columnLineage.fields.x.inputFields"
    assert hub.store.count_nodes("Run") == 0


def test_job_and_dataset_events_and_unknown_facets_are_kept(hub: Hub) -> None:
    facet = {"_producer": PRODUCER, "_schemaURL": "https://acme.example/facets/Cost.json"}
    job_event = {
        "eventTime": T0.isoformat(),
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
        "job": {
            "namespace": "dbt-prod",
            "name": "marts.revenue",
            "facets": {
                "sql": {**facet, "query": "select 1"},
                "acmeCost": {**facet, "dollars": 1.5},  # a facet no spec knows
            },
        },
        "inputs": [{"namespace": PG, "name": "public.orders"}],
        "outputs": [{"namespace": PG, "name": "marts.revenue"}],
    }
    dataset_event = {
        "eventTime": T0.isoformat(),
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {
            "namespace": PG,
            "name": "public.orders",
            "facets": {
                "dataSource": {**facet, "name": "warehouse", "uri": PG},
                "acmeOwner": {**facet, "team": "sales"},
            },
        },
    }
    with hub.http("airflow") as http:
        assert http.post("/api/v1/lineage", json=job_event).status_code == 201
        assert http.post("/api/v1/lineage", json=dataset_event).status_code == 201
    experiment = hub.store.get_node("experiment:dbt-prod/marts.revenue")
    assert experiment.props["facets"]["acmeCost"]["dollars"] == 1.5
    assert experiment.props["facets"]["sql"]["query"] == "select 1"
    orders = hub.store.get_node(Dataset(namespace=PG, name="public.orders").node_id)
    assert orders.props["facets"]["acmeOwner"]["team"] == "sales"
    assert orders.props["facets"]["dataSource"]["name"] == "warehouse"
    assert hub.store.get_nodes([Dataset(namespace=PG, name="marts.revenue").node_id])[0]
    assert hub.store.count_nodes("Run") == 0  # no run: nothing ran


def test_a_later_end_clears_a_failures_error_and_a_count_is_no_boolean(hub: Hub) -> None:
    """A run that FAILed and was then COMPLETEd (a retry of the task, with a later time) ends
    FINISHED without the failure's error, whether the events come in one request or two; a
    rowCount of true is no row count."""
    for together in (True, False):
        start = _event(eventType="START", eventTime=T0.isoformat())
        start["run"]["runId"] = str(uuid.uuid4())
        start["outputs"][0]["outputFacets"] = {
            "outputStatistics": {"_producer": PRODUCER, "_schemaURL": PRODUCER, "rowCount": True}
        }
        fail = copy.deepcopy(start)
        fail.update(eventType="FAIL", eventTime=(T0 + timedelta(minutes=1)).isoformat())
        fail["run"]["facets"]["errorMessage"] = {
            "_producer": PRODUCER,
            "_schemaURL": PRODUCER,
            "message": "duplicate key",
            "programmingLanguage": "python",
        }
        done = copy.deepcopy(start)
        done.update(eventType="COMPLETE", eventTime=(T0 + timedelta(minutes=2)).isoformat())
        if together:
            hub.service.ingest([start, fail, done])
        else:
            hub.service.ingest([start, fail])
            assert hub.store.get_node(f"run:{start['run']['runId']}").props["error"]
            hub.service.ingest([done])
        run = hub.store.get_node(f"run:{start['run']['runId']}").props
        assert run["status"] == "FINISHED" and "error" not in run, (together, run)
    output = start["outputs"][0]
    versions = hub.store.find_nodes("DatasetVersion", {"name": output["name"]}).items
    assert versions and all("row_count" not in v.props for v in versions)  # true is no count


def test_a_run_keeps_the_job_and_the_parent_it_was_first_recorded_with(hub: Hub) -> None:
    """A producer reusing a runId under another job of the project, or naming another parent
    later, does not move the run: one PART_OF (its first job), one CHILD_OF (its first
    parent), and what the run says agrees with its edges."""
    first = _event(eventType="START", eventTime=T0.isoformat())
    run_id = f"run:{first['run']['runId']}"
    hub.service.ingest([first])
    before = hub.store.get_node(run_id).props
    other = copy.deepcopy(first)
    other.update(eventType="COMPLETE", eventTime=(T0 + timedelta(minutes=1)).isoformat())
    other["job"]["name"] = "another.task"
    other["run"]["facets"]["parent"]["run"]["runId"] = str(uuid.uuid4())
    hub.service.ingest([other])
    after = hub.store.get_node(run_id).props
    assert after["status"] == "FINISHED"  # the event itself is taken
    assert (after["experiment"], after["parent"]) == (before["experiment"], before["parent"])
    up = hub.store.neighbors([run_id], "UPSTREAM", ["PART_OF", "CHILD_OF"])[run_id]
    kinds = sorted((a.edge.kind, a.node.id) for a in up)
    assert [k for k, _ in kinds] == ["CHILD_OF", "PART_OF"]
    assert (kinds[0][1], kinds[1][1].endswith(before["experiment"])) == (before["parent"], True)


def test_two_ends_at_the_same_time_end_the_same_whatever_arrives_last(hub: Hub) -> None:
    """COMPLETE and FAIL with one eventTime (a retried or reordered delivery): the run ends
    FAILED, with the failure's message, in either order."""
    at = (T0 + timedelta(minutes=5)).isoformat()
    ends = []
    for kind in ("COMPLETE", "FAIL"):
        event = _event(eventType=kind, eventTime=at)
        if kind == "FAIL":
            event["run"]["facets"]["errorMessage"] = {
                "_producer": PRODUCER, "_schemaURL": PRODUCER,
                "message": "disk full", "programmingLanguage": "python",
            }  # fmt: skip
        ends.append(event)
    outcomes = []
    for order in (ends, ends[::-1]):
        run_id = str(uuid.uuid4())
        for event in order:
            sent = copy.deepcopy(event)
            sent["run"]["runId"] = run_id
            hub.service.ingest([sent])
        props = hub.store.get_node(f"run:{run_id}").props
        outcomes.append((props["status"], props.get("error")))
    assert outcomes == [("FAILED", "disk full")] * 2


def test_a_parent_link_that_would_close_a_cycle_is_refused(hub: Hub) -> None:
    """A run's parents never lead back to it: a DAG run named as the child of its own task
    (or of the task's child) is refused whole, and the chain stays as it was."""
    task = _event(eventType="START", eventTime=T0.isoformat())  # a task whose parent is a DAG
    dag = task["run"]["facets"]["parent"]
    hub.service.ingest([task])
    grandchild = copy.deepcopy(task)
    grandchild["run"]["runId"] = str(uuid.uuid4())
    grandchild["job"]["name"] = "daily_sales.check"
    grandchild["run"]["facets"]["parent"] = {
        **dag,
        "run": {"runId": task["run"]["runId"]},
        "job": dict(task["job"]),
    }
    hub.service.ingest([grandchild])

    def dag_event(parent: dict[str, Any]) -> dict[str, Any]:
        event = copy.deepcopy(task)
        event["run"]["runId"] = dag["run"]["runId"]
        event["job"] = {**event["job"], **dag["job"]}
        event["run"]["facets"]["parent"] = {
            **dag,
            "run": {"runId": parent["run"]["runId"]},
            "job": dict(parent["job"]),
        }
        event["inputs"], event["outputs"] = [], []
        return event

    field = "run.facets.parent.run.runId"
    dag_id = f"run:{dag['run']['runId']}"
    for child in (task, grandchild):
        with hub.http("airflow") as http:
            response = http.post("/api/v1/lineage", json=dag_event(child))
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["field"] == field and "own ancestor" in error["message"]
        assert "parent" not in hub.store.get_node(dag_id).props
        assert hub.store.neighbors([dag_id], "UPSTREAM", ["CHILD_OF"])[dag_id] == []
    # a parent elsewhere is still taken
    elsewhere = {"run": {"runId": str(uuid.uuid4())}, "job": {**dag["job"], "name": "weekly"}}
    hub.service.ingest([dag_event(elsewhere)])
    assert hub.store.get_node(dag_id).props["parent"] == f"run:{elsewhere['run']['runId']}"


def test_an_event_changes_only_runs_of_its_own_project_and_never_the_registrys(
    hub: Hub,
) -> None:
    """The editor role is checked in the event's job namespace alone, so an event naming a run
    of another project (a guessed or leaked run id) must not move or rewrite it; nor may any
    event touch the registry's own runs, whose history the registry reads back."""
    identity = IdentityService(hub.store, actor="root")
    identity.add_user("mallory", "editor", project="marketing")
    mallory = identity.create_token("mallory", name="ol").secret
    first = _event()  # airflow-prod's extract task starts
    run_id = f"run:{first['run']['runId']}"
    assert hub.service.ingest([first]).runs == [run_id]
    before = hub.store.get_node(run_id).props

    hijack = copy.deepcopy(first)
    hijack["job"]["namespace"] = "marketing"
    del hijack["run"]["facets"]["parent"]  # its namespace would need the role in airflow-prod
    hijack.update(eventType="COMPLETE", eventTime=(T0 + timedelta(days=1)).isoformat())

    def refused(event: dict[str, Any], secret: str, field: str) -> None:
        response = httpx.post(
            f"{hub.url}/api/v1/lineage",
            json=event,
            headers={"authorization": f"Bearer {secret}"},
            timeout=60,
        )
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("VALIDATION", field)
        assert "project 'airflow-prod'" in error["message"]

    for secret in (mallory, hub.secrets["airflow"]):  # an editor of both may not move it either
        refused(hijack, secret, "run.runId")
    assert hub.store.get_node(run_id).props == before
    assert hub.store.count_nodes("Run") == 2  # the task and its DAG run, nothing more

    # nor may an event link a run of its own to airflow-prod's DAG run by claiming the DAG
    # run's job is in marketing
    adopt = copy.deepcopy(first)
    adopt["run"]["runId"] = str(uuid.uuid4())
    adopt["job"]["namespace"] = "marketing"
    adopt["run"]["facets"]["parent"]["job"]["namespace"] = "marketing"
    refused(adopt, mallory, "run.facets.parent.run.runId")
    assert hub.store.count_nodes("Run") == 2

    model = Model(name="churn")
    version = ModelVersion(model="churn", version=1, artifact_digest="sha256:" + "0" * 64)
    hub.store.upsert_nodes([model.to_node(), version.to_node()])
    hub.store.upsert_edges([make_edge(EdgeKind.VERSION_OF, version, model)])
    RegistryService(hub.store).set_alias("churn/1", "champion", "root")
    record = next(iter(hub.store.iter_nodes("Run", {"kind": "promote"})))
    recorded = record.props
    as_run = _event()
    as_run["run"]["runId"] = record.id.removeprefix("run:")
    as_child = _event()
    as_child["run"]["facets"]["parent"]["run"]["runId"] = record.id.removeprefix("run:")
    for event, field in ((as_run, "run.runId"), (as_child, "run.facets.parent.run.runId")):
        with pytest.raises(ValidationError, match="registry's own records") as refused:
            hub.service.ingest([event])
        assert refused.value.field == field
    assert hub.store.get_node(record.id).props == recorded
    assert hub.store.neighbors([record.id], "DOWNSTREAM", ["CHILD_OF"])[record.id] == []


def test_an_output_dataset_version_is_in_the_project_of_the_run_that_generated_it(
    hub: Hub,
) -> None:
    event = _event()
    hub.service.ingest([event])
    run = hub.store.get_node(f"run:{event['run']['runId']}")
    output = event["outputs"][0]
    (version,) = hub.store.get_nodes(dsv(hub, output["namespace"], output["name"]))
    assert version is not None and run.props["project"]
    assert version.props["project"] == run.props["project"]  # listings filter by it
    for given in event["inputs"]:  # what no run generated is shared data: no project
        for node in hub.store.get_nodes(dsv(hub, given["namespace"], given["name"])):
            assert node is not None and "project" not in node.props
