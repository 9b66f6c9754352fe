"""The lineage explorer as the server ships it (no browser: tests/test_explorer_browser.py
drives one): the page at ``/`` and its files under ``/explorer/`` come from the package, under
a strict Content-Security-Policy, with nothing from elsewhere and no data or secret in them;
anyone may load them when tokens are required (the API still asks for one); the setting
turns them off; and the committed build is the build of the committed sources (``build.json``
holds the digest of ``web/``'s sources; ``npm run build`` in ``web/`` rewrites both)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

from lineagehub import Settings
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import open_store
from lineagehub.interfaces.server import EXPLORER_ASSETS, EXPLORER_DIR, create_app

WEB = Path(__file__).resolve().parent.parent / "web"


Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a hub (in-memory store) with these settings; a client of it."""
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> httpx.Client:
            store = stack.enter_context(contextlib.closing(open_store("sqlite://")))
            artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
            app = create_app(
                Settings(data_dir=tmp_path, **settings), store=store, artifacts=artifacts
            )
            server = stack.enter_context(HubServer(app))
            return stack.enter_context(httpx.Client(base_url=server.url, timeout=60))

        yield start


def test_the_page_and_its_files_come_from_the_package(serve: Serve) -> None:
    http = serve()
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (EXPLORER_DIR / "index.html").read_bytes()
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [link for link in links if link.startswith("/explorer/")]
    # its own two files; every other link is a route of the app (#/...), GraphiQL, or the
    # empty icon (data:, so the browser asks for no /favicon.ico)
    assert sorted(assets) == ["/explorer/explorer.css", "/explorer/explorer.js"]
    assert set(links) - set(assets) <= {"#main", "#/", "#/runs", "#/models", "/graphql", "data:,"}
    assert "<script>" not in page.text  # no inline script: the CSP forbids them
    for link in assets:
        asset = http.get(link)
        assert asset.status_code == 200, link
        assert asset.headers["content-type"].startswith(EXPLORER_ASSETS[link[10:]])
        assert asset.content == (EXPLORER_DIR / link[10:]).read_bytes()
        assert b"sourceMappingURL" not in asset.content
        for host in (b"unpkg.com", b"cdn.jsdelivr", b"googleapis.com", b"cdnjs"):
            assert host not in asset.content
    # the one place the app keeps a token: the tab's sessionStorage, never localStorage
    script = (EXPLORER_DIR / "explorer.js").read_text()
    assert "sessionStorage" in script and not re.search(r"lh_[A-Za-z0-9_-]{20,}", script)
    licences = http.get("/explorer/LICENSES.txt")
    assert (
        licences.status_code == 200 and "cytoscape@" in licences.text and "uplot@" in licences.text
    )
    for name in ("index.html", "build.json", "../server.py", "nope.js", "%2e%2e%2fserver.py"):
        missing = http.get(f"/explorer/{name}")
        assert missing.status_code == 404, name
        assert missing.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_anyone_loads_the_page_but_the_api_asks_for_a_token(serve: Serve) -> None:
    http = serve(auth="tokens")
    for path in (
        "/",
        "/explorer/explorer.js",
        "/explorer/explorer.css",
        "/graphiql/graphiql.min.js",
    ):
        assert http.get(path).status_code == 200, path
    refused = http.post("/graphql", json={"query": "{ runs { nodes { id } } }"})
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # what is open is exactly those files: nothing else under the prefixes
    assert http.get("/explorer/nope.js").status_code == 404
    assert http.get("/export/lineage/x.json").status_code == 401


def test_the_explorer_can_be_switched_off(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_EXPLORER", "false")
    http = serve()
    for path in ("/", "/explorer/explorer.js"):
        page = http.get(path)
        assert page.status_code == 404, path
    assert http.post("/graphql", json={"query": "{ __typename }"}).status_code == 200


def sources_digest() -> str:
    """What ``web/scripts/finish.mjs`` writes into build.json: the digest of every file the
    build reads, in path order."""
    files = ["index.html", "package-lock.json", "tsconfig.json", "vite.config.ts"]
    files.append("scripts/finish.mjs")
    files += [p.relative_to(WEB).as_posix() for p in (WEB / "src").rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for name in sorted(files):
        inner = hashlib.sha256((WEB / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{inner}\n".encode())
    return digest.hexdigest()


def test_the_committed_build_is_of_the_committed_sources() -> None:
    built = json.loads((EXPLORER_DIR / "build.json").read_text())
    assert built["sources"] == sources_digest(), (
        "web/ changed since hub/interfaces/static/explorer/ was built: "
        "run `npm ci && npm run build` in web/ and commit the result"
    )
