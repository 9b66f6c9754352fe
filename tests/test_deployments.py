"""Deployment records: what is served where, since when, by whom; through the service and the
GraphQL API."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from http_server import HubServer
from test_registry import Clock, add_version

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import Direction, GraphStore, open_store
from lineagehub.graph.errors import ConflictError, NotFoundError, PolicyViolation, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.services.registry import RegistryService
from lineagehub.vocabulary import DeploymentStatus, Stage


@pytest.fixture
def store(backend_uri: str) -> GraphStore:
    s = open_store(backend_uri)
    yield s  # type: ignore[misc]
    s.close()


def serves(store: GraphStore, deployment_id: str) -> list[tuple[str, str | None]]:
    """(version id, valid_to) for every SERVES interval of a deployment, oldest first."""
    adj = store.neighbors([deployment_id], Direction.UPSTREAM, ["SERVES"])[deployment_id]
    rows = sorted(adj, key=lambda a: a.edge.props["valid_from"])
    return [(a.node.id, a.edge.props.get("valid_to")) for a in rows]


def test_deploy_records_a_serving_interval_a_run_and_an_audit_entry(store: GraphStore) -> None:
    add_version(store, 1)
    registry = RegistryService(store, clock=Clock())
    d = registry.deploy("churn/1", "production", "ops", endpoint="https://m.acme/churn")
    assert d.id.startswith("deployment:")
    assert (d.name, d.environment, d.status) == ("churn", "production", DeploymentStatus.ACTIVE)
    assert serves(store, d.id) == [("mv:churn/1", None)]
    deploy_runs = store.find_nodes("Run", {"kind": "deploy"}).items
    assert len(deploy_runs) == 1
    used = store.neighbors([deploy_runs[0].id], Direction.UPSTREAM, ["USED"])
    assert [a.node.id for a in used[deploy_runs[0].id]] == ["mv:churn/1"]
    actions = [e.action for e in store.iter_audit()]
    assert actions[-1] == "deployment.record"
    assert store.verify_audit().ok


def test_deploying_again_ends_the_previous_interval(store: GraphStore) -> None:
    add_version(store, 1)
    add_version(store, 2)
    registry = RegistryService(store, clock=Clock())
    first = registry.deploy("churn/1", "production", "ops", endpoint="https://m.acme/churn")
    second = registry.deploy("churn/2", "production", "ops")
    assert second.id == first.id  # same name and environment: the same deployment
    assert second.endpoint == "https://m.acme/churn"  # kept when not given
    rows = serves(store, first.id)
    assert [r[0] for r in rows] == ["mv:churn/1", "mv:churn/2"]
    assert rows[0][1] is not None and rows[1][1] is None
    # another environment is another deployment
    staging = registry.deploy("churn/2", "staging", "ops")
    assert staging.id != first.id
    assert store.count_nodes("Deployment") == 2


def test_require_stage_refuses_and_writes_nothing(store: GraphStore) -> None:
    add_version(store, 1)
    registry = RegistryService(store, clock=Clock())
    before = store.audit_head()
    with pytest.raises(PolicyViolation) as e:
        registry.deploy("churn/1", "production", "ops", require_stage=Stage.PRODUCTION)
    assert "Production" in e.value.message
    assert store.count_nodes("Deployment") == 0
    assert store.audit_head() == before
    registry.promote("churn/1", "Production", "ops", "go")
    d = registry.deploy("churn/1", "production", "ops", require_stage="Production")
    assert serves(store, d.id) == [("mv:churn/1", None)]


def test_retire_ends_serving_and_unknowns_are_errors(store: GraphStore) -> None:
    add_version(store, 1)
    registry = RegistryService(store, clock=Clock())
    d = registry.deploy("churn/1", "production", "ops")
    retired = registry.retire_deployment(d.id, "ops", "replaced by the v2 service")
    assert retired.status is DeploymentStatus.RETIRED
    assert serves(store, d.id)[0][1] is not None
    with pytest.raises(ConflictError):
        registry.retire_deployment(d.id, "ops")
    with pytest.raises(NotFoundError):
        registry.deploy("churn/9", "production", "ops")
    with pytest.raises(NotFoundError):
        registry.retire_deployment("deployment:0190a0a0-0000-7000-8000-000000000000", "ops")


def test_a_deployment_is_not_recorded_retired(store: GraphStore) -> None:
    # Recorded with status retired, it served on (its interval open), and retiring it to
    # end that interval was a conflict ("already retired").
    add_version(store, 1)
    registry = RegistryService(store, clock=Clock())
    head = store.audit_head()
    for status in ("retired", DeploymentStatus.RETIRED):
        with pytest.raises(ValidationError) as caught:
            registry.deploy("churn/1", "production", "ops", status=status)
        assert caught.value.field == "status"
    assert store.audit_head() == head
    d = registry.deploy("churn/1", "production", "ops", status="failed")
    assert registry.retire_deployment(d.id, "ops").status is DeploymentStatus.RETIRED
    assert serves(store, d.id)[0][1] is not None


def test_a_deploy_that_waited_for_another_ends_its_interval_after_it_began(
    store: GraphStore,
) -> None:
    """Two deploys under one name at once: the one that commits second read its time before
    it waited for the first (74 of 240 such deploys on Neo4j, 8 on SQLite, failed with
    "valid_to must be after valid_from"). Its time is read in its transaction now."""
    add_version(store, 1)
    add_version(store, 2)
    base, ticks, lock = (
        datetime(2026, 3, 1, tzinfo=timezone.utc),
        iter(range(1, 100)),
        threading.Lock(),
    )
    reading, other_done = threading.Event(), threading.Event()

    def clock() -> datetime:
        with lock:
            now = base + timedelta(seconds=next(ticks))
        if threading.current_thread().name == "late":
            reading.set()
            other_done.wait(1)  # the other deploy commits meanwhile, if it can
        return now

    registry = RegistryService(store, clock=clock)
    failed: list[Exception] = []

    def late() -> None:
        try:
            registry.deploy("churn/2", "production", "ops")
        except Exception as e:  # reported below
            failed.append(e)

    thread = threading.Thread(target=late, name="late")
    thread.start()
    assert reading.wait(30)
    deployment = registry.deploy("churn/1", "production", "ops")
    other_done.set()
    thread.join(30)
    assert failed == []
    adj = store.neighbors([deployment.id], Direction.UPSTREAM, ["SERVES"])[deployment.id]
    intervals = sorted((a.edge.props["valid_from"], a.edge.props.get("valid_to")) for a in adj)
    assert len(intervals) == 2 and intervals[-1][1] is None
    assert intervals[0][0] < intervals[0][1] == intervals[1][0]


def test_record_and_retire_over_graphql(tmp_path: Path, store: GraphStore) -> None:
    add_version(store, 1)
    settings = Settings(user="ops", data_dir=tmp_path)
    app = create_app(
        settings, store=store, artifacts=open_artifact_store((tmp_path / "a").as_uri())
    )
    record = """mutation($ref: String!) {
      recordDeployment(ref: $ref, environment: "production", endpoint: "https://m.acme/x",
                       tags: {team: "risk"}) {
        id name environment endpoint status serves { node { id } }
      }
    }"""
    with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        body = http.post("/graphql", json={"query": record, "variables": {"ref": "churn/1"}})
        d = body.json()["data"]["recordDeployment"]
        assert (d["name"], d["environment"], d["status"]) == ("churn", "production", "active")
        assert [s["node"]["id"] for s in d["serves"]] == ["mv:churn/1"]
        gated = http.post(
            "/graphql",
            json={
                "query": 'mutation { recordDeployment(ref: "churn/1", environment: "prod", '
                'requireStage: "Production") { id } }'
            },
        ).json()
        assert gated["errors"][0]["extensions"]["code"] == "POLICY"
        retire = http.post(
            "/graphql",
            json={
                "query": "mutation($id: ID!) { retireDeployment(id: $id) { status } }",
                "variables": {"id": d["id"]},
            },
        ).json()
        assert retire["data"]["retireDeployment"]["status"] == "retired"
    assert [e.actor for e in store.iter_audit()][-2:] == ["ops", "ops"]
