from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineagehub.graph import GraphStore, open_store

NEO4J_URI = os.environ.get("LINEAGEHUB_TEST_NEO4J_URI")
NEO4J_SKIP = (
    "Neo4j backend contract: set LINEAGEHUB_TEST_NEO4J_URI (and LINEAGEHUB_TEST_NEO4J_USER / "
    "LINEAGEHUB_TEST_NEO4J_PASSWORD) to a Neo4j 5 server, e.g. after `docker compose up neo4j`"
)


def neo4j_test_store() -> GraphStore:
    """A Neo4j store on the test server, emptied first: the server must be a throwaway."""
    assert NEO4J_URI
    store = open_store(
        NEO4J_URI,
        user=os.environ.get("LINEAGEHUB_TEST_NEO4J_USER", "neo4j"),
        password=os.environ.get("LINEAGEHUB_TEST_NEO4J_PASSWORD", "lineagehub-test"),
    )
    store._wipe()  # type: ignore[attr-defined]
    return store


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
        if not NEO4J_URI:
            pytest.skip(NEO4J_SKIP)
        s = neo4j_test_store()
    try:
        yield s
    finally:
        s.close()


def pytest_report_header(config: pytest.Config) -> str:
    if NEO4J_URI:
        return "neo4j contract: LINEAGEHUB_TEST_NEO4J_URI is set; the Neo4j cases run"
    return f"neo4j contract cases are skipped: {NEO4J_SKIP}"
