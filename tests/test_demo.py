"""``lineagehub demo``: real training on scikit-learn's bundled data, through the SDK, into a
real SQLite file; then the queries it prints, asked of a real server on that file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BACKENDS, fresh_store_uri
from http_server import HubServer

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the sklearn extra)")

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import Direction, GraphStore, open_store
from lineagehub.interfaces.cli import main
from lineagehub.interfaces.server import create_app
from lineagehub.samples.demo import CONFIGS, MODEL, REVIEWER, queries

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's `dot`")


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], Path]]:
    """The demo, run once through the CLI (``--json``) into a fresh data directory, with the
    default store there (SQLite) or with ``LINEAGEHUB_STORE`` naming the test Neo4j."""
    root = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("LINEAGEHUB_DATA_DIR", str(root))
    mp.setenv("LINEAGEHUB_USER", "ann")
    for name in ("LINEAGEHUB_STORE", "LINEAGEHUB_URL", "LINEAGEHUB_ARTIFACTS"):
        mp.delenv(name, raising=False)
    neo4j = request.param == "neo4j"
    if neo4j:
        mp.setenv("LINEAGEHUB_STORE", fresh_store_uri("neo4j", root))
    out = root / "out"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--json", "--out", str(out)])
    assert code == 0
    result = json.loads(buf.getvalue())
    # What opens the hub's store: the file, or Neo4j with its credentials (the demo prints
    # the URI redacted).
    result["store_uri"] = os.environ["LINEAGEHUB_STORE"] if neo4j else result["store"]
    yield result, root
    mp.undo()


@pytest.fixture
def store(demo: tuple[dict[str, Any], Path]) -> Iterator[GraphStore]:
    result, _ = demo
    s = open_store(result["store_uri"])
    yield s
    s.close()


def test_the_demo_graph_is_what_the_issue_describes(
    demo: tuple[dict[str, Any], Path], store: GraphStore
) -> None:
    r = demo[0]["result"]
    # raw -> clean, written by the prepare run
    assert store.get_node(r["clean"]).label == "DatasetVersion"
    derived = store.neighbors([r["clean"]], Direction.UPSTREAM, ["DERIVED_FROM"])[r["clean"]]
    assert [a.node.id for a in derived] == [r["raw"]]
    # three training runs with different hyper-parameters, each USED the clean data and
    # generated one version of the model
    assert len(r["runs"]) == len(CONFIGS) == len(r["versions"])
    seen = []
    for run_id, version in zip(r["runs"], r["versions"]):
        run = store.get_node(run_id)
        seen.append((run.props["params"]["n_estimators"], run.props["params"]["max_depth"]))
        used = store.neighbors([run_id], Direction.UPSTREAM, ["USED"])[run_id]
        assert r["clean"] in [a.node.id for a in used]
        made = store.neighbors([version], Direction.UPSTREAM, ["GENERATED_BY"])[version]
        assert [a.node.id for a in made] == [run_id]
        assert "test_roc_auc" in store.get_node(version).props["metrics"]
    assert seen == [(c["n_estimators"], c["max_depth"]) for c in CONFIGS]
    # the best one went to Production through an approval by someone else
    best = store.get_node(r["best"])
    aucs = {v: r["metrics"][v]["test_roc_auc"] for v in r["versions"]}
    assert r["best"] == max(aucs, key=lambda v: aucs[v])
    assert best.props["stage"] == "Production"
    assert "champion" in best.props.get("aliases", [])
    approvers = [e.actor for e in store.iter_audit() if e.action.startswith("promotion.approve")]
    assert approvers == [REVIEWER]
    # the deployment serves it
    serves = store.neighbors([r["deployment"]], Direction.UPSTREAM, ["SERVES"])
    assert [a.node.id for a in serves[r["deployment"]]] == [r["best"]]
    assert store.verify_audit().ok


@needs_dot
def test_the_picture_shows_the_deployment_back_to_the_raw_data(
    demo: tuple[dict[str, Any], Path],
) -> None:
    r = demo[0]["result"]
    svg = Path(r["picture"]).read_text()
    root = ET.fromstring(svg)
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for expected in ("breast_cancer_clean", "breast_cancer_raw", MODEL, "production"):
        assert expected in text, expected
    # the headline metric is the held-out ROC AUC the promotion was judged on, everywhere
    assert "test_roc_auc" in text and "test_accuracy" not in text


@needs_dot
def test_the_replayed_week_drifts_from_day_5_and_the_alert_points_to_the_training_data(
    demo: tuple[dict[str, Any], Path], store: GraphStore
) -> None:
    from lineagehub.services.alerts import AlertService
    from lineagehub.services.monitoring import MonitoringService
    from lineagehub.vocabulary import Alert

    r = demo[0]["result"]
    monitoring = MonitoringService(store)
    windows = monitoring.windows(r["deployment"])
    assert [w.id for w in windows] == r["windows"] and len(windows) == 7
    drifted = [w.metrics["drift.features_drifted"] for w in windows]
    assert all(d < 3 for d in drifted[:4]) and all(d >= 3 for d in drifted[4:]), drifted
    assert all(w.performance and w.performance["count"] == 400 for w in windows)
    alert = Alert.from_node(store.get_node(r["alert"]))
    assert alert.rule == "input-drift" and alert.state.value == "firing"
    assert alert.fired_at == windows[4].end  # the first drifted day, as it ended
    lineage = AlertService(monitoring).lineage(alert)
    assert lineage["deployment"] == r["deployment"] and lineage["model_version"] == r["best"]
    assert r["clean"] in lineage["training_data"]
    svg = Path(r["alert_picture"]).read_text()
    text = " ".join(
        t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")
    )
    for expected in ("input-drift", "breast_cancer_clean", MODEL, "production"):
        assert expected in text, expected


def test_the_printed_queries_answer_on_a_real_server(
    demo: tuple[dict[str, Any], Path], store: GraphStore
) -> None:
    result, root = demo
    from lineagehub.samples.demo import DemoResult

    r = DemoResult(**result["result"])
    app = create_app(
        Settings(data_dir=root),
        store=store,
        artifacts=open_artifact_store((root / "artifacts").as_uri()),
    )
    with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        answers = {}
        for question, query in queries(r):
            body = http.post("/graphql", json={"query": query}).json()
            assert "errors" not in body, (question, body.get("errors"))
            answers[question] = body["data"]
    lineage = answers["Where did the deployed model come from?"]["lineage"]
    ids = {n["node"]["id"] for n in lineage["nodes"]}
    assert {r.deployment, r.best, r.clean, r.raw} <= ids
    impact = answers["Which runs, models and deployments does the raw extract affect?"]["impact"]
    assert {d["id"] for d in impact["deployments"]} == {r.deployment}
    assert {v["id"] for v in impact["modelVersions"]} == set(r.versions)
    assert result["queries"] == [{"question": q, "query": t} for q, t in queries(r)]


def hub_copy(demo: tuple[dict[str, Any], Path], tmp_path: Path) -> str:
    """A copy of the demo's hub to change: its data folder copied, with the SQLite store in
    it; Neo4j holds one database, so there the demo's own store is changed (these tests are
    the module's last to use it)."""
    import shutil

    result, root = demo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("out"))
    if not result["store"].startswith("sqlite:///"):
        return str(result["store_uri"])
    return f"sqlite:///{copy / Path(result['store'].removeprefix('sqlite:///')).name}"


def test_a_second_demo_run_adds_a_round_and_moves_production(
    demo: tuple[dict[str, Any], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running is a team retraining: new runs and versions, the previous Production version
    archived, the same deployment serving the new one. Done on a copy of the first hub."""
    store_uri = hub_copy(demo, tmp_path)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "copy"))
    monkeypatch.setenv("LINEAGEHUB_USER", "ann")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--store", store_uri, "--out", str(tmp_path / "out"), "--json"])
    assert code == 0
    second = json.loads(out.getvalue())["result"]
    # its own week: 7 windows (not the first run's 7 too), and an alert of its own or none
    assert len(second["windows"]) == 7 and second["alert"] != demo[0]["result"]["alert"]
    with open_store(store_uri) as s:
        assert s.count_nodes("ModelVersion", {"model": MODEL}) == 2 * len(CONFIGS)
        assert s.count_nodes("Deployment") == 1
        stages = [n.props["stage"] for n in s.iter_nodes("ModelVersion", {"model": MODEL})]
        assert stages.count("Production") == 1
        assert s.verify_audit().ok


def test_without_graphviz_the_demo_completes_and_leaves_dot_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No `dot` program on PATH (graphviz not installed): the pictures are left as DOT source
    to render later, and everything else is written."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "hub"))
    for name in ("LINEAGEHUB_STORE", "LINEAGEHUB_URL", "LINEAGEHUB_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    assert main(["demo", "--quiet", "--out", str(out)]) == 0
    # it says how to render them, even when quiet
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err
    assert f"dot -Tsvg {out / 'lineage.dot'} -o {out / 'lineage.svg'}" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "alert.dot",
        "alerts.toml",
        "breast_cancer_raw.csv",
        "impact.dot",
        "lineage.dot",
        "policies.toml",
    ]
    assert "tumor-classifier" in (out / "lineage.dot").read_text()


def test_the_policies_file_governs_the_cli_afterwards(
    demo: tuple[dict[str, Any], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LINEAGEHUB_POLICIES naming the demo's file, a promotion to Production from the
    command line needs an approval too (done on a copy of the hub)."""
    result, _ = demo
    store_uri = hub_copy(demo, tmp_path)
    monkeypatch.setenv("LINEAGEHUB_POLICIES", result["result"]["policies"])
    monkeypatch.setenv("LINEAGEHUB_USER", "ann")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["promote", f"{MODEL}/1", "--stage", "Production", "--store", store_uri])
    assert code == 0
    data_out = buf.getvalue()
    assert "pending" in data_out
    with open_store(store_uri) as s:
        assert s.get_node(f"mv:{MODEL}/1").props["stage"] != "Production"


def test_demo_then_serve_is_the_main_job(tmp_path: Path) -> None:
    """`make run`'s command in a real process: the demo, then the API on 127.0.0.1, applying
    the demo's policies (a promotion request is pending, not done)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LINEAGEHUB_DATA_DIR": str(tmp_path), "LINEAGEHUB_USER": "ann"}
    for name in (
        "LINEAGEHUB_STORE",
        "LINEAGEHUB_URL",
        "LINEAGEHUB_ARTIFACTS",
        "LINEAGEHUB_POLICIES",
    ):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lineagehub", "demo", "--serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        query = """mutation { requestPromotion(ref: "tumor-classifier/1", to: "Production",
                   reason: "try") { __typename ... on PromotionPending { approvalsNeeded } } }"""
        body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30).json()
        assert body["data"]["requestPromotion"] == {
            "__typename": "PromotionPending",
            "approvalsNeeded": 1,
        }
        page = httpx.get(f"{url}/graphql", headers={"Accept": "text/html"}, timeout=10)
        assert "GraphiQL" in page.text
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert "Serving on http://127.0.0.1:" in output
    # the picture, or without Graphviz its DOT source (the demo says how to render it)
    picture = "lineage.svg" if shutil.which("dot") else "lineage.dot"
    assert (tmp_path / "demo" / picture).is_file()
