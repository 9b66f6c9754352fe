"""The lineage vocabulary: validation, identity, conversion to graph nodes and edge rules."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from lineagehub.graph import Edge, GraphStore, Node
from lineagehub.graph.errors import ValidationError
from lineagehub.graph.model import validate_edge_kind, validate_label
from lineagehub.vocabulary import (
    EDGE_PROPS,
    EDGE_RULES,
    ID_PREFIXES,
    LINEAGE_EDGE_KINDS,
    NODE_MODELS,
    Agent,
    Alert,
    AlertState,
    Artifact,
    ArtifactKind,
    AssociationRole,
    CodeCommit,
    Dataset,
    DatasetVersion,
    Deployment,
    EdgeKind,
    Environment,
    Experiment,
    Model,
    ModelVersion,
    MonitoringWindow,
    NodeKind,
    NodeModel,
    Project,
    Run,
    RunKind,
    RunStatus,
    Severity,
    Stage,
    UsedRole,
    from_node,
    id_timestamp,
    kind_of_id,
    link,
    make_edge,
    model_version_id,
    new_id,
    packages_digest,
    uuid7,
    validate,
)

UTC = timezone.utc
T0 = datetime(2024, 3, 3, 12, 0, 0, tzinfo=UTC)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def full_samples() -> dict[NodeKind, NodeModel]:
    """One instance per node kind with (nearly) every property set."""
    return {
        NodeKind.PROJECT: Project(
            name="churn", owner="alice", description="Churn models", tags={"team": "growth"}
        ),
        NodeKind.EXPERIMENT: Experiment(
            project="churn", name="xgb-sweep", owner="alice", tags={"sweep": "grid"}
        ),
        NodeKind.RUN: Run(
            name="fit-xgb",
            kind=RunKind.TRAIN,
            status=RunStatus.FINISHED,
            started_at=T0,
            ended_at=T0 + timedelta(minutes=5, microseconds=250),
            params={"lr": 0.1, "max_depth": 6, "early_stop": True, "opt/name": "adam"},
            metrics={"val.auc": 0.91, "loss": 0.2},
            user="alice",
            host="gpu-01",
            entry_point="train.py:main",
            error=None,
            description="first try",
            tags={"note": "baseline"},
        ),
        NodeKind.DATASET: Dataset(
            namespace="s3://lake", name="warehouse/customers", owner="data-eng", tags={"pii": "yes"}
        ),
        NodeKind.DATASET_VERSION: DatasetVersion(
            namespace="s3://lake",
            name="warehouse/customers",
            digest=D1,
            uri="s3://lake/warehouse/customers/2024-03-03.parquet",
            columns=[
                {"name": "age", "dtype": "int64", "nullable": False},
                {"name": "plan", "dtype": "string"},
            ],
            row_count=120_000,
            profile={"age": {"mean": 41.5, "hist": [1, 5, 9]}, "plan": {"distinct": 4}},
        ),
        NodeKind.CODE_COMMIT: CodeCommit(
            repo="https://github.com/acme/churn.git",
            sha="0123456789abcdef0123456789abcdef01234567",
            branch="main",
            dirty=True,
            diff_digest=D2,
        ),
        NodeKind.ENVIRONMENT: Environment(
            python="3.11.7",
            platform="Linux-6.1.0-x86_64-with-glibc2.36",
            packages_digest=packages_digest({"xgboost": "2.0.3", "pandas": "2.2.1"}),
            packages={"xgboost": "2.0.3", "pandas": "2.2.1"},
        ),
        NodeKind.ARTIFACT: Artifact(
            digest=D3, size=4096, media_type="application/json", kind=ArtifactKind.CONFUSION_MATRIX
        ),
        NodeKind.MODEL: Model(name="churn", owner="alice", description="d", tags={"tier": "1"}),
        NodeKind.MODEL_VERSION: ModelVersion(
            model="churn",
            version=3,
            artifact_digest=D3,
            flavor="xgboost",
            signature={"inputs": [{"name": "age", "type": "long"}], "outputs": []},
            metrics={"auc": 0.91},
            stage=Stage.PRODUCTION,
            aliases=["champion", "prod"],
            tags={"k": "v"},
        ),
        NodeKind.DEPLOYMENT: Deployment(
            name="churn-api",
            environment="production",
            endpoint="https://churn.internal/predict",
            status="active",
        ),
        NodeKind.MONITORING_WINDOW: MonitoringWindow(
            start=T0,
            end=T0 + timedelta(hours=1),
            sample_count=5000,
            metrics={"latency_p99_ms": 31.5},
            feature_stats={
                "age": {"psi": 0.02, "quantiles": [18, None, 77]}
            },  # null in a list is kept
        ),
        NodeKind.ALERT: Alert(
            rule="psi(age) > 0.2",
            severity=Severity.CRITICAL,
            state=AlertState.ACKNOWLEDGED,
            values={"psi": 0.31, "threshold": 0.2, "feature": "age"},
            message="age drifted",
            fired_at=T0,
            resolved_at=None,
        ),
        NodeKind.AGENT: Agent(name="alice", kind="user"),
    }


def minimal_samples() -> dict[NodeKind, NodeModel]:
    """One instance per node kind with only the required properties."""
    return {
        NodeKind.PROJECT: Project(name="p"),
        NodeKind.EXPERIMENT: Experiment(project="p", name="e"),
        NodeKind.RUN: Run(name="r"),
        NodeKind.DATASET: Dataset(namespace="file", name="d"),
        NodeKind.DATASET_VERSION: DatasetVersion(namespace="file", name="d", digest=D1),
        NodeKind.CODE_COMMIT: CodeCommit(repo="git@github.com:acme/churn.git", sha="abcdef1"),
        NodeKind.ENVIRONMENT: Environment(python="3.12.1", platform="macOS-14", packages_digest=D1),
        NodeKind.ARTIFACT: Artifact(digest=D1, size=0),
        NodeKind.MODEL: Model(name="m"),
        NodeKind.MODEL_VERSION: ModelVersion(model="m", version=1, artifact_digest=D1),
        NodeKind.DEPLOYMENT: Deployment(environment="staging"),
        NodeKind.MONITORING_WINDOW: MonitoringWindow(start=T0, end=T0 + timedelta(seconds=1)),
        NodeKind.ALERT: Alert(rule="r"),
        NodeKind.AGENT: Agent(name="ci-bot", kind="service"),
    }


SAMPLE_SETS = {"full": full_samples, "minimal": minimal_samples}


def all_samples() -> list[Any]:
    return [
        pytest.param(name, kind, id=f"{name}-{kind.value}")
        for name in SAMPLE_SETS
        for kind in NodeKind
    ]


def expect_invalid(field: str, fn: Callable[[], object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn()
    assert info.value.field == field, str(info.value)
    assert not isinstance(info.value, pydantic.ValidationError)
    return info.value


# --- the table -------------------------------------------------------------------------------


def test_every_kind_has_a_model_an_id_prefix_and_a_label_the_graph_accepts() -> None:
    assert set(NODE_MODELS) == set(NodeKind) == set(ID_PREFIXES)
    assert len(set(ID_PREFIXES.values())) == len(NodeKind)
    for kind in NodeKind:
        assert NODE_MODELS[kind].node_kind is kind
        validate_label(kind.value)
    for edge_kind in EdgeKind:
        validate_edge_kind(edge_kind.value)
        assert EDGE_RULES[edge_kind], edge_kind
        assert edge_kind in EDGE_PROPS


def test_edge_rules_are_the_design_table() -> None:
    n = NodeKind
    assert EDGE_RULES[EdgeKind.USED] == {
        (n.RUN, n.DATASET_VERSION),
        (n.RUN, n.MODEL_VERSION),
        (n.RUN, n.ARTIFACT),
    }
    assert EDGE_RULES[EdgeKind.GENERATED_BY] == {
        (n.DATASET_VERSION, n.RUN),
        (n.MODEL_VERSION, n.RUN),
        (n.ARTIFACT, n.RUN),
    }
    assert len(EDGE_RULES[EdgeKind.DERIVED_FROM]) == 5  # 4 version pairs; a version -> its code
    assert (n.MODEL_VERSION, n.ARTIFACT) in EDGE_RULES[EdgeKind.DERIVED_FROM]
    assert EDGE_RULES[EdgeKind.VERSION_OF] == {
        (n.DATASET_VERSION, n.DATASET),
        (n.MODEL_VERSION, n.MODEL),
    }
    assert EDGE_RULES[EdgeKind.PART_OF] == {(n.RUN, n.EXPERIMENT), (n.EXPERIMENT, n.PROJECT)}
    assert EDGE_RULES[EdgeKind.ATTRIBUTED_TO] == {
        (s, n.AGENT)
        for s in (
            n.DATASET_VERSION,
            n.ARTIFACT,
            n.MODEL_VERSION,
            n.MODEL,
            n.DATASET,
            n.PROJECT,
            n.EXPERIMENT,
        )
    }
    assert frozenset(EdgeKind) - {EdgeKind.PART_OF} == LINEAGE_EDGE_KINDS


# --- conversion ------------------------------------------------------------------------------


@pytest.mark.parametrize(("sample_set", "kind"), all_samples())
def test_round_trip_through_a_graph_node(sample_set: str, kind: NodeKind) -> None:
    model = SAMPLE_SETS[sample_set]()[kind]
    node = model.to_node()
    assert node.label == kind.value
    assert node.id == model.node_id
    assert node.id.startswith(ID_PREFIXES[kind] + ":")
    assert kind_of_id(node.id) is kind
    assert "id" not in node.props
    assert all(v is not None for v in node.props.values())
    # JSON only: survives a strict encoder unchanged.
    assert json.loads(json.dumps(node.props, allow_nan=False)) == node.props
    back = from_node(node)
    assert type(back) is type(model)
    assert back == model
    assert type(model).from_node(node) == model


def test_round_trip_through_a_store(store: GraphStore) -> None:
    models = [*full_samples().values(), *minimal_samples().values()]
    assert store.upsert_nodes([m.to_node() for m in models]) == len(models)
    stored = store.get_nodes([m.node_id for m in models])
    for model, node in zip(models, stored):
        assert node is not None, model.node_id
        assert node.label == model.node_kind.value
        assert from_node(node) == model


def test_null_params_are_kept_through_a_store(store: GraphStore) -> None:
    # scikit-learn's get_params() is full of None (max_depth=None: grow until pure)
    run = Run(name="r", params={"max_depth": None, "n_estimators": 100})
    profile = {"age": {"min": None, "max": 90}}
    dsv = DatasetVersion(namespace="n", name="d", digest=D1, profile=profile)
    store.upsert_nodes([run.to_node(), dsv.to_node()])
    back = from_node(store.get_node(run.node_id))
    assert isinstance(back, Run) and back.params == {"max_depth": None, "n_estimators": 100}
    assert from_node(store.get_node(dsv.node_id)) == dsv


def test_re_sending_the_same_fact_is_idempotent_in_a_store(store: GraphStore) -> None:
    first = DatasetVersion(namespace="s3://lake", name="c", digest=D1, row_count=10)
    again = DatasetVersion(namespace="s3://lake", name="c", digest=D1.upper().replace("SHA", "sha"))
    store.upsert_nodes([first.to_node()])
    store.upsert_nodes([again.to_node()])
    assert store.count_nodes("DatasetVersion") == 1
    assert from_node(store.get_node(first.node_id)).row_count == 10


def test_stored_times_sort_in_time_order(store: GraphStore) -> None:
    # 12:00:00.5 must sort after 12:00:00 even though ISO text without fixed width would not.
    times = [
        T0 + timedelta(microseconds=500_000),
        T0,
        T0 + timedelta(seconds=1),
        T0.replace(tzinfo=timezone(timedelta(hours=2))),
    ]
    runs = [Run(name=f"r{i}", started_at=t) for i, t in enumerate(times)]
    store.upsert_nodes([r.to_node() for r in runs])
    page = store.find_nodes("Run", order_by="started_at")
    got = [from_node(n).started_at for n in page.items]
    assert got == sorted(t.astimezone(UTC) for t in times)
    later = store.find_nodes(
        "Run", where={"started_at": {"$gt": runs[1].to_node().props["started_at"]}}
    )
    assert {n.props["name"] for n in later.items} == {"r0", "r2"}


def test_from_node_refuses_foreign_or_inconsistent_nodes() -> None:
    expect_invalid("label", lambda: from_node(Node("x:1", "Widget", {})))
    dsv = full_samples()[NodeKind.DATASET_VERSION].to_node()
    expect_invalid("label", lambda: Run.from_node(dsv))
    # A deterministic id that its properties do not give back: written by something else.
    tampered = Node("dsv:other", dsv.label, dsv.props)
    expect_invalid("id", lambda: from_node(tampered))
    extra = Node(dsv.id, dsv.label, {**dsv.props, "color": "red"})
    expect_invalid("color", lambda: from_node(extra))
    run = Run(name="r").to_node()
    expect_invalid("id", lambda: from_node(Node("dsv:123", "Run", run.props)))


# --- identity --------------------------------------------------------------------------------

SAME_ID: list[tuple[Callable[[], NodeModel], Callable[[], NodeModel]]] = [
    (lambda: Project(name="churn"), lambda: Project(name=" churn ", owner="bob")),
    (
        lambda: Experiment(project="p", name="e"),
        lambda: Experiment(project="p", name="e", description="x"),
    ),
    (
        lambda: Dataset(namespace="postgres://db:5432", name="t"),
        lambda: Dataset(namespace="postgres://etl:secret@DB:5432", name="t"),
    ),
    (
        lambda: DatasetVersion(namespace="n", name="d", digest=D1),
        lambda: DatasetVersion(
            namespace="n",
            name="d",
            digest=D1.upper()[:7].lower() + D1[7:],
            uri="file:///x",
            row_count=3,
        ),
    ),
    (
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="ABCDEF1"),
        lambda: CodeCommit(repo="git@github.com:acme/churn.git", sha="abcdef1", branch="dev"),
    ),
    (
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1"),
        lambda: CodeCommit(repo="https://tok@GitHub.com/acme/churn.git/", sha="abcdef1"),
    ),
    (
        lambda: CodeCommit(repo="ssh://git@github.com/acme/churn.git", sha="abcdef1"),
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1"),
    ),
    (
        lambda: Environment(python="3.11.7", platform="linux", packages_digest=D1),
        lambda: Environment(
            python="3.11.7", platform="linux", packages_digest=D1, packages={"a": "1"}
        ),
    ),
    (
        lambda: Artifact(digest=D1, size=1),
        lambda: Artifact(digest=D1, size=1, media_type="text/plain", kind="report"),
    ),
    (lambda: Model(name="churn"), lambda: Model(name="churn", description="x")),
    (
        lambda: ModelVersion(model="churn", version=3, artifact_digest=D1),
        lambda: ModelVersion(model="churn", version=3, artifact_digest=D1, stage="Staging"),
    ),
    (lambda: Agent(name="alice"), lambda: Agent(name="alice", kind="user")),
]

DIFFERENT_ID: list[tuple[Callable[[], NodeModel], Callable[[], NodeModel]]] = [
    (lambda: Project(name="churn"), lambda: Project(name="Churn")),
    # Percent-encoding keeps (namespace, name) pairs apart that plain joining would merge.
    (lambda: Experiment(project="a/b", name="c"), lambda: Experiment(project="a", name="b/c")),
    (lambda: Experiment(project="p", name="e"), lambda: Experiment(project="q", name="e")),
    (lambda: Dataset(namespace="a/b", name="c"), lambda: Dataset(namespace="a", name="b/c")),
    (lambda: Dataset(namespace="a%2Fb", name="c"), lambda: Dataset(namespace="a/b", name="c")),
    (
        lambda: DatasetVersion(namespace="n", name="d", digest=D1),
        lambda: DatasetVersion(namespace="n", name="d", digest=D2),
    ),
    (
        lambda: DatasetVersion(namespace="n", name="d", digest=D1),
        lambda: DatasetVersion(namespace="n", name="e", digest=D1),
    ),
    (
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1"),
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef2"),
    ),
    (
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1"),
        lambda: CodeCommit(repo="https://github.com/acme/other", sha="abcdef1"),
    ),
    (
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1"),
        lambda: CodeCommit(repo="https://github.com/acme/churn", sha="abcdef1", dirty=True),
    ),
    (
        lambda: CodeCommit(repo="https://h/r", sha="abcdef1", dirty=True, diff_digest=D1),
        lambda: CodeCommit(repo="https://h/r", sha="abcdef1", dirty=True, diff_digest=D2),
    ),
    (
        lambda: Environment(python="3.11.7", platform="linux", packages_digest=D1),
        lambda: Environment(python="3.11.8", platform="linux", packages_digest=D1),
    ),
    (
        lambda: Environment(python="3.11.7", platform="linux", packages_digest=D1),
        lambda: Environment(python="3.11.7", platform="linux", packages_digest=D2),
    ),
    (lambda: Artifact(digest=D1, size=1), lambda: Artifact(digest=D2, size=1)),
    (
        lambda: ModelVersion(model="churn", version=3, artifact_digest=D1),
        lambda: ModelVersion(model="churn", version=4, artifact_digest=D1),
    ),
    (
        lambda: ModelVersion(model="churn", version=3, artifact_digest=D1),
        lambda: ModelVersion(model="churn2", version=3, artifact_digest=D1),
    ),
    (lambda: Agent(name="alice"), lambda: Agent(name="bob")),
    (lambda: Run(name="r"), lambda: Run(name="r")),
    (lambda: Deployment(environment="p"), lambda: Deployment(environment="p")),
    (lambda: Alert(rule="r"), lambda: Alert(rule="r")),
]


@pytest.mark.parametrize(("a", "b"), SAME_ID)
def test_equal_facts_get_equal_ids(a: Callable[[], NodeModel], b: Callable[[], NodeModel]) -> None:
    assert a().node_id == b().node_id


@pytest.mark.parametrize(("a", "b"), DIFFERENT_ID)
def test_different_facts_get_different_ids(
    a: Callable[[], NodeModel], b: Callable[[], NodeModel]
) -> None:
    assert a().node_id != b().node_id


def test_readable_ids() -> None:
    assert ModelVersion(model="churn", version=3, artifact_digest=D1).node_id == "mv:churn/3"
    assert Model(name="churn").node_id == "model:churn"
    assert Agent(name="alice").node_id == "agent:alice"
    assert Project(name="churn").node_id == "project:churn"
    assert Experiment(project="churn", name="sweep").node_id == "experiment:churn/sweep"
    assert Artifact(digest=D1, size=1).node_id == f"artifact:{D1}"
    assert Dataset(namespace="s3://lake", name="a/b").node_id == "dataset:s3:%2F%2Flake/a/b"
    dsv = DatasetVersion(namespace="s3://lake", name="a/b", digest=D1)
    assert dsv.node_id == f"dsv:s3:%2F%2Flake/a/b@{D1}"
    assert dsv.dataset_id == "dataset:s3:%2F%2Flake/a/b"
    # files: the URI itself; no escaped namespace can read the same
    f = DatasetVersion(namespace="file://vm", name="/data/x.csv", digest=D1)
    assert f.node_id == f"dsv:file://vm/data/x.csv@{D1}"
    odd = DatasetVersion(namespace="file:", name="/vm/data/x.csv", digest=D1)
    assert odd.node_id == f"dsv:file%3A//vm/data/x.csv@{D1}" != f.node_id
    relative = DatasetVersion(namespace="file://vm", name="data/x.csv", digest=D1)
    assert relative.node_id == f"dsv:file:%2F%2Fvm/data/x.csv@{D1}"
    assert CodeCommit(repo="git@github.com:acme/churn.git", sha="abcdef1").node_id == (
        "commit:github.com/acme/churn@abcdef1"
    )
    assert CodeCommit(repo="/home/me/proj/", sha="abcdef1").node_id == (
        "commit:file:///home/me/proj@abcdef1"
    )
    assert ModelVersion(model="churn", version=3, artifact_digest=D1).model_id == "model:churn"


def test_model_version_ids_have_one_spelling() -> None:
    assert model_version_id("churn", 3) == "mv:churn/3"
    assert model_version_id("churn", "3") == "mv:churn/3"  # a version read back from a param
    mv = ModelVersion(model="fraud-v2", version=12, artifact_digest=D1)
    assert mv.node_id == model_version_id("fraud-v2", 12)


def test_ids_too_long_for_the_graph_are_refused_naming_a_field() -> None:
    expect_invalid("name", lambda: Dataset(namespace="/" * 200, name="x" * 256))


# --- time-ordered ids ------------------------------------------------------------------------


def test_time_ordered_ids_sort_in_creation_order() -> None:
    before = datetime.now(UTC)
    ids = [new_id("run") for _ in range(20_000)]  # many share a millisecond
    after = datetime.now(UTC)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    stamps = [id_timestamp(i) for i in ids]
    assert all(s is not None for s in stamps)
    assert stamps == sorted(stamps)
    assert before - timedelta(milliseconds=1) <= stamps[0]
    assert stamps[-1] <= after
    time.sleep(0.002)
    assert new_id("run") > ids[-1]
    assert Run(name="later").id > ids[-1]


def test_uuid7_layout_and_uniqueness_across_threads() -> None:
    u = uuid7()
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    ms = u.int >> 80
    assert abs(ms - time.time() * 1000) < 5_000
    results: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(slot: int) -> None:
        results[slot].extend(uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [u for r in results for u in r]
    assert len(set(everything)) == len(everything)
    for r in results:  # each thread saw a strictly increasing sequence
        assert r == sorted(r)


def test_time_ordered_kinds_get_ids_and_keep_them() -> None:
    for model in (Run(name="r"), Deployment(environment="p"), Alert(rule="r")):
        assert id_timestamp(model.node_id) is not None
    w = MonitoringWindow(start=T0, end=T0 + timedelta(minutes=5))
    assert w.node_id.startswith("window:")
    imported = Run(id="run:9f1c2e3d4b5a69788796a5b4c3d2e1f0", name="from-mlflow")
    assert from_node(imported.to_node()).node_id == "run:9f1c2e3d4b5a69788796a5b4c3d2e1f0"
    assert id_timestamp(imported.node_id) is None
    expect_invalid("id", lambda: Deployment(id="run:" + str(uuid7()), environment="p"))
    expect_invalid("prefix", lambda: new_id("Bad Prefix"))


def test_packages_digest_ignores_order_and_name_spelling() -> None:
    a = packages_digest({"scikit-learn": "1.4.0", "numpy": "1.26.4"})
    assert a == packages_digest({"numpy": "1.26.4", "Scikit_Learn": "1.4.0"})
    assert a != packages_digest({"numpy": "1.26.4", "scikit-learn": "1.4.1"})
    Environment(python="3.11.7", platform="linux", packages_digest=a)  # a valid digest


# --- validation ------------------------------------------------------------------------------

NAN_CASES: list[tuple[str, Callable[[], object]]] = [
    ("params.lr", lambda: Run(name="r", params={"lr": math.nan})),
    ("params.lr", lambda: Run(name="r", params={"lr": math.inf})),
    ("metrics.loss", lambda: Run(name="r", metrics={"loss": -math.inf})),
    (
        "metrics.auc",
        lambda: ModelVersion(model="m", version=1, artifact_digest=D1, metrics={"auc": math.nan}),
    ),
    (
        "profile.age.mean",
        lambda: DatasetVersion(
            namespace="n", name="d", digest=D1, profile={"age": {"mean": math.nan}}
        ),
    ),
    (
        "feature_stats.age.quantiles[1]",
        lambda: MonitoringWindow(
            start=T0,
            end=T0 + timedelta(hours=1),
            feature_stats={"age": {"quantiles": [1, math.nan]}},
        ),
    ),
    (
        "metrics.p99",
        lambda: MonitoringWindow(start=T0, end=T0 + timedelta(hours=1), metrics={"p99": math.inf}),
    ),
    ("values.psi", lambda: Alert(rule="r", values={"psi": math.nan})),
    (
        "signature.inputs[0].scale",
        lambda: ModelVersion(
            model="m", version=1, artifact_digest=D1, signature={"inputs": [{"scale": math.inf}]}
        ),
    ),
]


@pytest.mark.parametrize(("field", "make"), NAN_CASES)
def test_nan_and_infinities_are_refused_naming_the_field(
    field: str, make: Callable[[], object]
) -> None:
    error = expect_invalid(field, make)
    assert field in error.message
    assert error.to_dict()["code"] == "VALIDATION"


def test_nan_is_refused_on_assignment_and_through_validate() -> None:
    run = Run(name="r")
    expect_invalid("metrics.auc", lambda: setattr(run, "metrics", {"auc": math.nan}))
    assert run.metrics == {}
    expect_invalid("status", lambda: setattr(run, "status", "DONE"))
    run.status = RunStatus.FINISHED
    assert run.to_node().props["status"] == "FINISHED"
    expect_invalid("params.a", lambda: validate(Run, {"name": "r", "params": {"a": math.nan}}))
    assert validate(Run, {"name": "r", "params": {"a": 1}}).params == {"a": 1}


@pytest.mark.parametrize(
    ("field", "make"),
    [
        ("name", lambda: Project(name="")),
        ("name", lambda: Project(name="   ")),
        ("name", lambda: Project(name="a\nb")),
        ("name", lambda: Model(name="x" * 257)),
        ("name", lambda: Model(name="churn@prod")),
        ("colour", lambda: Model(name="m", colour="red")),
        ("digest", lambda: Artifact(digest="md5:" + "0" * 32, size=1)),
        ("digest", lambda: Artifact(digest="sha256:" + "0" * 63, size=1)),
        ("size", lambda: Artifact(digest=D1, size=-1)),
        ("size", lambda: Artifact(digest=D1, size=True)),
        ("media_type", lambda: Artifact(digest=D1, size=1, media_type="json")),
        ("kind", lambda: Artifact(digest=D1, size=1, kind="movie")),
        ("sha", lambda: CodeCommit(repo="https://h/r", sha="abc12")),
        ("sha", lambda: CodeCommit(repo="https://h/r", sha="xyz1234")),
        ("diff_digest", lambda: CodeCommit(repo="https://h/r", sha="abcdef1", diff_digest=D1)),
        ("repo", lambda: CodeCommit(repo="ftp://h/r", sha="abcdef1")),
        ("repo", lambda: CodeCommit(repo="not a repo", sha="abcdef1")),
        ("python", lambda: Environment(python="three", platform="l", packages_digest=D1)),
        ("version", lambda: ModelVersion(model="m", version=0, artifact_digest=D1)),
        ("version", lambda: ModelVersion(model="m", version=True, artifact_digest=D1)),
        ("version", lambda: ModelVersion(model="m", version=2.0, artifact_digest=D1)),
        ("stage", lambda: ModelVersion(model="m", version=1, artifact_digest=D1, stage="Prod")),
        (
            "aliases[1]",
            lambda: ModelVersion(
                model="m", version=1, artifact_digest=D1, aliases=["prod", "latest"]
            ),
        ),
        (
            "aliases[0]",
            lambda: ModelVersion(model="m", version=1, artifact_digest=D1, aliases=["Has Space"]),
        ),
        ("row_count", lambda: DatasetVersion(namespace="n", name="d", digest=D1, row_count=1.5)),
        (
            "columns[1].name",
            lambda: DatasetVersion(
                namespace="n",
                name="d",
                digest=D1,
                columns=[{"name": "a", "dtype": "int"}, {"name": "a", "dtype": "str"}],
            ),
        ),
        (
            "columns[0].dtype",
            lambda: DatasetVersion(namespace="n", name="d", digest=D1, columns=[{"name": "a"}]),
        ),
        ("params.bad key!", lambda: Run(name="r", params={"bad key!": 1})),
        ("params.obj", lambda: Run(name="r", params={"obj": object()})),
        ("params.nested", lambda: Run(name="r", params={"nested": {"a": 1}})),
        ("params.big", lambda: Run(name="r", params={"big": 2**64})),
        ("metrics.flag", lambda: Run(name="r", metrics={"flag": True})),
        ("tags.team", lambda: Project(name="p", tags={"team": 3})),
        ("ended_at", lambda: Run(name="r", started_at=T0, ended_at=T0 - timedelta(seconds=1))),
        ("end", lambda: MonitoringWindow(start=T0, end=T0)),
        ("resolved_at", lambda: Alert(rule="r", fired_at=T0, resolved_at=T0 - timedelta(1))),
        ("state", lambda: Alert(rule="r", state="open")),
        ("kind", lambda: Agent(name="a", kind="robot")),
        ("status", lambda: Deployment(environment="p", status="up")),
    ],
)
def test_bad_input_is_refused_naming_the_field(field: str, make: Callable[[], object]) -> None:
    expect_invalid(field, make)


def test_every_error_is_listed_in_the_message() -> None:
    error = expect_invalid("name", lambda: Project(name="", bogus=1, tags={"t": 1}))
    assert "bogus" in error.message and "tags.t" in error.message


def test_normalisation() -> None:
    mv = ModelVersion(
        model=" churn ",
        version=2,
        artifact_digest="SHA256:" + "A" * 64,
        aliases=["prod", "champion", "prod"],
    )
    assert mv.model == "churn"
    assert mv.artifact_digest == "sha256:" + "a" * 64
    assert mv.aliases == ["champion", "prod"]
    assert Artifact(digest=D1, size=1, media_type="Application/JSON").media_type == (
        "application/json"
    )


def test_datetimes_must_be_aware_and_are_kept_in_utc() -> None:
    expect_invalid("started_at", lambda: Run(name="r", started_at=datetime(2024, 1, 1)))
    expect_invalid(
        "started_at", lambda: validate(Run, {"name": "r", "started_at": "2024-01-01T00:00:00"})
    )
    cet = timezone(timedelta(hours=1))
    run = Run(name="r", started_at=datetime(2024, 1, 1, 13, 0, tzinfo=cet))
    assert run.started_at == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert run.started_at.utcoffset() == timedelta(0)
    assert run.to_node().props["started_at"] == "2024-01-01T12:00:00.000000Z"
    assert from_node(run.to_node()) == run


def test_identity_fields_cannot_be_reassigned_but_mutable_ones_can() -> None:
    mv = ModelVersion(model="churn", version=3, artifact_digest=D1)
    expect_invalid("version", lambda: setattr(mv, "version", 4))
    expect_invalid("artifact_digest", lambda: setattr(mv, "artifact_digest", D2))
    run = Run(name="r")
    expect_invalid("id", lambda: setattr(run, "id", new_id("run")))
    dsv = DatasetVersion(namespace="n", name="d", digest=D1, columns=[{"name": "a", "dtype": "x"}])
    expect_invalid("digest", lambda: setattr(dsv, "digest", D2))
    expect_invalid("columns", lambda: setattr(dsv, "columns", []))
    mv.stage = Stage.PRODUCTION
    mv.aliases = ["prod", "champion"]
    assert mv.to_node().props["aliases"] == ["champion", "prod"]
    assert mv.node_id == "mv:churn/3"


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://user:s3cret@github.com/acme/churn.git", "https://github.com/acme/churn.git"),
        ("https://ghp_s3cret@github.com/acme/churn", "https://github.com/acme/churn"),
        ("https://gitlab.com/acme/churn?private_token=s3cret#L1", "https://gitlab.com/acme/churn"),
        ("ssh://git:s3cret@github.com:22/acme/churn", "ssh://git@github.com:22/acme/churn"),
        ("git@github.com:acme/churn.git", "git@github.com:acme/churn.git"),
        ("HTTPS://GitHub.com/acme/churn", "https://github.com/acme/churn"),
        ("https://user:s3cret@[::1]:8443/acme/churn", "https://[::1]:8443/acme/churn"),
    ],
)
def test_credentials_never_reach_a_commit(given: str, kept: str) -> None:
    commit = CodeCommit(repo=given, sha="abcdef1")
    assert commit.repo == kept
    text = json.dumps([commit.node_id, commit.to_node().props])
    assert "s3cret" not in text
    assert commit.node_id == CodeCommit(repo=kept, sha="abcdef1").node_id


def test_credentials_never_reach_uris_endpoints_or_namespaces() -> None:
    dsv = DatasetVersion(
        namespace="postgres://etl:s3cret@db.internal:5432",
        name="public.customers",
        digest=D1,
        uri="https://lake.s3.amazonaws.com/c.parquet?versionId=7&X-Amz-Signature=s3cret"
        "&X-Amz-Credential=AKIA%2Fs3cret&X-Amz-Security-Token=s3cret",
    )
    assert dsv.namespace == "postgres://db.internal:5432"
    assert dsv.uri == "https://lake.s3.amazonaws.com/c.parquet?versionId=7"
    # An Azure container is not a secret, and it is part of the dataset's identity.
    azure = Dataset(namespace="abfss://sales:s3cret@acct.dfs.core.windows.net", name="t")
    assert azure.namespace == "abfss://sales@acct.dfs.core.windows.net"
    other = Dataset(namespace="abfss://hr@acct.dfs.core.windows.net", name="t")
    assert azure.node_id != other.node_id
    dep = Deployment(environment="p", endpoint="https://svc:s3cret@churn.internal/predict")
    assert dep.endpoint == "https://churn.internal/predict"
    for model in (dsv, dep, azure):
        assert "s3cret" not in json.dumps([model.node_id, model.to_node().props])


# --- edges -----------------------------------------------------------------------------------


def edge_props_for(kind: EdgeKind) -> dict[str, Any]:
    if kind is EdgeKind.USED:
        return {"role": UsedRole.TRAIN}
    if kind is EdgeKind.ASSOCIATED_WITH:
        return {"role": "approver"}
    if kind is EdgeKind.SERVES:
        return {"valid_from": T0}
    return {}


def endpoints(
    source: NodeKind, target: NodeKind, samples: tuple[dict[NodeKind, NodeModel], ...] = ()
) -> tuple[NodeModel, NodeModel]:
    """Two nodes of the given kinds; distinct nodes when the kinds are equal."""
    first, second = samples or (full_samples(), minimal_samples())
    return first[source], (second if source is target else first)[target]


RULE_PAIRS = [
    pytest.param(kind, s, t, id=f"{kind.value}:{s.value}->{t.value}")
    for kind, pairs in EDGE_RULES.items()
    for s, t in sorted(pairs)
]


@pytest.mark.parametrize(("kind", "source", "target"), RULE_PAIRS)
def test_every_rule_pair_is_accepted(kind: EdgeKind, source: NodeKind, target: NodeKind) -> None:
    a, b = endpoints(source, target)
    props = edge_props_for(kind)
    edge = make_edge(kind, a, b, **props)
    assert (edge.kind, edge.source, edge.target) == (kind.value, a.node_id, b.node_id)
    same = link(kind.value, a.node_id, source.value, b.node_id, target.value, **props)
    assert same == edge
    assert make_edge(kind, a.to_node(), b.to_node(), **props) == edge


def test_every_rule_pair_is_stored_and_lineage_skips_grouping(store: GraphStore) -> None:
    samples = (full_samples(), minimal_samples())
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for kind, pairs in EDGE_RULES.items():
        for s, t in pairs:
            a, b = endpoints(s, t, samples)
            nodes[a.node_id] = a.to_node()
            nodes[b.node_id] = b.to_node()
            edges.append(make_edge(kind, a, b, **edge_props_for(kind)))
    store.upsert_nodes(nodes.values())
    assert store.upsert_edges(edges) == len(edges)
    for stored, sent in zip(store.get_edges([e.id for e in edges]), edges):
        assert stored is not None
        assert (stored.kind, stored.source, stored.target, stored.props) == (
            sent.kind,
            sent.source,
            sent.target,
            sent.props,
        )
    run = samples[0][NodeKind.RUN].node_id
    experiment = samples[0][NodeKind.EXPERIMENT].node_id
    everything = store.traverse([run], "UPSTREAM", max_depth=2)
    lineage = store.traverse(
        [run], "UPSTREAM", max_depth=2, edge_kinds=[k.value for k in LINEAGE_EDGE_KINDS]
    )
    assert experiment in everything
    assert experiment not in lineage
    assert samples[0][NodeKind.DATASET_VERSION].node_id in lineage


def test_every_pair_outside_the_table_is_refused() -> None:
    ids = {k: m.node_id for k, m in full_samples().items()}
    other = {k: m.node_id for k, m in minimal_samples().items()}
    refused = 0
    for kind in EdgeKind:
        for s in NodeKind:
            for t in NodeKind:
                if (s, t) in EDGE_RULES[kind]:
                    continue
                target_id = other[t] if s is t else ids[t]
                with pytest.raises(ValidationError) as info:
                    link(kind, ids[s], s, target_id, t, **edge_props_for(kind))
                assert info.value.field in ("source_kind", "target_kind")
                refused += 1
    assert refused == len(EdgeKind) * len(NodeKind) ** 2 - sum(map(len, EDGE_RULES.values()))


@pytest.mark.parametrize(
    ("kind", "source", "target", "field"),
    [
        (EdgeKind.USED, NodeKind.DATASET_VERSION, NodeKind.RUN, "source_kind"),
        (EdgeKind.GENERATED_BY, NodeKind.RUN, NodeKind.MODEL_VERSION, "source_kind"),
        (EdgeKind.VERSION_OF, NodeKind.DATASET_VERSION, NodeKind.MODEL, "target_kind"),
        (EdgeKind.SERVES, NodeKind.DEPLOYMENT, NodeKind.DATASET_VERSION, "target_kind"),
        (EdgeKind.PART_OF, NodeKind.RUN, NodeKind.PROJECT, "target_kind"),
        (EdgeKind.ATTRIBUTED_TO, NodeKind.RUN, NodeKind.AGENT, "source_kind"),
        (EdgeKind.ABOUT, NodeKind.ALERT, NodeKind.RUN, "target_kind"),
    ],
)
def test_wrong_pairs_are_refused_naming_the_end(
    kind: EdgeKind, source: NodeKind, target: NodeKind, field: str
) -> None:
    a, b = endpoints(source, target)
    error = expect_invalid(field, lambda: make_edge(kind, a, b, **edge_props_for(kind)))
    assert kind.value in error.message


def test_roles_discriminate_edges_and_resending_is_idempotent(store: GraphStore) -> None:
    run, dsv = Run(name="r"), DatasetVersion(namespace="n", name="d", digest=D1)
    store.upsert_nodes([run.to_node(), dsv.to_node()])
    train = make_edge(EdgeKind.USED, run, dsv, role=UsedRole.TRAIN, name="train.csv")
    test = make_edge(EdgeKind.USED, run, dsv, role="test")
    assert train.id != test.id
    assert make_edge(EdgeKind.USED, run, dsv, role="train").id == train.id
    store.upsert_edges([train, test])
    store.upsert_edges([make_edge(EdgeKind.USED, run, dsv, role="train")])
    adjacent = store.neighbors([run.node_id], "UPSTREAM")[run.node_id]
    assert sorted(a.edge.props["role"] for a in adjacent) == ["test", "train"]
    alice = Agent(name="alice")
    launcher = make_edge(EdgeKind.ASSOCIATED_WITH, run, alice, role=AssociationRole.LAUNCHER)
    approver = make_edge(EdgeKind.ASSOCIATED_WITH, run, alice, role="approver")
    assert launcher.id != approver.id
    # Serving the same version twice (a rollback) is two intervals, two edges.
    dep = Deployment(environment="p")
    mv = ModelVersion(model="m", version=1, artifact_digest=D1)
    first = make_edge(EdgeKind.SERVES, dep, mv, valid_from=T0, valid_to=T0 + timedelta(days=1))
    closed = make_edge(EdgeKind.SERVES, dep, mv, valid_from=T0)
    again = make_edge(EdgeKind.SERVES, dep, mv, valid_from=T0 + timedelta(days=2))
    assert first.id == closed.id != again.id
    assert first.props == {
        "valid_from": "2024-03-03T12:00:00.000000Z",
        "valid_to": "2024-03-04T12:00:00.000000Z",
    }


def test_edge_properties_are_checked_naming_the_field() -> None:
    s = full_samples()
    run, dsv, mv = s[NodeKind.RUN], s[NodeKind.DATASET_VERSION], s[NodeKind.MODEL_VERSION]
    dep, agent, commit = s[NodeKind.DEPLOYMENT], s[NodeKind.AGENT], s[NodeKind.CODE_COMMIT]
    expect_invalid("role", lambda: make_edge(EdgeKind.USED, run, dsv))
    expect_invalid("role", lambda: make_edge(EdgeKind.USED, run, dsv, role="training"))
    expect_invalid("role", lambda: make_edge(EdgeKind.ASSOCIATED_WITH, run, agent, role="train"))
    expect_invalid("role", lambda: make_edge(EdgeKind.RAN_CODE, run, commit, role="train"))
    expect_invalid("valid_from", lambda: make_edge(EdgeKind.SERVES, dep, mv))
    expect_invalid(
        "valid_from",
        lambda: make_edge(EdgeKind.SERVES, dep, mv, valid_from=datetime(2024, 1, 1)),
    )
    expect_invalid(
        "valid_to",
        lambda: make_edge(EdgeKind.SERVES, dep, mv, valid_from=T0, valid_to=T0),
    )
    expect_invalid(
        "event_time",
        lambda: make_edge(EdgeKind.RAN_CODE, run, commit, event_time=datetime(2024, 1, 1)),
    )
    edge = make_edge(EdgeKind.RAN_CODE, run, commit, event_time=T0, asserted_by="agent:alice")
    assert (edge.event_time, edge.asserted_by, edge.props) == (T0, "agent:alice", {})


def test_edge_ends_must_be_what_they_claim() -> None:
    run = Run(name="r")
    art = Artifact(digest=D1, size=1)
    expect_invalid(
        "target_id",
        lambda: link(
            EdgeKind.USED,
            run.node_id,
            NodeKind.RUN,
            art.node_id,
            NodeKind.DATASET_VERSION,
            role="input",
        ),
    )
    expect_invalid(
        "source_id",
        lambda: link("USED", "r1", "Run", art.node_id, "Artifact", role="input"),
    )
    expect_invalid("target_id", lambda: make_edge(EdgeKind.CHILD_OF, run, run))
    expect_invalid("kind", lambda: make_edge("LIKES", run, art))
    expect_invalid("source_kind", lambda: link("USED", run.node_id, "Job", art.node_id, "Artifact"))
    expect_invalid("source", lambda: make_edge(EdgeKind.USED, "run:1", art))


def test_a_model_records_its_task() -> None:
    model = Model(name="churn", task="binary-classification", owner="ann")
    back = from_node(model.to_node())
    assert isinstance(back, Model) and back.task == "binary-classification"
