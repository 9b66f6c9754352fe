"""Lineage exports: pictures rendered by Graphviz's real `dot` and parsed back, Mermaid text,
GraphML read back by networkx, Cytoscape JSON, PROV-JSON read back by `prov`, OpenLineage
events rebuilt with openlineage-python's own types. Over a real SQLite file."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest
from conftest import BACKENDS, fresh_store_uri

from lineagehub import open_store
from lineagehub.graph import ConfigError, Edge, GraphStore, Node, Subgraph, ValidationError
from lineagehub.samples.example import build_example
from lineagehub.services.export import (
    DEFAULT_COLLAPSE_ABOVE,
    FORMATS,
    NODE_STYLES,
    SUFFIXES,
    export_lineage,
    format_for_path,
)
from lineagehub.services.lineage import LineageService
from lineagehub.vocabulary import (
    DatasetVersion,
    EdgeKind,
    Model,
    ModelVersion,
    Run,
    RunStatus,
    UsedRole,
    make_edge,
)

SVG = "{http://www.w3.org/2000/svg}"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's `dot` is not installed")
DASH, TIMES = "\u2013", "\u00d7"
EVIL = 'evil "]; x [label="pwned"] <b>bold</b> & #quot; `tick` |pipe|; \\N \\G\nnext line'


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GraphStore]:
    store = open_store(fresh_store_uri(request.param, tmp_path_factory.mktemp("export")))
    build_example(store)
    yield store
    store.close()


@pytest.fixture(scope="module")
def lineage(store: GraphStore) -> LineageService:
    return LineageService(store)


@pytest.fixture(scope="module")
def whole(lineage: LineageService) -> Subgraph:
    """The whole example, around its deployment."""
    return lineage.lineage(["deployment:example-prod", "run:example-train-1"], "BOTH", 10, 10)


def svg_of(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def dot_nodes(source: str) -> dict[str, str]:
    """DOT node statements: key -> attribute text (nodes are written one per line)."""
    return dict(re.findall(r"^\s*(n\d+|g\d+) \[(.*)\]$", source, flags=re.MULTILINE))


# --- formats and suffixes ------------------------------------------------------------------


def test_formats_and_suffixes() -> None:
    assert set(FORMATS) == {"dot", "svg", "png", "pdf", "mmd", "graphml", "json", "prov"} | {
        "openlineage"
    }
    assert set(SUFFIXES.values()) == set(FORMATS)
    assert format_for_path("out/lineage.svg") == "svg"
    assert format_for_path(Path("a.GV")) == "dot"
    assert format_for_path("lineage.prov.json") == "prov"
    assert format_for_path("lineage.json") == "json"
    assert format_for_path("events.jsonl") == "openlineage"
    assert format_for_path("x.mmd") == "mmd"
    with pytest.raises(ValidationError) as info:
        format_for_path("lineage.txt")
    assert info.value.field == "format" and ".prov.json" in info.value.message


def test_unknown_format_and_bad_options(whole: Subgraph) -> None:
    with pytest.raises(ValidationError) as info:
        export_lineage(whole, "jpeg")
    assert info.value.code == "VALIDATION" and info.value.field == "format"
    assert "svg" in info.value.message and "openlineage" in info.value.message
    with pytest.raises(ValidationError):
        export_lineage(whole, "dot", collapse_above=-1)


def test_without_the_dot_program(whole: Subgraph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError) as info:
        export_lineage(whole, "svg")
    assert "install graphviz" in info.value.message and info.value.code == "CONFIG"
    for fmt in ("dot", "mmd", "graphml", "json", "prov", "openlineage"):
        assert export_lineage(whole, fmt)


# --- pictures ----------------------------------------------------------------------------------


@needs_dot
def test_svg_holds_every_node_label_and_edge(whole: Subgraph) -> None:
    root = svg_of(export_lineage(whole, "svg", collapse_above=None, context_nodes=True))
    nodes, edges = groups(root, "node"), groups(root, "edge")
    assert len(nodes) == len(whole.nodes) == 16
    assert len(edges) == len(whole.edges)
    words = {t for g in nodes for t in texts(g)}
    for expected in ("gbm-depth3", "gbm-depth5", "churn v1", "churn v2", "customers_clean"):
        assert expected in words
    assert "auc 0.871" in words and "psi_tenure > 0.2" in words
    edge_labels = {t for g in edges for t in texts(g)}
    assert {"USED (train)", "GENERATED_BY", "SERVES", "RAN_CODE"} <= edge_labels


@needs_dot
def test_png_and_pdf_render(whole: Subgraph) -> None:
    assert export_lineage(whole, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert export_lineage(whole, "pdf").startswith(b"%PDF-")


def test_dot_left_to_right_with_shapes_and_colours_by_kind(whole: Subgraph) -> None:
    source = export_lineage(whole, "dot", focus=["mv:churn/2"], context_nodes=True).decode()
    # 8 steps of at most 5 nodes: left to right it would be 1900 x 411 pt, so top to bottom
    assert "rankdir=TB" in source
    nodes = dot_nodes(source)
    assert len(nodes) == len(whole.nodes)
    seen = set()
    for attrs in nodes.values():
        kind = re.search(r'label="([A-Za-z]+)', attrs)
        assert kind is not None
        shape, fill = NODE_STYLES[kind.group(1)]
        assert f"shape={shape}" in attrs and f'fillcolor="{fill}"' in attrs
        seen.add(kind.group(1))
    assert {"Run", "DatasetVersion", "ModelVersion", "Deployment", "Alert"} <= seen
    assert len({NODE_STYLES[k] for k in NODE_STYLES}) == len(NODE_STYLES)  # all distinct
    # Time flows along the arrows: the data points at the run, the run at the model version.
    keys = {attrs.split("\\n")[1]: key for key, attrs in nodes.items()}
    assert re.search(rf"{keys['customers_clean']} -> {keys['gbm-depth5']} \[label=\"USED", source)
    assert re.search(rf"{keys['gbm-depth5']} -> {keys['churn v2']} \[label=GENERATED_BY", source)
    assert re.search(rf"{keys['churn v2']} -> {keys['churn-prod']} \[label=SERVES", source)


def test_focus_is_highlighted(whole: Subgraph) -> None:
    nodes = dot_nodes(export_lineage(whole, "dot", focus=["mv:churn/2", "not-there"]).decode())
    bold = [attrs for attrs in nodes.values() if "penwidth=3" in attrs]
    assert len(bold) == 1 and "churn v2" in bold[0] and "Helvetica-Bold" in bold[0]


@needs_dot
def test_focus_in_svg(whole: Subgraph) -> None:
    root = svg_of(export_lineage(whole, "svg", focus=["deployment:example-prod"]))
    thick = [g for g in groups(root, "node") if 'stroke-width="3"' in ET.tostring(g).decode()]
    assert len(thick) == 1 and "churn-prod" in texts(thick[0])


def test_key_metric_labels() -> None:
    node = Node("run:x", "Run", {"name": "r", "metrics": {"loss": 0.5, "val/AUC": 0.912345}})
    sub = Subgraph({"run:x": _traversed(node)}, [])
    assert "val/AUC 0.9123" in export_lineage(sub, "dot").decode()
    node = Node("run:y", "Run", {"name": "r", "metrics": {"zeta": 12345.678, "beta": None}})
    sub = Subgraph({"run:y": _traversed(node)}, [])
    assert "zeta 1.235e+04" in export_lineage(sub, "dot").decode()


def _traversed(node: Node) -> object:
    from lineagehub.graph import TraversedNode

    return TraversedNode(node, 0, None, None)


def _sweep(store: GraphStore, runs: int, experiments: tuple[str, ...] = ("tuning",)) -> str:
    """A dataset version used by ``runs`` training runs, each generating a model version."""
    data = DatasetVersion(namespace="warehouse", name="sweep", digest="sha256:" + "cd" * 32)
    model = Model(name="sweep")
    nodes: list = [data, model]
    edges = []
    for i in range(runs):
        run = Run(
            id=f"run:sweep-{i}", name=f"trial-{i}", project="churn",
            experiment=experiments[i % len(experiments)], status=RunStatus.FINISHED,
            metrics={"auc": 0.8 + i / 1000},
        )  # fmt: skip
        version = ModelVersion(
            model="sweep", version=i + 1, artifact_digest="sha256:" + f"{i:064x}"
        )
        nodes += [run, version]
        edges += [
            make_edge(EdgeKind.USED, run, data, role=UsedRole.TRAIN),
            make_edge(EdgeKind.GENERATED_BY, version, run),
            make_edge(EdgeKind.VERSION_OF, version, model),
        ]
    store.upsert_nodes([n.to_node() for n in nodes])
    store.upsert_edges(edges)
    return data.node_id


def test_a_cut_picture_keeps_the_group_standing_for_its_runs(tmp_path: Path) -> None:
    """Runs that each read a dataset and write an output derived from it: the outputs are as
    near the root as the runs (one DERIVED_FROM hop) and were found first, so the 300-node
    cut kept 299 outputs and dropped the group of runs the caption said was collapsed."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    data = DatasetVersion(namespace="lake", name="shared", digest="sha256:" + "ab" * 32)
    nodes: list = [data]
    edges = []
    for i in range(320):
        out = DatasetVersion(namespace="lake", name=f"out-{i}", digest="sha256:" + f"{i:064x}")
        run = Run(id=f"run:fan-{i}", name=f"fan-{i}", project="big", experiment="fan")
        nodes += [out, run]
        edges += [
            make_edge(EdgeKind.DERIVED_FROM, out, data),
            make_edge(EdgeKind.GENERATED_BY, out, run),
            make_edge(EdgeKind.USED, run, data, role=UsedRole.TRAIN),
        ]
    store.upsert_nodes([n.to_node() for n in nodes])
    store.upsert_edges(edges)
    sub = LineageService(store).lineage([data.node_id], "DOWNSTREAM", 2, 2, max_nodes=10_000)
    source = export_lineage(sub, "dot").decode()
    drawn = dot_nodes(source)
    assert len(drawn) == 300
    assert any("Experiment big/fan: 320 runs" in attrs for attrs in drawn.values()), source[:400]
    store.close()


@needs_dot
def test_clusters_group_runs_of_an_experiment(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    root = _sweep(store, 6, ("alpha", "beta"))
    sub = LineageService(store).lineage([root], "DOWNSTREAM", 2, 2)
    assert len(sub.nodes) == 13
    svg = svg_of(export_lineage(sub, "svg", cluster=True))
    clusters = groups(svg, "cluster")
    assert {t for c in clusters for t in texts(c)} >= {
        "Experiment churn/alpha",
        "Experiment churn/beta",
    }
    assert len(clusters) == 2
    # each box holds its 3 runs and the 3 versions they generated
    source = export_lineage(sub, "dot", cluster=True).decode()
    boxes = re.findall(r"subgraph (cluster_\d+) \{(.*?)\n\t\}", source, flags=re.DOTALL)
    assert len(boxes) == 2
    for _name, body in boxes:
        assert body.count('label="Run (train)') == 3 and body.count('label="ModelVersion') == 3
    assert "subgraph" not in export_lineage(sub, "dot").decode()
    store.close()


def test_clusters_from_part_of_edges(lineage: LineageService) -> None:
    kinds = ["USED", "GENERATED_BY", "PART_OF"]
    sub = lineage.lineage(["mv:churn/2"], "UPSTREAM", 3, 0, edge_kinds=kinds)
    source = export_lineage(sub, "dot", cluster=True).decode()
    assert 'label="Experiment churn/baseline"' in source


@needs_dot
def test_large_sweeps_collapse_into_group_nodes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    root = _sweep(store, 120)
    sub = LineageService(store).lineage([root], "DOWNSTREAM", 3, 3)
    assert len(sub.nodes) == 241 > DEFAULT_COLLAPSE_ABOVE
    svg = svg_of(export_lineage(sub, "svg", focus=[root, "run:sweep-7"]))
    nodes = groups(svg, "node")
    labels = [" ".join(texts(g)) for g in nodes]
    assert len(nodes) == 5, labels  # data, the focus run and its version, two groups
    assert any("Experiment churn/tuning: 119 runs" in label for label in labels)
    assert any("119 ModelVersion nodes" in label for label in labels)
    assert any(f"auc 0.8 {DASH} 0.919" in label for label in labels)
    edges = groups(svg, "edge")
    edge_labels = sorted(" ".join(texts(g)) for g in edges)
    # merged, no duplicates: one edge per (ends, kind), with the count
    assert edge_labels == sorted(
        [f"USED (train) {TIMES}119", f"GENERATED_BY {TIMES}119", "USED (train)", "GENERATED_BY"]
    )
    caption = " ".join(t for t in texts(svg) if "collapsed" in t)
    assert "241 nodes: 238 collapsed into 2 group(s)" in caption
    # below the threshold, or with collapsing off: every node
    assert len(dot_nodes(export_lineage(sub, "dot", collapse_above=None).decode())) == 241
    assert len(dot_nodes(export_lineage(sub, "dot", collapse_above=500).decode())) == 241
    # 0 is never, as the CLI's --collapse-above 0 and the HTTP export's collapseAbove=0 mean
    assert len(dot_nodes(export_lineage(sub, "dot", collapse_above=0).decode())) == 241
    assert len(dot_nodes(export_lineage(sub, "dot", collapse_above=1).decode())) < 241
    # the picture of the collapsed graph is clustered too, on demand
    source = export_lineage(sub, "dot", cluster=True).decode()
    assert 'label="Experiment churn/tuning"' in source
    store.close()


@needs_dot
def test_truncated_results_say_so(lineage: LineageService) -> None:
    sub = lineage.lineage(["deployment:example-prod"], "UPSTREAM", 10, 0, max_nodes=3)
    assert sub.truncated
    svg = svg_of(export_lineage(sub, "svg", title="Churn in production"))
    words = texts(svg)
    assert "Churn in production" in words
    assert any(w.startswith("TRUNCATED (MAX_NODES)") for w in words)
    assert "TRUNCATED (MAX_NODES)" in export_lineage(sub, "mmd").decode()
    assert json.loads(export_lineage(sub, "json"))["truncated"] is True


def _evil_graph(tmp_path: Path) -> tuple[GraphStore, Subgraph]:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.upsert_nodes(
        [
            Node("run:evil", "Run", {"name": EVIL, "metrics": {"auc": 0.5}}),
            Node("dsv:<x>", "DatasetVersion", {"name": "<i>data</i>", "namespace": 'a"b'}),
        ]
    )
    store.upsert_edges([Edge("run:evil", "dsv:<x>", "USED", {"role": 'tr"ain\\'})])
    return store, LineageService(store).lineage(["run:evil"], "UPSTREAM", 2, 0)


@needs_dot
def test_user_text_cannot_inject_into_pictures(tmp_path: Path) -> None:
    store, sub = _evil_graph(tmp_path)
    cleaned = " ".join(EVIL.split())  # the newline becomes a space, the rest is literal
    root = svg_of(export_lineage(sub, "svg", focus=["run:evil"], title=EVIL))
    nodes = groups(root, "node")
    assert len(nodes) == 2 and len(groups(root, "edge")) == 1
    words = [t for g in nodes for t in texts(g)]
    assert cleaned[:59] + "…" in words  # long names are cut, not broken
    assert "<i>data</i>" in words
    assert 'USED (tr"ain\\)' in [t for g in groups(root, "edge") for t in texts(g)]
    full = texts(root)
    assert cleaned[:59] + "…" in full or any(cleaned[:40] in t for t in full)
    # the DOT text holds the names as quoted strings only
    source = export_lineage(sub, "dot").decode()
    assert len(dot_nodes(source)) == 2
    outside = re.sub(r'"(?:\\.|[^"\\])*"', "", source)  # what is not in a quoted string
    assert "evil" not in outside and "pwned" not in outside and "<" not in outside
    mermaid = export_lineage(sub, "mmd").decode()
    evil_line = next(line for line in mermaid.splitlines() if line.strip().startswith("n0"))
    label = evil_line[evil_line.index('"') + 1 : evil_line.rindex('"')]
    assert '"' not in label and "<b>" not in label and "`" not in label
    assert "#quot;" in label and "#lt;b#gt;bold#lt;/b#gt;" in label and "#35;quot#59;" in label
    store.close()


ENTITIES = "&#1; &nbsp; &lt;b&gt; &amp;"


@needs_dot
def test_entity_lookalikes_in_names_stay_text_in_pictures(tmp_path: Path) -> None:
    """Graphviz decodes HTML entities in labels: a name holding ``&#1;`` made an SVG that XML
    refuses (browsers drew nothing), and ``&lt;`` was drawn as ``<``."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.upsert_nodes([Node("run:amp", "Run", {"name": ENTITIES})])
    sub = LineageService(store).lineage(["run:amp"], "UPSTREAM", 1, 0)
    for title in (ENTITIES, "plain"):
        root = svg_of(export_lineage(sub, "svg", title=title))  # parses
        assert ENTITIES in texts(root)
        tips = [a.get("{http://www.w3.org/1999/xlink}title") for a in root.iter(f"{SVG}a")]
        assert f"Run\n{ENTITIES}" in tips
    store.close()


def test_mermaid_labels_cannot_hold_a_directive(tmp_path: Path) -> None:
    """Mermaid takes ``%%{init: ...}%%`` anywhere in the text as configuration, even inside a
    quoted label: a dataset's name could restyle (or hide) the whole picture."""
    directive = "%%{init: {'theme':'dark','themeCSS':'.node{display:none}'}}%%"
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.upsert_nodes([Node("run:pct", "Run", {"name": directive})])
    sub = LineageService(store).lineage(["run:pct"], "UPSTREAM", 1, 0)
    text = export_lineage(sub, "mmd", title=directive).decode()
    assert "%" not in text
    assert "#37;#37;{init: {'theme':'dark'" in text  # drawn as the name, by Mermaid's entities
    assert "\\u0025\\u0025{init" in text.splitlines()[1]  # the title: YAML's escape
    store.close()


def test_user_text_survives_the_data_formats(tmp_path: Path) -> None:
    store, sub = _evil_graph(tmp_path)
    graph = nx.read_graphml(io.BytesIO(export_lineage(sub, "graphml")))
    assert graph.nodes["run:evil"]["name"] == EVIL
    assert json.loads(graph.nodes["dsv:<x>"]["props"])["namespace"] == 'a"b'
    doc = json.loads(export_lineage(sub, "json"))
    assert doc["elements"]["nodes"][0]["data"]["name"] == EVIL
    from prov.model import ProvDocument

    prov = ProvDocument.deserialize(content=export_lineage(sub, "prov").decode(), format="json")
    assert len(list(prov.get_records())) == 3
    store.close()


def test_mermaid_structure(whole: Subgraph) -> None:
    text = export_lineage(
        whole, "mmd", focus=["mv:churn/2"], title="Churn", context_nodes=True
    ).decode()
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "Churn"', "---", "flowchart LR"]
    declared = [line for line in lines if re.match(r"^\s+n\d+\W", line) and ":::" in line]
    assert len(declared) == len(whole.nodes)
    edges = [line for line in lines if "-->" in line]
    assert len(edges) == len(whole.edges)
    assert all(re.match(r'^\s+n\d+ -->\|"[A-Z_]+( \([a-z-]+\))?"\| n\d+$', e) for e in edges)
    assert any('[("DatasetVersion<br/>customers_clean' in line for line in declared)
    kinds = {node.node.label for node in whole.nodes.values()}
    for kind in kinds:
        assert f"    classDef k_{kind} fill:{NODE_STYLES[kind][1]}" in text
    focus = [line for line in lines if line.strip().startswith("class ")]
    assert len(focus) == 1 and focus[0].strip().endswith(" focus")


def test_mermaid_clusters_and_groups(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    root = _sweep(store, 70)
    sub = LineageService(store).lineage([root], "DOWNSTREAM", 2, 2)
    text = export_lineage(sub, "mmd", cluster=True).decode()
    assert 'subgraph cluster_0["Experiment churn/tuning"]' in text
    assert "Experiment churn/tuning: 70 runs" in text and "==>" in text
    assert re.search(r"^    class g\d+,g\d+ group$", text, flags=re.MULTILINE)
    store.close()


# --- data formats ------------------------------------------------------------------------------


def test_graphml_round_trips_through_networkx(whole: Subgraph) -> None:
    data = export_lineage(whole, "graphml", focus=["mv:churn/2"])
    graph = nx.read_graphml(io.BytesIO(data), force_multigraph=True)
    assert set(graph.nodes) == set(whole.nodes)
    assert graph.number_of_edges() == len(whole.edges)
    assert graph.is_directed()
    mv = graph.nodes["mv:churn/2"]
    assert mv["kind"] == "ModelVersion" and mv["version"] == 2 and mv["focus"] is True
    assert mv["name"] == "churn" and "churn v2" in mv["label"]
    assert json.loads(mv["props"])["metrics"] == {"auc": 0.871}
    kinds = sorted(d["kind"] for _, _, d in graph.edges(data=True))
    assert kinds == sorted(e.kind for e in whole.edges)
    used = [
        d
        for s, t, d in graph.edges(data=True)
        if s == "run:example-train-2" and d["kind"] == "USED"
    ]
    assert used[0]["role"] == "train" and used[0]["event_time"].endswith("Z")
    assert graph.graph["truncated"] is False


def test_cytoscape_json(whole: Subgraph) -> None:
    doc = json.loads(export_lineage(whole, "json", focus=["mv:churn/2"]))
    assert set(doc) >= {"elements", "truncated", "focus"}
    assert doc["focus"] == ["mv:churn/2"] and doc["truncated"] is False
    nodes, edges = doc["elements"]["nodes"], doc["elements"]["edges"]
    assert [n["data"]["id"] for n in nodes] == list(whole.nodes)
    assert all(n["group"] == "nodes" for n in nodes) and all(e["group"] == "edges" for e in edges)
    run = next(n["data"] for n in nodes if n["data"]["id"] == "run:example-train-2")
    assert run["kind"] == "Run" and run["props"]["kind"] == "train"  # its own kind kept
    assert (
        run["name"] == "gbm-depth5" and run["status"] == "FINISHED" and "gbm-depth5" in run["label"]
    )
    ids = {n["data"]["id"] for n in nodes}
    assert len(edges) == len(whole.edges)
    for e in edges:
        assert {"id", "source", "target", "kind"} <= set(e["data"])
        assert e["data"]["source"] in ids and e["data"]["target"] in ids


def test_cytoscape_json_never_makes_a_child_run_a_compound_node() -> None:
    """``parent`` in a node's data is Cytoscape.js's compound parent: a child run's own
    ``parent`` property drew it inside its parent run's node. It stays in ``props``."""
    store = open_store("sqlite://")
    store.upsert_nodes(
        [Node("run:p", "Run", {"name": "sweep"}), Node("run:c", "Run", {"parent": "run:p"})]
    )
    store.upsert_edges([Edge("run:c", "run:p", "CHILD_OF")])
    sub = LineageService(store).lineage(["run:c"], "UPSTREAM", 2, 2, edge_kinds=["CHILD_OF"])
    doc = json.loads(export_lineage(sub, "json"))
    child = next(n["data"] for n in doc["elements"]["nodes"] if n["data"]["id"] == "run:c")
    assert "parent" not in child and child["props"]["parent"] == "run:p"
    assert [(e["data"]["source"], e["data"]["target"]) for e in doc["elements"]["edges"]] == [
        ("run:c", "run:p")
    ]


def test_prov_json_round_trips(whole: Subgraph) -> None:
    from prov.model import (
        PROV_ACTIVITY,
        PROV_AGENT,
        PROV_ASSOCIATION,
        PROV_ATTRIBUTION,
        PROV_DERIVATION,
        PROV_ENTITY,
        PROV_GENERATION,
        PROV_SPECIALIZATION,
        PROV_USAGE,
        ProvDocument,
    )

    text = export_lineage(whole, "prov").decode()
    doc = ProvDocument.deserialize(content=text, format="json")
    ns = doc.get_registered_namespaces()
    assert any(n.prefix == "lineagehub" for n in ns)
    records = list(doc.get_records())
    by_type: dict[object, list[object]] = {}
    for r in records:
        by_type.setdefault(r.get_type(), []).append(r)
    labels = [n.node.label for n in whole.nodes.values()]
    activities = sum(label in ("Run", "Deployment", "MonitoringWindow") for label in labels)
    assert len(by_type[PROV_ACTIVITY]) == activities == 5
    assert len(by_type[PROV_AGENT]) == 1
    assert len(by_type[PROV_ENTITY]) == len(labels) - activities - 1
    kinds = [e.kind for e in whole.edges]
    assert len(by_type[PROV_USAGE]) == sum(
        k in ("USED", "RAN_CODE", "RAN_IN", "SERVES") for k in kinds
    )
    assert len(by_type[PROV_GENERATION]) == kinds.count("GENERATED_BY")
    assert len(by_type[PROV_DERIVATION]) == kinds.count("DERIVED_FROM")
    assert len(by_type[PROV_SPECIALIZATION]) == kinds.count("VERSION_OF")
    assert len(by_type[PROV_ASSOCIATION]) == kinds.count("ASSOCIATED_WITH")
    assert len(by_type[PROV_ATTRIBUTION]) == kinds.count("ATTRIBUTED_TO")
    raw = json.loads(text)
    train = raw["activity"]["lineagehub:run:example-train-2"]
    assert train["prov:startTime"].startswith("2026-03-01T11:00:00")
    assert train["prov:endTime"].startswith("2026-03-01T11:20:00")
    used = [
        u for u in raw["used"].values() if u["prov:activity"] == "lineagehub:run:example-train-2"
    ]
    assert any(u.get("prov:role") == "train" for u in used)


def test_openlineage_events(whole: Subgraph, tmp_path: Path) -> None:
    from openlineage.client import event_v2 as ol
    from openlineage.client.serde import Serde

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    build_example(store)
    store.upsert_nodes([Run(id="run:example-failed", name="bad", status=RunStatus.FAILED,
                            project="churn", experiment="baseline", error="OOM").to_node()])  # fmt: skip
    store.upsert_edges([Edge("run:example-failed", "dsv:warehouse/customers_clean@" + whole_digest(whole), "USED", {"role": "train"})])  # fmt: skip
    sub = LineageService(store).lineage(
        ["deployment:example-prod", "run:example-failed"], "BOTH", 10, 10
    )
    lines = export_lineage(sub, "openlineage").decode().splitlines()
    runs = [t.node for t in sub.nodes.values() if t.node.label == "Run"]
    assert len(lines) == len(runs) == 3
    events = [json.loads(line) for line in lines]
    for raw in events:
        # rebuilt with the client's own (validating) types, it serialises to the same JSON
        event = ol.RunEvent(
            eventType=ol.RunState(raw["eventType"]),
            eventTime=raw["eventTime"],
            run=ol.Run(runId=raw["run"]["runId"], facets=raw["run"].get("facets") or {}),
            job=ol.Job(namespace=raw["job"]["namespace"], name=raw["job"]["name"]),
            producer=raw["producer"],
            inputs=[
                ol.InputDataset(
                    namespace=i["namespace"], name=i["name"], facets=i.get("facets") or {}
                )
                for i in raw.get("inputs", [])
            ],
            outputs=[
                ol.OutputDataset(
                    namespace=o["namespace"], name=o["name"], facets=o.get("facets") or {}
                )
                for o in raw.get("outputs", [])
            ],
        )
        assert json.loads(Serde.to_json(event)) == raw
        uuid.UUID(raw["run"]["runId"])
    by_job = {e["job"]["name"]: e for e in events}
    train = by_job["gbm-depth5"]
    assert train["eventType"] == "COMPLETE" and train["eventTime"].startswith("2026-03-01T11:20")
    assert [(i["namespace"], i["name"]) for i in train["inputs"]] == [
        ("warehouse", "customers_clean")
    ]
    assert train["inputs"][0]["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert [(o["namespace"], o["name"]) for o in train["outputs"]] == [
        ("lineagehub", "models/churn")
    ]
    prep = by_job["clean-customers"]
    assert [i["name"] for i in prep["inputs"]] == ["customers_raw"]
    assert [o["name"] for o in prep["outputs"]] == ["customers_clean"]
    failed = by_job["baseline"]
    assert failed["eventType"] == "FAIL" and failed["job"]["namespace"] == "churn"
    assert failed["run"]["facets"]["errorMessage"]["message"] == "OOM"
    # stable ids: the same export twice gives the same events
    assert export_lineage(sub, "openlineage").decode().splitlines() == lines
    store.close()


def whole_digest(whole: Subgraph) -> str:
    node = next(t.node for t in whole.nodes.values() if t.node.props.get("name") == "customers_clean" and t.node.label == "DatasetVersion")  # fmt: skip
    return str(node.props["digest"])


@needs_dot
def test_pictures_keep_the_nodes_nearest_the_roots_within_the_budget(tmp_path: Path) -> None:
    """A result larger than MAX_PICTURE_NODES (collapsing turned off): the picture keeps the
    roots and the nearest nodes, says so, and lays out quickly; the data formats keep all."""
    from lineagehub.services.export import MAX_PICTURE_NODES

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    root = _sweep(store, 200)  # 1 dataset, 200 runs (distance 1), 200 versions (distance 2)
    sub = LineageService(store).lineage([root], "DOWNSTREAM", 2, 2, max_nodes=1000)
    assert len(sub.nodes) == 401
    source = export_lineage(sub, "dot", focus=[root], collapse_above=None).decode()
    kept = dot_nodes(source)
    assert len(kept) == MAX_PICTURE_NODES
    assert "showing the 300 nodes nearest the roots of 401" in source
    labels = " ".join(kept.values())
    assert "sweep" in labels and labels.count('label="Run (') == 200  # every distance-1 run
    assert len(export_lineage(sub, "svg", focus=[root], collapse_above=None)) > 0
    graph = nx.read_graphml(io.BytesIO(export_lineage(sub, "graphml")))
    assert graph.number_of_nodes() == 401
    store.close()


@needs_dot
def test_pictures_keep_within_the_edge_budget(tmp_path: Path) -> None:
    """300 nodes can hold 11,400 edges (150 runs each using a different half of 150 dataset
    versions): ``dot`` took a minute and a half on that. The picture keeps the nodes nearest
    the roots up to MAX_PICTURE_EDGES edges and says so; the data formats keep every edge."""

    from lineagehub.services.export import MAX_PICTURE_EDGES

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    pick = random.Random(7)
    nodes = [Node("dsv:src", "DatasetVersion", {"name": "src"})]
    nodes += [Node(f"dsv:{i}", "DatasetVersion", {"name": f"d{i}"}) for i in range(150)]
    nodes += [Node(f"run:{j}", "Run", {"name": f"r{j}"}) for j in range(150)]
    edges = [Edge(f"dsv:{i}", "dsv:src", "DERIVED_FROM") for i in range(150)]
    edges += [
        Edge(f"run:{j}", f"dsv:{i}", "USED")
        for j in range(150)
        for i in pick.sample(range(150), 75)
    ]
    store.upsert_nodes(nodes)
    store.upsert_edges(edges)
    sub = LineageService(store).lineage(["dsv:src"], "DOWNSTREAM", 2, 2, max_nodes=1000)
    assert len(sub.nodes) == 301 and len(sub.edges) == 150 + 150 * 75
    source = export_lineage(sub, "dot").decode()
    drawn = re.findall(r"^\s*(?:n|g)\d+ -> (?:n|g)\d+", source, flags=re.MULTILINE)
    assert 0 < len(drawn) <= MAX_PICTURE_EDGES
    kept = dot_nodes(source)
    assert (
        'DatasetVersion\\nsrc"' in " ".join(kept.values()) and len(kept) >= 151
    )  # the root, its versions
    assert "nodes nearest the roots of 301" in source
    root = svg_of(export_lineage(sub, "svg"))
    assert len(groups(root, "edge")) == len(drawn)
    graph = nx.read_graphml(io.BytesIO(export_lineage(sub, "graphml")))
    assert graph.number_of_edges() == len(sub.edges)
    store.close()


def test_mermaid_keeps_within_mermaid_s_own_limits(tmp_path: Path) -> None:
    """Mermaid refuses a diagram of more than 500 edges or 50,000 characters (its maxEdges
    and maxTextSize defaults): GitHub and wikis showed an error instead of the picture."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    pick = random.Random(3)
    quoted = '"' * 60  # each one written as #quot;: a label six times its name's length
    nodes = [Node("dsv:src", "DatasetVersion", {"name": "src"})]
    nodes += [Node(f"dsv:{i}", "DatasetVersion", {"name": f"d{i}"}) for i in range(150)]
    nodes += [Node(f"run:{j}", "Run", {"name": quoted}) for j in range(150)]
    edges = [Edge(f"dsv:{i}", "dsv:src", "DERIVED_FROM") for i in range(150)]
    edges += [
        Edge(f"run:{j}", f"dsv:{i}", "USED") for j in range(150) for i in pick.sample(range(150), 2)
    ]
    store.upsert_nodes(nodes)
    store.upsert_edges(edges)
    sub = LineageService(store).lineage(["dsv:src"], "DOWNSTREAM", 2, 2, max_nodes=1000)
    assert len(sub.nodes) == 301 and len(sub.edges) == 150 + 150 * 2
    text = export_lineage(sub, "mmd", focus=["dsv:src"]).decode()
    arrows = [line for line in text.splitlines() if "-->" in line or "==>" in line]
    assert 0 < len(arrows) <= 500  # Mermaid's maxEdges
    assert len(text) <= 50_000  # Mermaid's maxTextSize
    assert re.search(r"showing the \d+ nodes nearest the roots of", text)
    assert re.search(r"^\s+n0\[\(\"DatasetVersion<br/>src", text, flags=re.MULTILINE)  # the root
    # 450 edges, but 150 labels of 60 quotes: 60,000 characters; Graphviz draws them all
    assert "nodes nearest the roots" not in export_lineage(sub, "dot").decode()
    many = sub.edges + [
        Edge(f"run:{j}", f"dsv:{i}", "USED") for j in range(150) for i in range(150)
    ]  # and 22,800 edges: still within both
    text = export_lineage(Subgraph(sub.nodes, many), "mmd").decode()
    assert len(text) <= 50_000
    assert sum(1 for line in text.splitlines() if "-->" in line or "==>" in line) <= 500
    store.close()


@needs_dot
def test_a_picture_dot_cannot_draw_in_time_is_refused_and_dot_stopped(whole: Subgraph) -> None:
    """``dot`` ran without a time limit (graphviz's ``pipe()`` takes none): whatever it could
    not draw held its request and its process. Past ``render_timeout`` (60 s; a millionth of
    a second here, which no process starts within) the picture is refused, naming what to
    draw less of, and the process is killed; in time, it is drawn."""
    with pytest.raises(ValidationError, match="did not draw the picture within") as refused:
        export_lineage(whole, "svg", render_timeout=1e-6)
    assert refused.value.field == "format"
    assert export_lineage(whole, "svg").startswith(b"<?xml")
