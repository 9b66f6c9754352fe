"""Readable lineage pictures: context folded into the runs, one edge per pair of nodes, and a
shape that fits a screen. Real SDK runs into a real SQLite file, drawn by Graphviz."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineagehub import Settings
from lineagehub.graph import Subgraph
from lineagehub.ingest.client import Client
from lineagehub.services.export import CONTEXT_LABELS, export_lineage

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def svg_shape(data: bytes) -> tuple[float, float, int, int, list[str]]:
    """(width pt, height pt, nodes, edges, every text) of an SVG from Graphviz."""
    root = ET.fromstring(data)
    width = float(root.get("width", "0").removesuffix("pt"))
    height = float(root.get("height", "0").removesuffix("pt"))
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    return width, height, len(nodes), len(edges), [t.text or "" for t in root.iter(f"{SVG}text")]


def pairs(sub: Subgraph, *, context: bool) -> int:
    """Distinct pairs of nodes joined by edges (what a picture draws once each)."""
    shown = {
        i for i, t in sub.nodes.items() if context or t.node.label not in CONTEXT_LABELS
    } | set(sub.roots)
    return len({(e.source, e.target) for e in sub.edges if e.source in shown and e.target in shown})


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, str]]:
    """ingest -> clean -> features -> train (features as train and as validation data) ->
    model; an evaluation run uses the model and the test data; the model is deployed. Every
    run records its code, environment and launcher."""
    for name in ("LINEAGEHUB_URL", "LINEAGEHUB_STORE", "LINEAGEHUB_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    client = Client(
        f"sqlite:///{tmp_path / 'hub.db'}",
        settings=Settings(user="ann", artifacts=str(tmp_path / "artifacts")),
    )
    raw = [{"id": i, "x": i * 1.5, "y": i % 2} for i in range(40)]
    with client.start_run("ingest", project="p", kind="transform") as run:
        run.log_dataset(raw, name="events", namespace="lake", role="input")
        data = run.log_output_dataset(raw[:36], name="events_clean", namespace="lake")
    with client.start_run("features", project="p", kind="transform") as run:
        run.log_dataset(raw[:36], name="events_clean", namespace="lake", role="input")
        features = [{**r, "x2": r["x"] ** 2} for r in raw[:36]]
        run.log_output_dataset(features[:30], name="features", namespace="lake")
        run.log_output_dataset(features[30:], name="features_test", namespace="lake")
    with client.start_run("train", project="p") as run:
        run.log_dataset(features[:30], name="features", namespace="lake", role="train")
        run.log_dataset(features[:30], name="features", namespace="lake", role="validation")
        run.log_metrics({"training_accuracy": 0.9, "val_accuracy": 0.85})
        run.log_model({"w": 1}, name="events-model")
    with client.start_run("evaluate", project="p", kind="evaluate") as run:
        run.log_dataset(features[30:], name="features_test", namespace="lake", role="test")
        run.log_metrics({"test_accuracy": 0.8})
    deployment = client.deploy("events-model/1", "production")
    assert data.node_id
    yield client, deployment.id
    client.close()


@needs_dot
def test_a_pipeline_s_trace_is_readable(pipeline: tuple[Client, str]) -> None:
    client, deployment = pipeline
    sub = client.lineage([deployment], "UPSTREAM", upstream_depth=10)
    context = [t for t in sub.nodes.values() if t.node.label in CONTEXT_LABELS]
    assert len(context) >= 3  # ann, an environment, a commit (or none outside a checkout)
    width, height, nodes, edges, text = svg_shape(export_lineage(sub, "svg", focus=sub.roots))
    assert nodes == len(sub.nodes) - len(context)
    assert edges == pairs(sub, context=False) < len(sub.edges)
    # the train run used one dataset version in two roles: one edge, both roles
    assert "USED (train), USED (validation)" in text
    assert sum(t == "by ann" for t in text) == 3 and any(t.startswith("env python") for t in text)
    assert max(width, height) <= 1200 and max(width, height) / min(width, height) <= 3
    # asked for, context is drawn as nodes with their edges
    w2, h2, nodes2, edges2, _ = svg_shape(
        export_lineage(sub, "svg", focus=sub.roots, context_nodes=True)
    )
    assert nodes2 == len(sub.nodes) and edges2 == pairs(sub, context=True) > edges
    assert (w2, h2) != (width, height)


@needs_dot
def test_the_demo_s_traces_are_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the sklearn extra)")
    from lineagehub.interfaces.cli import main

    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LINEAGEHUB_USER", "ann")
    for name in ("LINEAGEHUB_STORE", "LINEAGEHUB_URL", "LINEAGEHUB_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo", "--quiet", "--out", str(tmp_path / "out")]) == 0
    width, height, nodes, edges, text = svg_shape((tmp_path / "out" / "lineage.svg").read_bytes())
    # the deployment back to the raw data: 11 nodes (ann, the environment and the commit
    # are lines of the two runs' labels), 11 edges instead of 17
    assert (nodes, edges) == (11, 11)
    assert not {"Agent", "Environment", "CodeCommit"} & set(text)
    assert sum(t == "by ann" for t in text) == 2
    assert max(width, height) <= 1000 and max(width, height) / min(width, height) <= 3
    client = Client(settings=Settings(user="ann"))
    try:
        sub = client.lineage(["tumor-classifier@champion"], "BOTH", 8, 8)
        w, h, n, e, _ = svg_shape(export_lineage(sub, "svg", focus=sub.roots))
        assert len(sub.nodes) >= 17 and n < len(sub.nodes) and e < len(sub.edges)
        assert max(w, h) / min(w, h) <= 3
    finally:
        client.close()
    assert re.search(r"test_roc_auc 0\.99", " ".join(text))
