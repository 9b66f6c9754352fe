"""Batches: many writes in one transaction (and, through a server, one ``writeBatch``
request), on both stores and both transports: what a batch writes, that a failure anywhere
leaves nothing written (audit log included), references between its writes, its limits and
its refusals, and a client killed in the middle of one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import fresh_store_uri
from http_server import SERVE, HubServer, serving

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import ConflictError, GraphStore, NotFoundError, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.services.registry import ModelPromoted
from lineagehub.vocabulary import DatasetVersion, ModelVersion, Run, RunStatus

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


@pytest.fixture(params=["embedded", "server"])
def hub(
    request: pytest.FixtureRequest, store_backend: str, tmp_path: Path
) -> Iterator[tuple[Client, GraphStore]]:
    """A client (embedded, or of a real server on the same kind of store) and the store."""
    uri = fresh_store_uri(store_backend, tmp_path)
    store = open_store(uri)
    artifacts = (tmp_path / "artifacts").as_uri()
    settings = Settings(user="alice", data_dir=tmp_path)
    if request.param == "embedded":
        client = Client(store, artifacts=artifacts, settings=settings)
        yield client, store
        client.close()
    else:
        app = create_app(settings, store=store, artifacts=open_artifact_store(artifacts))
        with HubServer(app) as server:
            client = Client(server.url, settings=settings)
            yield client, store
            client.close()
    store.close()


def counts(store: GraphStore) -> tuple[int, int, int, int]:
    """Runs, model versions, dataset versions and audit entries in the store."""
    head = store.audit_head()
    return (
        len(store.find_nodes("Run", limit=1000).items),
        len(store.find_nodes("ModelVersion", limit=1000).items),
        len(store.find_nodes("DatasetVersion", limit=1000).items),
        head.seq if head is not None else 0,
    )


def test_a_batch_writes_a_lineage_with_references_between_its_writes(
    hub: tuple[Client, GraphStore],
) -> None:
    client, _store = hub
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    with client.batch() as batch:
        prep = batch.start_run("prepare", project="churn", params={"split": 0.2})
        raw = batch.log_dataset_ref(prep, "s3://lake/raw.parquet", D1, row_count=10)
        clean = batch.log_dataset_ref(
            prep, "s3://lake/clean.parquet", D2, output=True, derived_from=[raw]
        )
        batch.end_run(prep)
        train = batch.start_run("train", project="churn", parent=prep)
        batch.log_dataset_ref(train, "s3://lake/clean.parquet", D2)
        batch.log(train, params={"lr": 0.1}, metrics={"auc": 0.91}, tags={"team": "a"})
        ended = batch.end_run(train)
        version = batch.register_model_version("churn", digest=weights, run=train)
        alias = batch.set_alias(version, "champion", reason="best so far")
        promoted = batch.promote(version, "Staging", reason="auc ok")
        deployment = batch.deploy(version, "staging", name="churn-api")
        with pytest.raises(ValidationError, match="not written yet"):
            version.result()
    assert batch.written and batch.size == 12

    mv = version.result()
    assert isinstance(mv, ModelVersion) and (mv.model, mv.version) == ("churn", 1)
    assert alias.result().aliases == ["champion"]
    outcome = promoted.result()
    assert isinstance(outcome, ModelPromoted) and outcome.to_stage == "Staging"
    assert deployment.result().environment == "staging"
    run = ended.result()
    assert isinstance(run, Run) and run.status is RunStatus.FINISHED
    assert run.params == {"lr": 0.1} and run.tags == {"team": "a"}
    assert run.parent == prep.id
    assert run.user == "alice"  # the launcher, as a run the client starts
    assert isinstance(clean.result(), DatasetVersion)

    # the hub holds exactly that: the version's lineage reaches the raw data through both runs
    found = client.get_model_version("churn@champion")
    assert found.stage == "Staging" and found.node_id == mv.node_id
    upstream = client.lineage([found.node_id], upstream_depth=6)
    ids = set(upstream.nodes)
    assert {train.id, prep.id, raw.result().node_id, clean.result().node_id} <= ids
    assert client.get_run(train.id).metrics["auc"] == pytest.approx(0.91)


def test_a_failing_write_leaves_none_of_the_batch_written(
    hub: tuple[Client, GraphStore],
) -> None:
    client, store = hub
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    before = counts(store)
    with pytest.raises(ValidationError) as caught, client.batch() as batch:
        run = batch.start_run("train", project="churn")
        batch.log(run, params={"lr": 0.1})
        version = batch.register_model_version("churn", digest=weights, run=run)
        batch.set_alias(version, "not an alias!")  # refused by the registry
        batch.end_run(run)
    assert "alias" in str(caught.value)
    assert counts(store) == before  # no run, no version, not one audit entry
    with pytest.raises(NotFoundError):
        client.get_run(run.id)
    # an error in the block itself: nothing written either
    with pytest.raises(RuntimeError), client.batch() as batch:
        batch.start_run("train", project="churn")
        raise RuntimeError("the pipeline failed")
    assert counts(store) == before and not batch.written
    # and the hub goes on as if the batches had never been: same writes, an intact audit chain
    with client.batch() as batch:
        run = batch.start_run("train", project="churn")
        batch.end_run(run)
    assert client.get_run(run.id).status is RunStatus.FINISHED
    assert store.verify_audit().ok


def test_references_name_only_earlier_writes(hub: tuple[Client, GraphStore]) -> None:
    client, _store = hub
    with client.batch() as batch:
        run = batch.start_run("train")
        batch.end_run(run)
    with pytest.raises(ValidationError, match="write inside"):
        batch.start_run("late")
    with pytest.raises(ValidationError, match="used once"), batch:
        pass
    assert client.get_run(run.id).status is RunStatus.FINISHED


def test_a_batch_that_failed_takes_no_more_writes_and_says_it_failed(
    hub: tuple[Client, GraphStore],
) -> None:
    """A write after the block of a batch that failed was written at once, outside any
    transaction (embedded), or taken and never sent (through a server); the results of its
    writes said it was "not written yet"."""
    client, store = hub
    before = counts(store)
    with pytest.raises(RuntimeError), client.batch() as batch:
        run = batch.start_run("train")
        raise RuntimeError("the pipeline failed")
    with pytest.raises(ValidationError, match="write inside the batch's with block"):
        batch.start_run("late")
    with pytest.raises(ValidationError, match="write inside the batch's with block"):
        batch.end_run(run)
    assert counts(store) == before
    assert batch.failed and not batch.written and batch.size == 1
    with pytest.raises(ValidationError, match="the batch failed: nothing of it was written"):
        run.result()


def test_a_write_the_hub_refused_fails_the_batch_even_if_the_block_caught_it(
    hub: tuple[Client, GraphStore],
) -> None:
    """Embedded, a refused write raises at its line: a block that caught its error and went on
    had the rest of the batch committed (through a server the whole batch was refused)."""
    client, store = hub
    before = counts(store)
    with pytest.raises(ConflictError, match="FINISHED") as caught, client.batch() as batch:
        run = batch.start_run("train")
        batch.end_run(run)
        with contextlib.suppress(ConflictError):  # refused here embedded, at the end remotely
            batch.end_run(run)  # ended twice
        batch.start_run("other")
    assert counts(store) == before and batch.failed
    if type(client.backend).__name__ == "LocalBackend":
        assert "the batch was not written" in caught.value.message
    # a value the SDK checks itself is refused before anything is written: the batch goes on
    with client.batch() as batch:
        run = batch.start_run("train")
        with pytest.raises(ValidationError, match="params"):
            batch.log(run, params={"lr": object()})
        batch.end_run(run)
    assert batch.written and batch.size == 2
    assert client.get_run(run.id).status is RunStatus.FINISHED


def test_a_batch_inside_a_batch_is_refused(hub: tuple[Client, GraphStore]) -> None:
    """Embedded, a batch inside a batch joined its transaction: it said it was written, and
    its results named a version the outer batch's failure then undid; through a server it was
    a request of its own, written though the outer batch failed."""
    client, store = hub
    before = counts(store)
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    with pytest.raises(RuntimeError), client.batch() as outer:
        outer.start_run("outer")
        with pytest.raises(ValidationError, match="a batch inside a batch"), client.batch():
            pass
        raise RuntimeError("the pipeline failed")
    assert counts(store) == before
    # the outer batch still writes what it holds; a batch after it is a batch of its own
    with client.batch() as outer:
        run = outer.start_run("outer")
        with pytest.raises(ValidationError, match="a batch inside a batch"), client.batch():
            pass
        outer.end_run(run)
    with client.batch() as after:
        version = after.register_model_version("churn", digest=weights, run=run.id)
    assert outer.written and after.written
    assert client.get_model_version("churn@latest").node_id == version.result().node_id


def test_a_run_started_by_a_single_call_in_a_failed_batchs_block_does_not_stay_live(
    hub: tuple[Client, GraphStore],
) -> None:
    """Embedded, ``client.start_run`` in a batch's block is written in the batch's transaction
    and undone with it: the client held the run live, and every later flush, search and
    close failed on it (NotFoundError). Through a server it is written at once."""
    client, _store = hub
    with pytest.raises(RuntimeError), client.batch() as batch:
        batch.start_run("batched")
        single = client.start_run("single", capture=False)
        raise RuntimeError("the pipeline failed")
    single.log_metric("loss", 0.5)
    names = [r.name for r in client.search_runs()[0]]  # flushes every live run
    if type(client.backend).__name__ == "LocalBackend":
        assert names == [] and single.id not in client._live
        with pytest.raises(NotFoundError):
            single.end()
    else:
        assert names == ["single"]
        single.end()
    assert client._live == {}
    with client.start_run("next", capture=False) as after:  # its parent is not the lost run
        pass
    assert client.get_run(after.id).parent is None


def test_a_runs_pending_names_the_run(hub: tuple[Client, GraphStore]) -> None:
    """A run's Pending (``run.pending``, what ``end_run`` answers) names it wherever a run is
    named; through a server it was "name a batched run by its id"."""
    client, _store = hub
    with client.batch() as batch:
        prep = batch.start_run("prepare")
        ended = batch.end_run(prep.pending)
        train = batch.start_run("train", parent=ended)
        batch.log(train.pending, metrics={"auc": 0.9})
        batch.end_run(train.pending)
    assert client.get_run(prep.id).status is RunStatus.FINISHED
    run = client.get_run(train.id)
    assert run.parent == prep.id and run.status is RunStatus.FINISHED
    assert run.metrics["auc"] == pytest.approx(0.9)


def test_a_pending_of_an_earlier_batch_names_what_it_wrote(
    hub: tuple[Client, GraphStore],
) -> None:
    """Through a server, another batch's Pending was sent as "$i", naming operation i of the
    batch it was passed to: another node, or none."""
    client, _store = hub
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    with client.batch() as first:
        run = first.start_run("train")
        first.end_run(run)
        version = first.register_model_version("churn", digest=weights, run=run)
    with client.batch() as second:
        second.start_run("other")
        second.set_alias(version, "champion")
    assert client.get_model_version("churn@champion").node_id == version.result().node_id
    with pytest.raises(RuntimeError), client.batch() as failed:
        lost = failed.register_model_version("churn", digest=weights)
        raise RuntimeError("the pipeline failed")
    with pytest.raises(ValidationError, match="the batch failed"), client.batch() as third:
        third.set_alias(lost, "candidate")
    assert third.failed


def test_a_batch_over_the_servers_request_limit_says_so_and_writes_nothing(
    hub: tuple[Client, GraphStore],
) -> None:
    """Well under 10,000 operations, a batch can be over the server's 1 MiB request body: it
    was "request body over 1048576 bytes" with no field, nothing saying what to do."""
    client, store = hub
    before = counts(store)

    def send() -> None:
        with client.batch() as batch:
            for _ in range(4000):
                batch.start_run("n" * 250)

    if type(client.backend).__name__ == "LocalBackend":
        send()  # embedded: no request, no such limit
        assert store.count_nodes("Run") == before[0] + 4000
        return
    with pytest.raises(ValidationError) as caught:
        send()
    assert caught.value.field == "batch" and "4000 operations" in caught.value.message
    assert "split it into smaller batches" in caught.value.message
    assert counts(store) == before


def test_derived_from_none_is_no_sources(hub: tuple[Client, GraphStore]) -> None:
    """``derived_from=None`` (a variable that held nothing) was a TypeError."""
    client, store = hub
    with client.batch() as batch:
        run = batch.start_run("refs")
        batch.log_dataset_ref(run, "s3://lake/x", "sha256:" + "a" * 64, derived_from=None)
        batch.end_run(run)
    with client.start_run("one", capture=False) as one:
        one.log_dataset_ref("s3://lake/y", "sha256:" + "b" * 64, derived_from=None)
    assert store.count_nodes("DatasetVersion") == 2


def test_an_empty_batch_writes_nothing(hub: tuple[Client, GraphStore]) -> None:
    client, store = hub
    before = counts(store)
    with client.batch() as batch:
        pass
    assert batch.written and batch.size == 0 and counts(store) == before


# --- the mutation itself, as any GraphQL client sends it --------------------------------------

WRITE = (
    "mutation($ops: [WriteOperation!]!) { writeBatch(operations: $ops) "
    "{ call node { id kind } promotion { __typename } } }"
)


@pytest.fixture
def server(backend_uri: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, GraphStore]]:
    store = open_store(backend_uri)
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    app = create_app(Settings(user="alice", data_dir=tmp_path), store=store, artifacts=artifacts)
    with HubServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as http:
        yield http, store
    store.close()


def write(http: httpx.Client, ops: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": WRITE, "variables": {"ops": ops}})
    assert response.status_code == 200, response.text
    return response.json()


def start(name: str) -> dict[str, Any]:
    return {"call": "startRun", "args": {"input": {"name": name}}}


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"call": "deleteEverything", "args": {}}], "cannot be batched"),
        ([{"call": "markStaleRuns"}], "cannot be batched"),
        ([{"call": "startRun", "args": [1, 2]}], "args must be a JSON object"),
        ([{"call": "startRun", "args": {"input": {"name": 5}}}], "input.name"),
        ([{"call": "startRun", "args": {}}], "'input' is required"),
        ([{"call": "startRun", "args": {"input": {"name": "x"}, "evil": 1}}], "unknown argument"),
        ([start("a"), {"call": "endRun", "args": {"runId": "$1"}}], "only earlier ones"),
        ([start("a"), {"call": "endRun", "args": {"runId": "$7"}}], "only earlier ones"),
        (
            [
                start("a"),
                {"call": "logBatch", "args": {"runId": "$0"}},
                {"call": "endRun", "args": {"runId": "$1"}},
            ],
            "wrote no node",
        ),
        ([start("a"), {"call": "endRun", "args": {"runId": "run:nope"}}], "operations[1]"),
        ([start("a"), {"call": "setAlias", "args": {"ref": "$0", "alias": "x"}}], "operations[1]"),
    ],
)
def test_bad_operations_get_a_coded_error_naming_them_and_write_nothing(
    server: tuple[httpx.Client, GraphStore], ops: list[dict[str, Any]], message: str
) -> None:
    http, store = server
    before = counts(store)
    answer = write(http, ops)
    assert answer["data"] is None
    error = answer["errors"][0]
    assert message in error["message"]
    assert error["extensions"]["code"] in {"VALIDATION", "NOT_FOUND"}
    assert counts(store) == before


def test_a_batch_has_a_size_limit(server: tuple[httpx.Client, GraphStore]) -> None:
    from lineagehub.schema.batch import MAX_OPERATIONS

    http, _store = server
    ops = [{"call": "removeAlias"}] * (MAX_OPERATIONS + 1)
    answer = write(http, ops)
    assert answer["errors"][0]["extensions"]["code"] in {"VALIDATION", "PAYLOAD_TOO_LARGE"}
    assert str(MAX_OPERATIONS) in answer["errors"][0]["message"]


def test_each_write_of_a_batch_is_authorized_as_its_own_mutation(tmp_path: Path) -> None:
    """An editor of one project may batch writes there, not in another project: the refusal
    comes when that write's turn comes, and nothing of the batch is written."""
    from lineagehub.services.access import Role
    from lineagehub.services.identity import IdentityService

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    identity = IdentityService(store, actor="admin")
    identity.add_user("erin", Role.EDITOR, project="churn")
    token = identity.create_token("erin", name="ci").secret
    settings = Settings(user="admin", data_dir=tmp_path, auth="tokens")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    app = create_app(settings, store=store, artifacts=artifacts)
    headers = {"authorization": f"Bearer {token}"}
    ok = [
        {"call": "startRun", "args": {"input": {"name": "a", "project": "churn"}}},
        {"call": "endRun", "args": {"runId": "$0"}},
    ]
    other = [*ok, {"call": "startRun", "args": {"input": {"name": "b", "project": "fraud"}}}]
    with HubServer(app) as s, httpx.Client(base_url=s.url, headers=headers) as http:
        before = counts(store)
        refused = write(http, other)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "operations[2]" in refused["errors"][0]["message"]
        assert counts(store)[0] == before[0]  # not even the allowed run
        done = write(http, ok)
        assert [r["call"] for r in done["data"]["writeBatch"]] == ["startRun", "endRun"]
        run = store.get_node(done["data"]["writeBatch"][0]["node"]["id"])
        assert run.props["user"] == "erin" and run.props["status"] == "FINISHED"
    store.close()


# --- a client killed in the middle of a batch ------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from lineagehub import Client
    client = Client(sys.argv[1], artifacts=sys.argv[2])
    with client.batch() as batch:
        for i in range(50):
            run = batch.start_run(f"run-{i}", project="p")
            batch.log(run, params={"i": i}, metrics={"m": i / 10})
            batch.end_run(run)
        print("half-way", flush=True)
        sys.stdin.readline()  # killed here, never answered
        for i in range(50, 100):
            batch.start_run(f"run-{i}", project="p")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs kill -9 (POSIX signals)")
def test_a_client_killed_mid_batch_leaves_nothing(backend_uri: str, tmp_path: Path) -> None:
    store = open_store(backend_uri)
    before = counts(store)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend_uri, (tmp_path / "a").as_uri()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "LINEAGEHUB_USER": "ci"},
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half-way"  # 150 writes made, uncommitted
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    reopened = open_store(backend_uri)  # a new connection: what the database really holds
    assert counts(reopened) == before
    with reopened.transaction():  # and the database is not left locked
        reopened.upsert_nodes([Run(name="after").to_node()])
    assert counts(reopened)[0] == before[0] + 1
    reopened.close()
    store.close()


def assert_write_lock_taken(db: Path, deadline: float = 60.0) -> None:
    """Return once another connection holds the database's write lock (the batch's open
    transaction), polling; fail after ``deadline`` seconds."""
    import sqlite3
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        probe = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError:  # locked: the batch is being written
            return
        finally:
            probe.close()
    pytest.fail("the server never began the batch")


@pytest.mark.skipif(sys.platform == "win32", reason="needs kill -9 (POSIX signals)")
def test_a_server_killed_during_a_batch_writes_all_of_it_or_none(
    backend_uri: str, tmp_path: Path
) -> None:
    """A server killed (kill -9) once it has a 3,000-write batch: after, the store holds all
    of the batch or none of it, and takes writes."""
    import socket

    store = open_store(backend_uri)
    before = counts(store)[0]
    server, port = serving(SERVE, backend_uri, (tmp_path / "a").as_uri())
    try:
        ops = [{"call": "startRun", "args": {"input": {"name": f"r{i}"}}} for i in range(3000)]
        body = httpx.Request(
            "POST",
            f"http://127.0.0.1:{port}/graphql",
            json={"query": WRITE, "variables": {"ops": ops}},
        )
        raw = b"".join([
            f"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode(),
            b"content-type: application/json\r\n",
            f"content-length: {len(body.read())}\r\n\r\n".encode(),
            body.read(),
        ])  # fmt: skip
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(raw)
            if backend_uri.startswith("sqlite:///"):  # wait until the batch holds the lock
                assert_write_lock_taken(Path(backend_uri.removeprefix("sqlite:///")))
            os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    reopened = open_store(backend_uri)
    after = counts(reopened)[0]
    assert after in (before, before + 3000)
    if backend_uri.startswith("sqlite:///"):
        assert after == before  # killed with the transaction open: none of it
    assert reopened.verify_audit().ok
    with reopened.transaction():
        reopened.upsert_nodes([Run(name="after").to_node()])
    reopened.close()
    store.close()


SERVE_AND_DIE = SERVE.replace(
    "store = open_store(sys.argv[1])",
    textwrap.dedent(
        """
        import os, signal, threading
        from lineagehub.services.tracking import TrackingService
        started = TrackingService.start_run
        calls = []

        def start_run(self, *args, **kwargs):  # the 8th run: the 3rd of the second batch
            run = started(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == 8:
                where = "loop" if threading.current_thread() is threading.main_thread() else "thread"
                print(where, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return run

        TrackingService.start_run = start_run
        store = open_store(sys.argv[1])
        """
    ).strip(),
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs kill -9 (POSIX signals)")
def test_a_server_killed_in_a_short_batch_on_its_event_loop_writes_none_of_it(
    backend_uri: str, tmp_path: Path
) -> None:
    """A short batch (five runs: on a SQLite file, written on the server's event loop in one
    transaction) whose server is killed (kill -9) after its third run: afterwards the store
    holds the batch answered before it whole and none of this one, and the audit log
    verifies. (The server's process kills itself there; what it runs is the hub's own code.)"""
    store = open_store(backend_uri)
    server, port = serving(SERVE_AND_DIE, backend_uri, (tmp_path / "a").as_uri())
    try:
        assert server.stdout is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for b in range(2):
                ops = [
                    {"call": "startRun", "args": {"input": {"name": f"b{b}-r{i}"}}}
                    for i in range(5)
                ]
                try:
                    r = client.post("/graphql", json={"query": WRITE, "variables": {"ops": ops}})
                except httpx.HTTPError:
                    assert b == 1  # the second batch's server is gone
                    break
                assert r.status_code == 200 and "errors" not in r.json(), r.text
        where = server.stdout.readline().strip()
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert where == ("loop" if backend_uri.startswith("sqlite:///") else "thread")
    reopened = open_store(backend_uri)
    names = sorted(str(n.props["name"]) for n in reopened.find_nodes("Run", limit=100).items)
    assert names == [f"b0-r{i}" for i in range(5)]
    assert reopened.verify_audit().ok
    reopened.close()
    store.close()


def test_a_batch_is_measured_for_the_event_loop_within_its_bound_whatever_its_shape() -> None:
    """A batch is short enough for the event loop with at most 16 operations holding at most
    256 JSON values (containers counted); the count stops at the bound, so a document of many
    empty lists costs no more to measure than a short batch."""
    from lineagehub.schema.batch import _short, _values
    from lineagehub.schema.context import INLINE_BATCH_OPERATIONS, INLINE_BATCH_VALUES

    one = {"input": {"name": "r", "tags": {}, "params": {"lr": 0.1}}}
    assert _values([one], 1000) == 7  # the list, the arguments, the input, a name, two maps, 0.1
    assert _short([one] * INLINE_BATCH_OPERATIONS)
    assert not _short([one] * (INLINE_BATCH_OPERATIONS + 1))
    assert not _short([{"x": list(range(INLINE_BATCH_VALUES))}])
    most = INLINE_BATCH_VALUES + 1
    assert _values([[[]] * 100_000], most) == most
    assert not _short([[[]] * 100_000])
