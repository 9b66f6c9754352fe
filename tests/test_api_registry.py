"""The model registry in the GraphQL API, over real HTTP.

Two servers share one store: one configured as ``alice`` (the requester), one as ``bob`` (an
approver), since the server records its configured user as the actor of every change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.services.registry import Policy

POLICIES = {
    ("churn", "Production"): Policy(approvals=1, separation_of_duties=True),
    ("churn", "Staging"): Policy(thresholds=[("auc", ">=", 0.86)]),
}

RESULT = """
  __typename
  ... on ModelPromoted { version { id stage } fromStage stage archived { id } runId approvals }
  ... on PromotionPending { requestId version { id } stage approvals approvalsNeeded }
  ... on PolicyViolation { version { id } stage rules { rule message expected actual } }
"""


@dataclass
class Hub:
    store: GraphStore
    alice: httpx.Client
    bob: httpx.Client


@pytest.fixture
def hub(backend_uri: str, tmp_path: Path) -> Iterator[Hub]:
    store = open_store(backend_uri)
    build_example(store)
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())

    def app(user: str) -> Any:
        settings = Settings(user=user, data_dir=tmp_path)
        return create_app(settings, store=store, artifacts=artifacts, registry_policies=POLICIES)

    with (
        HubServer(app("alice")) as a,
        HubServer(app("bob")) as b,
        httpx.Client(base_url=a.url, timeout=30) as alice,
        httpx.Client(base_url=b.url, timeout=30) as bob,
    ):
        yield Hub(store, alice, bob)
    store.close()


def gql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    body = gql(http, query, **variables)
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def promote(http: httpx.Client, ref: str, to: str) -> dict[str, Any]:
    query = f"""mutation($ref: String!, $to: String!) {{
      promoteModelVersion(ref: $ref, to: $to, reason: "test") {{ {RESULT} }}
    }}"""
    return data(http, query, ref=ref, to=to)["promoteModelVersion"]


def request(http: httpx.Client, ref: str, to: str) -> dict[str, Any]:
    query = f"""mutation($ref: String!, $to: String!) {{
      requestPromotion(ref: $ref, to: $to, reason: "ready") {{ {RESULT} }}
    }}"""
    return data(http, query, ref=ref, to=to)["requestPromotion"]


def approve(http: httpx.Client, request_id: str) -> dict[str, Any]:
    query = f"""mutation($id: ID!) {{
      approvePromotion(requestId: $id, comment: "lgtm") {{ {RESULT} }}
    }}"""
    return data(http, query, id=request_id)["approvePromotion"]


def audit(http: httpx.Client) -> list[dict[str, Any]]:
    query = "{ auditTrail(first: 500) { entries { actor action target } } }"
    entries: list[dict[str, Any]] = data(http, query)["auditTrail"]["entries"]
    return entries


def verified(http: httpx.Client) -> bool:
    return bool(data(http, "{ verifyAuditLog { ok } }")["verifyAuditLog"]["ok"])


def test_a_promotion_needing_approval_is_pending_then_approved_by_someone_else(hub: Hub) -> None:
    pending = request(hub.alice, "churn/2", "Production")
    assert pending["__typename"] == "PromotionPending"
    assert pending["version"]["id"] == "mv:churn/2" and pending["stage"] == "Production"
    assert pending["approvals"] == [] and pending["approvalsNeeded"] == 1

    refused = approve(hub.alice, pending["requestId"])
    assert refused["__typename"] == "PolicyViolation"
    assert [r["rule"] for r in refused["rules"]] == ["separation_of_duties.requester"]
    assert refused["rules"][0]["actual"] == "alice"

    done = approve(hub.bob, pending["requestId"])
    assert done["__typename"] == "ModelPromoted"
    assert done["version"] == {"id": "mv:churn/2", "stage": "Production"}
    assert done["fromStage"] == "None" and done["stage"] == "Production"
    assert done["approvals"] == ["bob"] and done["archived"] == []
    assert done["runId"] == pending["requestId"]

    # The next one to Production archives it.
    second = request(hub.alice, "churn/3", "Production")
    promoted = approve(hub.bob, second["requestId"])
    assert promoted["__typename"] == "ModelPromoted"
    assert promoted["archived"] == [{"id": "mv:churn/2"}]

    actions = [(e["actor"], e["action"]) for e in audit(hub.alice)]
    assert ("alice", "promotion.requested") in actions
    assert ("bob", "promotion.approved") in actions
    assert ("alice", "stage.promotion") in actions
    assert ("alice", "stage.archive") in actions
    assert ("alice", "promotion.approved") not in actions  # a refusal writes nothing
    assert verified(hub.bob)


def test_direct_promotion_lists_every_broken_rule(hub: Hub) -> None:
    missed = promote(hub.alice, "churn/1", "Staging")
    assert missed["__typename"] == "PolicyViolation"
    assert missed["version"]["id"] == "mv:churn/1" and missed["stage"] == "Staging"
    assert missed["rules"] == [
        {
            "rule": "metric.auc",
            "message": "metric 'auc' is 0.842, needs >= 0.86",
            "expected": ">= 0.86",
            "actual": 0.842,
        }
    ]
    needs_approval = promote(hub.alice, "churn/2", "Production")
    assert needs_approval["__typename"] == "PolicyViolation"
    assert [r["rule"] for r in needs_approval["rules"]] == ["approvals"]

    done = promote(hub.alice, "churn/2", "Staging")
    assert done["__typename"] == "ModelPromoted"
    assert done["version"] == {"id": "mv:churn/2", "stage": "Staging"}
    assert [e["action"] for e in audit(hub.alice)] == [
        "promotion.refused:Staging:metric.auc",
        "promotion.refused:Production:approvals",
        "stage.promotion",
    ]
    assert verified(hub.alice)


def test_reject_a_request(hub: Hub) -> None:
    pending = request(hub.alice, "churn/2", "Production")
    query = """mutation($id: ID!) {
      rejectPromotion(requestId: $id, reason: "not yet") {
        requestId version { id stage } stage by reason
      }
    }"""
    rejected = data(hub.bob, query, id=pending["requestId"])["rejectPromotion"]
    assert rejected == {
        "requestId": pending["requestId"],
        "version": {"id": "mv:churn/2", "stage": "None"},
        "stage": "Production",
        "by": "bob",
        "reason": "not yet",
    }
    again = gql(hub.bob, query, id=pending["requestId"])
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert ("bob", "promotion.rejected") in [(e["actor"], e["action"]) for e in audit(hub.bob)]


def test_aliases_history_holder_at_and_rollback(hub: Hub) -> None:
    set_alias = """mutation($ref: String!) {
      setAlias(ref: $ref, alias: "champion", reason: "best auc") { id aliases }
    }"""
    assert data(hub.alice, set_alias, ref="churn/2")["setAlias"] == {
        "id": "mv:churn/2",
        "aliases": ["champion"],
    }
    between = data(hub.alice, '{ now: modelHistory(model: "churn") { at } }')["now"][0]["at"]
    data(hub.bob, set_alias, ref="churn/3")

    history = data(
        hub.alice,
        """{ modelHistory(model: "churn", alias: "champion") {
          change version { id } alias fromVersion toVersion fromStage toStage actor reason
          runId approvals
        } }""",
    )["modelHistory"]
    assert [
        (h["change"], h["version"]["id"], h["fromVersion"], h["toVersion"], h["actor"])
        for h in history
    ] == [
        ("alias", "mv:churn/2", None, 2, "alice"),
        ("alias", "mv:churn/3", 2, 3, "bob"),
    ]
    assert history[0]["reason"] == "best auc" and history[0]["fromStage"] is None

    holder = """query($at: DateTime!, $slot: String!) {
      holderAt(model: "churn", aliasOrStage: $slot, time: $at) { id version }
    }"""
    assert data(hub.alice, holder, at=between, slot="champion")["holderAt"] == {
        "id": "mv:churn/2",
        "version": 2,
    }
    early = "2000-01-01T00:00:00+00:00"
    assert data(hub.alice, holder, at=early, slot="champion")["holderAt"] is None
    assert data(hub.alice, holder, at=early, slot="Production")["holderAt"] is None

    rollback = """mutation($slot: String!) {
      rollback(model: "churn", stageOrAlias: $slot, reason: "bad canary") {
        runIds holders { id aliases }
      }
    }"""
    back = data(hub.alice, rollback, slot="champion")["rollback"]
    assert back["holders"] == [{"id": "mv:churn/2", "aliases": ["champion"]}]
    assert len(back["runIds"]) == 1

    # Stages roll back too.
    promote(hub.alice, "churn/2", "Staging")
    promote(hub.alice, "churn/3", "Staging")
    back = data(hub.alice, rollback, slot="Staging")["rollback"]
    assert back["holders"] == [{"id": "mv:churn/2", "aliases": ["champion"]}]
    stages = data(
        hub.alice,
        """{ modelHistory(model: "churn", stage: "Staging") {
          version { id } fromStage toStage actor reason
        } }""",
    )["modelHistory"]
    assert [(s["version"]["id"], s["fromStage"], s["toStage"]) for s in stages] == [
        ("mv:churn/2", "None", "Staging"),
        ("mv:churn/3", "None", "Staging"),
        ("mv:churn/3", "Staging", "None"),
    ]
    assert stages[-1]["reason"] == "bad canary"

    removed = 'mutation { removeAlias(model: "churn", alias: "champion", reason: "retired") }'
    assert data(hub.bob, removed)["removeAlias"] is True
    assert data(hub.alice, holder, at="2999-01-01T00:00:00+00:00", slot="champion") == {
        "holderAt": None
    }

    actions = [(e["actor"], e["action"], e["target"]) for e in audit(hub.alice)]
    assert actions == [
        ("alice", "alias.set", "mv:churn/2"),
        ("bob", "alias.set", "mv:churn/3"),
        ("alice", "alias.set", "mv:churn/2"),
        ("alice", "stage.promotion", "mv:churn/2"),
        ("alice", "stage.promotion", "mv:churn/3"),
        ("alice", "stage.rollback", "mv:churn/3"),
        ("bob", "alias.removed", "mv:churn/2"),
    ]
    assert verified(hub.alice)


def test_unknown_references_are_not_found(hub: Hub) -> None:
    for http, query in [
        (hub.alice, 'mutation { requestPromotion(ref: "churn/9", to: "Production", reason: "x") '
         "{ __typename } }"),
        (hub.alice, 'mutation { promoteModelVersion(ref: "nope/1", to: "Staging", reason: "x") '
         "{ __typename } }"),
        (hub.alice, 'mutation { setAlias(ref: "churn@nobody", alias: "x") { id } }'),
        (hub.alice, 'mutation { removeAlias(model: "churn", alias: "nobody") }'),
        (hub.bob, 'mutation { approvePromotion(requestId: "run:nope") { __typename } }'),
        (hub.bob, '{ modelHistory(model: "nope") { runId } }'),
        (hub.bob, '{ holderAt(model: "nope", aliasOrStage: "Production", '
         'time: "2026-01-01T00:00:00Z") { id } }'),
    ]:  # fmt: skip
        body = gql(http, query)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (query, body)
    assert audit(hub.alice) == []
    bad_stage = gql(
        hub.alice,
        'mutation { promoteModelVersion(ref: "churn/1", to: "Prod", reason: "x") { __typename } }',
    )
    assert bad_stage["errors"][0]["extensions"]["code"] == "VALIDATION"
