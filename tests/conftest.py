"""Backends for the suites: SQLite (memory and file) and the real Neo4j that ``make test``
starts (``tests/neo4j/launch.py``) or that ``LINEAGEHUB_TEST_NEO4J_URI`` names.

There is one Neo4j database: each fixture that hands it out empties it first, and tests that
use it run one at a time (the suite is not run in parallel).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from lineagehub.graph import GraphStore, Node, open_store

# The deep-learning adapters' tests: Keras on PyTorch's backend (TensorFlow is not installed),
# and Hugging Face libraries that never download (every model is built from a config). Set
# before any test module imports the frameworks; README examples run as subprocesses inherit it.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models train several times faster on one OpenMP thread than on a busy machine's every
# core (torch's pool waits for its threads longer than it computes): read when torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

NEO4J_URI = os.environ.get("LINEAGEHUB_TEST_NEO4J_URI")
NEO4J_USER = os.environ.get("LINEAGEHUB_TEST_NEO4J_USER", "neo4j")
NEO4J_PASSWORD = os.environ.get("LINEAGEHUB_TEST_NEO4J_PASSWORD", "lineagehub-test")
NEO4J_SKIP = (
    "needs a Neo4j 5 server: `make test` starts the bundled one (Java 17 and Maven), or set "
    "LINEAGEHUB_TEST_NEO4J_URI (and _USER / _PASSWORD) to a throw-away server"
)


def neo4j_uri() -> str:
    """The test server's URI with its credentials as userinfo, so one string opens it anywhere
    a store URI is taken (``open_store``, ``Client``, ``--store``, ``LINEAGEHUB_STORE``)."""
    if not NEO4J_URI:
        if os.environ.get("CI"):
            pytest.fail("CI runs every backend: LINEAGEHUB_TEST_NEO4J_URI is not set")
        pytest.skip(NEO4J_SKIP)
    parts = urlsplit(NEO4J_URI)
    userinfo = f"{quote(NEO4J_USER, safe='')}:{quote(NEO4J_PASSWORD, safe='')}@"
    return parts._replace(netloc=userinfo + parts.netloc).geturl()


def neo4j_test_store() -> GraphStore:
    """A Neo4j store on the test server, emptied first: the server must be a throw-away."""
    store = open_store(neo4j_uri())
    store._wipe()  # type: ignore[attr-defined]
    return store


def fresh_store_uri(backend: str, folder: Path) -> str:
    """A store URI for ``backend`` ("sqlite" or "neo4j") with nothing in it."""
    if backend == "neo4j":
        neo4j_test_store().close()
        return neo4j_uri()
    return f"sqlite:///{folder / 'hub.db'}"


BACKENDS = ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """Each backend by name, for suites that build their hubs themselves
    (with :func:`fresh_store_uri`)."""
    return str(request.param)


@pytest.fixture
def backend_uri(store_backend: str, tmp_path: Path) -> str:
    """An empty store's URI on each backend, for suites that open stores by URI."""
    return fresh_store_uri(store_backend, tmp_path)


@pytest.fixture(
    params=[
        "sqlite-memory",
        "sqlite-file",
        pytest.param("neo4j", marks=pytest.mark.neo4j),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """Every backend the contract suite holds to the same behaviour."""
    if request.param == "sqlite-memory":
        s = open_store("sqlite://")
    elif request.param == "sqlite-file":
        s = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    else:
        s = neo4j_test_store()
    try:
        yield s
    finally:
        s.close()


def pytest_report_header(config: pytest.Config) -> str:
    if NEO4J_URI:
        return f"neo4j: the Neo4j cases run against {NEO4J_URI}"
    return f"neo4j: the Neo4j cases are skipped; they {NEO4J_SKIP}"


class Held:
    """Another thread holding a write transaction on ``store`` (in which it wrote ``node``)
    until :meth:`release` (or the end of a ``with`` block), when it commits."""

    def __init__(self, store: GraphStore, node: Node) -> None:
        self._holding, self._release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.transaction():
                store.upsert_nodes([node])
                self._holding.set()
                self._release.wait(60)

        self._thread = threading.Thread(target=hold)
        self._thread.start()
        if not self._holding.wait(60):
            self.release()
            raise AssertionError("the other thread never began its transaction")

    def release(self) -> None:
        self._release.set()
        self._thread.join(60)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
