"""The SDK's backend contract (:mod:`lineagehub.ingest.seam`), one script over both transports.

The same script calls every operation of :class:`~lineagehub.ingest.seam.Backend` on the
in-process backend and on the HTTP backend (a real uvicorn server over a store of the same
kind), and the two transcripts must be equal: the same answers, of the same types, with the
same values (times and the hub-side run ids of registry changes aside). A test also checks that
the script reaches every operation the contract names, so an operation added to the contract
and not to the script fails here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import fresh_store_uri
from http_server import HubServer
from pydantic import BaseModel

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import BackendError, Node, NotFoundError, PolicyViolation, ValidationError
from lineagehub.ingest import seam
from lineagehub.ingest.batch import Batch
from lineagehub.ingest.datasets import fingerprint
from lineagehub.ingest.remote import RemoteBackend
from lineagehub.interfaces.server import create_app
from lineagehub.services.registry import Policy
from lineagehub.services.tracking import Metric, RunStart
from lineagehub.vocabulary import Model, ModelVersion, Run, RunStatus, monitoring_window_id

POLICIES = {("churn", "Production"): Policy(approvals=1)}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONTRACT = {
    name: {m for m in vars(proto) if not m.startswith("_") and callable(getattr(proto, m))}
    for name, proto in (
        ("tracking", seam.Tracking),
        ("registry", seam.Registry),
        ("queries", seam.Queries),
        ("monitoring", seam.Monitoring),
    )
}


class Recording:
    """A part of a backend that records which of its operations were called."""

    def __init__(self, inner: Any, called: set[str]) -> None:
        self._inner, self._called = inner, called

    def __getattr__(self, name: str) -> Any:
        self._called.add(name)
        return getattr(self._inner, name)


@contextlib.contextmanager
def backend(transport: str, store_backend: str, folder: Path) -> Iterator[seam.Backend]:
    folder.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        store = open_store(fresh_store_uri(store_backend, folder))
        stack.callback(store.close)
        artifacts = open_artifact_store(str(folder / "artifacts"))
        if transport == "in-process":
            yield seam.LocalBackend(
                store, artifacts, actor="ann", stale_after=timedelta(hours=1), policies=POLICIES
            )
            return
        app = create_app(
            Settings(user="ann"), store=store, artifacts=artifacts, registry_policies=POLICIES
        )
        remote = RemoteBackend(stack.enter_context(HubServer(app)).url)
        stack.callback(remote.close)
        yield remote


TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normal(value: Any) -> Any:
    """A value with times and random ids (deployments, the runs recording registry changes)
    made comparable; types kept by name."""
    if isinstance(value, BaseModel):
        return (
            type(value).__name__,
            normal(value.model_dump(exclude={"created_at", "updated_at"})),
        )
    if isinstance(value, Node):
        return ("Node", normal(value.id), value.label, normal(value.props))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            {f.name: normal(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    if isinstance(value, dict):  # keys may hold random ids: as a sorted list of pairs
        pairs = [(normal(k), normal(v)) for k, v in value.items() if not k.endswith("_at")]
        return sorted(pairs, key=repr)
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str):
        return TIME.sub("<time>", UUID.sub("<uuid>", value))
    return value


def script(hub: seam.Backend, data: Path) -> list[Any]:
    """Every operation of the contract, with answers and errors."""
    t, r, q, m = hub.tracking, hub.registry, hub.queries, hub.monitoring
    out: list[Any] = []

    def log(*values: Any) -> None:
        out.append(normal(values))

    for n in (1, 2):
        run = Run(
            id=f"run:c{n}", name=f"train-{n}", project="churn", params={"lr": 0.1 * n}, user="ann"
        )
        log(t.start_run(run, RunStart()))
        points = [Metric("loss", 1.0 / n, 0, T0), Metric("loss", math.nan, 1, T0)]
        t.log_batch(run.id, params={"depth": n}, metrics=points, tags={"team": "a"})
        log(t.metric_history(run.id, "loss"), t.metric_history(run.id, "loss", max_points=2))
        log(t.log_dataset(run.id, fingerprint(data), name="customers", namespace="warehouse"))
        if n == 2:  # fine-tuned from the first run's version
            log(t.log_input_model(run.id, "churn@1"), t.log_input_model(run.id, "mv:churn/1"))
            with pytest.raises(NotFoundError) as absent:
                t.log_input_model(run.id, "churn@9", role="test")
            log(absent.value.ids)
        info = hub.artifacts.put_bytes(b"weights %d" % n)
        log(t.log_artifact(run.id, info, name="notes.txt", media_type="text/plain"))
        log(t.artifacts_of(run.id))
        log(t.log_model(run.id, info, name="churn", flavor="pickle", primary_metric="loss"))
        log(t.end_run(run.id, RunStatus.FINISHED, metrics=[Metric("auc", 0.8 + n / 100, 0, T0)]))
    weights = hub.artifacts.put_bytes(b"weights 1")  # stored already: the same content
    log(t.register_model_version("churn", weights, run_id="run:c1", flavor="onnx"))
    log(t.register_model_version("distilled", weights, description="no run", primary_metric="f1"))
    with pytest.raises(NotFoundError) as no_run:
        t.register_model_version("churn", weights, run_id="run:nope")
    log(no_run.value.ids)
    log(t.get_run("run:c1"), t.search_runs({"project": "churn"}, "-name", None, 1))
    log(t.mark_stale_runs())
    for call in (lambda: t.get_run("run:nope"), lambda: t.search_runs(limit=0)):
        with pytest.raises((NotFoundError, ValidationError)) as e:
            call()
        log(type(e.value).__name__, getattr(e.value, "field", None), getattr(e.value, "ids", None))

    log(r.set_alias("churn/1", "champion", "first"), r.set_alias("churn/2", "challenger"))
    log(r.remove_alias("churn", "challenger", "done"))
    log(r.request_promotion("churn/1", "Staging", "looks good"))
    pending = r.request_promotion("churn/1", "Production", "ship it")
    log(pending)
    assert isinstance(pending, seam.PromotionPending)
    log(r.pending_promotions(), r.pending_promotions("churn", "Staging"))
    log(r.pending_promotions(model="churn", stage="Production"))
    log(r.approve(pending.request_id, "ok"))
    second = r.request_promotion("churn/2", "Production", "try")
    assert isinstance(second, seam.PromotionPending)
    log(r.reject(second.request_id, "not yet"))
    log(r.promote("churn/2", "Staging", "direct", archive_previous=False))
    staged = r.deploy("churn/2", "qa", require_stage="Staging")
    with pytest.raises(PolicyViolation) as refused:  # it would strand the qa deployment
        r.rollback("churn", "Staging", "back")
    log(str(refused.value).replace(staged.id, "<qa>"), refused.value.rules)
    log(r.rollback("churn", "Staging", "back", on_deployments="retire"))
    deployment = r.deploy("churn@champion", "prod", endpoint="http://svc", tags={"region": "eu"})
    log(deployment, r.retire_deployment(deployment.id, "replaced"))
    log(r.history("churn"), r.history("churn", alias="champion"))
    log(r.holder_at("churn", "champion", datetime.now(timezone.utc)))
    log(r.holder_at("churn", "champion", T0 - timedelta(days=1)))
    card = r.set_model_card("churn/1", {"risk_tier": "high", "owners": ["ann"]}, "first")
    log(card.fields, card.revision, r.model_card("churn/1").fields)

    # a batch: the writes above, together, in one transaction (one request over HTTP)
    with Batch(hub, user="ann") as batch:
        run_b = batch.start_run("batched", project="churn", params={"lr": 0.3})
        batch.log(run_b, metrics={"auc": 0.9}, step=3, tags={"via": "batch"})
        raw = batch.log_dataset_ref(run_b, "s3://lake/raw.parquet", "sha256:" + "3" * 64)
        out_ds = batch.log_dataset_ref(
            run_b, "s3://lake/out.parquet", "sha256:" + "4" * 64, output=True, derived_from=[raw]
        )
        batch.log_input_model(run_b, "churn@champion")
        ended = batch.end_run(run_b)
        version = batch.register_model_version("churn", digest=weights.digest, run=run_b)
        alias = batch.set_alias(version, "batched", "from a batch")
        staged_b = batch.promote(version, "Staging", "batch")
        served = batch.deploy(version, "batch-env")
    log(ended.result(), raw.result(), out_ds.result(), version.result(), alias.result())
    log(staged_b.result(), served.result().environment)
    with pytest.raises(ValidationError), Batch(hub, user="ann") as batch:
        batch.set_alias(batch.register_model_version("churn", digest=weights.digest), "no!")
    log(q.find(ModelVersion, {"model": "churn"}, "-version", None, 1))  # none of it written

    log(q.find(Model), q.find(ModelVersion, {"model": "churn"}, "-version", None, 1))
    log(q.model_version("model:churn@champion"))
    with pytest.raises(ValidationError) as bad:
        q.model_version("run:c1")
    log(bad.value.field)
    log(q.lineage(["model:churn@champion"], "BOTH", 3, 3, max_nodes=50))
    log(
        q.lineage(
            ["run:c1"], node_kinds=["DatasetVersion", "Run"], as_of=datetime.now(timezone.utc)
        )
    )
    log(q.compare_runs(["run:c1", "run:c2"]))
    log(q.compare_model_versions("churn/1", "churn/2"))
    report = q.compliance_report("churn/1")
    log(
        report["identity"], report["card"]["risk_tier"], [c["missing"] for c in report["checklist"]]
    )
    log([(row.version_id, row.risk_tier) for row in q.model_inventory()])

    serving = r.deploy("churn@champion", "serving")
    reference = m.reference("churn@serving")
    log(reference, m.reference(serving.id, dataset="dataset:warehouse/customers"))
    sketch = {
        "features": {
            "age": {
                "kind": "numeric",
                "edges": reference.features["age"]["edges"],
                "counts": [0] * (len(reference.features["age"]["edges"]) + 1),
                "missing": 1,
                "count": 1,
            }
        },
        "labels": {"task": "regression", "count": 2, "abs_err": 1.0, "sq_err": 0.5},
    }
    window = m.report_window(serving.id, T0, T0 + timedelta(hours=1), sketch, instance="pod")
    expected = monitoring_window_id(serving.id, "pod", T0, 3600)
    log(window.id == expected, window.model_dump(exclude={"id"}))
    found = m.window(expected)
    log(found is not None and found.id == expected, m.window("window:absent"))
    log(m.list_alerts(), m.list_alerts("churn@serving", "open", 10))
    summary = m.summary("churn@serving", T0, T0 + timedelta(hours=1))
    log(
        [w.id == expected for w in summary.windows],
        dataclasses.replace(summary, windows=[]),
        m.summary(serving.id, T0 + timedelta(hours=1)),
    )
    for call in (
        lambda: m.reference("no-such-deployment"),
        lambda: m.report_window(serving.id, T0, T0, sketch),
        lambda: m.summary("no-such-deployment"),
        lambda: m.acknowledge_alert("alert:absent", "on it"),
        lambda: m.silence_alert("alert:absent", T0),
        lambda: m.list_alerts(state="sleeping"),
        lambda: m.report_window(serving.id, T0, T0 + timedelta(hours=1), {"features": 1}),
    ):
        with pytest.raises((NotFoundError, ValidationError)) as e:
            call()
        log(type(e.value).__name__, getattr(e.value, "field", None), getattr(e.value, "ids", None))
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text("id,age\n1,30\n2,41\n")
    return path


def test_both_transports_answer_the_same(store_backend: str, tmp_path: Path, data: Path) -> None:
    transcripts = {}
    for transport in ("in-process", "http"):
        with backend(transport, store_backend, tmp_path / transport) as hub:
            transcripts[transport] = script(hub, data)
    local, remote = transcripts["in-process"], transcripts["http"]
    assert len(local) == len(remote)
    for i, (a, b) in enumerate(zip(local, remote)):
        assert a == b, f"step {i} differs"


def test_the_script_calls_every_operation_of_the_contract(tmp_path: Path, data: Path) -> None:
    called: dict[str, set[str]] = {part: set() for part in CONTRACT}
    with backend("in-process", "sqlite", tmp_path / "hub") as hub:

        class Recorded:
            tracking = Recording(hub.tracking, called["tracking"])
            registry = Recording(hub.registry, called["registry"])
            queries = Recording(hub.queries, called["queries"])
            monitoring = Recording(hub.monitoring, called["monitoring"])
            artifacts = hub.artifacts
            batch = hub.batch

        script(Recorded(), data)  # type: ignore[arg-type]
    assert called == CONTRACT


@pytest.mark.parametrize("part", sorted(CONTRACT))
def test_both_transports_take_the_contract_s_arguments(part: str) -> None:
    """mypy checks this statically; here for the record, at run time: every parameter of the
    contract is accepted by both transports under its name (``**options`` takes keywords)."""
    protocol = {
        "tracking": seam.Tracking,
        "registry": seam.Registry,
        "queries": seam.Queries,
        "monitoring": seam.Monitoring,
    }
    from lineagehub.ingest import remote
    from lineagehub.services.monitoring import MonitoringService

    local = {
        "tracking": seam.TrackingService,
        "registry": seam._ActingRegistry,
        "queries": seam._LocalQueries,
        "monitoring": MonitoringService,
    }
    over_http = {
        "tracking": remote.RemoteTracking,
        "registry": remote.RemoteRegistry,
        "queries": remote.RemoteQueries,
        "monitoring": remote.RemoteMonitoring,
    }
    for name in CONTRACT[part]:
        wanted = inspect.signature(getattr(protocol[part], name)).parameters.values()
        for impl in (local[part], over_http[part]):
            got = inspect.signature(getattr(impl, name)).parameters
            kwargs = any(p.kind is p.VAR_KEYWORD for p in got.values())
            positional = [p for p in got.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
            for i, param in enumerate(wanted):
                if param.kind is param.POSITIONAL_OR_KEYWORD:
                    assert i < len(positional) or kwargs, f"{impl.__name__}.{name}: {param}"
                else:
                    assert param.name in got or kwargs, f"{impl.__name__}.{name}: {param}"


@pytest.mark.parametrize(
    "answer",
    [{"id": "run:x"}, {"id": "run:x", "kind": "MODEL", "properties": {"name": "m"}}, [1, 2]],
)
def test_an_answer_that_breaks_the_schema_is_a_backend_error(answer: object) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"run": answer}})

    remote = RemoteBackend("http://hub.test", transport=httpx.MockTransport(reply))
    with pytest.raises(BackendError, match="the hub"):
        remote.tracking.get_run("run:x")
    remote.close()
