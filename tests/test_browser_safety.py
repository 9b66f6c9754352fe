"""What a web page in someone's browser can do to a hub, over real HTTP: no mutation through a
form, a text post or a link (CSRF), no cross-origin reads unless origins are configured (CORS),
and GraphiQL served from the package's own files, switchable off."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

from lineagehub import Settings
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.server import GRAPHIQL_ASSETS, GRAPHIQL_DIR, create_app

ALLOWED = "https://app.example.org"
START = 'mutation { startRun(input: {name: "csrf"}) { id } }'
FORMS = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubServer, GraphStore]]:
    folder = tmp_path_factory.mktemp("browser")
    store = open_store(f"sqlite:///{folder / 'hub.db'}")
    artifacts = open_artifact_store((folder / "artifacts").as_uri())
    settings = Settings(data_dir=folder, cors_origins=f"{ALLOWED}, http://localhost:3000/")
    with HubServer(create_app(settings, store=store, artifacts=artifacts)) as server:
        yield server, store
    store.close()


@pytest.fixture(scope="module")
def http(hub: tuple[HubServer, GraphStore]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub[0].url, timeout=60) as client:
        yield client


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[httpx.Client]:
    """A hub with the defaults: no CORS origins, GraphiQL on."""
    store = open_store("sqlite://")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    with (
        HubServer(create_app(Settings(data_dir=tmp_path), store=store, artifacts=artifacts)) as s,
        httpx.Client(base_url=s.url, timeout=60) as client,
    ):
        yield client
    store.close()


def codes(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert "Traceback" not in response.text
    return [e["extensions"]["code"] for e in body["errors"]]


def runs(store: GraphStore) -> int:
    return len(store.find_nodes("Run", limit=1000).items)


# -- mutations only as POST application/json ------------------------------------------------


def test_a_mutation_posted_as_a_form_or_text_is_refused_and_changes_nothing(
    hub: tuple[HubServer, GraphStore], http: httpx.Client
) -> None:
    before = runs(hub[1])
    bodies: dict[str, dict[str, Any]] = {
        # what an HTML form or fetch(..., {mode: "no-cors"}) can send without a preflight
        "text/plain": {
            "content": json.dumps({"query": START}),
            "headers": {"content-type": "text/plain;charset=UTF-8"},
        },
        "application/x-www-form-urlencoded": {"data": {"query": START}},
        "multipart/form-data": {"files": {"query": (None, START)}},
    }
    for media_type, body in bodies.items():
        response = http.post("/graphql", **body)
        assert response.request.headers["content-type"].startswith(media_type)
        assert response.status_code == 415 and codes(response) == ["UNSUPPORTED_MEDIA_TYPE"]
        assert "application/json" in response.json()["errors"][0]["message"]
    for media_type in ("application/graphql", "text/html", ""):
        response = http.post("/graphql", content=START, headers={"content-type": media_type})
        assert response.status_code == 415 and codes(response) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert runs(hub[1]) == before
    ok = http.post("/graphql", json={"query": START})
    assert "errors" not in ok.json() and runs(hub[1]) == before + 1
    charset = http.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert charset.json() == {"data": {"__typename": "Query"}}


def test_a_mutation_over_get_is_refused_with_405(
    hub: tuple[HubServer, GraphStore], http: httpx.Client
) -> None:
    before = runs(hub[1])
    for params in (
        {"query": START},
        {"query": "mutation { __typename }"},
        # the mutation picked out of a document that also holds a query
        {"query": "query Q { __typename } " + START.replace("mutation", "mutation M", 1),
         "operationName": "M"},
    ):  # fmt: skip
        response = http.get("/graphql", params=params)
        assert response.status_code == 405 and codes(response) == ["METHOD_NOT_ALLOWED"], params
        assert response.headers["allow"] == "POST"
        assert "POST with application/json" in response.json()["errors"][0]["message"]
    assert runs(hub[1]) == before
    query = http.get(
        "/graphql",
        params={"query": "query Q { __typename } mutation M { __typename }", "operationName": "Q"},
    )
    assert query.json() == {"data": {"__typename": "Query"}}


# -- CORS -----------------------------------------------------------------------------------


def preflight(http: httpx.Client, origin: str, method: str = "POST", **extra: str) -> Any:
    headers = {"origin": origin, "access-control-request-method": method, **extra}
    return http.options("/graphql", headers=headers)


def test_a_preflight_from_a_configured_origin_is_allowed(http: httpx.Client) -> None:
    for origin in (ALLOWED, "http://localhost:3000"):
        response = preflight(
            http, origin, **{"access-control-request-headers": "content-type, authorization"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == origin
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "content-type" in allowed and "authorization" in allowed
        assert "access-control-allow-credentials" not in response.headers  # tokens, not cookies
    # the actual request then carries the header the browser needs to hand over the answer
    answer = http.post("/graphql", json={"query": "{ __typename }"}, headers={"origin": ALLOWED})
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.json() == {"data": {"__typename": "Query"}}
    # and a page may read the headers the export route documents (the withheld count too)
    export = http.get("/export/lineage/x.json", headers={"origin": ALLOWED})
    exposed = export.headers["access-control-expose-headers"].lower()
    assert {"x-lineage-truncated", "x-lineage-withheld"} <= set(exposed.replace(" ", "").split(","))


def test_a_preflight_from_another_origin_is_refused(http: httpx.Client) -> None:
    for origin in ("https://evil.example", "https://app.example.org.evil.example", "null"):
        response = preflight(http, origin)
        assert response.status_code == 400 and codes(response) == ["CORS_REFUSED"], origin
        assert "access-control-allow-origin" not in response.headers
        read = http.get("/health", headers={"origin": origin})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
    # an allowed origin asking for a method or a header the hub does not take
    assert codes(preflight(http, ALLOWED, method="DELETE")) == ["CORS_REFUSED"]
    odd = preflight(http, ALLOWED, **{"access-control-request-headers": "x-evil"})
    assert codes(odd) == ["CORS_REFUSED"]


def test_cors_is_off_unless_origins_are_configured(plain: httpx.Client) -> None:
    response = preflight(plain, ALLOWED)
    assert response.status_code == 405 and codes(response) == ["METHOD_NOT_ALLOWED"]
    assert not [h for h in response.headers if h.startswith("access-control-")]
    answer = plain.post("/graphql", json={"query": "{ __typename }"}, headers={"origin": ALLOWED})
    assert not [h for h in answer.headers if h.startswith("access-control-")]


def test_cors_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_CORS_ORIGINS", " https://a.example ,https://b.example/,, ")
    assert Settings().cors_origin_list() == ["https://a.example", "https://b.example"]
    monkeypatch.delenv("LINEAGEHUB_CORS_ORIGINS")
    assert Settings().cors_origin_list() == []


# -- GraphiQL from the package --------------------------------------------------------------


def test_graphiql_and_its_assets_come_from_the_hub(http: httpx.Client) -> None:
    page = http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # nothing from elsewhere: every src/href is a relative path under graphiql/ (or data:)
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(
        link.startswith("graphiql/") or link.startswith("data:") for link in links
    ), links
    assert "<script>" not in page.text  # no inline script: the CSP forbids them
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    for link in links:
        if link.startswith("graphiql/"):
            asset = http.get("/" + link)
            assert asset.status_code == 200, link
            assert asset.headers["content-type"].startswith(GRAPHIQL_ASSETS[link[9:]])
            assert asset.content == (GRAPHIQL_DIR / link[9:]).read_bytes()
            assert b"unpkg.com" not in asset.content and b"sourceMappingURL" not in asset.content
    for name in ("index.html", "VERSIONS.txt", "../server.py", "nope.js", "%2e%2e%2fserver.py"):
        missing = http.get(f"/graphiql/{name}")
        assert missing.status_code == 404 and codes(missing) == ["NOT_FOUND"], name


def test_the_vendored_builds_ship_with_their_licences() -> None:
    for name in ("react", "react-dom", "graphiql"):
        licence = (GRAPHIQL_DIR / f"LICENSE.{name}.txt").read_text()
        assert "MIT License" in licence and "Permission is hereby granted" in licence
    versions = (GRAPHIQL_DIR / "VERSIONS.txt").read_text()
    assert "react@18" in versions and "graphiql@3" in versions
    assert GRAPHIQL_ASSETS.keys() <= {p.name for p in GRAPHIQL_DIR.iterdir()}


def test_graphiql_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_GRAPHIQL", "false")
    settings = Settings(data_dir=tmp_path)
    assert settings.graphiql is False
    store = open_store("sqlite://")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    with (
        HubServer(create_app(settings, store=store, artifacts=artifacts)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        page = client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404 and codes(page) == ["NOT_FOUND"]
        asset = client.get("/graphiql/graphiql.min.js")
        assert asset.status_code == 404 and codes(asset) == ["NOT_FOUND"]
        # the API itself is unaffected
        query = client.get("/graphql", params={"query": "{ __typename }"})
        assert query.json() == {"data": {"__typename": "Query"}}
        assert client.post("/graphql", json={"query": "{ __typename }"}).status_code == 200
    store.close()
