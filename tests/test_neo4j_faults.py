"""Concurrency and faults on a real Neo4j: many processes writing at once, the server stopped
and killed mid-workload, a wrong password.

The outage tests run a Neo4j server of their own (``tests/neo4j/launch.py``), which they stop,
kill and start again on the same data and port; the rest use the suite's server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import NEO4J_URI, fresh_store_uri
from test_sdk import WORKER  # runs, metrics and a model version per iteration

from lineagehub.graph import BackendUnavailable, GraphStore, Node, open_store

sys.path.insert(0, str(Path(__file__).parent / "neo4j"))
from launch import Neo4jServer, java_missing

pytestmark = pytest.mark.neo4j


def test_eight_processes_write_runs_metrics_and_versions_into_one_neo4j(tmp_path: Path) -> None:
    uri = fresh_store_uri("neo4j", tmp_path)
    env = {**os.environ, "LINEAGEHUB_USER": "ann", "LINEAGEHUB_ARTIFACTS": str(tmp_path / "a")}
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), uri, str(w), "6"], env=env)
        for w in range(8)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0] * 8
    with open_store(uri) as store:
        runs = list(store.iter_nodes("Run", {"project": "sweep"}))
        assert len(runs) == 48 and all(r.props["status"] == "FINISHED" for r in runs)
        summaries = store.series_summary([r.id for r in runs])
        assert all(summaries[r.id]["loss"].count == 20 for r in runs)
        assert sorted((r.props["params"]["worker"], r.props["params"]["i"]) for r in runs) == [
            (w, i) for w in range(8) for i in range(6)
        ]
        versions = sorted(
            n.props["version"] for n in store.iter_nodes("ModelVersion", {"model": "shared-model"})
        )
        assert versions == list(range(1, 49))  # never the same number twice
        assert store.verify_audit().ok


# --- outages -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Neo4jServer]:
    """A Neo4j of this module's own, to stop and kill (its data in a folder of its own,
    deleted at the end)."""
    missing = java_missing()
    if missing:
        if os.environ.get("CI") or NEO4J_URI:
            pytest.fail(f"the outage tests need their own Neo4j: {missing}")
        pytest.skip(f"the outage tests need their own Neo4j: {missing}")
    srv = Neo4jServer()
    srv.start()
    yield srv
    srv.cleanup()


def _uri(server: Neo4jServer) -> str:
    assert server.uri is not None
    return server.uri.replace("bolt://", f"bolt://{server.user}:{server.password}@")


def _restart(server: Neo4jServer) -> None:
    """Start again on the same data and port (the clients hold that address)."""
    server.start()


def test_down_then_up_the_store_retries_and_then_names_the_uri(server: Neo4jServer) -> None:
    patient = open_store(_uri(server), max_transaction_retry_time=600)
    quick = open_store(_uri(server), max_transaction_retry_time=1, connection_timeout=2)
    try:
        patient.upsert_nodes([Node("before", "Run", {"n": 1})])
        server.stop()
        # Down and staying down: a clear, retryable error naming the server, no password.
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            quick.upsert_nodes([Node("lost", "Run")])
        assert time.monotonic() - started < 120
        assert info.value.retryable
        assert f"bolt://neo4j:***@127.0.0.1:{server.port}" in info.value.message
        assert server.password not in str(info.value)
        # A write made while the server is down goes through once it is back: the driver
        # retries transient failures with back-off, within the store's retry time.
        done: list[Any] = []
        writer = threading.Thread(
            target=lambda: done.append(_attempt(patient, [Node("during", "Run", {"n": 2})]))
        )
        # So does a transaction (a registration, a batch): it failed at once, as its begin
        # was not retried; beginning is tried again now, within the same retry time.
        in_transaction: list[Any] = []
        transaction = threading.Thread(
            target=lambda: in_transaction.append(_in_transaction(patient, "during-tx"))
        )
        writer.start()
        transaction.start()
        _restart(server)
        writer.join(timeout=600)
        transaction.join(timeout=600)
        assert done == [1]
        assert in_transaction == ["committed"]
        assert [n and n.props for n in patient.get_nodes(["before", "during", "lost"])] == [
            {"n": 1},
            {"n": 2},
            None,
        ]
        assert patient.get_node("during-tx") is not None and patient.verify_audit().ok
        # The store that gave up works again without being reopened.
        quick.upsert_nodes([Node("after", "Run")])
        assert quick.get_node("after") is not None
    finally:
        patient.close()
        quick.close()


def _attempt(store: GraphStore, nodes: list[Node]) -> Any:
    try:
        return store.upsert_nodes(nodes)
    except Exception as e:  # reported to the test thread
        return e


def _in_transaction(store: GraphStore, node_id: str) -> Any:
    try:
        with store.transaction():
            store.upsert_nodes([Node(node_id, "Run")])
            store.append_audit("ann", "run.create", node_id, {"id": node_id})
        return "committed"
    except Exception as e:  # reported to the test thread
        return e


def test_runs_and_batches_registering_one_model_at_once_never_deadlock(tmp_path: Path) -> None:
    """A run logging a model locked the model, then appended its audit entry; a batch
    appended entries, then registered (locking the model): the two deadlocked, and the loser
    (an explicit transaction, not retried by the driver) failed BackendUnavailable, 8 to 14
    calls in 20. Every transaction takes the audit head's lock first now: one order."""
    from lineagehub.ingest.client import Client

    uri = fresh_store_uri("neo4j", tmp_path)
    artifacts = (tmp_path / "artifacts").as_uri()
    start, failures = threading.Barrier(4), []

    def runs(k: int) -> None:
        with Client(uri, artifacts=artifacts) as client:
            start.wait(60)
            for i in range(5):
                with client.start_run(f"r{k}-{i}", capture=False) as run:
                    run.log_model({"k": k, "i": i}, name="shared")

    def batches(k: int) -> None:
        with Client(uri, artifacts=artifacts) as client:
            digest = client.backend.artifacts.put_bytes(b"weights %d" % k).digest
            start.wait(60)
            for i in range(5):
                with client.batch() as b:
                    run = b.start_run(f"b{k}-{i}")
                    b.end_run(run)
                    b.register_model_version("shared", digest=digest, run=run)

    def guarded(work: Any, k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [
        threading.Thread(target=guarded, args=(work, k))
        for k, work in enumerate([runs, runs, batches, batches])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not failures, failures
    with open_store(uri) as store:
        versions = sorted(
            n.props["version"] for n in store.iter_nodes("ModelVersion", {"model": "shared"})
        )
        assert versions == list(range(1, 21))
        assert store.verify_audit().ok


def _write_is_running(store: GraphStore) -> bool:
    with store._driver.session() as session:  # type: ignore[attr-defined]
        rows = session.run(
            "SHOW TRANSACTIONS YIELD currentQuery WHERE currentQuery CONTAINS $tag RETURN 1",
            tag="lineagehub:node.create",
        ).data()
    return bool(rows)


def test_a_batch_killed_mid_write_is_all_or_nothing(server: Neo4jServer) -> None:
    if not server.running:
        _restart(server)
    store = open_store(_uri(server), max_transaction_retry_time=0)
    watcher = open_store(_uri(server))
    batch = [
        Node(f"batch-{i:06d}", "DatasetVersion", {"i": i, "pad": "x" * 200}) for i in range(60_000)
    ]
    outcome: list[Any] = []
    writer = threading.Thread(target=lambda: outcome.append(_attempt(store, batch)))
    writer.start()
    deadline = time.monotonic() + 300
    while writer.is_alive() and not _write_is_running(watcher):
        assert time.monotonic() < deadline, "the batch never started"
    server.kill()  # kill -9, in the middle of the batch's transaction when it is still running
    writer.join(timeout=600)
    watcher.close()
    _restart(server)
    try:
        count = store.count_nodes("DatasetVersion")
        if isinstance(outcome[0], Exception):
            assert isinstance(outcome[0], BackendUnavailable)
            assert count == 0  # nothing half-written
        else:
            assert count == len(batch)  # it committed before the kill
    finally:
        store.close()
