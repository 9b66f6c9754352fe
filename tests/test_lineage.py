"""LineageService: references, lineage, impact, paths, run and model-version comparisons, on
every backend (the ``store`` fixture), with the number of store queries kept bounded."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from lineagehub.artifacts import FileArtifactStore
from lineagehub.graph import (
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    SeriesPoint,
    TruncationReason,
    ValidationError,
)
from lineagehub.ingest.datasets import fingerprint
from lineagehub.samples.example import T0, build_example
from lineagehub.services.lineage import LineageService
from lineagehub.services.tracking import Metric, TrackingService
from lineagehub.vocabulary import (
    Agent,
    Alert,
    AlertState,
    AssociationRole,
    CodeCommit,
    Dataset,
    DatasetVersion,
    Deployment,
    DeploymentStatus,
    EdgeKind,
    Environment,
    ModelVersion,
    Run,
    RunKind,
    RunStatus,
    UsedRole,
    make_edge,
    packages_digest,
)

HEX = "0123456789abcdef" * 4
COMMIT = "commit:github.com/acme/churn@3f9a1c2" + "0" * 33


@pytest.fixture
def ex(store: GraphStore) -> dict[str, str]:
    return build_example(store)


@pytest.fixture
def svc(store: GraphStore) -> LineageService:
    return LineageService(store)


def ids(nodes: Any) -> list[str]:
    return [n.id for n in nodes]


def triples(path: list[Edge]) -> list[tuple[str, str, str]]:
    return [(e.source, e.kind, e.target) for e in path]


def put(store: GraphStore, *models: Any, edges: tuple[Edge, ...] = ()) -> None:
    with store.transaction():
        store.upsert_nodes([m.to_node() for m in models])
        store.upsert_edges(list(edges))


def count_queries(store: GraphStore) -> Counter[str]:
    """Count every primitive read the store is asked for, by patching the instance (the
    store's own methods, traverse and neighbors included, then go through the counters)."""
    counts: Counter[str] = Counter()
    for name in (
        "get_nodes",
        "get_edges",
        "_find",
        "_count",
        "_expand",
        "series_summary",
        "_read_series",
        "count_nodes",
    ):
        original = getattr(store, name)

        def counting(*args: Any, _name: str = name, _f: Any = original, **kw: Any) -> Any:
            counts[_name] += 1
            return _f(*args, **kw)

        setattr(store, name, counting)
    return counts


# --- references ------------------------------------------------------------------------------


def test_ids_resolve_to_themselves(svc: LineageService, ex: dict[str, str]) -> None:
    for node_id in (
        ex["raw"],
        "mv:churn/2",
        "run:example-prep",
        ex["deployment"],
        ex["alert"],
        COMMIT,
        "model:churn",  # the Model node
        "dataset:warehouse/customers_raw",  # the Dataset node
        "agent:ann",
    ):
        assert svc.resolve(node_id) == node_id


def test_model_references(store: GraphStore, svc: LineageService, ex: dict[str, str]) -> None:
    assert svc.resolve("model:churn/2") == "mv:churn/2"
    assert svc.resolve("model:churn@2") == "mv:churn/2"
    assert svc.resolve("model:churn@02") == "mv:churn/2"
    assert svc.resolve("mv:churn@latest") == "mv:churn/3"
    assert svc.resolve("model:churn@latest") == "mv:churn/3"
    # stages (any case) and aliases, as the registry will write them
    store.upsert_nodes(
        [
            Node("mv:churn/1", "ModelVersion", {"stage": "Production"}),
            Node("mv:churn/2", "ModelVersion", {"stage": "staging", "aliases": ["champion"]}),
        ]
    )
    assert svc.resolve("model:churn@production") == "mv:churn/1"
    assert svc.resolve("model:churn@Production") == "mv:churn/1"
    assert svc.resolve("model:churn@staging") == "mv:churn/2"
    assert svc.resolve("model:churn@champion") == "mv:churn/2"
    # an alias named like a stage wins over the stage
    store.upsert_nodes([Node("mv:churn/3", "ModelVersion", {"aliases": ["production"]})])
    assert svc.resolve("model:churn@production") == "mv:churn/3"
    # names with '/'
    versions = [
        ModelVersion(model="team/churn", version=v, artifact_digest=f"sha256:{HEX}") for v in (1, 2)
    ]
    put(store, *versions)
    assert svc.resolve("model:team/churn/1") == "mv:team/churn/1"
    assert svc.resolve("model:team/churn@2") == "mv:team/churn/2"
    assert svc.resolve("model:team/churn@latest") == "mv:team/churn/2"


def test_dataset_references(store: GraphStore, svc: LineageService, ex: dict[str, str]) -> None:
    raw = ex["raw"]
    hex_ = raw.rpartition("sha256:")[2]
    assert svc.resolve(f"dataset:warehouse/customers_raw@sha256:{hex_}") == raw
    assert svc.resolve(f"dataset:warehouse/customers_raw@{hex_}") == raw
    assert svc.resolve(f"dataset:warehouse/customers_raw@{hex_[:8]}") == raw
    assert svc.resolve(f"dataset:warehouse/customers_raw@sha256:{hex_[:12].upper()}") == raw
    assert svc.resolve("dataset:warehouse/customers_raw@latest") == raw
    # a namespace with '/' (written plainly or as in ids), a name with '/'
    ns = "s3://lake"
    first = DatasetVersion(namespace=ns, name="customers/daily", digest=f"sha256:{'a' * 64}")
    second = DatasetVersion(namespace=ns, name="customers/daily", digest=f"sha256:{'b' * 64}")
    put(store, first)  # versions without their Dataset node
    time.sleep(0.01)
    put(store, second)
    for ref in (
        "dataset:s3://lake/customers/daily@latest",
        "dataset:s3:%2F%2Flake/customers/daily@latest",
        "dataset:S3://LAKE/customers/daily@latest",  # cleaned as the vocabulary cleans
        "dataset:s3://lake/customers/daily",  # no '@' and no such Dataset: the latest version
    ):
        assert svc.resolve(ref) == second.node_id, ref
    assert svc.resolve(f"dataset:s3://lake/customers/daily@{'a' * 10}") == first.node_id
    assert second.node_id.startswith("dsv:s3:%2F%2Flake/customers/daily@")
    # with its Dataset node written, the bare form in id spelling is that Dataset's id
    dataset = Dataset(namespace=ns, name="customers/daily")
    put(store, dataset)
    assert svc.resolve(dataset.node_id) == dataset.node_id
    assert svc.resolve("dataset:s3://lake/customers/daily") == second.node_id


def test_ambiguous_and_unknown_references(
    store: GraphStore, svc: LineageService, ex: dict[str, str]
) -> None:
    twins = [
        DatasetVersion(namespace="warehouse", name="t", digest=f"sha256:{'ab' * 32}"),
        DatasetVersion(namespace="warehouse", name="t", digest=f"sha256:{'ab' * 31}cd"),
    ]
    put(store, *twins)
    with pytest.raises(ValidationError) as info:
        svc.resolve("dataset:warehouse/t@abababab")
    assert info.value.field == "ref" and "ambiguous" in info.value.message
    assert svc.resolve(f"dataset:warehouse/t@{'ab' * 31}c") == twins[1].node_id
    for ref in (
        "model:churn/9",
        "model:churn@9",
        "model:nope@latest",
        "model:churn@champion",
        "model:nope",
        "dataset:warehouse/nope@latest",
        "dataset:warehouse/nope",
        f"dataset:warehouse/customers_raw@sha256:{'0' * 64}",
        "dataset:warehouse/customers_raw@deadbeef00",
        "run:0190b6f2-0000-7000-8000-000000000000",
        "mv:churn/7",
    ):
        with pytest.raises(NotFoundError) as nf:
            svc.resolve(ref)
        assert nf.value.ids == [ref], ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "churn",
        "foo:bar",
        "model:",
        "model:churn@",
        "model:churn@Bad Alias!",
        "model:a@b@latest",
        "dataset:no-namespace@latest",
        "dataset:warehouse/customers_raw@abc123",  # too short a digest prefix
        "dataset:warehouse/customers_raw@",
        f"dataset:warehouse/x@{'a' * 65}",
        "x" * 600,
        "model:churn\x00@1",
        42,
        None,
    ],
)
def test_malformed_references(svc: LineageService, ex: dict[str, str], ref: Any) -> None:
    with pytest.raises(ValidationError) as info:
        svc.resolve(ref)
    assert info.value.field == "ref"


# --- lineage ---------------------------------------------------------------------------------


def test_lineage_from_references(svc: LineageService, ex: dict[str, str]) -> None:
    sub = svc.lineage(["model:churn@2"], "UPSTREAM", upstream_depth=2)
    dist = {i: t.distance for i, t in sub.nodes.items()}
    assert dist["mv:churn/2"] == 0 and dist["run:example-train-2"] == 1
    assert dist[ex["clean"]] == 2 and dist[COMMIT] == 2 and dist["model:churn"] == 1
    # grouping is not lineage unless asked
    assert not any(i.startswith(("experiment:", "project:")) for i in sub.nodes)
    grouped = svc.lineage(
        ["model:churn@2"], upstream_depth=3, edge_kinds=["GENERATED_BY", EdgeKind.PART_OF]
    )
    assert "experiment:churn/baseline" in grouped.nodes and "project:churn" in grouped.nodes
    assert ex["clean"] not in grouped.nodes
    assert sub.truncated and sub.truncation_reason is TruncationReason.MAX_DEPTH
    full = svc.lineage(["model:churn@2"], upstream_depth=5)
    assert ex["raw"] in full.nodes and not full.truncated


def test_lineage_both_ways_with_separate_depths(svc: LineageService, ex: dict[str, str]) -> None:
    sub = svc.lineage(
        [ex["clean"], "model:churn@1"], Direction.BOTH, upstream_depth=1, downstream_depth=3
    )
    assert sub.nodes[ex["raw"]].direction is Direction.UPSTREAM
    assert sub.nodes[ex["deployment"]].distance == 3
    assert sub.nodes[ex["deployment"]].direction is Direction.DOWNSTREAM
    assert ex["alert"] not in sub.nodes  # 4 hops downstream of clean
    kinds = svc.lineage(
        [ex["raw"]], "DOWNSTREAM", downstream_depth=10, node_kinds=["Run", "DatasetVersion"]
    )
    assert {t.node.label for t in kinds.nodes.values()} == {"Run", "DatasetVersion"}


def test_pass_through_runs_counts_data_hops(svc: LineageService, ex: dict[str, str]) -> None:
    # without the DERIVED_FROM shortcut the walk must go through the runs
    kinds = ["USED", "GENERATED_BY", "SERVES", "ABOUT"]
    plain = svc.lineage([ex["raw"]], "DOWNSTREAM", downstream_depth=2, edge_kinds=kinds)
    assert plain.nodes[ex["clean"]].distance == 2 and "mv:churn/1" not in plain.nodes
    data = svc.lineage(
        [ex["raw"]], "DOWNSTREAM", downstream_depth=2, edge_kinds=kinds, pass_through=["Run"]
    )
    dist = {i: t.distance for i, t in data.nodes.items()}
    assert dist[ex["clean"]] == 1 and dist["run:example-prep"] == 0
    assert dist["run:example-train-1"] == 1 and dist["mv:churn/1"] == 2
    assert data.nodes["mv:churn/1"].reached_from == "run:example-train-1"
    assert ex["deployment"] not in data.nodes
    assert data.truncation_reason is TruncationReason.MAX_DEPTH
    # stop at the models: returned, nothing beyond, and not a truncation
    stopped = svc.lineage(
        [ex["raw"]], "DOWNSTREAM", downstream_depth=5, edge_kinds=kinds,
        pass_through=["Run"], stop_at=["ModelVersion"],
    )  # fmt: skip
    assert "mv:churn/2" in stopped.nodes and ex["deployment"] not in stopped.nodes
    assert not stopped.truncated


def test_lineage_as_of(store: GraphStore, svc: LineageService, ex: dict[str, str]) -> None:
    time.sleep(0.01)
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    late = Run(id="run:late", name="late", status=RunStatus.FINISHED, started_at=T0)
    put(store, late, edges=(make_edge(EdgeKind.USED, late, store.get_node(ex["clean"]),
                                      role=UsedRole.TRAIN),))  # fmt: skip
    assert "run:late" in svc.lineage([ex["clean"]], "DOWNSTREAM").nodes
    assert "run:late" not in svc.lineage([ex["clean"]], "DOWNSTREAM", as_of=cut).nodes


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"upstream_depth": 100_001}, "upstream_depth"),
        ({"downstream_depth": -1}, "downstream_depth"),
        ({"max_nodes": 100_001}, "max_nodes"),
        ({"max_nodes": 0}, "max_nodes"),
        ({"node_kinds": ["Runs"]}, "node_kinds"),
        ({"edge_kinds": ["USED", "FOLLOWS"]}, "edge_kinds"),
        ({"stop_at": ["Nope"]}, "stop_at"),
        ({"pass_through": ["Run) DETACH DELETE n //"]}, "pass_through"),
        ({"direction": "SIDEWAYS"}, "direction"),
        ({"roots": []}, "roots"),
        ({"roots": "mv:churn/1"}, "roots"),
        ({"roots": ["no such thing"]}, "roots"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_lineage_arguments(
    svc: LineageService, ex: dict[str, str], kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"roots": ["mv:churn/1"], **kwargs}
    with pytest.raises(ValidationError) as info:
        svc.lineage(**args)
    assert info.value.field == field


def test_lineage_ceilings_are_configurable(store: GraphStore, ex: dict[str, str]) -> None:
    small = LineageService(store, max_depth=4, max_nodes=10)
    assert small.lineage(["mv:churn/1"], upstream_depth=4, max_nodes=10)
    with pytest.raises(ValidationError):
        small.lineage(["mv:churn/1"], upstream_depth=5)
    with pytest.raises(ValidationError):
        small.lineage(["mv:churn/1"], max_nodes=11)
    with pytest.raises(ValidationError) as info:
        small.impact(ex["raw"], depth=5)
    assert info.value.field == "depth"
    with pytest.raises(ValidationError) as info:
        LineageService(store, max_depth=1_000_001)
    assert info.value.field == "max_depth"


def test_unknown_roots_are_named_together(svc: LineageService, ex: dict[str, str]) -> None:
    with pytest.raises(NotFoundError) as info:
        svc.lineage(["mv:churn/1", "model:churn@9", "run:nope"])
    assert info.value.ids == ["model:churn@9", "run:nope"]


# --- impact ----------------------------------------------------------------------------------


def test_impact_of_the_raw_data(svc: LineageService, ex: dict[str, str]) -> None:
    impact = svc.impact(f"dataset:warehouse/customers_raw@{ex['raw'][-64:][:8]}")
    assert impact.root == ex["raw"]
    assert ids(impact.model_versions) == ["mv:churn/1", "mv:churn/2", "mv:churn/3"]
    assert ids(impact.deployments) == [ex["deployment"]]
    assert ids(impact.open_alerts) == [ex["alert"]]
    assert ids(impact.runs) == [
        "run:example-eval-2", "run:example-prep", "run:example-train-1",
        "run:example-train-2", "run:example-train-3",
    ]  # fmt: skip
    assert ids(impact.dataset_versions) == sorted([ex["raw"], ex["clean"]])
    assert ids(impact.owners) == ["agent:ann"]
    assert not impact.truncated and impact.truncation_reason is None
    short = svc.impact(ex["raw"], depth=1)
    assert short.truncated and short.truncation_reason is TruncationReason.MAX_DEPTH
    assert short.model_versions == ()


def test_impact_keeps_only_current_deployments_and_open_alerts(
    store: GraphStore, svc: LineageService, ex: dict[str, str]
) -> None:
    now = datetime.now(timezone.utc)
    mv1, mv3 = store.get_node("mv:churn/1"), store.get_node("mv:churn/3")
    retired = Deployment(id="deployment:old", environment="prod", status=DeploymentStatus.RETIRED)
    past = Deployment(id="deployment:past", environment="prod", status=DeploymentStatus.ACTIVE)
    canary = Deployment(id="deployment:canary", environment="canary", status="active")
    resolved = Alert(id="alert:resolved", rule="auc < 0.8", state=AlertState.RESOLVED)
    acked = Alert(id="alert:acked", rule="latency", state=AlertState.ACKNOWLEDGED)
    on_data = Alert(id="alert:data", rule="nulls > 1%")
    on_retired = Alert(id="alert:on-retired", rule="errors")
    put(
        store, retired, past, canary, resolved, acked, on_data, on_retired,
        edges=(
            make_edge(EdgeKind.SERVES, retired, mv1, valid_from=now - timedelta(days=9)),
            make_edge(EdgeKind.SERVES, past, mv1, valid_from=now - timedelta(days=9),
                      valid_to=now - timedelta(days=1)),
            make_edge(EdgeKind.SERVES, canary, mv3, valid_from=now - timedelta(days=1),
                      valid_to=now + timedelta(days=1)),
            make_edge(EdgeKind.ABOUT, resolved, mv1),
            make_edge(EdgeKind.ABOUT, acked, canary),
            make_edge(EdgeKind.ABOUT, on_data, store.get_node(ex["clean"])),
            make_edge(EdgeKind.ABOUT, on_retired, retired),
        ),
    )  # fmt: skip
    impact = svc.impact(ex["raw"])
    assert ids(impact.deployments) == ["deployment:canary", ex["deployment"]]
    assert ids(impact.open_alerts) == ["alert:acked", "alert:data", ex["alert"]]
    # a deployment as the root: itself, while it is not retired
    assert ids(svc.impact(ex["deployment"]).deployments) == [ex["deployment"]]
    assert svc.impact("deployment:old").deployments == ()


def test_impact_of_a_commit_and_its_owners(
    store: GraphStore, svc: LineageService, ex: dict[str, str]
) -> None:
    impact = svc.impact(COMMIT)
    assert ids(impact.model_versions) == ["mv:churn/1", "mv:churn/2", "mv:churn/3"]
    assert "run:example-prep" in ids(impact.runs)
    assert ex["clean"] in ids(impact.dataset_versions) and ex["raw"] not in ids(
        impact.dataset_versions
    )
    # owners: of affected datasets (version or Dataset), models, and launchers of runs only
    bob, carol, dave = (Agent(name=n) for n in ("bob", "carol", "dave"))
    promote = Run(id="run:promote-2", name="promote", kind=RunKind.PROMOTE,
                  status=RunStatus.FINISHED, started_at=T0)  # fmt: skip
    clean_ds = Dataset(namespace="warehouse", name="customers_clean")
    put(
        store, bob, carol, dave, promote,
        edges=(
            make_edge(EdgeKind.ATTRIBUTED_TO, clean_ds, bob),
            make_edge(EdgeKind.USED, promote, store.get_node("mv:churn/2"), role="input"),
            make_edge(EdgeKind.ASSOCIATED_WITH, promote, carol, role=AssociationRole.LAUNCHER),
            make_edge(EdgeKind.ASSOCIATED_WITH, promote, dave, role=AssociationRole.APPROVER),
        ),
    )  # fmt: skip
    impact = svc.impact(COMMIT)
    assert "run:promote-2" in ids(impact.runs)
    assert ids(impact.owners) == ["agent:ann", "agent:bob", "agent:carol"]
    # the raw data's owner is not affected by the code
    assert ids(svc.impact(ex["clean"]).owners) == ["agent:ann", "agent:bob", "agent:carol"]


# --- paths -----------------------------------------------------------------------------------


def test_path_explains_upstream(svc: LineageService, ex: dict[str, str]) -> None:
    paths = svc.path(ex["raw"], ex["deployment"])
    assert [triples(p) for p in paths] == [
        [
            (ex["clean"], "DERIVED_FROM", ex["raw"]),
            ("run:example-train-2", "USED", ex["clean"]),
            ("mv:churn/2", "GENERATED_BY", "run:example-train-2"),
            (ex["deployment"], "SERVES", "mv:churn/2"),
        ]
    ]
    assert all(e.ingested_at is not None for e in paths[0])
    found = svc.find_paths(ex["raw"], ex["deployment"])
    assert found.relation == "upstream" and found.length == 4 and not found.truncated
    # the other way round: the deployment is downstream of the raw data
    back = svc.find_paths(ex["deployment"], ex["raw"])
    assert back.relation == "downstream"
    assert [triples(p) for p in back.paths] == [list(reversed(triples(paths[0])))]
    # without the shortcut, through the transform run: one edge longer
    kinds = ["USED", "GENERATED_BY", "SERVES"]
    long = svc.path(ex["raw"], ex["deployment"], edge_kinds=kinds)
    assert len(long) == 1 and len(long[0]) == 5 and long[0][0].source == "run:example-prep"
    assert svc.path(ex["raw"], ex["deployment"], max_depth=3) == []


def test_path_all_shortest_and_connected(svc: LineageService, ex: dict[str, str]) -> None:
    # two sibling models: no directed path; connected through the Model, or (without
    # VERSION_OF) through the data, the commit, the environment and the launcher they share
    sibling = svc.find_paths("model:churn@1", "model:churn@3")
    assert sibling.relation == "connected" and sibling.length == 2
    kinds = ["USED", "GENERATED_BY", "RAN_CODE", "RAN_IN", "ASSOCIATED_WITH"]
    shared = svc.find_paths("mv:churn/1", "mv:churn/3", edge_kinds=kinds)
    assert shared.relation == "connected" and shared.length == 4
    middles = sorted(p[1].target for p in shared.paths)
    assert middles == sorted([ex["clean"], COMMIT, "agent:ann", _env_id()])
    assert svc.path("mv:churn/1", "mv:churn/3", connected=False) == []
    with pytest.raises(ValidationError) as info:
        svc.path("mv:churn/1", "model:churn@1")
    assert info.value.field == "to"
    with pytest.raises(NotFoundError) as nf:
        svc.path("mv:churn/1", "mv:churn/9")
    assert nf.value.ids == ["mv:churn/9"]
    with pytest.raises(ValidationError) as info:
        svc.path("mv:churn/1", "mv:churn/3", max_depth=0)
    assert info.value.field == "max_depth"


def test_path_budget_is_reported(store: GraphStore, svc: LineageService) -> None:
    # a hub with many users: the search gives up honestly instead of claiming "no path"
    store.upsert_nodes([Node("dsv:hub", "DatasetVersion"), Node("dsv:far", "DatasetVersion")])
    store.upsert_nodes([Node(f"run:r{i}", "Run") for i in range(30)])
    store.upsert_edges([Edge(f"run:r{i}", "dsv:hub", "USED") for i in range(30)])
    found = svc.find_paths("dsv:hub", "dsv:far", max_depth=6, max_nodes=10)
    assert found.paths == () and found.truncated
    assert found.truncation_reason is TruncationReason.MAX_NODES


def _env_id() -> str:
    pkgs = {"scikit-learn": "1.7.2", "numpy": "2.4.6", "pandas": "2.3.3"}
    return Environment(
        python="3.11.7", platform="Linux-x86_64", packages_digest=packages_digest(pkgs)
    ).node_id


# --- comparisons -----------------------------------------------------------------------------


def test_compare_runs(store: GraphStore, svc: LineageService, ex: dict[str, str]) -> None:
    other_commit = CodeCommit(repo="https://github.com/acme/churn", sha="a" * 40)
    run4 = Run(
        id="run:example-train-4", name="gbm-nan", status=RunStatus.FINISHED, started_at=T0,
        params={"max_depth": 5, "learning_rate": 0.05, "subsample": 0.8},
        metrics={"auc": 0.5, "loss": None},
    )  # fmt: skip
    raw, clean = store.get_node(ex["raw"]), store.get_node(ex["clean"])
    put(
        store, other_commit, run4,
        edges=(
            make_edge(EdgeKind.USED, run4, clean, role=UsedRole.TRAIN),
            make_edge(EdgeKind.USED, run4, raw, role=UsedRole.VALIDATION),
            make_edge(EdgeKind.USED, run4, raw, role=UsedRole.TEST),
            make_edge(EdgeKind.RAN_CODE, run4, other_commit),
        ),
    )  # fmt: skip
    store.append_series(
        [SeriesPoint(run4.id, "loss", s, v) for s, v in enumerate([0.9, 0.5, math.nan])]
    )
    ids_ = ["run:example-train-1", "run:example-train-2", run4.id]
    cmp = svc.compare_runs(ids_)
    assert ids(cmp.runs) == ids_
    params = {p.key: p for p in cmp.params}
    assert list(params) == ["learning_rate", "max_depth", "n_estimators", "subsample"]
    assert params["max_depth"].values == (3, 5, 5) and params["max_depth"].differs
    assert params["n_estimators"].values == (200, 200, None)
    assert params["n_estimators"].present == (True, True, False)
    assert params["subsample"].values == (None, None, 0.8) and params["subsample"].differs
    two = svc.compare_runs(ids_[:2])
    assert not {p.key: p for p in two.params}["n_estimators"].differs
    metrics = {m.key: m for m in cmp.metrics}
    auc = metrics["auc"]  # only on the runs: one value each
    assert auc.last == (0.842, 0.871, 0.5) and auc.min == auc.last and auc.differs
    loss = metrics["loss"]  # from the series: last at the highest step, NaN kept
    assert loss.last[0] == pytest.approx(0.7 * math.exp(-99 / 20) + 0.13)
    assert math.isnan(loss.last[2]) and loss.max[2] == 0.9
    assert loss.min[0] == pytest.approx(loss.last[0])
    rows = {r.node.id: r for r in cmp.inputs}
    assert rows[ex["clean"]].roles == (("train",), ("train",), ("train",))
    assert rows[ex["clean"]].used_by_all
    assert rows[ex["raw"]].roles == ((), (), ("test", "validation"))
    assert cmp.inputs_only_in == ((), (), (ex["raw"],))
    assert cmp.code == (COMMIT, COMMIT, other_commit.node_id) and cmp.code_differs
    assert cmp.environments == (_env_id(), _env_id(), None) and cmp.environment_differs
    assert not two.code_differs and not two.environment_differs
    assert two.inputs_only_in == ((), ())


@pytest.mark.parametrize(
    ("run_ids", "error", "field"),
    [
        (["run:example-train-1"], ValidationError, "run_ids"),
        ([f"run:{i}" for i in range(51)], ValidationError, "run_ids"),
        ("run:example-train-1", ValidationError, "run_ids"),
        (["run:example-train-1", "run:example-train-1"], ValidationError, "run_ids"),
        (["run:example-train-1", "mv:churn/1"], ValidationError, "run_ids"),
        (["run:example-train-1", ""], ValidationError, "run_ids"),
    ],
)
def test_compare_runs_bad_input(
    svc: LineageService, ex: dict[str, str], run_ids: Any, error: type, field: str
) -> None:
    with pytest.raises(error) as info:
        svc.compare_runs(run_ids)
    assert info.value.field == field


def test_compare_runs_names_unknown_runs(svc: LineageService, ex: dict[str, str]) -> None:
    with pytest.raises(NotFoundError) as info:
        svc.compare_runs(["run:example-train-1", "run:ghost", "run:phantom"])
    assert info.value.ids == ["run:ghost", "run:phantom"]


def test_compare_model_versions_on_the_example(svc: LineageService, ex: dict[str, str]) -> None:
    diff = svc.compare_model_versions("mv:churn/1", "model:churn@2")
    assert (diff.a.id, diff.b.id) == ("mv:churn/1", "mv:churn/2")
    assert diff.training_runs == ("run:example-train-1", "run:example-train-2")
    assert [(p.key, p.a, p.b) for p in diff.params_changed] == [
        ("learning_rate", 0.1, 0.05),
        ("max_depth", 3, 5),
    ]
    assert diff.params_added == () and diff.params_removed == ()
    [auc] = diff.metric_deltas
    assert (auc.key, auc.a, auc.b) == ("auc", 0.842, 0.871)
    assert auc.delta == pytest.approx(0.029)
    # same data, code and environment; only the training run differs
    assert ids(diff.added) == ["run:example-train-2"]
    assert ids(diff.removed) == ["run:example-train-1"]
    assert ids(diff.runs.added) == ["run:example-train-2"]
    assert diff.datasets.added == diff.datasets.removed == ()
    assert diff.commits.added == diff.environments.removed == ()
    [change] = diff.changed
    assert change.key == "training run" and (change.a.id, change.b.id) == (
        "run:example-train-1",
        "run:example-train-2",
    )
    props = {c.path: (c.a, c.b) for c in change.properties}
    assert props["params.max_depth"] == (3, 5) and props["name"] == ("gbm-depth3", "gbm-depth5")
    assert "params.n_estimators" not in props
    assert not diff.truncated


def test_compare_model_versions_with_new_data_code_and_environment(
    store: GraphStore, svc: LineageService, ex: dict[str, str]
) -> None:
    raw2 = DatasetVersion(namespace="warehouse", name="customers_raw", digest=f"sha256:{'1' * 64}")
    clean2 = DatasetVersion(
        namespace="warehouse", name="customers_clean", digest=f"sha256:{'2' * 64}", row_count=9000
    )
    prep2 = Run(id="run:prep-2", name="clean-customers", kind=RunKind.TRANSFORM,
                status=RunStatus.FINISHED, started_at=T0, params={"dropna": True})  # fmt: skip
    commit2 = CodeCommit(repo="git@github.com:acme/churn.git", sha="b" * 40, branch="main")
    env2 = Environment(python="3.12.1", platform="Linux-x86_64", packages_digest=f"sha256:{HEX}")
    train = Run(id="run:train-4", name="gbm-v4", status=RunStatus.FINISHED, started_at=T0,
                params={"max_depth": 5, "learning_rate": 0.05, "subsample": 0.8})  # fmt: skip
    mv4 = ModelVersion(model="churn", version=4, artifact_digest=f"sha256:{'4' * 64}",
                       metrics={"auc": 0.9, "f1": 0.7})  # fmt: skip
    model = store.get_node("model:churn")
    put(
        store, raw2, clean2, prep2, commit2, env2, train, mv4,
        edges=(
            make_edge(EdgeKind.USED, prep2, raw2, role=UsedRole.INPUT),
            make_edge(EdgeKind.GENERATED_BY, clean2, prep2),
            make_edge(EdgeKind.DERIVED_FROM, clean2, raw2),
            make_edge(EdgeKind.USED, train, clean2, role=UsedRole.TRAIN),
            make_edge(EdgeKind.RAN_CODE, train, commit2),
            make_edge(EdgeKind.RAN_IN, train, env2),
            make_edge(EdgeKind.GENERATED_BY, mv4, train),
            make_edge(EdgeKind.VERSION_OF, mv4, model),
        ),
    )  # fmt: skip
    diff = svc.compare_model_versions("model:churn@2", "model:churn@latest")
    assert ids(diff.datasets.added) == sorted([clean2.node_id, raw2.node_id])
    assert ids(diff.datasets.removed) == sorted([ex["clean"], ex["raw"]])
    assert ids(diff.commits.added) == [commit2.node_id] and ids(diff.commits.removed) == [COMMIT]
    assert ids(diff.environments.added) == [env2.node_id]
    assert ids(diff.environments.removed) == [_env_id()]
    assert set(ids(diff.runs.removed)) == {"run:example-train-2", "run:example-prep"}
    # ann launched only the old runs, but owns the model both are versions of
    assert not {"agent:ann", "model:churn"} & {*ids(diff.removed), *ids(diff.added)}
    changes = {(c.label, c.key): c for c in diff.changed}
    clean_change = changes[("DatasetVersion", "dataset:warehouse/customers_clean")]
    assert (clean_change.a.id, clean_change.b.id) == (ex["clean"], clean2.node_id)
    props = {c.path: (c.a, c.b) for c in clean_change.properties}
    assert props["digest"][1] == f"sha256:{'2' * 64}" and props["row_count"] == (9412, 9000)
    assert ("DatasetVersion", "dataset:warehouse/customers_raw") in changes
    commit = changes[("CodeCommit", "repo:github.com/acme/churn")]
    assert {c.path for c in commit.properties} >= {"sha", "repo"}
    assert ("Environment", "environment") in changes
    assert ("Run", "run:transform/clean-customers") in changes
    assert ("Run", "training run") in changes
    assert [(p.key, p.a, p.b) for p in diff.params_added] == [("subsample", None, 0.8)]
    assert [(p.key, p.a, p.b) for p in diff.params_removed] == [("n_estimators", 200, None)]
    assert diff.params_changed == ()
    deltas = {d.key: (d.a, d.b, d.delta) for d in diff.metric_deltas}
    assert deltas["f1"] == (None, 0.7, None)
    assert deltas["auc"][2] == pytest.approx(0.9 - 0.871)


def test_compare_model_versions_bad_input(svc: LineageService, ex: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        svc.compare_model_versions("mv:churn/1", ex["raw"])
    assert info.value.field == "b"
    with pytest.raises(NotFoundError) as nf:
        svc.compare_model_versions("model:churn@9", "model:nope@1")
    assert nf.value.ids == ["model:churn@9", "model:nope@1"]
    with pytest.raises(ValidationError) as info:
        svc.compare_model_versions("mv:churn/1", "mv:churn/2", depth=0)
    assert info.value.field == "depth"


# --- tracked end to end ----------------------------------------------------------------------


def test_tracked_runs_compare_and_trace(store: GraphStore, tmp_path: Path) -> None:
    """Runs written by the tracking service, as the SDK writes them."""
    tracking = TrackingService(store, FileArtifactStore(tmp_path / "artifacts"))
    svc = LineageService(store)
    rows = [{"x": i, "y": i % 2} for i in range(20)]
    fp = fingerprint(rows)
    runs = []
    for i, (depth, losses) in enumerate([(3, [0.9, 0.4]), (6, [0.8, math.nan])]):
        run = tracking.start_run(Run(name=f"fit-{i}", user="ann"))
        tracking.log_dataset(run.id, fp, name="toy", role=UsedRole.TRAIN)
        tracking.log_batch(
            run.id,
            params={"depth": depth},
            metrics=[
                Metric("loss", v, s, datetime.now(timezone.utc)) for s, v in enumerate(losses)
            ],
        )
        info = tracking.artifacts.put_bytes(f"model {i}".encode())
        tracking.log_model(run.id, info, name="toy-model")
        tracking.end_run(run.id)
        runs.append(run.id)
    cmp = svc.compare_runs(runs)
    assert [(p.key, p.values, p.differs) for p in cmp.params] == [("depth", (3, 6), True)]
    [loss] = [m for m in cmp.metrics if m.key == "loss"]
    assert loss.last[0] == 0.4 and math.isnan(loss.last[1]) and loss.min[0] == 0.4
    assert loss.max == (0.9, 0.8)
    [data] = cmp.inputs
    assert data.used_by_all and data.roles == (("train",), ("train",))
    dsv = svc.resolve("dataset:memory/toy@latest")
    assert dsv == data.node.id
    impact = svc.impact("dataset:memory/toy")  # no Dataset id spelled so: the latest version
    assert ids(impact.model_versions) == ["mv:toy-model/1", "mv:toy-model/2"]
    assert ids(impact.owners) == ["agent:ann"]
    diff = svc.compare_model_versions("model:toy-model@1", "model:toy-model@latest")
    assert [(p.key, p.a, p.b) for p in diff.params_changed] == [("depth", 3, 6)]
    [path] = svc.path(dsv, "model:toy-model/2")
    assert [e.kind for e in path] == ["USED", "GENERATED_BY"]


# --- bounded queries -------------------------------------------------------------------------


def _sized_graph(store: GraphStore, n_runs: int) -> dict[str, str]:
    """The example plus ``n_runs`` more training runs on the clean data, each making a
    version of another model, with series; every fifth version served and alerted on."""
    ex = build_example(store)
    clean = store.get_node(ex["clean"])
    nodes: list[Any] = []
    edges: list[Edge] = []
    points: list[SeriesPoint] = []
    now = datetime.now(timezone.utc)
    for i in range(n_runs):
        run = Run(id=f"run:bulk-{i:04d}", name=f"bulk-{i}", status=RunStatus.FINISHED,
                  started_at=T0, params={"seed": i, "depth": i % 7})  # fmt: skip
        mv = ModelVersion(model="bulk", version=i + 1, artifact_digest=f"sha256:{HEX}",
                          metrics={"auc": 0.5 + i / 1000})  # fmt: skip
        nodes += [run, mv]
        edges += [
            make_edge(EdgeKind.USED, run, clean, role=UsedRole.TRAIN),
            make_edge(EdgeKind.RAN_CODE, run, store.get_node(COMMIT)),
            make_edge(EdgeKind.GENERATED_BY, mv, run),
        ]
        points += [SeriesPoint(run.id, "loss", s, 1 / (s + 1)) for s in range(5)]
        if i % 5 == 0:
            dep = Deployment(id=f"deployment:bulk-{i}", environment="prod", status="active")
            alert = Alert(id=f"alert:bulk-{i}", rule="drift")
            nodes += [dep, alert]
            edges += [
                make_edge(EdgeKind.SERVES, dep, mv, valid_from=now - timedelta(days=1)),
                make_edge(EdgeKind.ABOUT, alert, dep),
            ]
    with store.transaction():
        store.upsert_nodes([m.to_node() for m in nodes])
        store.upsert_edges(edges)
        store.append_series(points)
    return ex


@pytest.fixture
def sized(tmp_path: Path) -> Iterator[Any]:
    from lineagehub.graph import open_store

    def make(n: int) -> tuple[GraphStore, dict[str, str]]:
        s = open_store(f"sqlite:///{tmp_path / f'hub-{n}.db'}")
        opened.append(s)
        return s, _sized_graph(s, n)

    opened: list[GraphStore] = []
    yield make
    for s in opened:
        s.close()


def _measure(store: GraphStore, ex: dict[str, str], compared: int) -> dict[str, int]:
    svc = LineageService(store)
    counts = count_queries(store)
    result = {}

    def measure(name: str, fn: Any) -> Any:
        counts.clear()
        value = fn()
        result[name] = sum(counts.values())
        return value

    impact = measure("impact", lambda: svc.impact(ex["raw"]))
    assert not impact.truncated
    measure("impact_commit", lambda: svc.impact(COMMIT))
    runs = [f"run:bulk-{i:04d}" for i in range(compared)]
    measure("compare_runs", lambda: svc.compare_runs(runs))
    measure("compare_model_versions", lambda: svc.compare_model_versions("mv:bulk/1", "mv:bulk/2"))
    measure("path", lambda: svc.path(ex["raw"], "mv:bulk/2"))
    measure("lineage", lambda: svc.lineage([ex["raw"]], "DOWNSTREAM", downstream_depth=5))
    measure("resolve_alias", lambda: svc.resolve("model:bulk@latest"))
    return result


def test_query_counts_do_not_grow_with_the_graph(sized: Any) -> None:
    small_store, small_ex = sized(10)
    large_store, large_ex = sized(200)
    small = _measure(small_store, small_ex, 2)
    large = _measure(large_store, large_ex, 50)
    assert small == large, (small, large)
    # and they are small: a walk is one query per level plus a few batched look-ups
    assert small["compare_runs"] == 4
    assert small["impact"] <= 14 and small["compare_model_versions"] <= 24
    # what the impact found grows with the graph, the queries do not
    svc = LineageService(large_store)
    big = svc.impact(large_ex["raw"])
    assert len(big.model_versions) == 203 and len(big.deployments) == 41
    assert len(big.open_alerts) == 41


def test_registry_short_references(store: GraphStore) -> None:
    from lineagehub.samples.example import build_example

    build_example(store)
    service = LineageService(store)
    assert service.resolve("churn/2") == "mv:churn/2"
    assert service.resolve("churn@latest") == "mv:churn/3"
    with pytest.raises(NotFoundError):
        service.resolve("churn/9")


def test_a_history_a_thousand_days_deep_is_traced_to_its_origin(store: GraphStore) -> None:
    """A dataset rebuilt daily from yesterday's, through the service's defaults (a generous
    depth ceiling; node and time budgets as the guard)."""
    from lineagehub.services.lineage import DEFAULT_TIMEOUT

    store.upsert_nodes([Node(f"dsv:day{i}", "DatasetVersion") for i in range(1001)])
    store.upsert_edges(
        [Edge(f"dsv:day{i}", f"dsv:day{i - 1}", "DERIVED_FROM") for i in range(1, 1001)]
    )
    svc = LineageService(store)
    sub = svc.lineage(["dsv:day1000"], upstream_depth=1000)
    assert sub.nodes["dsv:day0"].distance == 1000 and not sub.truncated
    assert svc.timeout == DEFAULT_TIMEOUT
    cut = svc.lineage(["dsv:day1000"], upstream_depth=1000, timeout=1e-9)
    assert cut.truncation_reason is TruncationReason.TIMEOUT
    with pytest.raises(ValidationError) as info:
        LineageService(store, timeout=0)
    assert info.value.field == "timeout"
