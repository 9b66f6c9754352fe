"""GET /export/lineage/{ref}.{ext} over real HTTP (uvicorn on 127.0.0.1), with Graphviz's
real `dot` for the pictures."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import networkx as nx
import pytest
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.services.export import FORMATS
from lineagehub.vocabulary import DatasetVersion, EdgeKind, UsedRole, from_node, make_edge

SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="no Graphviz `dot`")


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("api-export")
    store: GraphStore = open_store(f"sqlite:///{folder / 'hub.db'}")
    build_example(store)
    # a dataset whose name has dots, used by the evaluation run
    dotted = DatasetVersion(
        namespace="warehouse", name="holdout.v2.csv", digest="sha256:" + "e" * 64
    )
    store.upsert_nodes([dotted.to_node()])
    evaluation = from_node(store.get_node("run:example-eval-2"))
    store.upsert_edges([make_edge(EdgeKind.USED, evaluation, dotted, role=UsedRole.TEST)])
    artifacts = open_artifact_store((folder / "artifacts").as_uri())
    app = create_app(store=store, artifacts=artifacts)
    with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    store.close()


def node_ids(http: httpx.Client, path: str, **params: str) -> list[str]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    return [n["data"]["id"] for n in response.json()["elements"]["nodes"]]


@needs_dot
def test_svg_of_a_deployment(http: httpx.Client) -> None:
    response = http.get("/export/lineage/deployment:example-prod.svg?direction=both&depth=10")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["content-disposition"] == (
        'inline; filename="lineage-deployment_example-prod.svg"'
    )
    assert response.headers["x-lineage-truncated"] == "false"
    root = ET.fromstring(response.content)
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    words = {t.text for g in nodes for t in g.iter(f"{SVG}text")}
    assert {"churn-prod", "churn v2", "gbm-depth5", "customers_raw", "psi_tenure > 0.2"} <= words
    focused = [g for g in nodes if 'stroke-width="3"' in ET.tostring(g).decode()]
    assert len(focused) == 1  # the ref is the focus


def test_every_format_with_its_media_type(http: httpx.Client) -> None:
    cases = {
        "svg": "svg", "png": "png", "pdf": "pdf", "dot": "dot", "gv": "dot", "mmd": "mmd",
        "graphml": "graphml", "json": "json", "prov": "prov", "jsonl": "openlineage",
        "openlineage": "openlineage",
    }  # fmt: skip
    for ext, fmt in cases.items():
        if fmt in ("svg", "png", "pdf") and shutil.which("dot") is None:
            continue
        response = http.get(f"/export/lineage/model:churn/2.{ext}")
        assert response.status_code == 200, (ext, response.text)
        assert response.headers["content-type"].split(";")[0] == FORMATS[fmt]
        assert response.headers["content-disposition"].startswith('inline; filename="lineage-')
    png = http.get("/export/lineage/model:churn/2.png")
    assert png.content.startswith(b"\x89PNG") or shutil.which("dot") is None
    graph = nx.read_graphml(io.BytesIO(http.get("/export/lineage/churn@2.graphml").content))
    assert "mv:churn/2" in graph.nodes and "run:example-train-2" in graph.nodes
    assert "\nflowchart LR\n" in http.get("/export/lineage/model:churn/2.mmd").text
    events = http.get("/export/lineage/model:churn/2.jsonl").text.splitlines()
    assert [json.loads(e)["job"]["name"] for e in events] == ["gbm-depth5", "clean-customers"]


def test_exports_opened_in_a_browser_run_nothing_and_are_never_sniffed(
    http: httpx.Client,
) -> None:
    """An export holds text from the graph and comes from the API's origin: an SVG opened in
    a browser tab is a document, so every export says it may run no script, fetch nothing,
    not be framed, and has exactly the type it names."""
    for ext in ("svg", "png", "pdf", "dot", "mmd", "graphml", "json", "prov", "jsonl"):
        if ext in ("svg", "png", "pdf") and shutil.which("dot") is None:
            continue
        response = http.get(f"/export/lineage/model:churn/2.{ext}")
        assert response.status_code == 200, (ext, response.text)
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy
        assert ("sandbox" in policy) == (ext != "pdf")


def test_query_options_change_the_graph(http: httpx.Client) -> None:
    clean = "dataset:warehouse/customers_clean@latest"
    up = node_ids(http, f"/export/lineage/{clean}.json")
    down = node_ids(http, f"/export/lineage/{clean}.json", direction="DOWNSTREAM")
    assert "run:example-prep" in up and "run:example-prep" not in down
    assert "mv:churn/2" in down and "mv:churn/2" not in up
    root = node_ids(http, f"/export/lineage/{clean}.json", depth="0")
    assert len(root) == 1 and root[0].startswith("dsv:warehouse/customers_clean@")
    runs = node_ids(
        http,
        f"/export/lineage/{clean}.json",
        direction="downstream",
        nodeKinds="run,DatasetVersion",
    )
    assert {i.split(":")[0] for i in runs} == {"dsv", "run"}
    both = node_ids(
        http, "/export/lineage/mv:churn/2.json", direction="BOTH", upstreamDepth="1",
        downstreamDepth="1", edgeKinds="GENERATED_BY", passThrough="Run",
    )  # fmt: skip
    assert "run:example-train-2" in both and "deployment:example-prod" not in both
    stopped = node_ids(http, "/export/lineage/mv:churn/2.json", stopAt="RUN", depth="5")
    assert "run:example-train-2" in stopped and "dsv" not in {i.split(":")[0] for i in stopped}
    later = node_ids(http, "/export/lineage/mv:churn/2.json", asOf="2100-01-01T00:00:00+00:00")
    assert later == node_ids(http, "/export/lineage/mv:churn/2.json")
    before = http.get("/export/lineage/mv:churn/2.json", params={"asOf": "2000-01-01T00:00:00Z"})
    assert before.status_code == 404  # the hub did not know the version then
    naive = http.get("/export/lineage/mv:churn/2.json", params={"asOf": "2000-01-01"})
    assert naive.status_code == 404  # a date without a timezone is UTC


def test_truncation_cluster_collapse_and_title(http: httpx.Client) -> None:
    response = http.get(
        "/export/lineage/deployment:example-prod.dot",
        params={"depth": "10", "maxNodes": "3", "cluster": "true", "collapseAbove": "never",
                "title": 'Prod "churn"', "focus": "mv:churn/2,churn@2"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["x-lineage-truncated"] == "true"
    assert response.headers["content-type"].startswith("text/vnd.graphviz")
    source = response.text
    assert "TRUNCATED (MAX_NODES)" in source and 'Prod \\"churn\\"' in source
    assert source.count("penwidth=3") == 1  # the focus given, not the ref


def test_refs_with_dots_slashes_and_at(http: httpx.Client) -> None:
    ids = node_ids(http, "/export/lineage/dataset:warehouse/holdout.v2.csv@latest.json")
    assert ids[0] == "dsv:warehouse/holdout.v2.csv@sha256:" + "e" * 64
    response = http.get("/export/lineage/dataset:warehouse/holdout.v2.csv@latest.dot")
    assert response.status_code == 200
    assert (
        'filename="lineage-dataset_warehouse_holdout.v2.csv_latest.dot"'
        in (response.headers["content-disposition"])
    )


def error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["errors"][0]
    body: dict[str, object] = {"message": error["message"], **error["extensions"]}  # type: ignore[dict-item]
    return body


def test_errors_are_coded_json(http: httpx.Client) -> None:
    missing = error(http.get("/export/lineage/model:nope/9.svg"), 404)
    assert missing["code"] == "NOT_FOUND" and missing["ids"] == ["model:nope/9"]
    bad = error(http.get("/export/lineage/model:churn/2.svg?depth=deep"), 400)
    assert bad["code"] == "VALIDATION" and bad["field"] == "depth"
    assert (
        error(http.get("/export/lineage/model:churn/2.svg?depth=-1"), 400)["code"] == "VALIDATION"
    )
    assert (
        error(http.get("/export/lineage/model:churn/2.svg?depth=1000000"), 400)["code"]
        == "VALIDATION"
    )
    ext = error(http.get("/export/lineage/model:churn/2.txt"), 400)
    assert ext["field"] == "format" and "svg" in str(ext["message"])
    assert error(http.get("/export/lineage/model:nope.svg"), 404)["code"] == "NOT_FOUND"
    assert error(http.get("/export/lineage/mv:churn"), 400)["field"] == "format"
    way = error(http.get("/export/lineage/mv:churn/2.svg?direction=sideways"), 400)
    assert way["field"] == "direction"
    kind = error(http.get("/export/lineage/mv:churn/2.svg?nodeKinds=Spaceship"), 400)
    assert kind["field"] == "nodeKinds" and "DatasetVersion" in str(kind["message"])
    assert error(http.get("/export/lineage/mv:churn/2.svg?colour=red"), 400)["field"] == "colour"
    assert error(http.get("/export/lineage/mv:churn/2.svg?asOf=yesterday"), 400)["field"] == "asOf"
    # a digit int() does not read ('²' is a digit to str.isdigit): 400, not a 500
    superscript = error(http.get("/export/lineage/mv:churn/2.dot?collapseAbove=²"), 400)
    assert superscript["field"] == "collapseAbove"

    assert (
        error(http.get("/export/lineage/mv:churn/2.svg?cluster=maybe"), 400)["field"] == "cluster"
    )
    assert (
        error(http.get("/export/lineage/mv:churn/2.svg?focus=run:nope"), 404)["code"] == "NOT_FOUND"
    )


@needs_dot
def test_the_lineage_query_exports_itself(http: httpx.Client) -> None:
    """`Lineage.export(format:)` in GraphQL: the same result as text, in each text format."""
    query = """query($f: ExportFormat!) {
      lineage(input: {roots: ["deployment:example-prod"], upstreamDepth: 8}) {
        nodes { node { id } } export(format: $f, title: "audit <2026>") } }"""

    def export(fmt: str) -> tuple[list[str], str]:
        body = http.post("/graphql", json={"query": query, "variables": {"f": fmt}}).json()
        assert "errors" not in body, body
        lineage = body["data"]["lineage"]
        return [n["node"]["id"] for n in lineage["nodes"]], lineage["export"]

    ids, svg = export("SVG")
    root = ET.fromstring(svg)
    assert "audit <2026>" in " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    _, graphml = export("GRAPHML")
    assert sorted(nx.read_graphml(io.StringIO(graphml)).nodes) == sorted(ids)
    _, cy = export("CYTOSCAPE_JSON")
    assert sorted(n["data"]["id"] for n in json.loads(cy)["elements"]["nodes"]) == sorted(ids)
    _, mermaid = export("MERMAID")
    assert "flowchart LR" in mermaid
    _, events = export("OPENLINEAGE")
    assert all(json.loads(line)["eventType"] for line in events.splitlines())
    bad = http.post("/graphql", json={"query": query, "variables": {"f": "PNG"}}).json()
    assert bad["errors"]  # binary formats are not text: /export/lineage/{ref}.png


def test_context_nodes_are_folded_unless_asked(http: httpx.Client) -> None:
    url = "/export/lineage/model:churn/2.dot?depth=3"
    folded = http.get(url)
    assert folded.status_code == 200, folded.text
    assert 'label="Agent' not in folded.text and "by ann" in folded.text
    drawn = http.get(url + "&contextNodes=true")
    assert drawn.status_code == 200 and 'label="Agent' in drawn.text
    bad = error(http.get(url + "&contextNodes=maybe"), 400)
    assert bad["field"] == "contextNodes"
