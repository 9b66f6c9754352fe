"""The GraphQL API over real HTTP (uvicorn on 127.0.0.1) and in process."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BACKENDS, fresh_store_uri
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, Node, SeriesPoint, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.schema import schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HubServer, GraphStore]]:
    folder = tmp_path_factory.mktemp("api")
    store = open_store(fresh_store_uri(request.param, folder))
    build_example(store)
    store.append_series(
        [
            SeriesPoint("run:example-train-1", "grad_norm", s, v)
            for s, v in enumerate([1.0, math.inf, math.nan])
        ]
    )
    artifacts = open_artifact_store((folder / "artifacts").as_uri())
    with HubServer(create_app(store=store, artifacts=artifacts)) as server:
        server.artifacts_dir = folder / "artifacts"  # type: ignore[attr-defined]
        yield server, store
    store.close()


@pytest.fixture(scope="module")
def http(hub: tuple[HubServer, GraphStore]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub[0].url, timeout=30) as client:
        yield client


def gql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    body = gql(http, query, **variables)
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def test_health(hub: tuple[HubServer, GraphStore], http: httpx.Client) -> None:
    body = http.get("/health").json()
    assert body["status"] == "ok" and body["store"] == hub[1].uri


def test_graphiql_is_served_to_browsers(http: httpx.Client) -> None:
    page = http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_runs_filter_order_and_cursors(http: httpx.Client) -> None:
    query = """query($where: JSON, $after: String) {
      runs(where: $where, orderBy: ["-params.max_depth"], first: 2, after: $after) {
        edges { cursor node { id name params } }
        pageInfo { hasNextPage endCursor }
      }
    }"""
    where = {"runKind": "ignored"}  # an unknown property matches nothing
    assert data(http, query, where=where)["runs"]["edges"] == []
    where = {"kind": "train", "params.max_depth": {"$gte": 3}}
    first = data(http, query, where=where)["runs"]
    assert [e["node"]["name"] for e in first["edges"]] == ["gbm-depth8", "gbm-depth5"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = data(http, query, where=where, after=first["pageInfo"]["endCursor"])["runs"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["gbm-depth3"]
    assert rest["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    # each edge's cursor continues after that edge
    after_first = data(http, query, where=where, after=first["edges"][0]["cursor"])["runs"]
    assert after_first["edges"][0]["node"]["name"] == "gbm-depth5"
    either = {"$or": [{"params.learning_rate": 0.1}, {"status": {"$in": ["FAILED"]}}]}
    assert [e["node"]["name"] for e in data(http, query, where=either)["runs"]["edges"]] == [
        "gbm-depth3"
    ]


def test_relationships_as_fields(http: httpx.Client) -> None:
    run = data(
        http,
        """{ node(ref: "run:example-train-1") { ... on Run {
            name status startedAt params
            inputs { node { id kind } edge { role kind ingestedAt } }
            outputs { node { id kind } }
            code { sha branch dirty } environment { python platform }
            experiment { name project { name } }
            agents { node { id } edge { role } }
            metrics { key last min max count }
            metricSeries(key: "grad_norm") { step value }
        } } }""",
    )["node"]
    assert run["status"] == "FINISHED" and run["params"]["max_depth"] == 3
    assert run["inputs"][0]["edge"]["role"] == "train"
    assert run["inputs"][0]["node"]["kind"] == "DATASET_VERSION"
    assert [o["node"]["id"] for o in run["outputs"]] == ["mv:churn/1"]
    assert run["code"]["branch"] == "main" and run["environment"]["python"] == "3.11.7"
    assert run["experiment"] == {"name": "baseline", "project": {"name": "churn"}}
    assert run["agents"] == [{"node": {"id": "agent:ann"}, "edge": {"role": "launcher"}}]
    grad = next(m for m in run["metrics"] if m["key"] == "grad_norm")
    assert grad["last"] == "NaN" and grad["max"] == "Infinity" and grad["count"] == 3
    assert [p["value"] for p in run["metricSeries"]] == [1.0, "Infinity", "NaN"]
    mv = data(
        http,
        """{ node(ref: "model:churn@2") { id ... on ModelVersion { version
            trainedBy { name } model { name versions { version } }
            deployments { node { ... on Deployment { name alerts { rule state } } } edge { properties } }
        } } }""",
    )["node"]
    assert mv["id"] == "mv:churn/2" and mv["trainedBy"]["name"] == "gbm-depth5"
    assert [v["version"] for v in mv["model"]["versions"]] == [3, 2, 1]
    deployment = mv["deployments"][0]
    assert deployment["node"]["alerts"] == [{"rule": "psi_tenure > 0.2", "state": "firing"}]
    assert deployment["edge"]["properties"]["valid_from"].startswith("2026-03-02")


def test_lineage_query(http: httpx.Client) -> None:
    query = """query($input: LineageInput!) { lineage(input: $input) {
        nodes { node { id kind } distance reachedFrom direction }
        edges { source target kind eventTime ingestedAt role }
        truncated truncationReason } }"""
    full = data(http, query, input={"roots": ["deployment:example-prod"], "upstreamDepth": 10})
    nodes = {n["node"]["id"]: n for n in full["lineage"]["nodes"]}
    assert nodes["mv:churn/2"]["distance"] == 1
    assert nodes["mv:churn/2"]["reachedFrom"] == "deployment:example-prod"
    raw = next(i for i in nodes if i.startswith("dsv:warehouse/customers_raw"))
    assert nodes[raw]["direction"] == "UPSTREAM"
    assert "project:churn" not in nodes  # grouping is not lineage unless asked
    assert full["lineage"]["truncated"] is False
    assert all(e["ingestedAt"] for e in full["lineage"]["edges"])
    cut = data(http, query, input={"roots": ["deployment:example-prod"], "upstreamDepth": 1})
    assert cut["lineage"]["truncated"] is True and cut["lineage"]["truncationReason"] == "MAX_DEPTH"
    down = data(
        http,
        query,
        input={
            "roots": ["dataset:warehouse/customers_raw@latest"],
            "direction": "DOWNSTREAM",
            "downstreamDepth": 10,
            "nodeKinds": ["DATASET_VERSION", "RUN", "MODEL_VERSION", "DEPLOYMENT"],
        },
    )
    kinds = Counter(n["node"]["kind"] for n in down["lineage"]["nodes"])
    assert kinds["MODEL_VERSION"] == 3 and kinds["DEPLOYMENT"] == 1 and kinds["ALERT"] == 0


def test_bad_requests_get_codes_not_stack_traces(http: httpx.Client) -> None:
    syntax = gql(http, "{ runs(first: 1 ")
    assert syntax["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION"
    unknown = gql(http, "{ runs { edges { node { nope } } } }")
    assert unknown["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION"
    too_many = gql(http, "{ runs(first: 100000) { edges { cursor } } }")
    assert too_many["errors"][0]["extensions"] == {
        "code": "VALIDATION",
        "retryable": False,
        "field": "first",
    }
    bad_filter = gql(http, '{ runs(where: {x: {_regex: "a"}}) { edges { cursor } } }')
    assert bad_filter["errors"][0]["extensions"]["code"] == "VALIDATION"
    injection = gql(http, '{ runs(orderBy: ["x}) DETACH DELETE n //"]) { edges { cursor } } }')
    assert injection["errors"][0]["extensions"]["field"] == "order_by"
    assert data(http, '{ node(ref: "run:nope") { id } }') == {"node": None}
    unknown_run = gql(http, 'mutation { logBatch(runId: "run:nope", params: {a: 1}) { params } }')
    assert unknown_run["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    deep = "{ runs { edges { node { " + "children { " * 20 + "id" + " }" * 20 + " } } } }"
    assert "errors" in gql(http, deep)
    for body in (syntax, unknown, too_many, unknown_run):
        assert "Traceback" not in str(body) and "File " not in str(body)


def test_a_run_grown_past_its_size_by_many_batches_gets_a_coded_refusal(
    http: httpx.Client,
) -> None:
    """Each batch fits the 1 MB a node's properties may take; the one that would take the
    stored run past it is refused with a code and the field, nothing of it is stored, and
    the run goes on taking what fits."""
    run = data(http, 'mutation { startRun(input: {name: "wide"}) { id } }')["startRun"]["id"]
    log = "mutation($run: ID!, $tags: JSON) { logBatch(runId: $run, tags: $tags) { tags } }"
    for batch in range(3):  # 3 x 60 x 8,000 characters: the third passes 1,000,000
        tags = {f"t{batch}_{i:02d}": "x" * 8_000 for i in range(60)}
        body = gql(http, log, run=run, tags=tags)
        if batch < 2:
            assert body["data"]["logBatch"]["tags"] == 60, body
    assert body["errors"][0]["extensions"] == {
        "code": "VALIDATION",
        "retryable": False,
        "field": "props",
    }
    assert run in body["errors"][0]["message"]
    assert "nothing of this write was stored" in body["errors"][0]["message"]
    ended = data(
        http,
        'mutation($run: ID!) { endRun(runId: $run, tags: {done: "yes"}) { id status tags } }',
        run=run,
    )["endRun"]
    assert ended["status"] == "FINISHED" and ended["tags"]["done"] == "yes"
    assert len(ended["tags"]) == 121 and not any(k.startswith("t2_") for k in ended["tags"])


def test_oversized_requests_are_refused(http: httpx.Client) -> None:
    big = '{ runs(where: {k: "' + "x" * (33 * 1024 * 1024) + '"}) { edges { cursor } } }'
    response = http.post("/graphql", json={"query": big})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def test_artifacts_over_http(http: httpx.Client) -> None:
    payload = b"model weights " * 100_000
    octets = {"content-type": "application/octet-stream"}
    put = http.put(
        "/artifacts", content=iter([payload[:500_000], payload[500_000:]]), headers=octets
    )
    assert put.status_code == 200
    info = put.json()
    assert info["size"] == len(payload) and info["created"] is True
    assert http.put("/artifacts", content=payload, headers=octets).json()["created"] is False
    head = http.head(f"/artifacts/{info['digest']}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(payload)
    with http.stream("GET", f"/artifacts/{info['digest']}") as got:
        assert b"".join(got.iter_bytes()) == payload
    missing = "sha256:" + "0" * 64
    assert http.head(f"/artifacts/{missing}").status_code == 404
    bad = http.get("/artifacts/sha256:xyz")
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"]["field"] == "digest"


class CountingStore:
    """The real store, counting the calls the API makes to it."""

    def __init__(self, store: GraphStore) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if callable(attr) and not name.startswith("_"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


PAGE = """{ runs(first: 200) { edges { node { id params
    metrics { key last } inputs { node { id } edge { role } } code { id }
    environment { python } outputs { node { id } } } } } }"""


@pytest.mark.parametrize("runs", [10, 100])
def test_a_page_of_runs_costs_a_bounded_number_of_queries(tmp_path: Path, runs: int) -> None:
    real = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    real.upsert_nodes([Node("dsv:d@x", "DatasetVersion"), Node("commit:c@1", "CodeCommit")])
    real.upsert_nodes([Node(f"run:r{i}", "Run", {"params": {"i": i}}) for i in range(runs)])
    from lineagehub.graph import Edge

    real.upsert_edges(
        [Edge(f"run:r{i}", "dsv:d@x", "USED", {"role": "train"}) for i in range(runs)]
        + [Edge(f"run:r{i}", "commit:c@1", "RAN_CODE") for i in range(runs)]
    )
    real.append_series([SeriesPoint(f"run:r{i}", "loss", 0, 0.1) for i in range(runs)])
    store = CountingStore(real)
    app = create_app(store=store, artifacts=open_artifact_store((tmp_path / "a").as_uri()))  # type: ignore[arg-type]
    with HubServer(app) as server, httpx.Client(base_url=server.url) as http:
        store.calls.clear()  # what the server's start read
        result = data(http, PAGE)
    assert len(result["runs"]["edges"]) == runs
    assert all(e["node"]["code"]["id"] == "commit:c@1" for e in result["runs"]["edges"])
    assert all(e["node"]["inputs"][0]["edge"]["role"] == "train" for e in result["runs"]["edges"])
    # one page query, one summary batch, one neighbours batch per relationship kind
    assert store.calls == Counter(find_nodes=1, series_summary=1, neighbors=4)
    real.close()


def test_the_committed_sdl_matches_the_code() -> None:
    committed = (ROOT / "schema" / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", (
        "the GraphQL schema changed: run `python -m lineagehub.schema > schema/schema.graphql` and "
        "commit the diff"
    )


@pytest.mark.anyio
async def test_in_process_execution(tmp_path: Path) -> None:
    from lineagehub.schema import Context, Services

    store = open_store("sqlite://")
    build_example(store)
    services = Services(store=store, tracking=None, lineage=None, artifacts=None)
    result = await schema.execute(
        '{ nodes(ids: ["mv:churn/1", "nope"]) { id kind } }',
        context_value=Context(services),
    )
    assert result.errors is None
    assert result.data == {"nodes": [{"id": "mv:churn/1", "kind": "MODEL_VERSION"}, None]}


def test_impact_path_and_comparisons(http: httpx.Client) -> None:
    raw = data(http, '{ node(ref: "dataset:warehouse/customers_raw@latest") { id } }')["node"]["id"]
    impact = data(
        http,
        """query($ref: String!) { impact(ref: $ref) {
            modelVersions { id } deployments { id ... on Deployment { name } }
            openAlerts { id ... on Alert { rule } } owners { id } truncated } }""",
        ref=raw,
    )["impact"]
    assert [m["id"] for m in impact["modelVersions"]] == ["mv:churn/1", "mv:churn/2", "mv:churn/3"]
    assert [d["name"] for d in impact["deployments"]] == ["churn-prod"]
    assert [a["rule"] for a in impact["openAlerts"]] == ["psi_tenure > 0.2"]
    assert {"id": "agent:ann"} in impact["owners"] and impact["truncated"] is False
    path = data(
        http,
        """query($a: String!) { path(from: $a, to: "deployment:example-prod") {
            relation length paths { edges { source target kind } } } }""",
        a=raw,
    )["path"]
    assert path["relation"] == "upstream" and path["length"] == 4
    assert path["paths"][0]["edges"][-1]["kind"] == "SERVES"
    runs = data(
        http,
        """{ compareRuns(ids: ["run:example-train-1", "run:example-train-2"]) {
            params { key values differs } inputs { node { id } usedByAll }
            codeDiffers environmentDiffers } }""",
    )["compareRuns"]
    depth = next(p for p in runs["params"] if p["key"] == "max_depth")
    assert depth == {"key": "max_depth", "values": [3, 5], "differs": True}
    assert runs["inputs"][0]["usedByAll"] is True and runs["codeDiffers"] is False
    diff = data(
        http,
        """{ compareModelVersions(a: "model:churn/1", b: "model:churn@2") {
            paramsChanged { key a b } metricDeltas { key a b delta } truncated } }""",
    )["compareModelVersions"]
    assert {"key": "max_depth", "a": 3, "b": 5} in diff["paramsChanged"]
    auc = next(m for m in diff["metricDeltas"] if m["key"] == "auc")
    assert auc["delta"] == pytest.approx(0.029)
    bad = gql(http, '{ compareRuns(ids: ["run:example-train-1", "run:nope"]) { codeDiffers } }')
    assert bad["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_a_corrupt_artifact_is_refused_not_served(
    hub: tuple[HubServer, GraphStore], http: httpx.Client
) -> None:
    import os

    info = http.put(
        "/artifacts",
        content=b"precious bytes",
        headers={"content-type": "application/octet-stream"},
    ).json()
    hexdigest = info["digest"].split(":", 1)[1]
    (path,) = hub[0].artifacts_dir.rglob(hexdigest)  # type: ignore[attr-defined]
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered bytes")
    got = http.get(f"/artifacts/{info['digest']}")
    assert got.status_code == 500 and got.json()["errors"][0]["extensions"]["code"] == "INTEGRITY"


def test_audit_trail_and_verification(tmp_path: Path) -> None:
    from lineagehub.services.tracking import Metric, TrackingService
    from lineagehub.vocabulary import Run as RunModel

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    artifacts = open_artifact_store((tmp_path / "a").as_uri())
    tracking = TrackingService(store, artifacts, actor="ann")
    run = tracking.start_run(RunModel(name="audited"))
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    tracking.log_batch(run.id, params={"lr": 0.1}, metrics=[Metric("loss", 0.5, 0, now)])
    tracking.end_run(run.id)
    other = tracking.start_run(RunModel(name="other"))
    with (
        HubServer(create_app(store=store, artifacts=artifacts)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        trail = data(
            http,
            "query($ref: String) { auditTrail(ref: $ref) { entries { seq actor action target "
            "hash prevHash } nextAfter } }",
            ref=run.id,
        )["auditTrail"]
        assert [e["action"] for e in trail["entries"]] == ["run.start", "run.log", "run.end"]
        assert {e["actor"] for e in trail["entries"]} == {"ann"}
        assert trail["entries"][1]["prevHash"] == trail["entries"][0]["hash"]
        paged = data(http, "{ auditTrail(first: 2) { entries { target } nextAfter } }")
        assert len(paged["auditTrail"]["entries"]) == 2 and paged["auditTrail"]["nextAfter"] == 2
        rest = data(http, "{ auditTrail(after: 2) { entries { target } } }")["auditTrail"]
        assert [e["target"] for e in rest["entries"]] == [run.id, other.id]
        assert data(http, "{ verifyAuditLog { ok checked } }")["verifyAuditLog"] == {
            "ok": True,
            "checked": 4,
        }
        import sqlite3

        conn = sqlite3.connect(tmp_path / "hub.db")
        # a record edited behind the hub's back is named, with its field
        conn.execute(
            f"UPDATE nodes SET props = json_set(props, '$.status', 'FAILED') WHERE id = '{run.id}'"
        )
        conn.commit()
        edited = data(http, "{ verifyAuditLog { ok kind recordsChecked records headsChecked } }")[
            "verifyAuditLog"
        ]
        assert edited["ok"] is False and edited["kind"] == "record"
        assert edited["recordsChecked"] > 0 and len(edited["records"]) == 1
        assert (
            edited["records"][0].startswith(f"node:{run.id}: ") and "status" in edited["records"][0]
        )
        chain_only = data(http, "{ verifyAuditLog(records: false) { ok } }")["verifyAuditLog"]
        assert chain_only == {"ok": True}
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        conn.commit()
        conn.close()
        broken = data(http, "{ verifyAuditLog { ok firstBadSeq kind } }")["verifyAuditLog"]
        assert broken == {"ok": False, "firstBadSeq": 2, "kind": "altered"}
    store.close()


@pytest.mark.anyio
async def test_filters_typed_inline() -> None:
    """A filter a person can type: conditions, or the JSON filter as a block string; the
    JSON variable form keeps working; all of them mean the same."""
    from lineagehub.schema import Context, Services

    store = open_store("sqlite://")
    build_example(store)
    services = Services(store=store, tracking=None, lineage=None, artifacts=None)

    async def ids(query: str, variables: dict[str, Any] | None = None) -> list[str]:
        result = await schema.execute(
            query, variable_values=variables, context_value=Context(services)
        )
        assert result.errors is None, result.errors
        return [e["node"]["id"] for e in result.data["runs"]["edges"]]  # type: ignore[index]

    expected = ["run:example-train-2", "run:example-train-3"]
    typed = """{ runs(filter: [{path: "kind", value: "train"},
                              {path: "params.max_depth", op: GTE, value: 5}],
                      orderBy: ["-metrics.auc"]) { edges { node { id } } } }"""
    assert await ids(typed) == expected
    block = '''{ runs(where: """{"kind": "train", "params.max_depth": {"$gte": 5}}""",
                      orderBy: ["-metrics.auc"]) { edges { node { id } } } }'''
    assert await ids(block) == expected
    variable = """query($w: JSON) { runs(where: $w, orderBy: ["-metrics.auc"]) {
                      edges { node { id } } } }"""
    w = {"kind": "train", "params.max_depth": {"$gte": 5}}
    assert await ids(variable, {"w": w}) == expected
    both = """{ runs(where: {kind: "train"}, filter: [{path: "params.max_depth", op: IN,
                      value: [3, 8]}], orderBy: ["id"]) { edges { node { id } } } }"""
    assert await ids(both) == ["run:example-train-1", "run:example-train-3"]
    result = await schema.execute(
        '{ runs(where: "{not json") { edges { node { id } } } }', context_value=Context(services)
    )
    assert result.errors and result.errors[0].extensions["field"] == "where"  # type: ignore[index]
    store.close()


def test_properties_the_vocabulary_leaves_optional_read_as_null(
    hub: tuple[HubServer, GraphStore], http: httpx.Client, tmp_path: Path
) -> None:
    """A dataset logged by reference has no schema or profile, a version no signature: asking
    for them answers null (they were non-null fields, and the whole answer was an error)."""
    from lineagehub.ingest.client import Client

    client = Client(hub[0].url)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 64)
    with client.start_run("optional-fields", capture=False) as run:
        ref = run.log_dataset_ref("s3://lake/optional.parquet", "sha256:" + "c" * 64, name="opt")
        version = run.log_model(weights, name="optional-fields-model")
    client.close()
    got = data(
        http,
        "query($d: String!, $v: String!) { d: node(ref: $d) { ... on DatasetVersion { name schema"
        " profile } } v: node(ref: $v) { ... on ModelVersion { version signature } } }",
        d=ref.node_id,
        v=version.node_id,
    )
    assert got["d"] == {"name": "opt", "schema": None, "profile": None}
    assert got["v"] == {"version": 1, "signature": None}
