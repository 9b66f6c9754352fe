"""Time travel: a question asked as of a time answers what the hub answered then, on every
backend, whoever asks and however (the service, GraphQL, the HTTP export, cards and reports).

One history on each backend: project alpha prepares data and trains ``churn`` 1 (the
champion); then project beta regenerates the clean data and trains ``churn`` 2, which takes
the alias; then alpha trains ``churn`` 3, which takes it back. The names that move (a
model's alias, a dataset's ``@latest``) named versions of another project in between.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, NotFoundError, open_store
from lineagehub.ingest.client import Client
from lineagehub.interfaces.server import create_app
from lineagehub.schema import Context, schema
from lineagehub.services.access import Principal, Role


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _moment() -> datetime:
    """A time strictly between what was written before and what is written after."""
    time.sleep(0.002)
    now = datetime.now(timezone.utc)
    time.sleep(0.002)
    return now


@dataclass
class History:
    store: GraphStore
    client: Client
    app: Any
    ids: dict[str, str]
    times: dict[str, datetime]

    async def gql(self, query: str, principal: Principal | None, **variables: Any) -> Any:
        ctx = Context(self.app.state.services, principal=principal)
        return await schema.execute(query, variable_values=variables, context_value=ctx)


@pytest.fixture
def history(store_backend: str, tmp_path: Path) -> Iterator[History]:
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    client = Client(store, artifacts=artifacts)
    ids: dict[str, str] = {}
    times: dict[str, datetime] = {}

    def train(project: str, n: int, clean: str | None = None) -> None:
        run = client.start_run(f"{project}-{n}", project=project, capture=False)
        if clean is not None:  # this run regenerates the clean data
            run.log_dataset_ref("s3://lake/raw", _digest("raw"), name="raw", namespace="lake")
            dsv = run.log_dataset_ref(
                "s3://lake/clean", _digest(clean), name="clean", namespace="lake", output=True
            )
            ids[clean] = dsv.node_id
        (tmp_path / "model").write_text(f"model {n}")
        run.log_model(tmp_path / "model", name="churn")
        run.end()
        client.set_alias(f"churn/{n}", "champion")
        client.set_model_card(f"churn/{n}", {"intended_use": f"version {n}"})

    train("alpha", 1, clean="clean-1")
    times["alpha"] = _moment()
    train("beta", 2, clean="clean-2")
    times["beta"] = _moment()
    train("alpha", 3)
    app = create_app(store=store, artifacts=artifacts)
    try:
        yield History(store, client, app, ids, times)
    finally:
        client.close()
        store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


VIEWER = Principal("vera", {"alpha": Role.VIEWER})  # may view alpha's records only
LINEAGE = """query($roots: [String!]!, $at: DateTime) {
    lineage(input: {roots: $roots, asOf: $at}) { nodes { distance node { id } } } }"""


def _roots(result: Any) -> list[str]:
    assert result.errors is None, result.errors
    return [n["node"]["id"] for n in result.data["lineage"]["nodes"] if n["distance"] == 0]


def _code(result: Any) -> str:
    assert result.errors, result.data
    return str(result.errors[0].extensions["code"])


def test_a_dataset_s_latest_is_its_newest_version_then(history: History) -> None:
    """``dataset:lake/clean@latest`` as of a time is the version that was newest then (it
    was the version newest now, which did not exist yet: NOT_FOUND)."""
    lineage = history.client.lineage
    ref = "dataset:lake/clean@latest"
    assert list(lineage([ref], as_of=history.times["alpha"]).roots) == [history.ids["clean-1"]]
    assert list(lineage([ref], as_of=history.times["beta"]).roots) == [history.ids["clean-2"]]
    assert list(lineage([ref]).roots) == [history.ids["clean-2"]]
    before = datetime(2000, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(NotFoundError):
        lineage([ref], as_of=before)


@pytest.mark.anyio
async def test_who_may_read_a_lineage_as_of_a_time_is_decided_by_its_roots_then(
    history: History,
) -> None:
    """The roots' projects are those of the versions the names held then: a viewer of alpha
    reads March's lineage of ``churn@champion`` when alpha's version held it (it was refused,
    the champion being beta's now), and is refused it when beta's did (it was answered, with
    the root itself withheld)."""
    alpha, beta = history.times["alpha"], history.times["beta"]
    for ref, then in (("churn@champion", "mv:churn/1"), ("dataset:lake/clean@latest", None)):
        found = await history.gql(LINEAGE, VIEWER, roots=[ref], at=alpha.isoformat())
        assert _roots(found) == [then or history.ids["clean-1"]]
        refused = await history.gql(LINEAGE, VIEWER, roots=[ref], at=beta.isoformat())
        assert _code(refused) == "FORBIDDEN"
    assert _roots(await history.gql(LINEAGE, VIEWER, roots=["churn@champion"])) == ["mv:churn/3"]
    assert _code(await history.gql(LINEAGE, VIEWER, roots=["dataset:lake/clean@latest"])) == (
        "FORBIDDEN"
    )
    # an admin sees every version the name held
    admin = Principal("root", {None: Role.ADMIN})
    found = await history.gql(LINEAGE, admin, roots=["churn@champion"], at=beta.isoformat())
    assert _roots(found) == ["mv:churn/2"]


class _As:
    """Test only: the principal on the request's state, where the authentication puts it."""

    def __init__(self, app: Any, principal: Principal) -> None:
        self.app, self.principal = app, principal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


def test_the_http_export_as_of_a_time_is_checked_and_focused_as_then(history: History) -> None:
    alpha, beta = history.times["alpha"], history.times["beta"]
    url = "/export/lineage/churn@champion.json"
    with HubServer(_As(history.app, VIEWER)) as server, httpx.Client(base_url=server.url) as http:
        then = http.get(url, params={"asOf": alpha.isoformat(), "focus": "churn@champion"})
        assert then.status_code == 200, then.text
        assert "mv:churn/1" in then.text and "mv:churn/3" not in then.text
        assert http.get(url, params={"asOf": beta.isoformat()}).status_code == 403
        assert http.get(url).status_code == 200


@pytest.mark.anyio
async def test_a_card_and_a_report_as_of_a_time_are_of_the_version_named_then(
    history: History,
) -> None:
    """``churn@champion`` as of a time names the champion of then: its card then (it was
    version 3's empty card, a version not registered yet) and its report (NOT_FOUND)."""
    alpha = history.times["alpha"]
    card = history.client.model_card("churn@champion", as_of=alpha)
    assert card.version_id == "mv:churn/1" and card.fields == {"intended_use": "version 1"}
    report = history.client.compliance_report("churn@champion", as_of=alpha)
    assert report["identity"]["version_id"] == "mv:churn/1"
    query = """query($at: DateTime) { modelCard(ref: "churn@latest", asOf: $at) {
        versionId intendedUse } }"""
    answered = await history.gql(query, VIEWER, at=alpha.isoformat())
    assert answered.errors is None, answered.errors
    assert answered.data["modelCard"] == {"versionId": "mv:churn/1", "intendedUse": "version 1"}


IMPACT = """query($ref: String!, $at: DateTime) { impact(ref: $ref, asOf: $at) {
    modelVersions { id } deployments { id } openAlerts { id } runs { ... on Run { name } } } }"""


@pytest.mark.anyio
async def test_the_impact_of_a_dataset_as_of_a_time_is_what_had_come_from_it_then(
    history: History,
) -> None:
    """What a bad input affected as of a time: the versions and runs that had come from it,
    the deployments serving them then and the alerts open then (without ``asOf``: now)."""
    client, store = history.client, history.store
    deployment = client.deploy("churn/1", "prod", name="churn")  # served from now on
    served = _moment()
    alert = history.app.state.services.monitor._alert_service().receive_alertmanager(
        {"alerts": [{"labels": {"alertname": "drift", "deployment": deployment.id}}]}, "ops"
    )[0]
    firing = _moment()
    client.deploy("churn/3", "prod", name="churn")  # the deployment serves 3 (no raw data)
    history.app.state.services.monitor._alert_service().receive_alertmanager(
        {"alerts": [{"labels": {"alertname": "drift", "deployment": deployment.id},
                     "status": "resolved"}]}, "ops"
    )  # fmt: skip
    raw = "dataset:lake/raw@latest"

    async def impact(at: datetime | None) -> dict[str, Any]:
        result = await history.gql(IMPACT, None, ref=raw, at=at.isoformat() if at else None)
        assert result.errors is None, result.errors
        got = result.data["impact"]
        return {k: sorted(x.get("id") or x.get("name") for x in v) for k, v in got.items()}

    trained = {"alpha-1", "beta-2"}  # (the registry's own runs are downstream too)
    before = await impact(history.times["alpha"])
    assert (before["modelVersions"], before["deployments"], before["openAlerts"]) == (
        ["mv:churn/1"],
        [],
        [],
    )
    assert trained & set(before["runs"]) == {"alpha-1"}
    then = await impact(served)
    assert (then["modelVersions"], then["deployments"]) == (
        ["mv:churn/1", "mv:churn/2"],
        [deployment.id],
    )
    assert then["openAlerts"] == [] and (await impact(firing))["openAlerts"] == [alert.id]
    now = await impact(None)  # it serves a version the raw data did not make; alert resolved
    assert (now["deployments"], now["openAlerts"]) == ([], [])
    assert trained <= set(now["runs"])
    assert store.verify_audit().ok


PATH = """query($a: String!, $b: String!, $at: DateTime) { path(from: $a, to: $b, asOf: $at) {
    relation length paths { edges { source target } } } }"""


@pytest.mark.anyio
async def test_a_path_as_of_a_time_is_one_of_the_graph_then(history: History) -> None:
    """Why the raw data is upstream of a version, asked as of a time: in the graph as it was
    (a version trained since has no path then), its names read as they were then."""
    raw = "dataset:lake/raw@latest"

    async def path(to: str, at: datetime | None) -> Any:
        result = await history.gql(PATH, None, a=raw, b=to, at=at.isoformat() if at else None)
        assert result.errors is None, result.errors
        return result.data["path"]

    before = await path("mv:churn/2", history.times["alpha"])  # beta's training came later
    assert (before["relation"], before["paths"]) == (None, [])
    then = await path("mv:churn/2", history.times["beta"])
    assert (then["relation"], then["length"]) == ("upstream", 2)  # beta-2 used it, made 2
    champion = await path("churn@champion", history.times["alpha"])  # churn/1 then
    ends = {e["target"] for p in champion["paths"] for e in p["edges"]}
    ends |= {e["source"] for p in champion["paths"] for e in p["edges"]}
    assert champion["relation"] == "upstream" and "mv:churn/1" in ends
    now = await path("churn@champion", None)  # churn/3: trained on no raw data
    assert now["relation"] != "upstream"
