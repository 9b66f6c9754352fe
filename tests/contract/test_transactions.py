"""Several writes commit or roll back together."""

from __future__ import annotations

import os
from typing import Any

import pytest

from lineagehub.graph import Edge, GraphStore, Node, NotFoundError, SeriesPoint


class Boom(Exception):
    pass


def test_writes_in_a_transaction_commit_together(store: GraphStore) -> None:
    with store.transaction():
        store.upsert_nodes([Node("r", "Run"), Node("d", "DatasetVersion")])
        store.upsert_edges([Edge("r", "d", "USED")])
        store.append_series([SeriesPoint("r", "loss", 0, 1.0)])
        # reads inside the transaction see its writes
        assert store.get_node("r").label == "Run"
    assert store.count_nodes() == 2
    assert len(store.neighbors(["r"])["r"]) == 1


def test_an_exception_rolls_everything_back(store: GraphStore) -> None:
    store.upsert_nodes([Node("keep", "Run", {"v": 1})])
    with pytest.raises(Boom), store.transaction():
        store.upsert_nodes([Node("r", "Run"), Node("d", "DatasetVersion")])
        store.upsert_nodes([Node("keep", "Run", {"v": 2})])
        store.upsert_edges([Edge("r", "d", "USED")])
        store.append_series([SeriesPoint("r", "loss", 0, 1.0)])
        raise Boom
    assert store.get_nodes(["r", "d"]) == [None, None]
    assert store.get_node("keep").props == {"v": 1}
    assert store.count_nodes() == 1


def test_nested_blocks_join_the_outer_one(store: GraphStore) -> None:
    with pytest.raises(Boom), store.transaction():
        store.upsert_nodes([Node("a", "Run")])
        with store.transaction():
            store.upsert_nodes([Node("b", "Run")])
        raise Boom
    assert store.count_nodes() == 0


def test_a_failed_write_inside_a_transaction_leaves_nothing_of_itself(store: GraphStore) -> None:
    with store.transaction():
        store.upsert_nodes([Node("a", "Run")])
        with pytest.raises(NotFoundError):
            store.upsert_edges([Edge("a", "a", "CHILD_OF", id="ok"), Edge("a", "zz", "USED")])
        store.upsert_nodes([Node("b", "Run")])
    assert store.count_nodes() == 2
    assert store.get_edges(["ok"]) == [None]


def test_the_store_is_usable_after_a_rollback(store: GraphStore) -> None:
    with pytest.raises(Boom), store.transaction():
        store.upsert_nodes([Node("a", "Run")])
        raise Boom
    store.upsert_nodes([Node("a", "Run")])
    with store.transaction():
        store.upsert_nodes([Node("b", "Run")])
    assert store.count_nodes() == 2


def test_an_error_caught_inside_the_outer_block_keeps_the_inner_writes(store: GraphStore) -> None:
    with store.transaction():
        store.upsert_nodes([Node("a", "Run")])
        with pytest.raises(Boom), store.transaction():
            store.upsert_nodes([Node("b", "Run")])
            raise Boom
        store.upsert_nodes([Node("c", "Run")])
    assert store.count_nodes() == 3


def test_a_rollback_from_deep_inside_leaves_the_thread_outside_any_transaction(
    store: GraphStore,
) -> None:
    with pytest.raises(Boom), store.transaction(), store.transaction(), store.transaction():
        store.upsert_nodes([Node("a", "Run")])
        raise Boom
    # the next block is an outermost one again: it commits on its own
    with store.transaction():
        store.upsert_nodes([Node("b", "Run")])
    assert store.get_nodes(["a", "b"])[0] is None and store.count_nodes() == 1


def test_a_block_without_waiting_answers_reads_and_refuses_writes(store: GraphStore) -> None:
    """``without_waiting`` (the server's reads on its event loop): a local store answers
    reads at once and raises WouldWait for a write before anything is written; a store
    over the network raises WouldWait at once. Afterwards the thread reads and writes as
    before."""
    from lineagehub.graph.sqlite import SqliteStore
    from lineagehub.graph.store import WouldWait

    local = isinstance(store, SqliteStore)
    store.upsert_nodes([Node("r", "Run", {"v": 1})])
    if local:
        with store.without_waiting():
            assert store.get_node("r").props == {"v": 1}
            with pytest.raises(WouldWait):
                store.upsert_nodes([Node("r", "Run", {"v": 2}), Node("new", "Run")])
            with pytest.raises(WouldWait), store.transaction():
                store.upsert_nodes([Node("t", "Run")])
            assert store.get_node("r").props == {"v": 1}  # still readable after a refusal
    else:
        with pytest.raises(WouldWait), store.without_waiting():
            raise AssertionError("a remote store entered the block")
    assert store.get_node("r").props == {"v": 1}
    assert store.get_nodes(["new", "t"]) == [None, None]
    store.upsert_nodes([Node("after", "Run")])  # writes work again
    with store.transaction():
        store.upsert_nodes([Node("after2", "Run")])
        if local:
            with store.without_waiting():  # inside the thread's own transaction: plain
                assert store.get_node("after2").label == "Run"
    assert store.count_nodes() == 3


def test_a_transaction_without_waiting_begins_at_once_or_writes_nothing(store: GraphStore) -> None:
    """``transaction_without_waiting`` (the server's short writes on its event loop): a local
    store's transaction commits as any other, or, while another thread holds the write lock,
    raises WouldWait before anything is written (and the thread waits as before afterwards);
    inside the thread's own transaction it joins it. A store over the network: WouldWait at
    once."""
    from conftest import Held

    from lineagehub.graph.sqlite import SqliteStore
    from lineagehub.graph.store import WouldWait

    if not isinstance(store, SqliteStore):
        with pytest.raises(WouldWait), store.transaction_without_waiting():
            raise AssertionError("a remote store began the transaction")
        return
    with store.transaction_without_waiting():
        store.upsert_nodes([Node("a", "Run", {"v": 1})])
        store.upsert_nodes([Node("b", "Run")])
    with pytest.raises(Boom), store.transaction_without_waiting():
        store.upsert_nodes([Node("gone", "Run")])
        raise Boom
    with store.transaction():  # joined: rolls back with the outer block
        with store.transaction_without_waiting():
            store.upsert_nodes([Node("joined", "Run")])
        assert store.get_node("joined").label == "Run"
    with (
        Held(store, Node("held", "Run")),
        pytest.raises(WouldWait),
        store.transaction_without_waiting(),
    ):
        store.upsert_nodes([Node("refused", "Run")])
    with store.transaction_without_waiting():  # free again: begins at once
        store.upsert_nodes([Node("after", "Run")])
    assert store.get_nodes(["gone", "refused"]) == [None, None]
    assert {n.id for n in store.find_nodes("Run").items} == {"a", "b", "joined", "held", "after"}
    if not store.memory:  # the thread's connection waits for others again
        assert store._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 60_000


def _child_writes(store: GraphStore, queue: Any) -> None:
    try:
        for i in range(30):
            with store.transaction():
                store.upsert_nodes([Node(f"from-child-{i:02d}", "Run", {"n": i})])
                store.append_audit("child", "run.create", f"from-child-{i:02d}", {"n": i})
        queue.put(len(store.find_nodes("Run", limit=100).items))
    except BaseException as e:  # reported to the parent
        queue.put(repr(e))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork")
def test_a_store_opened_before_a_fork_works_in_the_child_and_the_parent(
    store: GraphStore, request: pytest.FixtureRequest
) -> None:
    """A multiprocessing worker (fork) using the store its parent opened: on Neo4j it wrote
    into the parent's pooled connections ("Failed to read from defunct connection", "Expected
    structure, found marker"), breaking both; SQLite's rule is that a connection does not
    cross a fork. The child opens its own; the parent's go on untouched."""
    if "sqlite-memory" in request.node.name:
        pytest.skip("an in-memory database is its process's own: a child writes to its copy")
    import multiprocessing

    with store.transaction():  # the parent's connection (and Neo4j's pool) in use before
        store.upsert_nodes([Node("from-parent", "Run", {"n": 1})])
        store.append_audit("parent", "run.create", "from-parent", {"n": 1})
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_writes, args=(store, queue))
    child.start()
    reads = 0
    seen: Any = None
    try:
        while seen is None and reads < 100_000:  # the parent reads all the while
            assert store.get_node("from-parent") is not None
            reads += 1
            if not queue.empty():
                seen = queue.get()
        if seen is None:  # a slow child on a busy machine: its answer is waited for
            seen = queue.get(timeout=120)
        child.join(120)
    finally:  # a child that hangs fails the test, not the whole run (exit joins children)
        if child.is_alive():
            child.kill()
            child.join()
    assert seen == 31, seen
    assert child.exitcode == 0
    store.upsert_nodes([Node("after", "Run")])  # the parent's connections still work
    assert len(store.find_nodes("Run", limit=100).items) == 32
    assert store.verify_audit().ok
