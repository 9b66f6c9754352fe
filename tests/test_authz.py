"""Roles and projects: every operation x every role, withholding, the approver rule.

Every case runs the real schema over real services (``create_app``'s) on a real SQLite
store; the principal is put on the context as the server's ``get_context`` does
(``Context(services, principal=...)``). The REST routes are checked over real HTTP through
a test-only ASGI wrapper that puts the principal on ``scope["state"]`` (where the
authentication puts it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import DELETE, GraphStore, Node, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.schema import Context, schema
from lineagehub.schema.authz import RULES
from lineagehub.services.access import RECORDED, RECORDED_MARK, Principal, Role, open_principal
from lineagehub.services.cards import revision_id
from lineagehub.services.registry import Policy

V, E, A, ADMIN = Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.ADMIN

PRINCIPALS = {
    "viewer": Principal("vera", {"alpha": V}),
    "editor": Principal("ed", {"alpha": E}),
    "approver": Principal("amy", {"alpha": A}),
    "project-admin": Principal("pat", {"alpha": ADMIN}),
    "admin": Principal("root", {None: ADMIN}),
    "no-grant": Principal("nobody", {}),
    "other-project": Principal("olga", {"beta": ADMIN}),
}

POLICIES = {
    ("churn", "Production"): Policy(approvals=1),
    ("churn", "Staging"): Policy(approvals=0),
    # a stage with approvals and no request pending in the hub (one pending request a stage)
    ("churn", "Archived"): Policy(approvals=1),
}


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Hub:
    services: Any
    ids: dict[str, str]

    async def run(self, query: str, principal: Principal | None = None, **variables: Any) -> Any:
        ctx = Context(self.services, principal=principal)
        return await schema.execute(query, variable_values=variables, context_value=ctx)

    async def ok(self, query: str, principal: Principal | None = None, **variables: Any) -> Any:
        result = await self.run(query, principal, **variables)
        assert result.errors is None, result.errors
        return result.data


def codes(result: Any) -> list[str]:
    return [(e.extensions or {}).get("code", "?") for e in result.errors or []]


async def build_hub(
    folder: Path, policies: dict[Any, Policy] | None = None, store: GraphStore | None = None
) -> Hub:
    """Two projects: alpha (run A, model churn) and beta (run B, model other), sharing an
    input dataset; a pending promotion request and a deployment in alpha."""
    store = store if store is not None else open_store("sqlite://")
    artifacts = open_artifact_store((folder / "artifacts").as_uri())
    app = create_app(store=store, artifacts=artifacts, registry_policies=policies or POLICIES)
    hub = Hub(app.state.services, {})
    setup = open_principal("setup")
    model_a = artifacts.put_bytes(b"model a").digest
    model_b = artifacts.put_bytes(b"model b").digest
    hub.ids["digest_a"], hub.ids["digest_b"] = model_a, model_b
    hub.ids["report"] = artifacts.put_bytes(b"a report").digest
    start = 'mutation($p: String) { startRun(input: {name: "r", project: $p}) { id } }'
    for key, project in (("run_a", "alpha"), ("run_b", "beta"), ("run_a2", "alpha")):
        hub.ids[key] = (await hub.ok(start, setup, p=project))["startRun"]["id"]
    shared = {"digest": _digest("customers"), "uri": "s3://lake/customers"}
    used = """mutation($run: ID!, $fp: JSON!) { logDataset(runId: $run,
        input: {fingerprint: $fp, name: "customers", namespace: "warehouse"}) { id } }"""
    for key in ("run_a", "run_b"):
        hub.ids["dsv"] = (await hub.ok(used, setup, run=hub.ids[key], fp=shared))["logDataset"][
            "id"
        ]
    log_model = """mutation($run: ID!, $d: String!, $n: String!) {
        logModel(runId: $run, digest: $d, name: $n) { id } }"""
    await hub.ok(log_model, setup, run=hub.ids["run_a"], d=model_a, n="churn")
    await hub.ok(log_model, setup, run=hub.ids["run_b"], d=model_b, n="other")
    request = """mutation { requestPromotion(ref: "churn@1", to: "Production", reason: "r") {
        ... on PromotionPending { requestId } } }"""
    hub.ids["request"] = (await hub.ok(request, setup))["requestPromotion"]["requestId"]
    deploy = 'mutation { recordDeployment(ref: "churn@1", environment: "prod") { id } }'
    hub.ids["deployment"] = (await hub.ok(deploy, setup))["recordDeployment"]["id"]
    await hub.ok('mutation { setAlias(ref: "churn@1", alias: "champion") { id } }', setup)
    # a firing alert about the deployment (from a Prometheus Alertmanager)
    received = hub.services.monitor._alert_service().receive_alertmanager(
        {"alerts": [{"labels": {"alertname": "a", "deployment": hub.ids["deployment"]}}]},
        "setup",
    )
    hub.ids["alert"] = received[0].id
    return hub


# --- the table -------------------------------------------------------------------------------

IDS = Callable[[dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Op:
    query: str
    needs: Role
    scope: str  # "alpha": the role in project alpha; "anywhere": in some project; "global"
    variables: IDS = lambda ids: {}


READS: dict[str, Op] = {
    "node": Op(
        "query($r: String!) { node(ref: $r) { id } }", V, "alpha", lambda i: {"r": i["run_a"]}
    ),
    "nodes": Op(
        "query($r: [ID!]!) { nodes(ids: $r) { id } }", V, "alpha", lambda i: {"r": [i["run_a"]]}
    ),
    "run": Op("query($r: ID!) { run(id: $r) { id } }", V, "alpha", lambda i: {"r": i["run_a"]}),
    "runs": Op("{ runs { withheld } }", V, "anywhere"),
    "datasets": Op("{ datasets { withheld } }", V, "anywhere"),
    "datasetVersions": Op("{ datasetVersions { withheld } }", V, "anywhere"),
    "models": Op("{ models { withheld } }", V, "anywhere"),
    "modelVersions": Op("{ modelVersions { withheld } }", V, "anywhere"),
    "deployments": Op("{ deployments { withheld } }", V, "anywhere"),
    "alertRules": Op("{ alertRules { name } }", V, "anywhere"),
    "monitoringReference": Op(
        "query($d: String!) { monitoringReference(deployment: $d) { deploymentId } }",
        V,
        "alpha",
        lambda i: {"d": i["deployment"]},
    ),
    "alerts": Op("{ alerts { withheld } }", V, "anywhere"),
    "lineage": Op('{ lineage(input: {roots: ["churn@1"]}) { withheld } }', V, "alpha"),
    "impact": Op(
        "query($r: String!) { impact(ref: $r) { withheld } }",
        V,
        "alpha",
        lambda i: {"r": i["run_a"]},
    ),
    "path": Op(
        'query($r: String!) { path(from: $r, to: "churn@1") { withheld } }',
        V,
        "alpha",
        lambda i: {"r": i["run_a"]},
    ),
    "columnLineage": Op(
        'query($d: ID!) { columnLineage(dataset: $d, column: "x") { column } }',
        V,
        "anywhere",
        lambda i: {"d": i["dsv"]},
    ),
    "compareRuns": Op(
        "query($r: [String!]!) { compareRuns(ids: $r) { codeDiffers } }",
        V,
        "alpha",
        lambda i: {"r": [i["run_a"], i["run_a2"]]},
    ),
    "compareModelVersions": Op(
        '{ compareModelVersions(a: "churn@1", b: "churn@1") { truncated } }', V, "alpha"
    ),
    "modelHistory": Op('{ modelHistory(model: "churn") { change } }', V, "alpha"),
    "pendingPromotions": Op('{ pendingPromotions(model: "churn") { requestId } }', V, "alpha"),
    "holderAt": Op(
        '{ holderAt(model: "churn", aliasOrStage: "champion", time: "2100-01-01T00:00:00Z") '
        "{ id } }",
        V,
        "alpha",
    ),
    "modelCard": Op('{ modelCard(ref: "churn@1") { revision } }', V, "alpha"),
    "complianceReport": Op('{ complianceReport(ref: "churn@1") }', V, "alpha"),
    "modelInventory": Op("{ modelInventory { versionId } }", V, "anywhere"),
    "auditTrail": Op("{ auditTrail { nextAfter } }", ADMIN, "global"),
    "verifyAuditLog": Op("{ verifyAuditLog { ok } }", ADMIN, "global"),
    "webhookDeliveries": Op("{ webhookDeliveries { url } }", ADMIN, "global"),
}

WRITES: dict[str, Op] = {
    "startRun": Op(
        'mutation { startRun(input: {name: "n", project: "alpha"}) { id } }', E, "alpha"
    ),
    "logBatch": Op(
        "mutation($r: ID!) { logBatch(runId: $r, params: {x: 1}) { params } }",
        E,
        "alpha",
        lambda i: {"r": i["run_a"]},
    ),
    "endRun": Op(
        "mutation($r: ID!) { endRun(runId: $r) { id } }", E, "alpha", lambda i: {"r": i["run_a"]}
    ),
    "logDataset": Op(
        "mutation($r: ID!, $fp: JSON!) { logDataset(runId: $r, input: {fingerprint: $fp, "
        'name: "out", namespace: "w", output: true}) { id } }',
        E,
        "alpha",
        lambda i: {"r": i["run_a"], "fp": {"digest": _digest("out")}},
    ),
    "logArtifact": Op(
        'mutation($r: ID!, $d: String!) { logArtifact(runId: $r, digest: $d, name: "rep") { id } }',
        E,
        "alpha",
        lambda i: {"r": i["run_a"], "d": i["report"]},
    ),
    "logInputModel": Op(
        'mutation($r: ID!) { logInputModel(runId: $r, ref: "churn@1") { id } }',
        E,
        "alpha",
        lambda i: {"r": i["run_a2"]},
    ),
    "logModel": Op(
        'mutation($r: ID!, $d: String!) { logModel(runId: $r, digest: $d, name: "churn") { id } }',
        E,
        "alpha",
        lambda i: {"r": i["run_a"], "d": i["report"]},
    ),
    "registerModelVersion": Op(
        "mutation($r: ID!, $d: String!) { registerModelVersion(runId: $r, digest: $d, "
        'name: "churn") { id } }',
        E,
        "alpha",
        lambda i: {"r": i["run_a"], "d": i["report"]},
    ),
    "markStaleRuns": Op("mutation { markStaleRuns }", E, "global"),
    # each write of a batch is checked as its own mutation: here a run in alpha
    "writeBatch": Op(
        'mutation { writeBatch(operations: [{call: "startRun", args: {input: {name: "n", '
        'project: "alpha"}}}, {call: "endRun", args: {runId: "$0"}}]) { call } }',
        E,
        "alpha",
    ),
    "requestPromotion": Op(
        'mutation { requestPromotion(ref: "churn@1", to: "Archived", reason: "r") { __typename } }',
        E,
        "alpha",
    ),
    "approvePromotion": Op(
        "mutation($q: ID!) { approvePromotion(requestId: $q) { __typename } }",
        A,
        "alpha",
        lambda i: {"q": i["request"]},
    ),
    "rejectPromotion": Op(
        'mutation($q: ID!) { rejectPromotion(requestId: $q, reason: "no") { by } }',
        A,
        "alpha",
        lambda i: {"q": i["request"]},
    ),
    "promoteModelVersion": Op(
        'mutation { promoteModelVersion(ref: "churn@1", to: "Staging", reason: "r") '
        "{ __typename } }",
        A,
        "alpha",
    ),
    "setAlias": Op('mutation { setAlias(ref: "churn@1", alias: "best") { id } }', E, "alpha"),
    "setModelCard": Op(
        'mutation { setModelCard(ref: "churn@1", card: {risk_tier: "high"}) { revision } }',
        E,
        "alpha",
    ),
    "removeAlias": Op('mutation { removeAlias(model: "churn", alias: "champion") }', E, "alpha"),
    "rollback": Op(
        'mutation { rollback(model: "churn", stageOrAlias: "champion", reason: "r") { runIds } }',
        A,
        "alpha",
    ),
    "recordDeployment": Op(
        'mutation { recordDeployment(ref: "churn@1", environment: "staging") { id } }', E, "alpha"
    ),
    "retireDeployment": Op(
        "mutation($d: ID!) { retireDeployment(id: $d) { id } }",
        E,
        "alpha",
        lambda i: {"d": i["deployment"]},
    ),
    "acknowledgeAlert": Op(
        'mutation($a: ID!) { acknowledgeAlert(id: $a, comment: "on it") { id } }',
        E,
        "alpha",
        lambda i: {"a": i["alert"]},
    ),
    "silenceAlert": Op(
        'mutation($a: ID!) { silenceAlert(id: $a, until: "2030-01-01T00:00:00Z") { id } }',
        E,
        "alpha",
        lambda i: {"a": i["alert"]},
    ),
    "setAlertRule": Op(
        'mutation { setAlertRule(input: {name: "r", expr: "accuracy < 0.5"}) { name } }',
        ADMIN,
        "global",
    ),
    "deleteAlertRule": Op(
        'mutation { setAlertRule(input: {name: "r", expr: "accuracy < 0.5"}) { name } '
        'deleteAlertRule(name: "r") }',
        ADMIN,
        "global",
    ),
    "reportMonitoringWindow": Op(
        """mutation($d: String!) { reportMonitoringWindow(input: {deployment: $d,
        start: "2026-03-01T10:00:00Z", end: "2026-03-01T11:00:00Z", sketch: {}}) { id } }""",
        E,
        "alpha",
        lambda i: {"d": i["deployment"]},
    ),
}


def allowed(principal: Principal, op: Op) -> bool:
    """What the table expects, from the grants (written without the rule table)."""
    grants = principal.grants
    if op.scope == "global":
        held = [grants.get(None)]
    elif op.scope == "alpha":
        held = [grants.get(None), grants.get("alpha")]
    else:
        held = list(grants.values())
    return any(r is not None and r >= op.needs for r in held)


def root_fields(type_name: str) -> set[str]:
    graphql_type = schema._schema.get_type(type_name)
    return set(graphql_type.fields)  # type: ignore[union-attr]


def test_every_root_field_has_a_rule_and_a_row_in_the_table() -> None:
    for type_name, table in (("Query", READS), ("Mutation", WRITES)):
        fields = root_fields(type_name)
        missing = sorted(f for f in fields if f"{type_name}.{f}" not in RULES)
        assert not missing, f"root fields without an authorization rule: {missing}"
        assert fields == set(table), f"the test table must cover every {type_name} field"


def test_a_field_without_a_rule_needs_a_global_admin() -> None:
    from lineagehub.graph.errors import PermissionDenied
    from lineagehub.schema.authz import check

    with pytest.raises(PermissionDenied):
        check(None, PRINCIPALS["project-admin"], "Query.somethingNew", {})  # type: ignore[arg-type]
    check(None, PRINCIPALS["admin"], "Query.somethingNew", {})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def read_hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    return await build_hub(tmp_path_factory.mktemp("authz-reads"))


@pytest.mark.anyio
@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("field", sorted(READS))
async def test_read_table(read_hub: Hub, field: str, who: str) -> None:
    op, principal = READS[field], PRINCIPALS[who]
    result = await read_hub.run(op.query, principal, **op.variables(read_hub.ids))
    if allowed(principal, op):
        assert result.errors is None, result.errors
    else:
        assert codes(result) == ["FORBIDDEN"], result.errors


@pytest.mark.anyio
@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("field", sorted(WRITES))
async def test_write_table(tmp_path: Path, field: str, who: str) -> None:
    hub = await build_hub(tmp_path)
    op, principal = WRITES[field], PRINCIPALS[who]
    audit_before = len(hub.services.store.read_audit(0, 1000, None))
    result = await hub.run(op.query, principal, **op.variables(hub.ids))
    if allowed(principal, op):
        assert result.errors is None, result.errors
    else:
        assert codes(result) == ["FORBIDDEN"], result.errors
        # refused before anything was written: the only new entry records the denial
        after = hub.services.store.read_audit(0, 1000, None)[audit_before:]
        assert [(e.action, e.actor) for e in after] in ([], [("access.denied", principal.name)])


# --- withholding ------------------------------------------------------------------------------

LINEAGE = """query($r: [String!]!) { lineage(input: {roots: $r, direction: BOTH}) {
    withheld nodes { node { id } } edges { source target } } }"""


@pytest.mark.anyio
async def test_lineage_withholds_other_projects_nodes_and_their_edges(read_hub: Hub) -> None:
    roots = [read_hub.ids["dsv"]]  # the shared input: used by a run of each project
    full = (await read_hub.ok(LINEAGE, PRINCIPALS["admin"], r=roots))["lineage"]
    seen = (await read_hub.ok(LINEAGE, PRINCIPALS["viewer"], r=roots))["lineage"]
    all_ids = {n["node"]["id"] for n in full["nodes"]}
    ids = {n["node"]["id"] for n in seen["nodes"]}
    assert full["withheld"] == 0
    assert read_hub.ids["run_b"] in all_ids and "mv:other/1" in all_ids
    assert read_hub.ids["run_a"] in ids and "mv:churn/1" in ids
    assert read_hub.ids["run_b"] not in ids and "mv:other/1" not in ids
    assert seen["withheld"] == len(all_ids) - len(ids) > 0
    assert all(e["source"] in ids and e["target"] in ids for e in seen["edges"])
    assert len(seen["edges"]) < len(full["edges"])
    # the other project's principal sees the mirror image
    beta = (await read_hub.ok(LINEAGE, PRINCIPALS["other-project"], r=roots))["lineage"]
    beta_ids = {n["node"]["id"] for n in beta["nodes"]}
    assert read_hub.ids["run_b"] in beta_ids and read_hub.ids["run_a"] not in beta_ids


@pytest.mark.anyio
async def test_listings_and_relationships_withhold(read_hub: Hub) -> None:
    query = "{ runs(first: 50) { withheld nodes { id } } }"
    full = (await read_hub.ok(query, PRINCIPALS["admin"]))["runs"]
    seen = (await read_hub.ok(query, PRINCIPALS["viewer"]))["runs"]
    ids = {n["id"] for n in seen["nodes"]}
    assert read_hub.ids["run_b"] not in ids and read_hub.ids["run_a"] in ids
    # other projects' runs are not asked for (not counted), nor their models, versions,
    # deployments or alerts (each records its project)
    assert seen["withheld"] == 0 and len(full["nodes"]) > len(ids)
    query = "{ modelVersions(first: 50) { withheld nodes { id } } }"
    seen = (await read_hub.ok(query, PRINCIPALS["viewer"]))["modelVersions"]
    assert [n["id"] for n in seen["nodes"]] == ["mv:churn/1"] and seen["withheld"] == 0
    used_by = """query($r: String!) { node(ref: $r) { ... on DatasetVersion {
        usedBy { node { id } } } } }"""
    links = (await read_hub.ok(used_by, PRINCIPALS["viewer"], r=read_hub.ids["dsv"]))["node"]
    assert {x["node"]["id"] for x in links["usedBy"]} == {read_hub.ids["run_a"]}


@pytest.mark.anyio
async def test_a_listing_filter_tells_nothing_of_other_projects_runs(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    params = "mutation($r: ID!) { logBatch(runId: $r, params: {secret: 42}) { params } }"
    await hub.ok(params, open_principal("setup"), r=hub.ids["run_b"])
    query = "query($w: JSON) { runs(where: $w) { withheld nodes { id } } }"
    answers = []
    for guess in (41, 42):
        for who in ("viewer", "editor"):
            got = await hub.ok(query, PRINCIPALS[who], w={"params.secret": guess})
            answers.append(got["runs"])
    # the same answer whether the guess is right or not (it was withheld 1 for 42)
    assert answers == [{"withheld": 0, "nodes": []}] * 4
    admin = await hub.ok(query, PRINCIPALS["admin"], w={"params.secret": 42})
    assert [n["id"] for n in admin["runs"]["nodes"]] == [hub.ids["run_b"]]
    beta = await hub.ok(query, PRINCIPALS["other-project"], w={"params.secret": 42})
    assert [n["id"] for n in beta["runs"]["nodes"]] == [hub.ids["run_b"]]


async def _beta_deployment_and_alert(hub: Hub) -> None:
    """A deployment of beta's model, named ``other``, an alert about it, and a dataset
    version ``other`` beta's run generated."""
    output = """mutation($run: ID!, $fp: JSON!) { logDataset(runId: $run, input: {fingerprint: $fp,
        name: "other", namespace: "warehouse", output: true}) { id } }"""
    fp = {"digest": _digest("other"), "uri": "s3://lake/other"}
    hub.ids["dsv_b"] = (await hub.ok(output, open_principal("setup"), run=hub.ids["run_b"], fp=fp))[
        "logDataset"
    ]["id"]
    deploy = 'mutation { recordDeployment(ref: "other@1", environment: "prod") { id } }'
    hub.ids["deployment_b"] = (await hub.ok(deploy, open_principal("setup")))["recordDeployment"][
        "id"
    ]
    received = hub.services.monitor._alert_service().receive_alertmanager(
        {"alerts": [{"labels": {"alertname": "b", "deployment": hub.ids["deployment_b"]}}]},
        "setup",
    )
    hub.ids["alert_b"] = received[0].id


#: A listing, and a filter matching beta's record only (by the guess ``{g}``)
GUESSES = {
    "modelVersions": ('{"model": "{g}"}', "other"),
    "models": ('{"name": "{g}"}', "other"),
    "deployments": ('{"name": "{g}"}', "other"),
    "alerts": ('{"rule": "{g}"}', "b"),
    "datasetVersions": ('{"name": "{g}"}', "other"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("listing", sorted(GUESSES))
async def test_a_listing_filter_tells_nothing_of_other_projects_registry(
    tmp_path: Path, listing: str
) -> None:
    hub = await build_hub(tmp_path)
    await _beta_deployment_and_alert(hub)
    where, right = GUESSES[listing]
    query = f"query($w: JSON) {{ {listing}(where: $w) {{ withheld nodes {{ id }} }} }}"
    answers = []
    for guess in (right, "no-such-name"):
        w = json.loads(where.replace("{g}", guess))
        for who in ("viewer", "editor"):
            answers.append((await hub.ok(query, PRINCIPALS[who], w=w))[listing])
        admin = (await hub.ok(query, PRINCIPALS["admin"], w=w))[listing]
        beta = (await hub.ok(query, PRINCIPALS["other-project"], w=w))[listing]
        assert len(admin["nodes"]) == len(beta["nodes"]) == (guess == right)
    # the same answer whether the guess is right or not (it was withheld 1 when right)
    assert answers == [{"withheld": 0, "nodes": []}] * 4


@pytest.mark.anyio
async def test_a_dataset_version_joins_the_project_of_the_run_that_first_generates_it(
    tmp_path: Path,
) -> None:
    hub = await build_hub(tmp_path)  # "customers": an input of alpha's and beta's runs
    output = """mutation($run: ID!, $fp: JSON!) { logDataset(runId: $run, input: {fingerprint: $fp,
        name: "customers", namespace: "warehouse", output: true}) { id } }"""
    shared = {"digest": _digest("customers"), "uri": "s3://lake/customers"}
    query = '{ datasetVersions(where: {name: "customers"}) { withheld nodes { id } } }'
    beta = PRINCIPALS["other-project"]
    assert (await hub.ok(query, beta))["datasetVersions"]["nodes"] == [{"id": hub.ids["dsv"]}]
    for run in ("run_a2", "run_b"):  # alpha's run generates it first: alpha's from then on
        await hub.ok(output, open_principal("setup"), run=hub.ids[run], fp=shared)
    assert hub.services.store.get_node(hub.ids["dsv"]).props["project"] == "alpha"
    assert (await hub.ok(query, beta))["datasetVersions"] == {"withheld": 0, "nodes": []}
    seen = (await hub.ok(query, PRINCIPALS["viewer"]))["datasetVersions"]
    assert seen == {"withheld": 0, "nodes": [{"id": hub.ids["dsv"]}]}


@pytest.mark.anyio
async def test_a_servers_start_records_the_projects_of_older_records(
    store: GraphStore, tmp_path: Path
) -> None:
    hub = await build_hub(tmp_path, store=store)
    await _beta_deployment_and_alert(hub)
    recorded = {n.id: n.props.get("project") for label in RECORDED for n in store.iter_nodes(label)}
    assert recorded == {
        "model:churn": "alpha",
        "model:other": "beta",
        "mv:churn/1": "alpha",
        "mv:other/1": "beta",
        hub.ids["deployment"]: "alpha",
        hub.ids["deployment_b"]: "beta",
        hub.ids["alert"]: "alpha",
        hub.ids["alert_b"]: "beta",
        hub.ids["dsv"]: None,  # an input of both: shared data
        hub.ids["dsv_b"]: "beta",
    }
    # records written before projects were recorded have none: the listing checks each
    # row after the store, and says how many it withheld
    store.upsert_nodes([Node(i, store.get_node(i).label, {"project": DELETE}) for i in recorded])
    query = "{ modelVersions { withheld nodes { id } } }"
    seen = (await hub.ok(query, PRINCIPALS["viewer"]))["modelVersions"]
    assert seen == {"withheld": 1, "nodes": [{"id": "mv:churn/1"}]}
    with HubServer(create_app(store=store, artifacts=hub.services.artifacts)):
        pass
    again = {n.id: n.props.get("project") for label in RECORDED for n in store.iter_nodes(label)}
    assert again == recorded
    seen = (await hub.ok(query, PRINCIPALS["viewer"]))["modelVersions"]
    assert seen == {"withheld": 0, "nodes": [{"id": "mv:churn/1"}]}
    # each change is covered by an audit entry of its own (the log verifies)
    entries = [e for e in store.iter_audit() if e.action == "project.record"]
    assert {e.target for e in entries} == {f"label:{label}" for label in RECORDED}
    assert store.verify_audit().ok
    # once done, it is marked done: a later start does not look again (it would read every
    # dataset version of no project each time)
    assert store.get_nodes([RECORDED_MARK])[0] is not None
    with HubServer(create_app(store=store, artifacts=hub.services.artifacts)):
        pass
    assert len([e for e in store.iter_audit() if e.action == "project.record"]) == len(entries)


@pytest.mark.anyio
async def test_a_page_ending_on_a_withheld_row_seals_its_cursor(tmp_path: Path) -> None:
    # the registry's own runs are found their project by their version: checked after
    read_hub = await build_hub(tmp_path)
    await _beta_deployment_and_alert(read_hub)
    query = """query($a: String) { runs(first: 1, after: $a, where: {kind: "deploy"},
        orderBy: ["-name"]) { withheld nodes { id name } pageInfo { hasNextPage endCursor } } }"""
    full = (await read_hub.ok(query, PRINCIPALS["admin"]))["runs"]
    assert [n["name"] for n in full["nodes"]] == ["deploy other/1 to prod"]
    plain = full["pageInfo"]["endCursor"]
    assert "other" in base64.urlsafe_b64decode(plain + "=" * (-len(plain) % 4)).decode()
    first = (await read_hub.ok(query, PRINCIPALS["viewer"]))["runs"]
    assert first["nodes"] == [] and first["withheld"] == 1
    sealed = first["pageInfo"]["endCursor"]
    assert first["pageInfo"]["hasNextPage"] and sealed.startswith("sealed:")
    assert plain not in sealed and "other" not in sealed
    body = sealed.removeprefix("sealed:")
    assert b"other" not in base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    # the sealed cursor goes on where the page ended, for any caller
    for who in ("viewer", "admin"):
        page = (await read_hub.ok(query, PRINCIPALS[who], a=sealed))["runs"]
        assert [n["name"] for n in page["nodes"]] == ["deploy churn/1 to prod"]
    # a page ending on a row the caller may view keeps the plain cursor
    second = (await read_hub.ok(query, PRINCIPALS["viewer"], a=sealed))["runs"]
    assert not second["pageInfo"]["endCursor"] or not second["pageInfo"]["endCursor"].startswith(
        "sealed:"
    )
    forged = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    for bad in (forged, "sealed:", "sealed:not-a-token"):
        result = await read_hub.run(query, PRINCIPALS["viewer"], a=bad)
        assert codes(result) == ["VALIDATION"], result.errors
        assert "not a cursor this hub gave" in result.errors[0].message


@pytest.mark.anyio
async def test_impact_withholds(read_hub: Hub) -> None:
    query = "query($r: String!) { impact(ref: $r) { withheld runs { id } } }"
    full = (await read_hub.ok(query, PRINCIPALS["admin"], r=read_hub.ids["dsv"]))["impact"]
    seen = (await read_hub.ok(query, PRINCIPALS["viewer"], r=read_hub.ids["dsv"]))["impact"]
    assert read_hub.ids["run_b"] in {r["id"] for r in full["runs"]}
    runs = {r["id"] for r in seen["runs"]}
    assert read_hub.ids["run_a"] in runs and read_hub.ids["run_b"] not in runs
    # the registry's runs (the promotion request, the deployment) are alpha's too
    assert read_hub.ids["request"] in runs
    beta = await read_hub.ok(query, PRINCIPALS["other-project"], r=read_hub.ids["dsv"])
    assert {r["id"] for r in beta["impact"]["runs"]} == {read_hub.ids["run_b"]}
    assert seen["withheld"] > 0 and full["withheld"] == 0


@pytest.mark.anyio
async def test_a_node_of_another_project_is_forbidden_not_null(read_hub: Hub) -> None:
    result = await read_hub.run(
        "query($r: String!) { node(ref: $r) { id } }", PRINCIPALS["viewer"], r="mv:other/1"
    )
    assert codes(result) == ["FORBIDDEN"]


@pytest.mark.anyio
async def test_a_card_revision_is_read_in_its_versions_project(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    set_card = """mutation($r: String!) { setModelCard(ref: $r, card: {intended_use: "secret"}) {
        revision } }"""
    for ref in ("churn@1", "other@1"):
        await hub.ok(set_card, open_principal("setup"), r=ref)
    query = "query($r: String!) { node(ref: $r) { id properties } }"
    for version, allowed in (("mv:churn/1", True), ("mv:other/1", False)):
        ref = revision_id(version, 1)
        result = await hub.run(query, PRINCIPALS["viewer"], r=ref)
        if allowed:
            assert result.errors is None and result.data["node"]["properties"]["revision"] == 1
        else:
            assert codes(result) == ["FORBIDDEN"]
            beta = await hub.ok(query, PRINCIPALS["other-project"], r=ref)
            assert beta["node"]["properties"]["fields"] == {"intended_use": "secret"}


# --- mutations: checked before anything is written ------------------------------------------


@pytest.mark.anyio
async def test_a_refused_field_leaves_the_whole_mutation_unwritten(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    both = """mutation($a: ID!, $b: ID!) {
        first: logBatch(runId: $a, params: {written: 1}) { params }
        second: logBatch(runId: $b, params: {written: 1}) { params } }"""
    result = await hub.run(both, PRINCIPALS["editor"], a=hub.ids["run_a"], b=hub.ids["run_b"])
    assert "FORBIDDEN" in codes(result)
    run_a = hub.services.store.get_node(hub.ids["run_a"])
    assert "written" not in (run_a.props.get("params") or {})


@pytest.mark.anyio
async def test_a_request_that_promotes_at_once_needs_the_approver_role(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    staging = (
        'mutation { requestPromotion(ref: "churn@1", to: "Staging", reason: "r") { __typename } }'
    )
    assert codes(await hub.run(staging, PRINCIPALS["editor"])) == ["FORBIDDEN"]
    done = await hub.ok(staging, PRINCIPALS["approver"])
    assert done["requestPromotion"]["__typename"] == "ModelPromoted"


# --- approvals need the approver role, and the policy's approvers ---------------------------


@pytest.mark.anyio
async def test_approvals_need_the_approver_role_and_the_policy_list(tmp_path: Path) -> None:
    policies = {("churn", "Production"): Policy(approvals=1, approvers=["bob"])}
    hub = await build_hub(tmp_path, policies)
    approve = "mutation($q: ID!) { approvePromotion(requestId: $q) { __typename } }"
    q = hub.ids["request"]
    # on the policy's list, but only an editor in the model's project: refused
    bob_editor = Principal("bob", {"alpha": E})
    assert codes(await hub.run(approve, bob_editor, q=q)) == ["FORBIDDEN"]
    # an approver of another project: refused
    bob_beta = Principal("bob", {"beta": A})
    assert codes(await hub.run(approve, bob_beta, q=q)) == ["FORBIDDEN"]
    # the approver role, but not on the policy's list: the policy refuses it
    carol = Principal("carol", {"alpha": A})
    refused = await hub.ok(approve, carol, q=q)
    assert refused["approvePromotion"]["__typename"] == "PolicyViolation"
    # both: approved (and promoted)
    bob = Principal("bob", {"alpha": A})
    done = await hub.ok(approve, bob, q=q)
    assert done["approvePromotion"]["__typename"] == "ModelPromoted"
    assert hub.services.store.get_node("mv:churn/1").props["stage"] == "Production"


# --- the REST routes, over real HTTP ------------------------------------------------------------


class _As:
    """Test only: puts the principal named by the ``x-test-as`` header on the request's
    state, where the authentication puts it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-test-as")
            if who is not None:
                scope.setdefault("state", {})["principal"] = PRINCIPALS[who.decode()]
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Hub]]:
    import anyio

    folder = tmp_path_factory.mktemp("authz-rest")
    hub = anyio.run(build_hub, folder)
    store, artifacts = hub.services.store, hub.services.artifacts
    app = create_app(store=store, artifacts=artifacts, registry_policies=POLICIES)
    with HubServer(_As(app)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http, hub


def _as(who: str) -> dict[str, str]:
    return {"x-test-as": who}


def test_uploads_need_an_editor(rest: tuple[httpx.Client, Hub]) -> None:
    http, _ = rest
    body, kind = b"new bytes", {"content-type": "application/octet-stream"}
    refused = http.put("/artifacts", content=body, headers={**kind, **_as("viewer")})
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert http.put("/artifacts", content=body, headers={**kind, **_as("editor")}).is_success


def test_downloads_need_the_viewer_role_in_the_holders_project(
    rest: tuple[httpx.Client, Hub],
) -> None:
    http, hub = rest
    url = f"/artifacts/{hub.ids['digest_a']}"
    assert http.get(url, headers=_as("viewer")).content == b"model a"
    refused = http.get(url, headers=_as("no-grant"))  # may read nothing anywhere
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # another project's bytes are answered as bytes the hub does not have
    hidden = http.get(url, headers=_as("other-project"))
    absent = http.get(f"/artifacts/sha256:{'0' * 64}", headers=_as("other-project"))
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert hidden.text.replace(hub.ids["digest_a"], "D") == absent.text.replace(
        f"sha256:{'0' * 64}", "D"
    )
    assert http.get(url).content == b"model a"  # no principal: an open hub


def test_exports_are_checked_and_withhold(rest: tuple[httpx.Client, Hub]) -> None:
    http, hub = rest
    assert (
        http.get("/export/lineage/mv:churn/1.dot", headers=_as("other-project")).status_code == 403
    )
    url = f"/export/lineage/{hub.ids['dsv']}.json?direction=BOTH"
    full = http.get(url, headers=_as("admin"))
    seen = http.get(url, headers=_as("viewer"))
    assert full.headers["x-lineage-withheld"] == "0"
    assert int(seen.headers["x-lineage-withheld"]) > 0
    assert hub.ids["run_b"] in full.text and hub.ids["run_b"] not in seen.text


@pytest.mark.anyio
async def test_compare_model_versions_withholds_other_projects_upstream(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    setup = open_principal("setup")
    # beta generates a dataset; alpha's second run trains churn v2 on it
    log = """mutation($r: ID!, $fp: JSON!, $out: Boolean!) { logDataset(runId: $r,
        input: {fingerprint: $fp, name: "features", namespace: "w", output: $out}) { id } }"""
    fp = {"digest": _digest("features")}
    await hub.ok(log, setup, r=hub.ids["run_b"], fp=fp, out=True)
    await hub.ok(log, setup, r=hub.ids["run_a2"], fp=fp, out=False)
    await hub.ok(
        'mutation($r: ID!, $d: String!) { logModel(runId: $r, digest: $d, name: "churn") { id } }',
        setup,
        r=hub.ids["run_a2"],
        d=hub.ids["report"],
    )
    query = """{ compareModelVersions(a: "churn@1", b: "churn@2") {
        withheld added { id } removed { id } datasets { added { id } } runs { added { id } } } }"""
    full = (await hub.ok(query, PRINCIPALS["admin"]))["compareModelVersions"]
    seen = (await hub.ok(query, PRINCIPALS["viewer"]))["compareModelVersions"]

    def ids(d: dict[str, Any]) -> set[str]:
        return {n["id"] for key in ("added", "removed") for n in d[key]}

    assert hub.ids["run_b"] in ids(full) and hub.ids["run_b"] not in ids(seen)
    assert full["withheld"] == 0 and seen["withheld"] == len(ids(full)) - len(ids(seen)) > 0
    assert hub.ids["run_b"] not in {n["id"] for n in seen["runs"]["added"]}


def test_project_look_ups_are_batched(tmp_path: Path) -> None:
    """Projects of many nodes cost a few neighbours queries (one per hop kind and level),
    not one per node."""
    import anyio

    from lineagehub.services.access import projects_of

    hub = anyio.run(build_hub, tmp_path)
    store, setup = hub.services.store, open_principal("setup")
    log_model = """mutation($r: ID!, $d: String!, $n: String!) {
        logModel(runId: $r, digest: $d, name: $n) { id } }"""
    for i in range(20):
        args = {"r": hub.ids["run_a"], "d": hub.ids["digest_a"], "n": f"m{i}"}
        anyio.run(functools.partial(hub.ok, log_model, setup, **args))
    nodes = [
        *store.iter_nodes("Model"),
        *store.iter_nodes("ModelVersion"),
        *store.iter_nodes("Run"),
    ]
    assert len(nodes) > 40

    class Counting:  # counts the real store's neighbours queries
        calls = 0

        def neighbors(self, *args: Any, **kwargs: Any) -> Any:
            Counting.calls += 1
            return store.neighbors(*args, **kwargs)

    projects = projects_of(Counting(), nodes)  # type: ignore[arg-type]
    assert projects["mv:m7/1"] == projects["model:m7"] == "alpha"
    assert projects["mv:other/1"] == "beta"
    assert Counting.calls <= 4


def test_graphql_over_http_takes_the_requests_principal(rest: tuple[httpx.Client, Hub]) -> None:
    http, hub = rest
    query = """query($r: [String!]!) { lineage(input: {roots: $r, direction: BOTH}) {
        withheld export(format: CYTOSCAPE_JSON) } }"""
    body = {"query": query, "variables": {"r": [hub.ids["dsv"]]}}
    seen = http.post("/graphql", json=body, headers=_as("viewer")).json()["data"]["lineage"]
    assert seen["withheld"] > 0
    assert hub.ids["run_a"] in seen["export"] and hub.ids["run_b"] not in seen["export"]
    end = {"query": "mutation($r: ID!) { endRun(runId: $r) { id } }"}
    refused = http.post(
        "/graphql", json={**end, "variables": {"r": hub.ids["run_b"]}}, headers=_as("editor")
    ).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "beta" in refused["errors"][0]["message"]
    assert hub.services.store.get_node(hub.ids["run_b"]).props["status"] == "RUNNING"


@pytest.mark.anyio
async def test_a_model_is_governed_in_its_own_project(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    log_model = """mutation($r: ID!, $d: String!) {
        logModel(runId: $r, digest: $d, name: "churn") { id } }"""
    # beta's admin may not add a version to alpha's model from a beta run
    beta = await hub.run(
        log_model, PRINCIPALS["other-project"], r=hub.ids["run_b"], d=hub.ids["report"]
    )
    assert codes(beta) == ["FORBIDDEN"]
    # someone editing both may; that version's registry changes are still alpha's to govern
    both = Principal("bea", {"alpha": E, "beta": E})
    assert (await hub.ok(log_model, both, r=hub.ids["run_b"], d=hub.ids["report"]))["logModel"]
    alias = 'mutation { setAlias(ref: "churn@2", alias: "next") { id } }'
    assert codes(await hub.run(alias, Principal("bo", {"beta": ADMIN}))) == ["FORBIDDEN"]
    await hub.ok(alias, PRINCIPALS["editor"])


@pytest.mark.anyio
async def test_a_child_run_needs_the_editor_role_in_its_parents_project(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    start = """mutation($p: ID!) { startRun(input: {name: "c", project: "alpha", parent: $p})
        { id } }"""
    assert codes(await hub.run(start, PRINCIPALS["editor"], p=hub.ids["run_b"])) == ["FORBIDDEN"]
    await hub.ok(start, PRINCIPALS["editor"], p=hub.ids["run_a"])


@pytest.mark.anyio
@pytest.mark.parametrize("who", PRINCIPALS)
async def test_pending_promotions_of_every_project_are_filtered(tmp_path: Path, who: str) -> None:
    hub = await build_hub(tmp_path)
    principal = PRINCIPALS[who]
    mine = await hub.run("{ pendingPromotions { requestId } }", principal)
    if not principal.can_anywhere(Role.VIEWER):
        assert codes(mine) == ["FORBIDDEN"], mine.errors
        return
    assert mine.errors is None, mine.errors
    every = await hub.run("{ pendingPromotions { requestId } }", PRINCIPALS["admin"])
    assert every.data is not None and mine.data is not None
    assert every.data["pendingPromotions"], "the hub has a pending promotion (project alpha)"
    seen = mine.data["pendingPromotions"]
    assert seen == (
        every.data["pendingPromotions"]
        if principal.can_anywhere(Role.VIEWER) and (principal.can(Role.VIEWER, "alpha"))
        else []
    )


@pytest.mark.anyio
async def test_deriving_a_dataset_needs_to_read_its_sources(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    made = """mutation($run: ID!, $fp: JSON!, $from: [ID!]) { logDataset(runId: $run,
        input: {fingerprint: $fp, name: "features", namespace: "lab", output: true,
                derivedFrom: $from}) { id } }"""
    setup = open_principal("setup")
    beta_only = (
        await hub.ok(
            made, setup, run=hub.ids["run_b"], fp={"digest": _digest("beta")}, **{"from": []}
        )
    )["logDataset"]["id"]
    editor = PRINCIPALS["editor"]  # editor in alpha, nothing in beta
    refused = await hub.run(
        made, editor, run=hub.ids["run_a"], fp={"digest": _digest("mine")}, **{"from": [beta_only]}
    )
    assert codes(refused) == ["FORBIDDEN"], refused.errors
    assert "sources" in str(refused.errors)
    assert not hub.services.store.find_nodes("DatasetVersion", {"digest": _digest("mine")}).items
    shared = await hub.run(
        made, editor, run=hub.ids["run_a"], fp={"digest": _digest("mine")},
        **{"from": [hub.ids["dsv"]]},
    )  # fmt: skip
    assert shared.errors is None, shared.errors


@pytest.mark.anyio
async def test_using_a_model_version_needs_to_read_it(tmp_path: Path) -> None:
    """A run may use a version of another project only where the caller may view it: an
    editor of alpha cannot record (nor learn of) beta's model as alpha's base model."""
    hub = await build_hub(tmp_path)
    use = """mutation($run: ID!, $ref: String!) {
        logInputModel(runId: $run, ref: $ref) { id } }"""
    editor = PRINCIPALS["editor"]  # editor in alpha, nothing in beta
    refused = await hub.run(use, editor, run=hub.ids["run_a2"], ref="other@1")
    assert codes(refused) == ["FORBIDDEN"], refused.errors
    store = hub.services.store
    assert not store.neighbors([hub.ids["run_a2"]], "UPSTREAM", ["USED"], ["ModelVersion"])[
        hub.ids["run_a2"]
    ]
    both = Principal("bo", {"alpha": E, "beta": V})
    used = await hub.ok(use, both, run=hub.ids["run_a2"], ref="other@1")
    assert used["logInputModel"]["id"] == "mv:other/1"


@pytest.mark.anyio
async def test_a_version_no_run_generated_needs_the_role_globally(tmp_path: Path) -> None:
    """Registered from a stored artifact with no run, a version belongs to no project: an
    editor of alpha needs the editor role globally, and a run of beta's needs beta's."""
    hub = await build_hub(tmp_path)
    register = """mutation($d: String!, $n: String!, $r: ID) {
        registerModelVersion(digest: $d, name: $n, runId: $r) { id trainedBy { id } } }"""
    editor = PRINCIPALS["editor"]
    alone = await hub.run(register, editor, d=hub.ids["report"], n="fresh", r=None)
    assert codes(alone) == ["FORBIDDEN"], alone.errors
    elsewhere = await hub.run(register, editor, d=hub.ids["report"], n="fresh", r=hub.ids["run_b"])
    assert codes(elsewhere) == ["FORBIDDEN"], elsewhere.errors
    assert hub.services.store.get_nodes(["model:fresh"]) == [None]
    everywhere = Principal("gil", {None: E})
    made = await hub.ok(register, everywhere, d=hub.ids["report"], n="fresh", r=None)
    assert made["registerModelVersion"] == {"id": "mv:fresh/1", "trainedBy": None}


@pytest.mark.anyio
async def test_the_inventory_lists_the_models_the_caller_may_view(tmp_path: Path) -> None:
    hub = await build_hub(tmp_path)
    setup = open_principal("setup")
    await hub.ok('mutation { recordDeployment(ref: "other@1", environment: "prod") { id } }', setup)
    query = "{ modelInventory { versionId openAlerts deployments } }"
    everything = (await hub.ok(query, PRINCIPALS["admin"]))["modelInventory"]
    assert [r["versionId"] for r in everything] == ["mv:churn/1", "mv:other/1"]
    assert everything[0]["openAlerts"] == 1  # the alert about churn's deployment
    mine = (await hub.ok(query, PRINCIPALS["viewer"]))["modelInventory"]
    assert [r["versionId"] for r in mine] == ["mv:churn/1"]
    theirs = (await hub.ok(query, PRINCIPALS["other-project"]))["modelInventory"]
    assert [r["versionId"] for r in theirs] == ["mv:other/1"]
