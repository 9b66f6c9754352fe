"""Authentication and authorization together, through the SDK, over a real server, on both
store backends: who may do what in which project, what is withheld, and what is recorded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import GraphStore, HubError, PermissionDenied, open_store
from lineagehub.ingest.client import Client
from lineagehub.interfaces.server import create_app
from lineagehub.services.identity import IdentityService


@dataclass
class Team:
    store: GraphStore
    url: str
    tokens: dict[str, str]
    app: Any

    def client(self, who: str | None) -> Client:
        token = self.tokens[who] if who else ""
        return Client(self.url, settings=Settings(token=token, user="ignored"))  # type: ignore[arg-type]

    def audit(self) -> list[tuple[str, str]]:
        self.app.state.security_audit.flush()  # refusals are written by a worker thread
        return [(e.actor, e.action) for e in self.store.read_audit(0, 1000, None)]


@pytest.fixture
def team(store_backend: str, tmp_path: Path) -> Iterator[Team]:
    with contextlib.ExitStack() as stack:
        store = open_store(fresh_store_uri(store_backend, tmp_path))
        stack.callback(store.close)
        identity = IdentityService(store, actor="root")
        identity.add_user("eve", "editor", project="alpha")
        identity.add_user("vic", "viewer", project="beta")
        tokens = {u: identity.create_token(u, name="t").secret for u in ("eve", "vic")}
        artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
        settings = Settings(user="hub-server", data_dir=tmp_path, auth="tokens")  # type: ignore[arg-type]
        app = create_app(settings, store=store, artifacts=artifacts)
        yield Team(store, stack.enter_context(HubServer(app)).url, tokens, app)


def test_a_team_server_through_the_sdk(team: Team) -> None:
    with team.client("eve") as eve:
        with eve.start_run("train", project="alpha", capture=False) as run:
            run.log_metrics({"auc": 0.9})
            version = run.log_model({"w": 1}, name="churn")
        launchers = team.store.neighbors([run.id], "UPSTREAM", ["ASSOCIATED_WITH"])[run.id]
        assert [a.node.id for a in launchers] == ["agent:eve"]
        with pytest.raises(PermissionDenied, match="editor"):
            eve.start_run("elsewhere", project="beta", capture=False)
        assert not team.store.find_nodes("Run", {"name": "elsewhere"}).items  # nothing written
        with pytest.raises(PermissionDenied, match="approver"):
            eve.promote(version.node_id, "Production", "mine")
    with team.client("vic") as vic:
        runs, _ = vic.search_runs()
        assert runs == []  # eve's run is in alpha: withheld from beta's viewer
        with pytest.raises(PermissionDenied):
            vic.lineage([version.node_id])
    with team.client(None) as nobody, pytest.raises(HubError) as anonymous:
        nobody.search_runs()
    assert anonymous.value.code == "UNAUTHENTICATED"
    audit = team.audit()
    assert ("eve", "run.start") in audit
    assert ("eve", "access.denied") in audit and ("vic", "access.denied") in audit
    assert not any(actor in ("ignored", "hub-server") for actor, _ in audit)


def test_other_projects_runs_and_versions_are_not_listed(team: Team) -> None:
    with team.client("eve") as eve, eve.start_run("train", project="alpha", capture=False) as run:
        run.log_model({"w": 1}, name="churn")
    headers = {"authorization": f"Bearer {team.tokens['vic']}"}
    with httpx.Client(base_url=team.url, headers=headers, timeout=30) as http:

        def page(field: str) -> Any:
            query = f"{{ {field}(first: 10) {{ withheld edges {{ node {{ id }} }} }} }}"
            return http.post("/graphql", json={"query": query}).json()["data"][field]

        # other projects' runs and versions are not asked for at all (a count would answer
        # filters); what the store's filter lets through is checked again, and counted
        assert page("modelVersions") == {"withheld": 0, "edges": []}
        assert page("runs") == {"withheld": 0, "edges": []}


def test_bytes_of_another_project_cannot_be_taken_by_naming_their_digest(team: Team) -> None:
    """An editor of another project who learns a digest may not register or log those bytes
    (and so download them: a holder it may view would let it); and an editor who may view
    them and logs them under a run of its own, however that run is named, does not take
    them into its project: their first owner's viewers keep them."""
    identity = IdentityService(team.store, actor="root")
    identity.add_user("bob", "editor", project="beta")
    identity.add_user("val", "viewer", project="alpha")
    team.tokens["bob"] = identity.create_token("bob", name="t").secret
    team.tokens["val"] = identity.create_token("val", name="t").secret
    with team.client("eve") as eve, eve.start_run("train", project="alpha", capture=False) as run:
        weights = run.log_model({"w": "alpha's weights"}, name="churn").artifact_digest
        notes = run.log_text("alpha's private notes", "notes.md").digest

    def as_(who: str) -> httpx.Client:
        headers = {"authorization": f"Bearer {team.tokens[who]}"}
        return httpx.Client(base_url=team.url, headers=headers, timeout=30)

    def gql(http: httpx.Client, query: str, **variables: Any) -> Any:
        return http.post("/graphql", json={"query": query, "variables": variables}).json()

    low = "run:00000000-0000-7000-8000-000000000000"  # sorts before any run the hub names
    with as_("bob") as bob:
        started = gql(
            bob,
            'mutation($id: String!) { startRun(input: {name: "early", project: "beta", id: $id})'
            " { id } }",
            id=low,
        )
        assert started.get("data", {}).get("startRun", {}).get("id") == low, started
        # answered exactly as bytes the hub does not have: neither that alpha holds them
        # nor that they are here at all is bob's to learn
        nowhere = "sha256:" + "0" * 64

        def same(answer: Any, digest: str) -> str:
            return json.dumps(answer).replace(digest, "DIGEST")

        for mutation in (
            'mutation($d: String!, $r: ID!) { registerModelVersion(name: "stolen", digest: $d,'
            " runId: $r) { id } }",
            'mutation($d: String!, $r: ID!) { logArtifact(runId: $r, digest: $d, name: "x") { id } }',
        ):
            absent = gql(bob, mutation, d=nowhere, r=low)
            assert absent["errors"][0]["extensions"]["code"] == "NOT_FOUND", absent
            for digest in (weights, notes):
                answer = gql(bob, mutation, d=digest, r=low)
                assert same(answer, digest) == same(absent, nowhere), (answer, absent)
        for method in ("GET", "HEAD"):
            absent = bob.request(method, f"/artifacts/{nowhere}")
            assert absent.status_code == 404, absent.text
            for digest in (weights, notes):
                answer = bob.request(method, f"/artifacts/{digest}")
                assert answer.status_code == 404, answer.text
                assert answer.text.replace(digest, "D") == absent.text.replace(nowhere, "D")
    identity.grant("bob", "viewer", project="alpha")  # now bob may read them
    with as_("bob") as bob:
        logged = gql(
            bob,
            'mutation($d: String!, $r: ID!) { logArtifact(runId: $r, digest: $d, name: "x") { id } }',
            d=notes,
            r=low,
        )
        assert "errors" not in logged, logged
    with as_("val") as val:
        assert val.get(f"/artifacts/{notes}").status_code == 200  # still alpha's


def beta_output(team: Team, digest: str) -> str:
    """bob, an editor of beta, writes s3://lake/beta-out.parquet as the output of a beta run."""
    identity = IdentityService(team.store, actor="root")
    identity.add_user("bob", "editor", project="beta")
    team.tokens["bob"] = identity.create_token("bob", name="t").secret
    with team.client("bob") as bob, bob.start_run("make", project="beta", capture=False) as made:
        made.log_dataset_ref("s3://lake/beta-out.parquet", digest, output=True)
    return digest


def test_a_trace_does_not_name_a_withheld_node_as_where_another_was_reached_from(
    team: Team,
) -> None:
    """A shared dataset reached through another project's dataset version: the version is
    withheld, and so is its id in the dataset's reachedFrom (now the nearest node on the way
    the caller may see)."""
    digest = beta_output(team, "sha256:" + "b" * 64)
    with team.client("eve") as eve, eve.start_run("use", project="alpha", capture=False) as run:
        run.log_dataset_ref("s3://lake/beta-out.parquet", digest)
    headers = {"authorization": f"Bearer {team.tokens['eve']}"}
    query = (
        "query($r: String!) { lineage(input: {roots: [$r], upstreamDepth: 3}) { withheld"
        " nodes { node { id } reachedFrom } } }"
    )
    with httpx.Client(base_url=team.url, headers=headers, timeout=30) as http:
        answer = http.post("/graphql", json={"query": query, "variables": {"r": run.id}}).json()
    lineage = answer["data"]["lineage"]
    assert lineage["withheld"] >= 1
    shown = {n["node"]["id"] for n in lineage["nodes"]}
    assert all(n["reachedFrom"] in shown | {None} for n in lineage["nodes"]), lineage
    assert not any(n.startswith("dsv:") for n in shown)


def test_a_compliance_report_drawing_on_records_the_caller_may_not_view_is_refused(
    team: Team,
) -> None:
    """The report of an alpha version trained on beta's output data would show beta's run,
    experiment and dataset profile to alpha's editor: refused (FORBIDDEN) rather than given
    with them, or with holes; a version whose lineage is alpha's own is reported."""
    digest = beta_output(team, "sha256:" + "d" * 64)
    with team.client("eve") as eve:
        with eve.start_run("own", project="alpha", capture=False) as run:
            own = run.log_model({"w": 1}, name="own")
        with eve.start_run("mixed", project="alpha", capture=False) as run:
            run.log_dataset_ref("s3://lake/beta-out.parquet", digest)
            mixed = run.log_model({"w": 2}, name="mixed")
        assert eve.compliance_report(own.node_id)["identity"]["version_id"] == own.node_id
        with pytest.raises(PermissionDenied, match="projects it may not view"):
            eve.compliance_report(mixed.node_id)


def test_an_openlineage_denial_is_recorded_once(team: Team) -> None:
    """The OpenLineage route records its own denials, with what was refused; the
    authentication's record of the 403 wrote each a second time."""
    event = {
        "eventType": "START",
        "eventTime": "2026-03-01T06:00:00Z",
        "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "0190e5a0-0000-7000-8000-000000000001"},
        "job": {"namespace": "beta", "name": "task"},
    }
    before = team.audit().count(("vic", "access.denied"))
    headers = {"authorization": f"Bearer {team.tokens['vic']}"}
    response = httpx.post(f"{team.url}/api/v1/lineage", json=event, headers=headers, timeout=30)
    assert response.status_code == 403
    assert team.audit().count(("vic", "access.denied")) == before + 1


def test_a_team_logs_bytes_another_project_holds_by_uploading_them(
    team: Team, tmp_path: Path
) -> None:
    """Two teams logging one public file: the second was refused (403, naming the first's
    project) though it had the bytes. Uploading them answers a receipt that proves it holds
    them; the SDK sends it with the write. A digest alone (or another's receipt) still is not,
    and the hub answers bob as if it had never seen the bytes: not there for a HEAD or a
    write without a receipt, "created" by his upload."""
    identity = IdentityService(team.store, actor="root")
    identity.add_user("bob", "editor", project="beta")
    team.tokens["bob"] = identity.create_token("bob", name="t").secret
    public = b"a public dataset file, byte for byte the same for both teams" * 100
    path = tmp_path / "public.csv"
    path.write_bytes(public)
    with team.client("eve") as eve, eve.start_run("a", project="alpha", capture=False) as run:
        digest = run.log_artifact(path).digest
    headers = {"authorization": f"Bearer {team.tokens['bob']}"}
    with httpx.Client(base_url=team.url, headers=headers, timeout=30) as http:
        upload = http.put(
            "/artifacts", content=public, headers={"content-type": "application/octet-stream"}
        ).json()
        assert upload["created"] is True and upload["digest"] == digest
        assert http.head(f"/artifacts/{digest}").status_code == 404
        run_id = http.post(
            "/graphql",
            json={"query": 'mutation { startRun(input: {name: "c", project: "beta"}) { id } }'},
        ).json()["data"]["startRun"]["id"]
        log = 'mutation($d: String!, $r: ID!, $k: String) { logArtifact(runId: $r, digest: $d, name: "y", receipt: $k) { id } }'
        for receipt in (None, "0" * 64, upload["receipt"][::-1]):
            refused = http.post(
                "/graphql",
                json={"query": log, "variables": {"d": digest, "r": run_id, "k": receipt}},
            ).json()
            assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND", refused
            assert "alpha" not in refused["errors"][0]["message"]  # the other project unnamed
        taken = http.post(
            "/graphql",
            json={"query": log, "variables": {"d": digest, "r": run_id, "k": upload["receipt"]}},
        ).json()
        assert "errors" not in taken, taken
    # through the SDK, which uploads and sends the receipt with the write
    with team.client("bob") as bob, bob.start_run("b", project="beta", capture=False) as mine:
        assert mine.log_artifact(path).digest == digest
        assert mine.log_model(path, name="beta-model").artifact_digest == digest
