"""A store's secrets: made once, the same for every process using the store, never a node."""

from __future__ import annotations

import threading

import pytest
from conftest import neo4j_uri

from lineagehub.graph import GraphStore, Node, ValidationError, open_store
from lineagehub.graph.sqlite import SqliteStore


def _second_store(store: GraphStore) -> GraphStore | None:
    """Another store object on the same data (what another worker process opens)."""
    if isinstance(store, SqliteStore):
        return None if store.memory else open_store(f"sqlite:///{store.path}")
    return open_store(neo4j_uri())


def test_a_secret_is_made_once_and_kept(store: GraphStore) -> None:
    store.upsert_nodes([Node("r", "Run")])
    key = store.secret("cursor")
    assert isinstance(key, bytes) and len(key) == 32
    assert store.secret("cursor") == key
    assert store.secret("other") != key
    # not a node: no listing, count or trace reaches it
    assert store.count_nodes() == 1
    assert [n.id for n in store.find_nodes(None, None, None, None, 100).items] == ["r"]
    other = _second_store(store)
    if other is not None:
        with other:
            assert other.secret("cursor") == key


def test_concurrent_first_callers_get_one_secret(store: GraphStore) -> None:
    stores = [store, _second_store(store) or store]
    start = threading.Barrier(4)
    got: list[bytes] = []

    def first(s: GraphStore) -> None:
        start.wait()
        got.append(s.secret("race"))

    threads = [threading.Thread(target=first, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(set(got)) == 1
    assert store.secret("race") == got[0]
    if stores[1] is not store:
        stores[1].close()


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "n`) DETACH DELETE n //", "é", None])
def test_a_secret_name_is_checked(store: GraphStore, name: object) -> None:
    with pytest.raises(ValidationError, match="secret"):
        store.secret(name)  # type: ignore[arg-type]
