"""A small, realistic lineage graph for first contact (``lineagehub example``).

Raw customer data is cleaned by a transform run; three training runs with different
hyper-parameters use the clean data (same commit, same environment) and each produce a model
version; an evaluation run tests the best one; a deployment serves version 2 and is watched
by a monitoring window that raised an alert. Ids are fixed, so writing it twice changes
nothing.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta, timezone

from lineagehub.graph import ConflictError, GraphStore, SeriesPoint
from lineagehub.vocabulary import (
    Agent,
    AgentKind,
    Alert,
    AssociationRole,
    CodeCommit,
    Column,
    Dataset,
    DatasetVersion,
    Deployment,
    DeploymentStatus,
    EdgeKind,
    Environment,
    Experiment,
    Model,
    ModelVersion,
    MonitoringWindow,
    Project,
    Run,
    RunKind,
    RunStatus,
    Severity,
    UsedRole,
    make_edge,
    packages_digest,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def build_example(store: GraphStore) -> dict[str, str]:
    """Write the example graph (in one transaction) and return the ids worth tracing."""
    ann = Agent(name="ann", kind=AgentKind.USER)
    project = Project(name="churn", owner="ann", description="Customer churn prediction")
    experiment = Experiment(project="churn", name="baseline", owner="ann")
    columns = [Column(name="tenure", dtype="int64"), Column(name="churned", dtype="bool")]
    raw_ds = Dataset(namespace="warehouse", name="customers_raw")
    clean_ds = Dataset(namespace="warehouse", name="customers_clean")
    raw = DatasetVersion(
        namespace="warehouse", name="customers_raw", digest=_digest("raw-2026-03-01"),
        uri="s3://lake/customers/raw/2026-03-01.parquet", row_count=10_000, columns=columns,
    )  # fmt: skip
    clean = DatasetVersion(
        namespace="warehouse", name="customers_clean", digest=_digest("clean-2026-03-01"),
        uri="s3://lake/customers/clean/2026-03-01.parquet", row_count=9_412, columns=columns,
    )  # fmt: skip
    commit = CodeCommit(
        repo="https://github.com/acme/churn", sha="3f9a1c2" + "0" * 33, branch="main"
    )
    pkgs = {"scikit-learn": "1.7.2", "numpy": "2.4.6", "pandas": "2.3.3"}
    env = Environment(
        python="3.11.7", platform="Linux-x86_64", packages_digest=packages_digest(pkgs),
        packages=pkgs,
    )  # fmt: skip
    prep = Run(
        id="run:example-prep", name="clean-customers", kind=RunKind.TRANSFORM,
        status=RunStatus.FINISHED, started_at=T0, ended_at=T0 + timedelta(minutes=4),
        user="ann",
    )  # fmt: skip
    model = Model(name="churn", owner="ann", description="Gradient-boosted churn classifier")
    nodes: list = [ann, project, experiment, raw_ds, clean_ds, raw, clean, commit, env, prep]
    edges = [
        make_edge(EdgeKind.PART_OF, experiment, project),
        make_edge(EdgeKind.VERSION_OF, raw, raw_ds),
        make_edge(EdgeKind.VERSION_OF, clean, clean_ds),
        make_edge(EdgeKind.USED, prep, raw, role=UsedRole.INPUT),
        make_edge(EdgeKind.GENERATED_BY, clean, prep),
        make_edge(EdgeKind.DERIVED_FROM, clean, raw),
        make_edge(EdgeKind.RAN_CODE, prep, commit),
        make_edge(EdgeKind.ASSOCIATED_WITH, prep, ann, role=AssociationRole.LAUNCHER),
        make_edge(EdgeKind.ATTRIBUTED_TO, model, ann),
    ]
    nodes.append(model)
    points: list[SeriesPoint] = []
    versions = []
    for i, (depth, lr, auc) in enumerate([(3, 0.1, 0.842), (5, 0.05, 0.871), (8, 0.01, 0.866)]):
        start = T0 + timedelta(hours=1 + i)
        run = Run(
            id=f"run:example-train-{i + 1}", name=f"gbm-depth{depth}", kind=RunKind.TRAIN,
            status=RunStatus.FINISHED, started_at=start, ended_at=start + timedelta(minutes=20),
            params={"max_depth": depth, "learning_rate": lr, "n_estimators": 200},
            metrics={"auc": auc, "loss": round(1 - auc, 3)}, user="ann", host="gpu-01",
            entry_point="train.py",
        )  # fmt: skip
        version = ModelVersion(
            model="churn", version=i + 1, artifact_digest=_digest(f"model-{i + 1}"),
            flavor="sklearn", metrics={"auc": auc},
        )  # fmt: skip
        versions.append(version)
        nodes += [run, version]
        edges += [
            make_edge(EdgeKind.PART_OF, run, experiment),
            make_edge(EdgeKind.USED, run, clean, role=UsedRole.TRAIN),
            make_edge(EdgeKind.RAN_CODE, run, commit),
            make_edge(EdgeKind.RAN_IN, run, env),
            make_edge(EdgeKind.ASSOCIATED_WITH, run, ann, role=AssociationRole.LAUNCHER),
            make_edge(EdgeKind.GENERATED_BY, version, run),
            make_edge(EdgeKind.VERSION_OF, version, model),
        ]
        points += [
            SeriesPoint(run.node_id, "loss", step, 0.7 * math.exp(-step / (20 + 10 * i)) + 0.13)
            for step in range(100)
        ]
    evaluation = Run(
        id="run:example-eval-2", name="evaluate-v2", kind=RunKind.EVALUATE,
        status=RunStatus.FINISHED, started_at=T0 + timedelta(hours=5),
        ended_at=T0 + timedelta(hours=5, minutes=3), metrics={"auc": 0.869}, user="ann",
    )  # fmt: skip
    deployment = Deployment(
        id="deployment:example-prod", name="churn-prod", environment="production",
        endpoint="https://models.acme.internal/churn", status=DeploymentStatus.ACTIVE,
    )  # fmt: skip
    window = MonitoringWindow(
        id="window:example-week-1", start=T0 + timedelta(days=7), end=T0 + timedelta(days=14),
        sample_count=52_000, metrics={"auc": 0.81, "psi_tenure": 0.27},
        deployment="deployment:example-prod", instance="example", model_version="mv:churn/2",
    )  # fmt: skip
    alert = Alert(
        id="alert:example-drift", rule="psi_tenure > 0.2", severity=Severity.WARNING,
        values={"psi_tenure": 0.27}, fired_at=T0 + timedelta(days=14),
        message="Feature drift on tenure",
    )  # fmt: skip
    nodes += [evaluation, deployment, window, alert]
    edges += [
        make_edge(EdgeKind.USED, evaluation, versions[1], role=UsedRole.INPUT),
        make_edge(EdgeKind.USED, evaluation, clean, role=UsedRole.TEST),
        make_edge(EdgeKind.SERVES, deployment, versions[1], valid_from=T0 + timedelta(days=1)),
        make_edge(EdgeKind.OBSERVED, window, deployment),
        make_edge(EdgeKind.ABOUT, alert, deployment),
    ]
    written = [n.to_node() for n in nodes]
    with store.transaction():
        # fixed ids (model churn, project churn): never written over records of the user's
        # own that happen to have them (writing again over the example's is idempotent)
        held = store.get_nodes([n.id for n in written])
        others = [
            n.id
            for n, old in zip(written, held)
            if old is not None
            and (old.label != n.label or any(old.props.get(k) != v for k, v in n.props.items()))
        ]
        if others:
            raise ConflictError(
                f"this store holds records the example would write over ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}), not the example's: give the example a "
                "store of its own (lineagehub example --store sqlite:///example.db)"
            )
        store.upsert_nodes(written)
        store.upsert_edges(edges)
        store.append_series(points)
    return {
        "raw": raw.node_id,
        "clean": clean.node_id,
        "model_version": versions[1].node_id,
        "deployment": deployment.node_id,
        "alert": alert.node_id,
    }
