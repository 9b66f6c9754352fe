"""Registry gaps found in use: pending promotion requests, refused promotions in the audit log
and as events, and deployments kept consistent with stages (rollback and archive)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer
from test_registry import Clock, add_version, stage_of

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import Direction, GraphStore, open_store
from lineagehub.graph.audit import payload_digest
from lineagehub.graph.errors import NotFoundError, PolicyViolation, ValidationError
from lineagehub.interfaces.cli import main
from lineagehub.interfaces.server import create_app
from lineagehub.services.registry import (
    ModelPromoted,
    PendingPromotion,
    Policy,
    PromotionPending,
    PromotionRefused,
    RegistryService,
    load_policies,
)
from lineagehub.vocabulary import Deployment, DeploymentStatus, EdgeKind, Stage


class Events:
    """The events a registry hands its sink once its changes commit."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        self.seen.append((event, payload))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [p for e, p in self.seen if e == name]


def make(store: GraphStore, events: Events | None = None, **policies: Policy) -> RegistryService:
    keyed = {tuple(k.split("__")) if "__" in k else k: p for k, p in policies.items()}
    return RegistryService(store, policies=keyed, clock=Clock(), on_event=events)


def snapshot(store: GraphStore) -> list[tuple[str, str, dict[str, Any]]]:
    """Every node and edge, to show that nothing but the audit log changed."""
    nodes = []
    for label in ("Model", "ModelVersion", "Run", "Agent", "Deployment"):
        nodes += [(n.label, n.id, n.props) for n in store.iter_nodes(label, None, "id")]
    ids = [i for _, i, _ in nodes]
    out = store.neighbors(ids, Direction.UPSTREAM)
    edges = sorted((a.edge.kind, f"{i}->{a.node.id}", a.edge.props) for i in ids for a in out[i])
    return sorted(nodes, key=lambda x: x[1]) + edges  # type: ignore[operator]


def serving(store: GraphStore, deployment_id: str) -> list[str]:
    """The versions a deployment serves now (open SERVES intervals)."""
    adjacent = store.neighbors([deployment_id], Direction.UPSTREAM, [EdgeKind.SERVES.value])
    return sorted(
        a.node.id for a in adjacent[deployment_id] if a.edge.props.get("valid_to") is None
    )


def deployment(store: GraphStore, deployment_id: str) -> Deployment:
    return Deployment.from_node(store.get_node(deployment_id))


# --- pending promotions -----------------------------------------------------------------------


def test_pending_promotions_list_what_waits(store: GraphStore) -> None:
    for v in (1, 2, 3):
        add_version(store, v)
    add_version(store, 1, model="fraud")
    reg = make(store, churn__Production=Policy(approvals=2), fraud=Policy(approvals=1))
    assert reg.pending_promotions() == []
    first = reg.request_promotion("churn/1", "Production", "ann", "ship it")
    second = reg.request_promotion("churn/2", "Production", "ann", "or this")
    other = reg.request_promotion("fraud/1", "Staging", "bob", "try")
    assert isinstance(first, PromotionPending) and isinstance(second, PromotionPending)
    assert isinstance(other, PromotionPending)
    assert isinstance(reg.promote("churn/3", "Staging", "ann", "no approvals"), ModelPromoted)
    reg.approve(first.request_id, "carol", "ok")

    listed = reg.pending_promotions()
    assert [p.request_id for p in listed] == [
        first.request_id,
        second.request_id,
        other.request_id,
    ]
    p = listed[0]
    assert isinstance(p, PendingPromotion)
    assert (p.version_id, p.to_stage, p.requested_by, p.reason) == (
        "mv:churn/1",
        "Production",
        "ann",
        "ship it",
    )
    assert (p.approvals, p.needed) == (("carol",), 2)
    assert p.requested_at.tzinfo is not None
    assert [x.request_id for x in reg.pending_promotions("fraud")] == [other.request_id]
    assert [x.request_id for x in reg.pending_promotions(stage="staging")] == [other.request_id]
    assert reg.pending_promotions("churn", "Staging") == []
    # a policy made stricter since the request: the larger number of approvals is needed
    reg.policies[("fraud", "Staging")] = Policy(approvals=3)
    assert reg.pending_promotions("fraud")[0].needed == 3

    reg.approve(first.request_id, "dave", "ok")  # the last approval: promoted, not pending
    reg.reject(second.request_id, "carol", "no")
    assert [x.request_id for x in reg.pending_promotions()] == [other.request_id]
    with pytest.raises(NotFoundError):
        reg.pending_promotions("nope")
    with pytest.raises(ValidationError) as bad:
        reg.pending_promotions(stage="Live")
    assert bad.value.field == "stage"


# --- refused promotions leave a trace ---------------------------------------------------------


def test_a_refused_promotion_is_audited_and_sent_and_nothing_else_written(
    store: GraphStore,
) -> None:
    add_version(store, 1, accuracy=0.7)
    events = Events()
    reg = make(store, events, churn=Policy(thresholds=[("accuracy", ">=", 0.9), ("f1", ">", 0.5)]))
    before, head = snapshot(store), store.audit_head()
    refused = reg.promote("churn/1", "Production", "ann", "please")
    assert isinstance(refused, PromotionRefused)
    assert snapshot(store) == before  # nothing but the audit entry
    (entry,) = store.read_audit(head.seq if head else 0)
    assert entry.actor == "ann" and entry.target == "mv:churn/1"
    assert entry.action == "promotion.refused:Production:metric.accuracy,metric.f1"
    (sent,) = events.named("promotion.refused")
    assert sent["requested_by"] == "ann" and sent["to_stage"] == "Production"
    assert sent["version_id"] == "mv:churn/1" and sent["from_stage"] == "None"
    assert [r["rule"] for r in sent["rules"]] == ["metric.accuracy", "metric.f1"]
    assert sent["rules"][0]["actual"] == 0.7 and sent["reason"] == "please"
    # the event's data is the entry's payload: its receiver can check it against the log
    assert payload_digest(sent) == entry.payload_digest
    assert [e for e, _ in events.seen] == ["promotion.refused"]
    assert store.verify_audit().ok

    # request_promotion refusals too
    assert isinstance(reg.request_promotion("churn/1", "Staging", "bob", None), PromotionRefused)
    assert store.audit_head().actor == "bob"  # type: ignore[union-attr]
    assert store.audit_head().action.startswith("promotion.refused:Staging:")  # type: ignore[union-attr]


def test_a_refused_approval_names_the_approver_and_the_requester(store: GraphStore) -> None:
    add_version(store, 1, author="trainer")
    events = Events()
    policy = Policy(approvals=1, separation_of_duties=True, approvers=frozenset({"ann", "carol"}))
    reg = make(store, events, churn=policy)
    req = reg.request_promotion("churn/1", "Production", "ann", "ship")
    assert isinstance(req, PromotionPending)
    before = snapshot(store)
    refused = reg.approve(req.request_id, "ann", "self")
    assert isinstance(refused, PromotionRefused)
    assert snapshot(store) == before
    entry = store.audit_head()
    assert entry is not None and entry.actor == "ann" and entry.target == "mv:churn/1"
    assert entry.action == "approval.refused:Production:separation_of_duties.requester"
    (sent,) = events.named("promotion.refused")
    assert sent["refused"] == "approval" and sent["request_id"] == req.request_id
    assert sent["requested_by"] == "ann" and sent["actor"] == "ann"
    assert payload_digest(sent) == entry.payload_digest
    # still pending: the refusal changed nothing
    assert [p.request_id for p in reg.pending_promotions()] == [req.request_id]


# --- deployments kept consistent --------------------------------------------------------------


def _served_production(store: GraphStore, events: Events | None = None) -> tuple[Any, str]:
    """churn/1 in Production, deployed to prod requiring Production; churn/2 in Staging."""
    add_version(store, 1)
    add_version(store, 2)
    reg = make(store, events)
    assert isinstance(reg.promote("churn/1", "Production", "ann", "first"), ModelPromoted)
    assert isinstance(reg.promote("churn/2", "Staging", "ann", "next"), ModelPromoted)
    d = reg.deploy("churn/1", "prod", "ann", require_stage="Production", endpoint="http://svc")
    assert d.require_stage is Stage.PRODUCTION
    assert deployment(store, d.id).require_stage is Stage.PRODUCTION
    return reg, d.id


def test_an_archive_that_would_strand_a_deployment_is_refused(store: GraphStore) -> None:
    events = Events()
    reg, dep = _served_production(store, events)
    before = snapshot(store)
    refused = reg.promote("churn/2", "Production", "ann", "better")
    assert isinstance(refused, PromotionRefused)
    assert refused.rule_ids == ["deployment.stage"]
    assert dep in refused.rules[0].message and "mv:churn/1" in refused.rules[0].message
    assert "--deployments" in refused.rules[0].message  # what a CLI user types, too
    assert (refused.rules[0].expected, refused.rules[0].actual) == ("Production", "Archived")
    assert snapshot(store) == before
    assert store.audit_head().action == "promotion.refused:Production:deployment.stage"  # type: ignore[union-attr]
    # not archiving the previous version breaks nothing
    kept = reg.promote("churn/2", "Production", "ann", "both", archive_previous=False)
    assert isinstance(kept, ModelPromoted) and kept.archived == () and kept.deployments == ()
    assert serving(store, dep) == ["mv:churn/1"]


def test_an_archive_can_repoint_or_retire_the_deployment(store: GraphStore) -> None:
    events = Events()
    reg, dep = _served_production(store, events)
    done = reg.promote("churn/2", "Production", "ann", "better", on_deployments="repoint")
    assert isinstance(done, ModelPromoted)
    assert done.archived == ("mv:churn/1",) and done.deployments == (dep,)
    assert serving(store, dep) == ["mv:churn/2"]
    d = deployment(store, dep)
    assert d.status is DeploymentStatus.ACTIVE and d.endpoint == "http://svc"
    assert d.require_stage is Stage.PRODUCTION
    assert events.named("promotion.done")[-1]["deployments"] == [dep]
    assert events.named("deployment.recorded")[-1]["version_id"] == "mv:churn/2"

    add_version(store, 3)
    done = reg.promote("churn/3", "Production", "ann", "best", on_deployments="retire")
    assert isinstance(done, ModelPromoted) and done.deployments == (dep,)
    assert deployment(store, dep).status is DeploymentStatus.RETIRED
    assert serving(store, dep) == []
    assert any(e.action == "deployment.retire" and e.target == dep for e in store.iter_audit())
    # a retired deployment no longer holds anything back
    assert reg.rollback("churn", "Production", "ann", "oops")
    with pytest.raises(ValidationError) as bad:
        reg.promote("churn/3", "Staging", "ann", "x", on_deployments="ignore")
    assert bad.value.field == "on_deployments"


def test_a_deploy_without_a_requirement_drops_the_one_before(store: GraphStore) -> None:
    # A deploy under the same name states its own requirement: none is none. The stored
    # deployment kept the first deploy's Production (while the deploy's answer and its audit
    # entry said none), and refused moving the version it now served out of Production.
    add_version(store, 1)
    add_version(store, 2)
    reg = make(store)
    reg.promote("churn/1", "Production", "ann", "live")
    dep = reg.deploy("churn/1", "prod", "ann", require_stage="Production").id
    again = reg.deploy("churn/2", "prod", "ann", reason="a canary: no stage needed")
    assert again.id == dep and again.require_stage is None
    assert deployment(store, dep).require_stage is None
    assert isinstance(reg.promote("churn/2", "Staging", "ann", "tested"), ModelPromoted)
    assert isinstance(reg.promote("churn/1", "Archived", "ann", "gone"), ModelPromoted)
    assert serving(store, dep) == ["mv:churn/2"]
    # and stated again, it is kept again
    reg.deploy("churn/2", "prod", "ann", require_stage="Staging")
    assert deployment(store, dep).require_stage is Stage.STAGING
    assert store.verify_audit().ok


def test_a_governed_promotion_applies_the_choice_at_its_last_approval(
    store: GraphStore,
) -> None:
    add_version(store, 1)
    add_version(store, 2)
    reg = make(store)
    reg.promote("churn/1", "Production", "ann", "first")
    dep = reg.deploy("churn/1", "prod", "ann", require_stage="Production").id
    reg.policies[("churn", "Production")] = Policy(approvals=1)
    refusing = reg.request_promotion("churn/2", "Production", "ann", "go")
    assert isinstance(refusing, PromotionPending)
    refused = reg.approve(refusing.request_id, "carol", "ok")
    assert isinstance(refused, PromotionRefused) and refused.rule_ids == ["deployment.stage"]
    assert [p.request_id for p in reg.pending_promotions()] == [refusing.request_id]
    reg.reject(refusing.request_id, "carol", "ask again, saying what to do with prod")
    retiring = reg.request_promotion("churn/2", "Production", "ann", "go", on_deployments="retire")
    assert isinstance(retiring, PromotionPending)
    done = reg.approve(retiring.request_id, "carol", "ok")
    assert isinstance(done, ModelPromoted) and done.deployments == (dep,)
    assert deployment(store, dep).status is DeploymentStatus.RETIRED
    assert stage_of(store, "churn", 1) is Stage.ARCHIVED


def test_a_rollback_that_would_strand_a_deployment_is_refused_or_settled(
    store: GraphStore,
) -> None:
    reg, dep = _served_production(store)
    reg.promote("churn/2", "Production", "ann", "better", on_deployments="repoint")
    assert serving(store, dep) == ["mv:churn/2"]
    before, head = snapshot(store), store.audit_head()
    with pytest.raises(PolicyViolation) as refused:
        reg.rollback("churn", "Production", "ann", "bad model")
    assert dep in str(refused.value) and refused.value.code == "POLICY"
    assert [r.rule for r in refused.value.rules] == ["deployment.stage"]
    assert snapshot(store) == before and store.audit_head() == head  # nothing written

    done = reg.roll_back("churn", "Production", "ann", "bad model", on_deployments="repoint")
    assert done.deployments == (dep,) and len(done.run_ids) == 2
    assert stage_of(store, "churn", 1) is Stage.PRODUCTION
    assert stage_of(store, "churn", 2) is Stage.STAGING
    assert serving(store, dep) == ["mv:churn/1"]
    assert deployment(store, dep).status is DeploymentStatus.ACTIVE


def test_a_rollback_can_retire_and_cannot_repoint_to_nothing(store: GraphStore) -> None:
    add_version(store, 1)
    reg = make(store)
    reg.promote("churn/1", "Staging", "ann", "try")
    dep = reg.deploy("churn/1", "qa", "ann", require_stage="Staging").id
    unrelated = reg.deploy("churn/1", "dev", "ann").id  # requires no stage: never in the way
    before = snapshot(store)
    with pytest.raises(PolicyViolation) as nowhere:
        reg.rollback("churn", "Staging", "ann", "x", on_deployments="repoint")
    assert "no version of 'churn' is in Staging" in str(nowhere.value)
    assert snapshot(store) == before  # the rollback's moves were undone too
    runs = reg.rollback("churn", "Staging", "ann", "x", on_deployments="retire")
    assert len(runs) == 1 and stage_of(store, "churn", 1) is Stage.NONE
    assert deployment(store, dep).status is DeploymentStatus.RETIRED
    assert deployment(store, unrelated).status is DeploymentStatus.ACTIVE
    assert serving(store, unrelated) == ["mv:churn/1"]


# --- the same through the GraphQL API, over HTTP ----------------------------------------------

PROMOTED = """
  __typename
  ... on ModelPromoted { version { id stage } archived { id } deployments { id status } }
  ... on PromotionPending { requestId }
  ... on PolicyViolation { version { id } stage rules { rule message expected actual } }
"""


@pytest.fixture
def api(backend_uri: str, tmp_path: Path) -> Iterator[tuple[GraphStore, httpx.Client]]:
    store = open_store(backend_uri)
    for v in (1, 2, 3):
        add_version(store, v)
    policies = {
        ("churn", "Staging"): Policy(approvals=1),
        ("churn", "Archived"): Policy(thresholds=[("accuracy", ">=", 0.99)]),
    }
    app = create_app(
        Settings(user="alice", data_dir=tmp_path),
        store=store,
        artifacts=open_artifact_store((tmp_path / "artifacts").as_uri()),
        registry_policies=policies,
    )
    with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield store, http
    store.close()


def gql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ok(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    body = gql(http, query, **variables)
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def test_pending_promotions_query(api: tuple[GraphStore, httpx.Client]) -> None:
    _, http = api
    ask = """mutation($ref: String!) { requestPromotion(ref: $ref, to: "Staging", reason: "qa") {
      ... on PromotionPending { requestId } } }"""
    first = ok(http, ask, ref="churn/1")["requestPromotion"]["requestId"]
    second = ok(http, ask, ref="churn/2")["requestPromotion"]["requestId"]
    query = """query($model: String, $stage: String) {
      pendingPromotions(model: $model, stage: $stage) {
        requestId version { id } stage requestedBy reason approvals approvalsNeeded requestedAt
      } }"""
    listed = ok(http, query)["pendingPromotions"]
    assert [p["requestId"] for p in listed] == [first, second]
    assert listed[0] == {
        "requestId": first,
        "version": {"id": "mv:churn/1"},
        "stage": "Staging",
        "requestedBy": "alice",
        "reason": "qa",
        "approvals": [],
        "approvalsNeeded": 1,
        "requestedAt": listed[0]["requestedAt"],
    }
    assert ok(http, query, model="churn", stage="Production")["pendingPromotions"] == []
    assert len(ok(http, query, stage="Staging")["pendingPromotions"]) == 2
    bad = gql(http, query, stage="Live")
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"
    missing = gql(http, query, model="nope")
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_refused_promotions_are_in_the_audit_trail(api: tuple[GraphStore, httpx.Client]) -> None:
    _, http = api
    promote = f"""mutation {{ promoteModelVersion(ref: "churn/1", to: "Archived", reason: "old")
      {{ {PROMOTED} }} }}"""
    refused = ok(http, promote)["promoteModelVersion"]
    assert refused["__typename"] == "PolicyViolation"
    trail = ok(http, '{ auditTrail(ref: "churn/1") { entries { actor action target } } }')
    assert trail["auditTrail"]["entries"] == [
        {
            "actor": "alice",
            "action": "promotion.refused:Archived:metric.accuracy",
            "target": "mv:churn/1",
        }
    ]


def test_archive_and_rollback_keep_deployments_consistent_over_the_api(
    api: tuple[GraphStore, httpx.Client],
) -> None:
    store, http = api
    promote = f"""mutation($ref: String!, $on: String!) {{
      promoteModelVersion(ref: $ref, to: "Production", reason: "r", onDeployments: $on)
      {{ {PROMOTED} }} }}"""
    assert ok(http, promote, ref="churn/1", on="refuse")["promoteModelVersion"]["__typename"] == (
        "ModelPromoted"
    )
    deploy = """mutation { recordDeployment(ref: "churn/1", environment: "prod",
      requireStage: "Production") { id requireStage } }"""
    dep = ok(http, deploy)["recordDeployment"]
    assert dep["requireStage"] == "Production"

    refused = ok(http, promote, ref="churn/2", on="refuse")["promoteModelVersion"]
    assert refused["__typename"] == "PolicyViolation"
    assert [r["rule"] for r in refused["rules"]] == ["deployment.stage"]
    assert dep["id"] in refused["rules"][0]["message"]
    repointed = ok(http, promote, ref="churn/2", on="repoint")["promoteModelVersion"]
    assert repointed["__typename"] == "ModelPromoted"
    assert repointed["archived"] == [{"id": "mv:churn/1"}]
    assert repointed["deployments"] == [{"id": dep["id"], "status": "active"}]
    assert serving(store, dep["id"]) == ["mv:churn/2"]

    rollback = """mutation($on: String!) { rollback(model: "churn", stageOrAlias: "Production",
      reason: "bad", onDeployments: $on) {
        runIds holders { id } deployments { id status serves { node { id } } } } }"""
    body = gql(http, rollback, on="refuse")
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "POLICY" and dep["id"] in error["message"]
    (rule,) = error["extensions"]["rules"]  # every rule broken, as the service raised it
    assert rule["rule"] == "deployment.stage" and dep["id"] in rule["message"]
    assert (rule["expected"], rule["actual"]) == ("Production", "None")
    assert stage_of(store, "churn", 2) is Stage.PRODUCTION
    done = ok(http, rollback, on="repoint")["rollback"]
    assert done["holders"] == [{"id": "mv:churn/1"}]
    assert [d["id"] for d in done["deployments"]] == [dep["id"]]
    assert serving(store, dep["id"]) == ["mv:churn/1"]

    assert ok(http, promote, ref="churn/3", on="retire")["promoteModelVersion"]["deployments"] == [
        {"id": dep["id"], "status": "retired"}
    ]
    bad = gql(http, promote, ref="churn/2", on="maybe")
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"
    assert bad["errors"][0]["extensions"]["field"] == "on_deployments"


# --- the CLI: approvals list and rollback, on a store or a server -----------------------------


@pytest.fixture(params=["store", "url"])
def where(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    for name in ("LINEAGEHUB_URL", "LINEAGEHUB_POLICIES", "LINEAGEHUB_STORE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINEAGEHUB_USER", "cli-user")
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    policies = tmp_path / "policies.json"
    policies.write_text('{"policy": [{"model": "churn", "stage": "Staging", "approvals": 1}]}')
    monkeypatch.setenv("LINEAGEHUB_POLICIES", str(policies))
    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    store = open_store(uri)
    for v in (1, 2):
        add_version(store, v)
    reg = make(store)
    reg.promote("churn/1", "Production", "ann", "first")
    reg.promote("churn/2", "Production", "ann", "second")  # churn/1 archived
    reg.deploy("churn/2", "prod", "ann", require_stage="Production")
    if request.param == "store":
        store.close()
        yield ["--store", uri]
        return
    app = create_app(
        Settings(user="srv", data_dir=tmp_path),
        store=store,
        artifacts=open_artifact_store((tmp_path / "artifacts").as_uri()),
        registry_policies=load_policies(policies),
    )
    with HubServer(app) as server:
        yield ["--url", server.url]
    store.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_approvals_list(capsys: pytest.CaptureFixture[str], where: list[str]) -> None:
    code, out, _ = cli(capsys, "approvals", "list", *where, "--json")
    assert code == 0 and json.loads(out) == {"pending": []}
    code, out, _ = cli(capsys, "promote", "churn/1", "--stage", "Staging", "--reason", "qa",
                       *where, "--json")  # fmt: skip
    request_id = json.loads(out)["request_id"]
    code, out, _ = cli(capsys, "approvals", "list", "--model", "churn", *where, "--json")
    (pending,) = json.loads(out)["pending"]
    assert pending["request_id"] == request_id and pending["version"] == "mv:churn/1"
    assert pending["to_stage"] == "Staging" and pending["reason"] == "qa"
    assert pending["approvals"] == [] and pending["needed"] == 1
    assert pending["requested_by"] in ("cli-user", "srv")  # the server records its own actor
    code, out, _ = cli(capsys, "approvals", "list", "--stage", "Production", *where, "--json")
    assert json.loads(out) == {"pending": []}
    code, out, err = cli(capsys, "approvals", "list", *where)
    assert code == 0 and err == ""
    assert request_id in out and "0/1" in out and "1 pending request" in out
    code, _, err = cli(capsys, "approvals", "list", "--stage", "Live", *where)
    assert code == 2 and "VALIDATION" in err


def test_cli_rollback(capsys: pytest.CaptureFixture[str], where: list[str]) -> None:
    code, out, err = cli(capsys, "rollback", "churn", "Production", "--reason", "bad", *where)
    assert code == 8 and out == ""  # refused: it would strand the prod deployment
    assert "POLICY" in err and "deployment:" in err
    code, out, _ = cli(capsys, "rollback", "churn", "Production", "--reason", "bad",
                       "--deployments", "repoint", *where, "--json")  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["outcome"] == "rolled back" and len(data["run_ids"]) == 2
    shown = json.loads(cli(capsys, "models", "show", "churn/1", *where, "--json")[1])
    assert shown["version"]["stage"] == "Production"
    code, out, _ = cli(capsys, "rollback", "churn", "champion", "--reason", "x", *where)
    assert code == 3  # an alias without history
    code, out, _ = cli(capsys, "promote", "churn/2", "--alias", "champion", *where)
    code, out, err = cli(capsys, "rollback", "churn", "champion", "--reason", "undo", *where)
    assert code == 0 and "rolled back churn champion" in out and err == ""
