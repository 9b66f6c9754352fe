"""Authentication over a real server: API tokens, OIDC JWTs (real PyJWT against a JWKS served
by a local HTTP server), 401 vs 403, expiry, revocation, last use, rate limits, the actor
recorded for changes, refusals in the audit log, and no secret in any log line or error."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from http_server import HubServer

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import ConfigError, GraphStore, HubError, Node, open_store
from lineagehub.graph.model import to_iso
from lineagehub.ingest.http import HubConnection
from lineagehub.interfaces.auth import OidcVerifier, SecurityAudit, check_serve
from lineagehub.interfaces.cli import main
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.services.access import Role
from lineagehub.services.identity import (
    TOKEN_LABEL,
    AuthenticationError,
    IdentityService,
)
from lineagehub.services.registry import Policy

POLICIES = {("churn", "Production"): Policy(approvals=1, separation_of_duties=True)}
RESULT = """
  __typename
  ... on ModelPromoted { version { id stage } approvals }
  ... on PromotionPending { requestId }
  ... on PolicyViolation { rules { rule actual } }
"""


@dataclass
class Hub:
    store: GraphStore
    url: str
    identity: IdentityService
    secrets: dict[str, str]
    token_ids: dict[str, str]
    app: Any

    def client(self, who: str | None) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.secrets[who]}"} if who else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GraphStore]:
    s = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    build_example(s)
    yield s
    s.close()


def _serve(tmp_path: Path, store: GraphStore, **settings: Any) -> Any:
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    config = Settings(user="hub-server", data_dir=tmp_path, **settings)
    return create_app(config, store=store, artifacts=artifacts, registry_policies=POLICIES)


@pytest.fixture
def hub(tmp_path: Path, store: GraphStore) -> Iterator[Hub]:
    identity = IdentityService(store, actor="root")
    identity.add_user("alice", "approver")
    identity.add_user("bob", "editor")
    identity.add_user("nobody")  # no role
    made = {u: identity.create_token(u, name="test") for u in ("alice", "bob", "nobody")}
    app = _serve(tmp_path, store, auth="tokens")
    with HubServer(app) as server:
        yield Hub(
            store,
            server.url,
            identity,
            {u: t.secret for u, t in made.items()},
            {u: t.token.id for u, t in made.items()},
            app,
        )


def gql(http: httpx.Client, query: str, **variables: Any) -> httpx.Response:
    return http.post("/graphql", json={"query": query, "variables": variables})


def data(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = gql(http, query, **variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def audit_entries(hub: Hub) -> list[Any]:
    hub.app.state.security_audit.flush()
    return list(hub.store.iter_audit())


def assert_unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    return str(error["message"])


# --------------------------------------------------------------------------- the identity store


def test_a_token_secret_is_shown_once_and_stored_only_as_its_hash(store: GraphStore) -> None:
    identity = IdentityService(store, actor="root")
    identity.add_user("alice", Role.ADMIN)
    new = identity.create_token("alice", name="ci", expires_in=timedelta(days=30))
    assert new.secret.startswith("lh_") and len(new.secret) > 40
    assert new.secret not in repr(new)
    node = store.get_node(f"token:{new.token.id}")
    assert node.label == TOKEN_LABEL
    assert new.secret not in json.dumps(node.props)
    assert node.props["hash"] == hashlib.sha256(new.secret.encode()).hexdigest()
    listed = identity.list_tokens("alice")
    assert [t.id for t in listed] == [new.token.id]
    assert "hash" not in listed[0].to_dict() and "secret" not in listed[0].to_dict()
    principal, token = identity.authenticate(new.secret)
    assert principal.name == "alice" and principal.via == "token"
    assert principal.role() is Role.ADMIN
    assert token.expires_at is not None and token.expires_at > datetime.now(timezone.utc)
    # changes are audited under the admin who made them, never with the secret
    actions = [(e.actor, e.action, e.target) for e in store.read_audit(0, 1000)]
    assert ("root", "user.add", "user:alice") in actions
    assert ("root", "token.create", f"token:{new.token.id}") in actions


def test_last_used_is_written_at_most_once_a_minute(store: GraphStore) -> None:
    identity = IdentityService(store)
    identity.add_user("alice", "viewer")
    secret = identity.create_token("alice").secret
    t0 = datetime.now(timezone.utc)
    _, first = identity.authenticate(secret, now=t0)
    assert first.last_used_at == t0
    _, again = identity.authenticate(secret, now=t0 + timedelta(seconds=30))
    assert identity.get_token(first.id).last_used_at == t0  # not rewritten within a minute
    assert again.last_used_at == t0
    _, later = identity.authenticate(secret, now=t0 + timedelta(seconds=61))
    assert identity.get_token(first.id).last_used_at == t0 + timedelta(seconds=61)
    assert later.last_used_at == t0 + timedelta(seconds=61)


def test_using_a_token_leaves_the_audit_log_verifying(backend_uri: str) -> None:
    """last_used_at was written on the token's record with no audit entry, so `audit verify`
    reported every token used since its last change as a record changed outside the hub
    (exit 7) on any server with tokens. It is kept on a record no entry covers; listing, look-up
    and the record after a revocation are as before."""
    from lineagehub.services.audit import verify_log

    with open_store(backend_uri) as store:
        identity = IdentityService(store, actor="root")
        identity.add_user("alice", "viewer")
        new = identity.create_token("alice")
        t0 = datetime.now(timezone.utc)
        identity.authenticate(new.secret, now=t0)
        result = verify_log(store, None)
        assert result.ok, result.problem
        assert identity.get_token(new.token.id).last_used_at == t0
        assert [t.last_used_at for t in identity.list_tokens("alice")] == [t0]
        identity.revoke_token(new.token.id)
        identity.authenticate(identity.create_token("alice").secret, now=t0)
        result = verify_log(store, None)
        assert result.ok, result.problem
        assert identity.get_token(new.token.id).last_used_at == t0
        assert identity.get_token(new.token.id).revoked_at is not None


def test_expired_revoked_unknown_and_disabled_are_refused(store: GraphStore) -> None:
    identity = IdentityService(store)
    identity.add_user("alice", "viewer")
    short = identity.create_token("alice", expires_in=timedelta(hours=1))
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    with pytest.raises(AuthenticationError) as e:
        identity.authenticate(short.secret, now=later)
    assert e.value.reason == "expired" and e.value.token_id == short.token.id
    revoked = identity.create_token("alice")
    identity.revoke_token(revoked.token.id)
    with pytest.raises(AuthenticationError) as e:
        identity.authenticate(revoked.secret)
    assert e.value.reason == "revoked"
    with pytest.raises(AuthenticationError) as e:
        identity.authenticate("lh_" + "x" * 43)
    assert e.value.reason == "unknown" and e.value.token_id is None
    ok = identity.create_token("alice")
    identity.disable("alice")
    with pytest.raises(AuthenticationError) as e:
        identity.authenticate(ok.secret)
    assert e.value.reason == "disabled"


def test_grants_per_project(store: GraphStore) -> None:
    identity = IdentityService(store)
    identity.add_user("carol", "viewer")
    identity.grant("carol", "approver", project="churn")
    p = identity.principal("carol", via="oidc")
    assert p.role() is Role.VIEWER and p.role("churn") is Role.APPROVER
    identity.revoke("carol")
    p = identity.principal("carol", via="oidc")
    assert p.role() is None and p.role("churn") is Role.APPROVER
    assert identity.principal("stranger", via="oidc").grants == {}


# --------------------------------------------------------------------------- over the server


def test_every_route_but_health_needs_a_credential(hub: Hub) -> None:
    with hub.client(None) as anonymous:
        assert_unauthenticated(gql(anonymous, "{ runs(first: 5) { nodes { id } } }"))
        assert_unauthenticated(anonymous.get("/graphql", params={"query": "{ __typename }"}))
        assert_unauthenticated(anonymous.get("/artifacts/sha256:" + "0" * 64))
        assert_unauthenticated(
            anonymous.put(
                "/artifacts", content=b"x", headers={"content-type": "application/octet-stream"}
            )
        )
        assert_unauthenticated(anonymous.get("/export/lineage/model:churn@latest.json"))
        bad = anonymous.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"authorization": "Bearer lh_not-a-real-token"},
        )
        assert_unauthenticated(bad)
        basic = anonymous.get("/export/lineage/x.json", headers={"authorization": "Basic eDp5"})
        assert_unauthenticated(basic)
        page = anonymous.get("/graphql", headers={"accept": "text/html"})  # GraphiQL: no data
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        health = anonymous.get("/health")
        assert health.status_code == 200
        text = health.text
        assert all(secret not in text for secret in hub.secrets.values())
        assert "token" not in text.lower()
    with hub.client("alice") as alice:
        assert data(alice, "{ runs(first: 5) { nodes { id } } }")["runs"]["nodes"]
        exported = alice.get("/export/lineage/model:churn@latest.json")
        assert exported.status_code == 200


def test_a_query_dressed_as_the_graphiql_page_still_needs_a_credential(hub: Hub) -> None:
    """The GraphiQL page alone passes without a credential: a GET that names a query in any
    spelling the view decodes ('%71uery=', a repeated key, a stray parameter) is an API
    request and needs one. (An encoded '%71uery=' ran as the open hub's admin: every
    project's runs and the audit trail.)"""
    html = {"accept": "text/html"}
    query = "{ auditTrail(first: 2) { entries { action } } runs(first: 5) { nodes { id } } }"
    with hub.client(None) as anonymous:
        for raw in (
            "%71uery=" + quote(query),
            "qu%65ry=" + quote(query),
            "x=1&%71uery=" + quote(query),
            "query=" + quote(query),
        ):
            response = anonymous.get(f"/graphql?{raw}", headers=html)
            assert_unauthenticated(response)
            assert "auditTrail" not in response.text and "run:" not in response.text
        page = anonymous.get("/graphql", headers=html)
        assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_a_request_without_a_caller_on_an_authenticating_hub_may_do_nothing(
    tmp_path: Path,
) -> None:
    """Behind the authentication, the GraphQL view itself: a request that reached it without
    a caller (only the GraphiQL page should) acts as no one, with no role, never as the
    open hub's admin."""
    import anyio
    from starlette.requests import Request

    from lineagehub.interfaces.server import _GraphQL

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    app = create_app(Settings(auth="tokens"), store=store)
    view = _GraphQL(app.state.services, 1.0, authenticating=True)
    scope = {"type": "http", "method": "GET", "path": "/graphql", "headers": [], "state": {}}
    context = anyio.run(view.get_context, Request(scope), None)
    assert context.principal.grants == {} and not context.principal.sees_everything
    open_view = _GraphQL(app.state.services, 1.0)
    assert anyio.run(open_view.get_context, Request(scope), None).principal.sees_everything
    store.close()


def test_401_for_bad_credentials_and_403_for_a_user_without_a_role(hub: Hub) -> None:
    with hub.client("nobody") as nobody:
        response = gql(nobody, "{ runs(first: 5) { nodes { id } } }")
        assert response.status_code == 403
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    denied = [e for e in audit_entries(hub) if e.action == "access.denied"]
    assert denied and denied[-1].actor == "nobody"


def test_a_revoked_or_expired_token_gets_401_and_the_failure_is_audited(hub: Hub) -> None:
    with hub.client("bob") as bob:
        assert data(bob, "{ __typename }")
        hub.identity.revoke_token(hub.token_ids["bob"])
        message = assert_unauthenticated(gql(bob, "{ __typename }"))
        assert "revoked" in message
    # an expiry reached (the record as time will have it)
    node = hub.store.get_node(f"token:{hub.token_ids['alice']}")
    past = to_iso(datetime.now(timezone.utc) - timedelta(seconds=1))
    hub.store.upsert_nodes([Node(node.id, node.label, {**node.props, "expires_at": past})])
    with hub.client("alice") as alice:
        assert "expired" in assert_unauthenticated(gql(alice, "{ __typename }"))
    failed = [e for e in audit_entries(hub) if e.action == "auth.failed"]
    assert {e.target for e in failed} == {
        f"token:{hub.token_ids['bob']}",
        f"token:{hub.token_ids['alice']}",
    }
    assert all(e.actor == "anonymous" for e in failed)


def test_last_used_is_recorded_through_the_server(hub: Hub) -> None:
    assert hub.identity.get_token(hub.token_ids["alice"]).last_used_at is None
    before = datetime.now(timezone.utc)
    with hub.client("alice") as alice:
        data(alice, "{ __typename }")
        first = hub.identity.get_token(hub.token_ids["alice"]).last_used_at
        assert first is not None and first >= before - timedelta(seconds=1)
        data(alice, "{ __typename }")
    assert hub.identity.get_token(hub.token_ids["alice"]).last_used_at == first


def test_users_and_tokens_are_never_reachable_through_the_api(hub: Hub) -> None:
    token = f"token:{hub.token_ids['alice']}"
    with hub.client("alice") as alice:
        found = data(
            alice,
            "query($a: String!, $b: String!, $ids: [ID!]!) "
            "{ a: node(ref: $a) { id } b: node(ref: $b) { id } nodes(ids: $ids) { id } }",
            a="user:alice",
            b=token,
            ids=["user:alice", token, "user:bob"],
        )
        assert found == {"a": None, "b": None, "nodes": [None, None, None]}
        lineage = gql(
            alice,
            "query($r: [String!]!) { lineage(input: {roots: $r, direction: BOTH}) "
            "{ nodes { node { id } } } }",
            r=["user:alice"],
        ).json()
        assert lineage["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert alice.get("/export/lineage/user:alice.json").status_code == 404
        assert alice.get(f"/export/lineage/{token}.json").status_code == 404
        body = gql(alice, "{ runs(first: 500) { edges { node { id } } } }").text
        assert "user:" not in body and "token:" not in body
        audit = gql(alice, "{ auditTrail(first: 500) { entries { actor action target } } }").text
        assert all(secret not in audit for secret in hub.secrets.values())
        stored = hub.store.get_node(token).props["hash"]
        assert stored not in audit


def test_tracking_and_registry_changes_are_recorded_under_the_caller(hub: Hub) -> None:
    with hub.client("bob") as bob, hub.client("alice") as alice:
        run = data(
            bob,
            'mutation { startRun(input: {name: "r", project: "churn", user: "mallory"}) { id } }',
        )["startRun"]["id"]
        data(bob, f'mutation {{ endRun(runId: "{run}", status: "FINISHED") {{ id }} }}')
        launchers = hub.store.neighbors([run], "UPSTREAM", ["ASSOCIATED_WITH"])[run]
        assert [a.node.id for a in launchers] == ["agent:bob"]  # not the free-text user

        def mutate(http: httpx.Client, name: str, args: str) -> dict[str, Any]:
            query = f"mutation {{ {name}({args}) {{ {RESULT} }} }}"
            return data(http, query)[name]

        pending = mutate(
            bob, "requestPromotion", 'ref: "churn/2", to: "Production", reason: "ready"'
        )
        assert pending["__typename"] == "PromotionPending"
        rid = pending["requestId"]
        # an editor may not approve at all; an approver may not approve their own request
        refused = gql(bob, f'mutation {{ approvePromotion(requestId: "{rid}") {{ __typename }} }}')
        assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        hub.identity.grant("bob", "approver")
        own = mutate(bob, "approvePromotion", f'requestId: "{rid}"')
        assert own["__typename"] == "PolicyViolation"
        assert own["rules"][0] == {"rule": "separation_of_duties.requester", "actual": "bob"}
        done = mutate(alice, "approvePromotion", f'requestId: "{rid}"')
        assert done["__typename"] == "ModelPromoted" and done["approvals"] == ["alice"]
    actions = {(e.actor, e.action) for e in audit_entries(hub)}
    assert ("bob", "promotion.requested") in actions
    assert ("alice", "promotion.approved") in actions
    run_entries = [e for e in audit_entries(hub) if e.target == run]
    assert run_entries and {e.actor for e in run_entries} == {"bob"}
    assert not any(e.actor in ("hub-server", "mallory") for e in audit_entries(hub))


def test_the_sdk_sends_the_token_from_the_environment(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lineagehub.ingest.client import Client

    monkeypatch.delenv("LINEAGEHUB_TOKEN", raising=False)
    with pytest.raises(HubError) as e:
        Client(hub.url).search_runs()
    assert e.value.code == "UNAUTHENTICATED"
    assert "lh_" not in str(e.value)

    path = tmp_path / "token"
    path.write_text(hub.secrets["bob"] + "\n")
    path.chmod(0o644)
    monkeypatch.setenv("LINEAGEHUB_TOKEN_FILE", str(path))
    with pytest.raises(ConfigError) as refused:
        HubConnection(hub.url)
    assert "chmod 600" in str(refused.value) and hub.secrets["bob"] not in str(refused.value)
    path.chmod(0o600)
    client = Client(hub.url)
    with client.start_run(name="sdk", project="churn") as run:
        run.log_metric("loss", 0.5)
    client.close()
    launchers = hub.store.neighbors([run.id], "UPSTREAM", ["ASSOCIATED_WITH"])[run.id]
    assert [a.node.id for a in launchers] == ["agent:bob"]
    monkeypatch.delenv("LINEAGEHUB_TOKEN_FILE")
    # a token in the settings given to the client (the environment has none now)
    given = Client(hub.url, settings=Settings(token=hub.secrets["alice"]))
    assert given.get_run(run.id).id == run.id
    given.close()
    connection = HubConnection(hub.url, token=hub.secrets["bob"])
    assert hub.secrets["bob"] not in repr(connection)
    connection.close()


def test_the_cli_sends_the_token(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LINEAGEHUB_TOKEN", raising=False)
    monkeypatch.delenv("LINEAGEHUB_TOKEN_FILE", raising=False)
    assert main(["runs", "list", "--url", hub.url]) == 4
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "Authorization: Bearer" in err
    monkeypatch.setenv("LINEAGEHUB_TOKEN", hub.secrets["bob"])
    assert main(["runs", "list", "--url", hub.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_token_file_permissions(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("lh_secret\n")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="group or others"):
        Settings(token_file=path).bearer_token()
    path.chmod(0o600)
    assert Settings(token_file=path).bearer_token() == "lh_secret"
    assert Settings(token="lh_env", token_file=path).bearer_token() == "lh_env"
    assert "lh_env" not in repr(Settings(token="lh_env"))
    with pytest.raises(ConfigError, match="cannot read"):
        Settings(token_file=tmp_path / "missing").bearer_token()


def test_rate_limit_per_token(tmp_path: Path, store: GraphStore) -> None:
    identity = IdentityService(store)
    identity.add_user("alice", "viewer")
    identity.add_user("bob", "viewer")
    a, b = identity.create_token("alice").secret, identity.create_token("bob").secret
    with HubServer(_serve(tmp_path, store, auth="tokens", rate_limit=3)) as server:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {a}"}) as alice:
            for _ in range(3):
                assert gql(alice, "{ __typename }").status_code == 200
            limited = gql(alice, "{ __typename }")
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {b}"}) as bob:
            assert gql(bob, "{ __typename }").status_code == 200
        assert httpx.get(server.url + "/health").status_code == 200


def test_refusals_in_the_audit_log_are_throttled(store: GraphStore) -> None:
    now = [1000.0]
    audit = SecurityAudit(store, per_minute=5, clock=lambda: now[0])
    written = [audit.record("anonymous", "auth.failed", "/graphql", {}) for _ in range(50)]
    audit.flush()
    assert written.count(True) == 5
    assert sum(e.action == "auth.failed" for e in store.read_audit(0, 1000)) == 5
    now[0] += 61
    assert audit.record("anonymous", "auth.failed", "/graphql", {"reason": "unknown"})
    audit.close()
    failed = [e for e in store.read_audit(0, 1000) if e.action == "auth.failed"]
    assert len(failed) == 6  # the 45 left out are counted in the payload of the sixth


def test_a_forbidden_graphql_error_is_audited(store: GraphStore) -> None:
    """The schema's error shaping hands every FORBIDDEN error to the server's audit."""
    import strawberry

    from lineagehub.graph import PermissionDenied
    from lineagehub.schema.errors import HubErrors
    from lineagehub.services.access import Principal

    @strawberry.type
    class Query:
        @strawberry.field
        def secret(self) -> str:
            raise PermissionDenied("'eve' may not read secret")

    audit = SecurityAudit(store)

    @dataclass
    class Services:
        on_denied: Any

    @dataclass
    class Context:
        services: Services
        principal: Principal

    schema = strawberry.Schema(query=Query, extensions=[HubErrors])
    context = Context(Services(audit.denied), Principal("eve", {}, via="token"))
    result = schema.execute_sync("{ secret }", context_value=context)
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"
    audit.close()
    [entry] = [e for e in store.read_audit(0, 100) if e.action == "access.denied"]
    assert entry.actor == "eve" and entry.target == "graphql:secret"


# --------------------------------------------------------------------------- OIDC


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks() -> Iterator[tuple[Any, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    handler = type(
        "Handler", (_Jwks,), {"body": json.dumps({"keys": [{**public, "kid": "k1"}]}).encode()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def _jwt(key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://idp.test", "aud": "lineagehub", "iat": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_bearer_tokens_verified_against_the_jwks(
    tmp_path: Path, store: GraphStore, jwks: tuple[Any, str]
) -> None:
    key, url = jwks
    identity = IdentityService(store)
    identity.add_user("alice", "editor")
    app = _serve(
        tmp_path,
        store,
        auth="tokens,oidc",
        oidc_issuer="https://idp.test",
        oidc_audience="lineagehub",
        oidc_jwks_url=url,
    )
    api_token = identity.create_token("alice").secret
    with HubServer(app) as server:

        def call(credential: str) -> httpx.Response:
            return httpx.post(
                server.url + "/graphql",
                json={"query": 'mutation { startRun(input: {name: "o"}) { id } }'},
                headers={"authorization": f"Bearer {credential}"},
            )

        ok = call(_jwt(key, preferred_username="alice", sub="u-1"))
        assert ok.status_code == 200 and "errors" not in ok.json(), ok.text
        run = ok.json()["data"]["startRun"]["id"]
        assert [e.actor for e in store.read_audit(0, 1000) if e.target == run] == ["alice"]
        assert call(api_token).status_code == 200  # both methods
        assert_unauthenticated(call(_jwt(key, preferred_username="alice", aud="other")))
        assert_unauthenticated(call(_jwt(key, preferred_username="alice", iss="https://evil")))
        expired = _jwt(key, preferred_username="alice", exp=int(time.time()) - 3600)
        assert "expired" in assert_unauthenticated(call(expired))
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert_unauthenticated(call(_jwt(other_key, preferred_username="alice")))
        unsigned = jwt.encode(
            {"iss": "https://idp.test", "aud": "lineagehub", "sub": "alice", "exp": 2**31},
            "k" * 32,
            algorithm="HS256",
            headers={"kid": "k1"},
        )
        assert_unauthenticated(call(unsigned))
        # known to the IdP but not to the hub: authenticated, no role
        assert call(_jwt(key, sub="stranger")).status_code == 403


def test_an_oidc_user_name_is_taken_as_given_or_refused(
    tmp_path: Path, store: GraphStore, jwks: tuple[Any, str]
) -> None:
    """The name claim is the hub user's name as it stands: one with spaces or control
    characters around or in it is refused (it was trimmed: " alice " and "alice\\n" were
    alice), and so is one no user can have, with only its first characters in the answer (a
    100,000-character or NUL-holding name was a 500 echoing it whole)."""
    key, url = jwks
    IdentityService(store).add_user("alice", "editor")
    app = _serve(
        tmp_path,
        store,
        auth="oidc",
        oidc_issuer="https://idp.test",
        oidc_audience="lineagehub",
        oidc_jwks_url=url,
    )
    with HubServer(app) as server:

        def call(**claims: Any) -> httpx.Response:
            return httpx.post(
                server.url + "/graphql",
                json={"query": "{ __typename }"},
                headers={"authorization": f"Bearer {_jwt(key, **claims)}"},
            )

        assert call(preferred_username="alice").status_code == 200
        assert call(preferred_username="", sub="alice").status_code == 200  # empty: the next
        for name in (" alice ", "alice\n", "\talice", "al\x00ice", "alice\u200b", "\uff41lice"):
            message = assert_unauthenticated(call(preferred_username=name, sub="alice"))
            assert "preferred_username claim is not a user name" in message, name
        long = call(preferred_username="x" * 100_000)
        assert "not a user name" in assert_unauthenticated(long)
        assert len(long.content) < 500
    with pytest.raises(AuthenticationError):
        IdentityService(store).principal(" alice ", via="oidc")


class Idp:
    """An OIDC issuer's JWKS on a local port: the public halves of ``keys`` (kid -> private
    key; ``algs`` gives a key's declared ``alg``), or ``status`` or ``body`` instead. While
    ``hold`` is set to an unset event, an answer starts and then drips a byte at a time until
    the event is set. ``fetches`` counts the requests, and ``asked`` is set at each."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.algs: dict[str, str] = {}
        self.status = 200
        self.body: bytes | None = None
        self.hold: threading.Event | None = None
        self.fetches = 0
        self.asked = threading.Event()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.fetches += 1
                idp.asked.set()
                idp.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def jwks(self) -> bytes:
        keys = []
        for kid, private in self.keys.items():
            algorithm = jwt.algorithms.get_default_algorithms()[
                "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
            ]
            public = json.loads(algorithm.to_jwk(private.public_key()))
            keys.append(
                {**public, "kid": kid, **({"alg": self.algs[kid]} if kid in self.algs else {})}
            )
        return json.dumps({"keys": keys}).encode()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        body = self.body if self.body is not None else self.jwks()
        hold = self.hold
        request.send_response(self.status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(body) if hold is None else 10**9))
        request.end_headers()
        try:
            if hold is None:
                request.wfile.write(body)
                return
            while not hold.wait(0.05):
                request.wfile.write(b" ")
                request.wfile.flush()
        except OSError:  # the hub gave up on it
            pass

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[Idp]:
    served = Idp()
    yield served
    served.close()


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves time.monotonic (the age of the keys, the pause after a failed fetch) forward
    without waiting; a verifier made after this fixture sees it."""
    real = time.monotonic
    offset = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def _token(key: Any, kid: str, algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://idp.test", "aud": "lineagehub", "iat": now, "exp": now + 300}
    return jwt.encode({**payload, **claims}, key, algorithm=algorithm, headers={"kid": kid})


def _verifier(idp: Idp) -> OidcVerifier:
    return OidcVerifier("https://idp.test", "lineagehub", idp.url, None)


def _unavailable(error: BaseException | None) -> bool:
    return isinstance(error, HubError) and error.code == "BACKEND_UNAVAILABLE" and error.retryable


def test_a_key_removed_from_the_jwks_is_refused_once_the_jwks_is_fetched_again(
    idp: Idp, later: Callable[[float], None]
) -> None:
    """The keys follow the JWKS: kept five minutes, then fetched again, and a key no longer
    listed is refused (each key was cached for the life of the process, so a key the issuer
    withdrew, say a leaked one, stayed good)."""
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    idp.keys = {"old": old}
    verifier = _verifier(idp)
    assert verifier.username(_token(old, "old", sub="alice")) == "alice"
    idp.keys = {"new": new}  # the issuer rotates: "old" is withdrawn
    assert verifier.username(_token(old, "old", sub="alice")) == "alice"  # until the next fetch
    later(301)
    with pytest.raises(AuthenticationError, match="no signing key 'old'"):
        verifier.username(_token(old, "old", sub="alice"))
    assert verifier.username(_token(new, "new", sub="alice")) == "alice"
    assert idp.fetches == 2
    # a key added since: fetched for at once, at most every 30 s whatever kids are sent
    idp.keys = {"new": new, "newer": old}
    later(31)
    for kid in ("x1", "x2", "x3"):
        with pytest.raises(AuthenticationError):
            verifier.username(_token(old, kid, sub="alice"))
    assert idp.fetches == 3
    assert verifier.username(_token(old, "newer", sub="alice")) == "alice"
    assert idp.fetches == 3


def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused(idp: Idp) -> None:
    """An algorithm for another type of key than its ``kid`` names, or other than the one the
    key declares, is a bad token (RS256 or PS256 against an EC key, ES256 against an RSA key
    raised TypeError: 500 with a traceback; PS256 was verified against a key declaring
    RS256). A key declaring no algorithm takes any for its type."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    idp.keys = {"r": rsa_key, "e": ec_key, "any": rsa_key}
    idp.algs = {"r": "RS256", "e": "ES256"}
    verifier = _verifier(idp)
    for key, kid, algorithm in [
        (rsa_key, "e", "RS256"),
        (rsa_key, "e", "PS256"),
        (ec_key, "r", "ES256"),
        (rsa_key, "r", "PS256"),
        (ec_key, "any", "ES256"),
    ]:
        with pytest.raises(AuthenticationError):
            verifier.username(_token(key, kid, algorithm, sub="alice"))
    assert verifier.username(_token(rsa_key, "r", "RS256", sub="alice")) == "alice"
    assert verifier.username(_token(ec_key, "e", "ES256", sub="alice")) == "alice"
    assert verifier.username(_token(rsa_key, "any", "PS256", sub="alice")) == "alice"


def test_a_token_whose_times_are_not_numbers_is_refused(idp: Idp) -> None:
    """``exp``, ``nbf`` and ``iat`` are numbers of seconds (RFC 7519's NumericDate): a text
    was taken by its int() (``"exp": "99999999999"``, a token that never expires)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = {"k": key}
    verifier = _verifier(idp)
    for claims in (
        {"exp": "99999999999"},
        {"exp": str(int(time.time()) + 300)},
        {"iat": str(int(time.time()))},
        {"nbf": "0"},
        {"nbf": True},
    ):
        with pytest.raises(AuthenticationError, match="must be a number of seconds"):
            verifier.username(_token(key, "k", sub="alice", **claims))
    later = int(time.time()) + 300
    assert verifier.username(_token(key, "k", sub="alice", exp=later + 0.5, nbf=0)) == "alice"


def test_keys_that_cannot_be_fetched_are_503_and_not_fetched_again_at_once(
    tmp_path: Path, store: GraphStore, idp: Idp
) -> None:
    """An issuer that cannot give its keys is the server's trouble, not the caller's: 503
    BACKEND_UNAVAILABLE with Retry-After (it was 401, telling the caller its credential was
    bad), and the JWKS is not fetched again for a while (it was, for every request)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = {"k1": key}
    idp.status = 500
    identity = IdentityService(store)
    identity.add_user("alice", "editor")
    api_token = identity.create_token("alice").secret
    app = _serve(
        tmp_path,
        store,
        auth="tokens,oidc",
        oidc_issuer="https://idp.test",
        oidc_audience="lineagehub",
        oidc_jwks_url=idp.url,
    )
    with HubServer(app) as server:

        def call(credential: str) -> httpx.Response:
            return httpx.post(
                server.url + "/graphql",
                json={"query": "{ __typename }"},
                headers={"authorization": f"Bearer {credential}"},
            )

        for _ in range(3):
            response = call(_token(key, "k1", sub="alice"))
            assert response.status_code == 503, response.text
            assert response.json()["errors"][0]["extensions"]["code"] == "BACKEND_UNAVAILABLE"
            assert int(response.headers["retry-after"]) >= 1
        assert idp.fetches == 1
        assert call(api_token).status_code == 200
        app.state.security_audit.flush()
    assert not [e for e in store.iter_audit() if e.action == "auth.failed"]  # no bad login


def test_a_jwks_that_is_no_jwks_is_503(idp: Idp, later: Callable[[float], None]) -> None:
    """Not JSON, JSON but no key set, too large: the keys cannot be had (503); JSON that
    was not JSON was a JSONDecodeError, a 500."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = {"k1": key}
    verifier = _verifier(idp)
    for body in (b"<html>sign in</html>", b"[1, 2]", b'{"keys": 1}', b" " * (2 << 20)):
        idp.body = body
        with pytest.raises(HubError) as e:
            verifier.username(_token(key, "k1", sub="alice"))
        assert _unavailable(e.value), e.value
        later(11)
    idp.body = None
    assert verifier.username(_token(key, "k1", sub="alice")) == "alice"
    assert idp.fetches == 5


def test_a_jwks_that_never_ends_holds_no_request_past_the_deadline(
    idp: Idp, later: Callable[[float], None]
) -> None:
    """One fetch at a time, given up at its deadline (5 s) however slowly the issuer drips
    its answer: the requests waiting for it are answered then, those that come after get 503
    at once until a pause has passed, and keys already held keep serving meanwhile (a
    dripping JWKS held every OIDC request, one after another, for as long as it dripped)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = {"k1": key}
    verifier = _verifier(idp)
    assert verifier.username(_token(key, "k1", sub="alice")) == "alice"
    later(31)  # an unknown kid may now fetch the JWKS again
    idp.hold = threading.Event()
    idp.asked.clear()
    pool = ThreadPoolExecutor(3)
    try:
        calls = [pool.submit(verifier.username, _token(key, "k2", sub="alice"))]
        assert idp.asked.wait(30)
        calls += [pool.submit(verifier.username, _token(key, "k2", sub="alice")) for _ in "ab"]
        # the key held is not waiting for the fetch
        assert verifier.username(_token(key, "k1", sub="alice")) == "alice"
        _, waiting = wait(calls, timeout=30)
        assert not waiting, "requests still held by the dripping JWKS"
    finally:
        pool.shutdown(wait=False)
    assert all(_unavailable(c.exception()) for c in calls)
    assert idp.fetches == 2
    with pytest.raises(HubError) as e:  # the pause: no fetch, at once
        verifier.username(_token(key, "k2", sub="alice"))
    assert _unavailable(e.value) and "retry in" in str(e.value)
    assert idp.fetches == 2
    idp.hold.set()
    idp.hold = None
    idp.keys = {"k1": key, "k2": key}
    later(11)
    assert verifier.username(_token(key, "k2", sub="alice")) == "alice"
    assert idp.fetches == 3


def test_oidc_logins_waiting_for_the_keys_leave_the_shared_threads_to_the_rest(
    store: GraphStore, idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OIDC logins run in threads of their own: however many wait for the issuer's keys, an
    API token is answered at once (they filled the thread pool every request shares, and
    the hub stopped answering anyone until the fetch gave up)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from lineagehub.interfaces.auth import Authenticator, AuthMiddleware, SigningKeys

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = {"k1": key}
    idp.hold = threading.Event()
    identity = IdentityService(store)
    identity.add_user("alice", "viewer")
    api_token = identity.create_token("alice").secret
    settings = Settings(
        auth="tokens,oidc",
        oidc_issuer="https://idp.test",
        oidc_audience="lineagehub",
        oidc_jwks_url=idp.url,
    )
    authenticator = Authenticator(settings, store)
    assert authenticator.oidc is not None
    authenticator.oidc.keys = SigningKeys(idp.url, timeout=300)  # held until the test lets go
    entered = threading.Semaphore(0)
    authenticate = authenticator.authenticate

    def counted(header: str | None) -> Any:
        entered.release()
        return authenticate(header)

    monkeypatch.setattr(authenticator, "authenticate", counted)
    audit = SecurityAudit(store)

    def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/ok", ok)],
        middleware=[Middleware(AuthMiddleware, authenticator=authenticator, audit=audit)],
    )
    oidc = {"authorization": f"Bearer {_token(key, 'k1', sub='alice')}"}
    pool = ThreadPoolExecutor(48)
    with HubServer(app) as server:
        try:
            logins = [
                pool.submit(httpx.get, server.url + "/ok", headers=oidc, timeout=300)
                for _ in range(48)
            ]
            for _ in range(8):
                assert entered.acquire(timeout=30)
            with_token = httpx.get(
                server.url + "/ok", headers={"authorization": f"Bearer {api_token}"}, timeout=20
            )
            assert with_token.status_code == 200
            assert not any(login.done() for login in logins)  # all still waiting
        finally:
            idp.hold.set()
            pool.shutdown(wait=True)
    assert {login.result().status_code for login in logins} == {503}
    assert idp.fetches == 1
    audit.close()


def test_oidc_needs_its_settings() -> None:
    with pytest.raises(ConfigError, match="LINEAGEHUB_OIDC_ISSUER"):
        Settings(auth="oidc").auth_methods()
    with pytest.raises(ConfigError, match="LINEAGEHUB_AUTH"):
        Settings(auth="passwords").auth_methods()


# --------------------------------------------------------------------------- serve and the CLI


def test_serve_refuses_a_public_address_without_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LINEAGEHUB_AUTH", raising=False)
    monkeypatch.setenv("LINEAGEHUB_STORE", f"sqlite:///{tmp_path / 'hub.db'}")
    assert main(["serve", "--host", "0.0.0.0"]) == 4
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without authentication" in err
    assert "LINEAGEHUB_AUTH=tokens" in err
    notice = check_serve("127.0.0.1", Settings())
    assert notice is not None and "authentication is off" in notice
    assert check_serve("::1", Settings()) is not None
    assert check_serve("0.0.0.0", Settings(auth="tokens")) is None


def test_user_and_token_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGEHUB_USER", "root")
    uri = f"sqlite:///{tmp_path / 'hub.db'}"

    def run(*argv: str) -> tuple[int, str]:
        code = main([*argv, "--store", uri])
        return code, capsys.readouterr().out

    assert run("user", "add", "alice", "--role", "admin")[0] == 0
    assert run("user", "add", "bob")[0] == 0
    assert run("user", "grant", "bob", "editor", "--project", "churn")[0] == 0
    code, out = run("user", "list", "--json")
    users = {u["name"]: u for u in json.loads(out)}
    assert users["bob"]["grants"] == [{"project": "churn", "role": "editor"}]
    assert users["alice"]["grants"] == [{"project": None, "role": "admin"}]
    assert run("user", "add", "alice")[0] == 6  # exists: conflict
    # a project no record can have ("", control characters a terminal acts on): refused
    for project in ("", "p\x1b[2Jq"):
        assert run("user", "grant", "bob", "editor", "--project", project)[0] == 2
        assert run("user", "add", "carl", "--role", "editor", "--project", project)[0] == 2

    code, out = run(
        "token", "create", "--user", "bob", "--name", "ci", "--expires", "30d", "--json"
    )
    created = json.loads(out)
    assert code == 0 and created["secret"].startswith("lh_") and created["user"] == "bob"
    code, out = run("token", "create", "--user", "alice")
    assert code == 0 and "shown once" in out
    code, out = run("token", "list", "--json")
    assert len(json.loads(out)) == 2 and "lh_" not in out and "hash" not in out
    code, out = run("token", "list", "--user", "bob")
    assert created["id"] in out and created["secret"] not in out
    assert run("token", "revoke", created["id"])[0] == 0
    code, out = run("token", "list", "--user", "bob", "--json")
    assert json.loads(out)[0]["state"] == "revoked"
    assert run("token", "revoke", created["id"])[0] == 6
    assert run("token", "create", "--user", "ghost")[0] == 3
    assert run("token", "create", "--user", "bob", "--expires", "soon")[0] == 2
    # beyond a date's range (an OverflowError traceback), and empty ("never" before)
    for lifetime in ("3000000d", "99999999999d", ""):
        assert run("token", "create", "--user", "bob", "--expires", lifetime)[0] == 2, lifetime
    code, out = run("token", "list", "--user", "bob", "--json")
    assert [t["state"] for t in json.loads(out)] == ["revoked"]  # none of them was made
    assert run("user", "revoke", "bob", "--project", "churn")[0] == 0
    assert run("user", "disable", "bob")[0] == 0
    code, out = run("user", "list")
    assert "DISABLED" in out
    store = open_store(uri)
    actors = {e.actor for e in store.read_audit(0, 1000)}
    store.close()
    assert actors == {"root"}


def test_no_secret_in_any_log_line_or_error(
    hub: Hub, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    with hub.client("alice") as alice, hub.client("bob") as bob:
        bodies.append(gql(alice, "{ runs(first: 5) { nodes { id } } }").text)
        bodies.append(gql(alice, "{ nope }").text)
        hub.identity.revoke_token(hub.token_ids["bob"])
        bodies.append(gql(bob, "{ __typename }").text)
    with hub.client("nobody") as nobody:
        bodies.append(gql(nobody, "{ __typename }").text)
    bodies.append(
        httpx.post(
            hub.url + "/graphql",
            json={"query": "{ __typename }"},
            headers={"authorization": f"Bearer {hub.secrets['alice']}x"},
        ).text
    )
    text = caplog.text + "".join(bodies) + json.dumps([str(e) for e in audit_entries(hub)])
    for secret in hub.secrets.values():
        assert secret not in text
        assert secret[3:20] not in text
    assert os.environ.get("LINEAGEHUB_TOKEN") is None


def test_a_token_s_last_use_is_written_by_one_request_at_a_time(tmp_path: Path) -> None:
    """Requests of one token at once, while another program held the database's write lock:
    each wrote the token's last use, each waiting for the lock in a worker thread of its own
    (forty of them held every thread). One writes it; the others go on without."""
    from conftest import Held

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    identity = IdentityService(store, actor="root")
    identity.add_user("ann", "editor")
    secret = identity.create_token("ann", name="t").secret
    results: list[str] = []
    done = threading.Semaphore(0)

    def authenticate() -> None:
        principal, _ = identity.authenticate(secret)
        results.append(principal.name)
        done.release()

    held = Held(store, Node("held", "Run"))
    try:
        callers = [threading.Thread(target=authenticate) for _ in range(5)]
        for t in callers:
            t.start()
        for _ in range(4):  # four are answered while the lock is held
            assert done.acquire(timeout=60)
        assert results == ["ann"] * 4
        held.release()  # the fifth wrote the last use; it goes through now
        for t in callers:
            t.join(60)
        assert results == ["ann"] * 5
        assert identity.list_tokens("ann")[0].last_used_at is not None
    finally:
        held.release()
        store.close()
