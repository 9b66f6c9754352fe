"""What is particular to the embedded SQLite backend: URIs, WAL, migrations, several
processes and threads writing into one file, crashes mid-transaction."""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lineagehub.graph import (
    DELETE,
    BackendError,
    ConfigError,
    Edge,
    GraphStore,
    Node,
    SeriesPoint,
    ValidationError,
    open_store,
    wal,
)
from lineagehub.graph.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SqliteStore,
)


def test_uri_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/hub.db") as rel:
        rel.upsert_nodes([Node("a", "Run")])
    assert (tmp_path / "rel" / "hub.db").exists()
    absolute = tmp_path / "abs.db"
    with open_store(f"sqlite:///{absolute}") as s:  # sqlite:////tmp/... (four slashes)
        assert isinstance(s, SqliteStore) and s.path == str(absolute)
        s.upsert_nodes([Node("a", "Run")])
    assert absolute.exists()
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with open_store(memory) as m:
            assert isinstance(m, SqliteStore) and m.memory
    with pytest.raises(ConfigError, match=r"sqlite:///relative\.db"):
        open_store("sqlite:/hub.db")


def test_file_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'hub.db'}") as store:
        store.upsert_nodes([Node("a", "Run")])
    conn = sqlite3.connect(tmp_path / "hub.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def _blobs(store: GraphStore, n: int) -> None:
    for i in range(n):  # one commit each, a page or more of properties
        store.upsert_nodes([Node(f"n{i}", "Run", {"blob": "x" * 3000, "i": i})])


def _rows_in_the_file_alone(path: Path, tmp_path: Path) -> int:
    """The Run rows the database file holds without its WAL (what checkpoints copied)."""
    alone = tmp_path / "alone" / "hub.db"
    alone.parent.mkdir()
    # copied by another process: closing a descriptor of the file here would drop the POSIX
    # locks this process's SQLite connections hold on it
    copy = "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])"
    subprocess.run([sys.executable, "-c", copy, str(path), str(alone)], check=True)
    conn = sqlite3.connect(alone)
    try:
        return int(conn.execute("SELECT count(*) FROM nodes WHERE label = 'Run'").fetchone()[0])
    finally:
        conn.close()


def test_small_commits_do_not_checkpoint_every_thousand_pages(tmp_path: Path) -> None:
    """Writers copy the WAL back themselves only past wal.AUTOCHECKPOINT_PAGES frames, not
    SQLite's default 1,000 (the store's thread does it before): small transactions leave
    more than that in it, and it is all there after the store closes and opens again."""
    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    with open_store(uri) as store:
        assert isinstance(store, SqliteStore)
        with store._read() as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
                wal.AUTOCHECKPOINT_PAGES
            )
        _blobs(store, 400)
        conn = sqlite3.connect(tmp_path / "hub.db")
        busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.close()
        assert busy == 0 and 1000 < frames <= wal.AUTOCHECKPOINT_PAGES, frames
    with open_store(uri) as store:
        assert store.count_nodes("Run") == 400
        assert store.get_node("n399").props["i"] == 399


def _checkpoint_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"lineagehub-wal-checkpoint:{path}"]


def test_a_thread_of_the_store_copies_the_wal_back_and_ends_with_it(tmp_path: Path) -> None:
    """A commit starts the store's checkpoint thread, which copies commits back into
    the database file on its own time; closing the store ends it, and so does dropping a
    store that was never closed."""
    path = tmp_path / "hub.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore) and store._checkpointer is not None
    _blobs(store, 50)
    assert len(_checkpoint_threads(path)) == 1  # one, whatever the commits
    assert store._checkpointer.wait(1, timeout=60), "the checkpoint thread never ran"
    store.close()
    assert _checkpoint_threads(path) == []
    assert _rows_in_the_file_alone(path, tmp_path) >= 1  # the writer never checkpointed

    dropped = open_store(f"sqlite:///{path}")
    dropped.upsert_nodes([Node("one-more", "Run")])
    (thread,) = _checkpoint_threads(path)
    del dropped
    gc.collect()
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_a_long_wal_is_started_over_by_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round of checkpoints copies every frame back (the database file alone then holds
    every row) and, the WAL being RESTART_PAGES long, the next commit copies what arrived
    since and the one after writes the WAL from its start: it does not grow for ever under
    a steady stream of commits, which a passive checkpoint alone never stops."""
    monkeypatch.setattr(wal, "RESTART_PAGES", 100)
    path = tmp_path / "hub.db"
    with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SqliteStore) and store._checkpointer is not None
        checkpointer = store._checkpointer
        checkpointer.close()  # this test runs the rounds itself
        _blobs(store, 300)
        probe = sqlite3.connect(path)
        frames, copied = checkpointer.run_once(probe)
        assert frames == copied >= 300
        assert _rows_in_the_file_alone(path, tmp_path) == 300
        store.upsert_nodes([Node("after", "Run")])
        assert checkpointer.restarts == 1
        store.upsert_nodes([Node("after-2", "Run")])
        _, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert 0 < frames < 50, frames  # the last commit only
        probe.close()
        assert store.count_nodes("Run") == 302


def test_a_store_that_cannot_start_its_thread_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No thread to be had (a process at its limit): every commit stands and the writers
    copy the WAL back themselves, as before the thread; the refusal is logged."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    path = tmp_path / "hub.db"
    with open_store(f"sqlite:///{path}") as store:
        for i in range(20):
            store.upsert_nodes([Node(f"n{i}", "Run")])
        assert store.count_nodes("Run") == 20
    assert caplog.text.count("no thread for WAL checkpoints") == 1  # once, not per commit
    monkeypatch.undo()
    with open_store(f"sqlite:///{path}") as store:
        assert store.count_nodes("Run") == 20


CHECKPOINTED_WRITER = textwrap.dedent(
    """
    import sys
    from lineagehub.graph import Node, open_store, wal
    wal.RESTART_PAGES = 200  # many rounds and restarts before the kill
    wal.INTERVAL_S = 0.0
    store = open_store(sys.argv[1])
    for i in range(30_000):
        store.upsert_nodes([Node(f"n{i}", "Run", {"blob": "x" * 2000, "i": i})])
        print(i, store._checkpointer.checkpoints, store._checkpointer.restarts, flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs kill -9 (POSIX signals)")
def test_kill_9_while_the_wal_is_copied_back_loses_no_commit(tmp_path: Path) -> None:
    """A writer killed (kill -9) while its store's thread copies the WAL back and its commits
    start the WAL over: every commit it reported is there, and the file is sound."""
    path = tmp_path / "hub.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHECKPOINTED_WRITER, f"sqlite:///{path}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        last = rounds = restarts = -1
        for line in child.stdout:
            last, rounds, restarts = map(int, line.split())
            if (rounds >= 5 and restarts >= 3) or last >= 20_000:
                break
        assert rounds >= 5 and restarts >= 3, (last, rounds, restarts)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SqliteStore)
        assert store.count_nodes("Run") >= last + 1
        assert store.get_node(f"n{last}").props["i"] == last
        with store._read() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "hub.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"hub\.db"):
        open_store(f"sqlite:///{bad}")


def test_unwritable_location_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the folder"):
        open_store(f"sqlite:///{blocker / 'sub' / 'hub.db'}")


def test_migrates_an_old_database_forward_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO nodes VALUES ('r', 'Run', '{\"a\": 1}', "
        "'2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SqliteStore)
        assert store.schema_version == SCHEMA_VERSION
        assert store.get_node("r").props == {"a": 1}
        store.append_series([SeriesPoint("r", "loss", 0, 1.0)])  # table from migration 2
        assert len(store.read_series("r", "loss")) == 1
    # opening again changes nothing
    with open_store(f"sqlite:///{path}") as store:
        assert store.get_node("r").props == {"a": 1}


def test_a_node_stored_past_the_size_limit_before_schema_8_may_shrink_not_grow(
    tmp_path: Path,
) -> None:
    """Before schema 8 many merges could grow a node past 1,000,000 characters of JSON. After
    the migration such a node still takes writes that do not make it larger (a heartbeat, a
    key removed); a write that would grow it is refused, and any other node keeps the limit."""
    from lineagehub.graph.model import MAX_PROPS_BYTES

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:7]:
        conn.executescript(script)
    big = json.dumps({"at": "2024-01-01", "log": "x" * MAX_PROPS_BYTES}, separators=(",", ":"))
    conn.execute(
        "INSERT INTO nodes VALUES ('r', 'Run', ?, "
        "'2024-01-01T00:00:00.000000Z', '2024-01-01T00:00:00.000000Z')",
        (big,),
    )
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_version == SCHEMA_VERSION
        store.upsert_nodes([Node("r", "Run", {"at": "2024-01-02"})])  # same size: taken
        with pytest.raises(ValidationError, match=r"'r'.*more than 1,000,000 characters"):
            store.upsert_nodes([Node("r", "Run", {"status": "FINISHED"})])
        assert store.get_node("r").props["at"] == "2024-01-02"
        assert "status" not in store.get_node("r").props
        store.upsert_nodes([Node("r", "Run", {"log": DELETE, "status": "FINISHED"})])
        assert store.get_node("r").props == {"at": "2024-01-02", "status": "FINISHED"}


def test_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="upgrade lineagehub"):
        open_store(f"sqlite:///{path}")


PER_PROCESS = 1000
PROCESSES = 8


def _writer(uri: str, worker: int, start: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    """One process of a sweep: its nodes, edges and metric points in small batches,
    interleaved, so that the processes contend for the write lock all along."""
    store = open_store(uri)
    start.wait()
    ids = [f"w{worker}:n{i}" for i in range(PER_PROCESS)]
    batch = 10
    for lo in range(0, PER_PROCESS, batch):
        chunk = ids[lo : lo + batch]
        store.upsert_nodes([Node(i, "Run", {"worker": worker}) for i in chunk])
        store.upsert_edges([Edge(i, "shared", "USED", {"w": worker}) for i in chunk])
        store.append_series(
            [SeriesPoint(f"w{worker}:n0", "loss", lo + j, float(j)) for j in range(batch)]
        )
    store.close()


@pytest.mark.slow
def test_eight_processes_write_into_one_file_and_nothing_is_lost(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'sweep.db'}"
    with open_store(uri) as store:
        store.upsert_nodes([Node("shared", "DatasetVersion")])
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(uri, w, start)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with open_store(uri) as store:
        assert isinstance(store, SqliteStore)
        assert store.count_nodes("Run") == PROCESSES * PER_PROCESS
        assert store.count_edges() == PROCESSES * PER_PROCESS
        for w in range(PROCESSES):
            assert store.count_nodes("Run", {"worker": w}) == PER_PROCESS
            assert len(store.read_series(f"w{w}:n0", "loss")) == PER_PROCESS
        users = store.neighbors(["shared"], "DOWNSTREAM")["shared"]
        assert len(users) == PROCESSES * PER_PROCESS


@pytest.mark.parametrize("where", ["memory", "file"])
def test_threads_share_one_store(tmp_path: Path, where: str) -> None:
    uri = "sqlite://" if where == "memory" else f"sqlite:///{tmp_path / 'threads.db'}"
    errors: list[BaseException] = []
    with open_store(uri) as store:

        def work(t: int) -> None:
            try:
                for i in range(200):
                    store.upsert_nodes([Node(f"t{t}:{i}", "Run")])
                    with store.transaction():
                        store.upsert_nodes([Node(f"t{t}:{i}:x", "Run")])
                        store.upsert_edges([Edge(f"t{t}:{i}:x", f"t{t}:{i}", "CHILD_OF")])
            except BaseException as e:  # surfaced by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert store.count_nodes() == 8 * 200 * 2
        assert len(store.traverse(["t3:7:x"], "UPSTREAM").nodes) == 2


def _crash_mid_transaction(uri: str) -> None:
    store = open_store(uri)
    with store.transaction():
        store.upsert_nodes([Node(f"half{i}", "Run") for i in range(100)])
        os._exit(17)  # the process dies before the transaction ends


def test_a_crash_mid_transaction_leaves_nothing_half_written(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'crash.db'}"
    with open_store(uri) as store:
        store.upsert_nodes([Node("before", "Run")])
    proc = mp.get_context("spawn").Process(target=_crash_mid_transaction, args=(uri,))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 17
    with open_store(uri) as store:
        assert store.count_nodes() == 1
        store.upsert_nodes([Node("after", "Run")])  # and the file is writable again
        assert store.count_nodes() == 2


def test_contains_finds_text_whatever_its_case(tmp_path: Path) -> None:
    from lineagehub.graph import Node, ValidationError, open_store

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.upsert_nodes(
        [
            Node("run:a", "Run", {"name": "Train-Churn", "n": 5, "tags": {"team": "growth"}}),
            Node("run:b", "Run", {"name": "evaluate", "n": 15}),
            Node("run:c", "Run", {"name": None, "n": 51}),
        ]
    )

    def ids(where: dict[str, object]) -> list[str]:
        return [n.id for n in store.iter_nodes("Run", where, "id")]

    assert ids({"name": {"$contains": "churn"}}) == ["run:a"]
    assert ids({"name": {"$contains": "A"}}) == ["run:a", "run:b"]
    assert ids({"id": {"$contains": "RUN:B"}}) == ["run:b"]
    assert ids({"n": {"$contains": "5"}}) == []  # numbers are not text
    assert ids({"tags": {"$contains": "grow"}}) == ["run:a"]  # a mapping's JSON text
    assert ids({"$or": [{"name": {"$contains": "eval"}}, {"id": {"$contains": ":c"}}]}) == [
        "run:b",
        "run:c",
    ]
    assert ids({"name": {"$contains": "%"}}) == []  # no wildcards: the text as it is
    for bad in ("", 5, "x" * 201, None):
        with pytest.raises(ValidationError):
            ids({"name": {"$contains": bad}})
    store.close()


def test_the_registry_seeks_a_models_versions_instead_of_reading_them_all(
    tmp_path: Path,
) -> None:
    """What the registry asks of a model's versions (the latest, for the next number; the
    holders of a stage; the holders of an alias) is a seek of migration 7's indexes, not a
    read (or a sort) of every version: each such query's plan, asked of SQLite itself."""
    from lineagehub.ingest.client import Client

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    with Client(uri, artifacts=(tmp_path / "artifacts").as_uri()) as client:
        weights = client.backend.artifacts.put_bytes(b"weights").digest

        def register(i: int) -> str:
            with client.start_run(f"train-{i}", project="p", capture=False) as run:
                pass
            return client.register_model_version("m", digest=weights, run_id=run.id).node_id

        for i in range(12):
            register(i)
        store = client.backend.store
        assert isinstance(store, SqliteStore)
        seen: list[str] = []
        conn = store._conn()  # the writes below run on this thread's connection
        conn.set_trace_callback(seen.append)
        try:
            version = register(12)
            client.set_alias(version, "champion", reason="best")
            client.promote(version, "Staging", reason="ok")
            assert client.get_model_version("m@champion").version == 13
        finally:
            conn.set_trace_callback(None)
        asked = [s for s in seen if s.startswith("SELECT") and "'ModelVersion'" in s]
        assert len(asked) >= 3
        for sql in asked:
            plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "USING INDEX nodes_mv_" in plan, (sql, plan)
            assert "SCAN" not in plan and "TEMP B-TREE FOR ORDER BY" not in plan, (sql, plan)
        # a promotion records the move alone: it reads no earlier stage change
        assert not [s for s in seen if s.startswith("SELECT") and '$."params"."model"' in s]
        # what a stage held at a time replays the model's moves: a seek of its promote runs
        seen.clear()
        conn = store._conn()
        conn.set_trace_callback(seen.append)
        try:
            holder = client.holder_at("m", "Staging", datetime.now(timezone.utc))
            assert holder is not None and holder.version == 13
        finally:
            conn.set_trace_callback(None)
        [moves] = [s for s in seen if s.startswith("SELECT") and '$."params"."model"' in s]
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + moves))
        assert "USING INDEX nodes_run_params_model" in plan and "SCAN" not in plan, plan


def test_the_registry_reads_are_prepared_once_not_at_every_execution(tmp_path: Path) -> None:
    """A filter on a label, or on the aliases a partial index is declared with, is written
    into the statement, not bound: SQLite compares a bound value with a partial index's
    constant when it plans, and then prepares the statement again at each execution (the
    latest-version seek took 57 µs that way, 6 µs prepared once). Counted by SQLite itself
    (``sqlite_stmt``: each cached statement's runs and re-prepares)."""
    from lineagehub.ingest.client import Client

    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT reprep FROM sqlite_stmt").fetchall()
    except sqlite3.OperationalError:
        pytest.skip("needs SQLite built with SQLITE_ENABLE_STMTVTAB (the sqlite_stmt table)")
    finally:
        probe.close()
    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    with Client(uri, artifacts=(tmp_path / "artifacts").as_uri()) as client:
        weights = client.backend.artifacts.put_bytes(b"weights").digest
        for i in range(8):
            with client.start_run(f"train-{i}", project="p", capture=False) as run:
                pass
            version = client.register_model_version("m", digest=weights, run_id=run.id)
            client.set_alias(version.node_id, "champion", reason="best")
            client.promote(version.node_id, "Staging", reason="ok")
        store = client.backend.store
        assert isinstance(store, SqliteStore)
        assert store.count_nodes("Run", {"params.model": "m"}) == 16  # the promote runs
        assert store.count_nodes("Run", {"params.model": "m"}) == 16
        with store._read() as conn:
            rows = conn.execute(
                "SELECT sql, run, reprep FROM sqlite_stmt WHERE sql LIKE '%FROM nodes n WHERE%'"
            ).fetchall()
    ran = {sql: (run, reprep) for sql, run, reprep in rows}
    latest = [s for s in ran if "DESC, n.id ASC LIMIT" in s and "'ModelVersion'" in s]
    holders = [s for s in ran if '"aliases"' in s]
    counted = [s for s in ran if "count(*)" in s and "'Run'" in s]
    assert latest and holders and counted, sorted(ran)
    for sql in latest + holders + counted:
        run, reprep = ran[sql]
        assert run >= 2 and reprep == 0, (sql, run, reprep)


def test_a_promotion_or_alias_reads_what_it_checks_once_in_the_transaction_that_writes(
    tmp_path: Path,
) -> None:
    """Counted: the version, the Production version it archives and the deployments they
    serve are read once, inside the write transaction (checked and changed in one: no state
    can move between the check and the change); an alias's move likewise."""
    from lineagehub.ingest.client import Client

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    with Client(uri, artifacts=(tmp_path / "artifacts").as_uri()) as client:
        weights = client.backend.artifacts.put_bytes(b"weights").digest
        versions = []
        for i in range(2):
            with client.start_run(f"train-{i}", project="p", capture=False) as run:
                pass
            versions.append(client.register_model_version("m", digest=weights, run_id=run.id))
        client.promote(versions[0].node_id, "Production", reason="first")
        store = client.backend.store
        assert isinstance(store, SqliteStore)
        seen: list[str] = []
        conn = store._conn()
        conn.set_trace_callback(seen.append)
        try:
            client.promote(versions[1].node_id, "Production", reason="second")
        finally:
            conn.set_trace_callback(None)
        assert seen[0] == "BEGIN IMMEDIATE" and seen[-1] == "COMMIT", seen
        reads = [q for q in seen if q.startswith("SELECT")]
        assert len(reads) == len(set(reads)), reads
        assert client.get_model_version("m/1").stage.value == "Archived"
        assert client.get_model_version("m/2").stage.value == "Production"
        # an alias the same way (the SDK reads the version it returns after the commit)
        client.set_alias(versions[0].node_id, "champion", reason="first")
        seen.clear()
        conn.set_trace_callback(seen.append)
        try:
            client.set_alias(versions[1].node_id, "champion", reason="second")
        finally:
            conn.set_trace_callback(None)
        assert seen[0] == "BEGIN IMMEDIATE", seen
        written = seen[: seen.index("COMMIT")]
        reads = [q for q in written if q.startswith("SELECT")]
        assert len(reads) == len(set(reads)), reads
        assert client.get_model_version("m@champion").version == 2


def test_an_append_inside_a_transaction_is_one_insert_after_the_first(tmp_path: Path) -> None:
    """Counted: the transaction holds the write lock, so the head it appended last is the
    head, and one INSERT cannot be half-written (no savepoint needed)."""
    store = SqliteStore(tmp_path / "a.db")
    statements: list[str] = []
    with store.transaction():
        store.append_audit("ann", "x", "t", {})
        conn = store._conn()
        conn.set_trace_callback(statements.append)
        store.append_audit("ann", "x", "t", {"i": 1})
        conn.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == ["INSERT"]
    assert [e.seq for e in store.read_audit()] == [1, 2]
    assert store.verify_audit().ok
    store.close()


def test_reads_without_waiting_use_a_connection_that_never_waits(tmp_path: Path) -> None:
    """A file's reads in ``without_waiting`` go through a second connection of the thread
    with no busy timeout, so a lock held elsewhere is a WouldWait at once, never a wait (on
    the server's event loop that would hold every request). Another process cannot make a
    WAL reader of a process that has the file open wait on demand (SQLite shares locks
    within a process; exclusive mode needs no other connection open), so the connections'
    timeouts are what is checked; the in-memory store's lock is tested below for real."""
    store = SqliteStore(tmp_path / "hub.db")
    store.upsert_nodes([Node("r", "Run", {"v": 1})])

    def timeout() -> int:
        with store._read() as conn:
            return int(conn.execute("PRAGMA busy_timeout").fetchone()[0])

    assert timeout() == 60_000
    with store.without_waiting():
        assert timeout() == 0
        assert store.get_node("r").props == {"v": 1}
    assert timeout() == 60_000  # the thread's own connection, untouched
    store.upsert_nodes([Node("r", "Run", {"v": 2})])
    with store.without_waiting():  # the same connection again, seeing the latest commit
        assert timeout() == 0
        assert store.get_node("r").props == {"v": 2}
    store.close()


def test_an_in_memory_store_in_use_by_another_thread_is_not_waited_for() -> None:
    from conftest import Held

    from lineagehub.graph.store import WouldWait

    store = SqliteStore(":memory:")
    store.upsert_nodes([Node("r", "Run")])
    with Held(store, Node("w", "Run")), pytest.raises(WouldWait), store.without_waiting():
        store.get_nodes(["r"])
    with store.without_waiting():
        assert [n.id for n in store.get_nodes(["r", "w"]) if n] == ["r", "w"]
    store.close()


def test_closing_a_store_another_thread_is_using_never_crashes(tmp_path: Path) -> None:
    """A server shutting down closes its store while a worker thread may be inside a
    statement: closing a connection under a running statement crashed the process
    (SIGSEGV). The statement is interrupted, and its thread closes the connection when it is
    done; nothing it was writing is kept. Run in a child process: a crash is its exit code."""
    script = textwrap.dedent(
        f"""
        import sqlite3, sys, threading
        from lineagehub.graph import BackendError, Node, open_store
        store = open_store("sqlite:///{tmp_path / "hub.db"}")
        store.upsert_nodes([Node("kept", "Run")])
        inside, outcome = threading.Event(), []

        def busy():
            try:
                with store.transaction():
                    store.upsert_nodes([Node("half", "Run")])
                    with store._read() as conn:
                        conn.set_progress_handler(lambda: inside.set() and 0, 1000)
                        conn.execute(
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                            " WHERE x < 200000000) SELECT count(*) FROM c"
                        ).fetchone()
                outcome.append("finished")
            except (BackendError, sqlite3.Error) as e:
                outcome.append(type(e).__name__)

        worker = threading.Thread(target=busy)
        worker.start()
        inside.wait(60)
        store.close()
        worker.join(60)
        print(outcome, store._in_use, store._doomed)
        again = open_store("sqlite:///{tmp_path / "hub.db"}")
        print(sorted(n.id for n in again.find_nodes("Run").items))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("[") and "finished" not in lines[0], lines  # interrupted
    assert lines[0].endswith("{} set()"), lines  # its thread closed its connection
    assert lines[1] == "['kept']", lines  # the interrupted transaction left nothing


def test_a_connection_opened_as_the_store_closes_is_closed_too(tmp_path: Path) -> None:
    """A thread opening its first connection while close() ran: close() had already taken
    the list of connections, and the new one, refused, was never closed (its database, WAL
    and shared-memory files stayed open). The thread that opened it closes it."""
    path = tmp_path / "hub.db"
    store = SqliteStore(path)
    store.get_nodes(["x"])
    opening, closed, errors = threading.Event(), threading.Event(), []
    connect = store._connect

    def held_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        opening.set()
        closed.wait(60)  # close() runs meanwhile
        return connect(*args, **kwargs)  # type: ignore[arg-type]

    store._connect = held_connect  # type: ignore[method-assign]

    def read() -> None:
        try:
            store.get_nodes(["x"])
        except BackendError as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    assert opening.wait(60)
    store.close()
    closed.set()
    reader.join(60)
    assert len(errors) == 1 and "closed" in str(errors[0])
    assert store._all == []
    open_files = [
        target
        for fd in os.listdir("/proc/self/fd")
        for target in [_fd_target(fd)]
        if target is not None and target.startswith(str(path))
    ]
    assert open_files == [], open_files


def _fd_target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def test_closing_a_store_under_many_short_calls_closes_every_connection(tmp_path: Path) -> None:
    """The in-use marks take no lock (they are on every read and write): a store closed
    while eight threads read and write ends with every connection closed, by close() or by
    the thread whose call ended as it looked, none left open and none closed under a call.
    In a child process, twenty times over: a crash is its exit code."""
    script = textwrap.dedent(
        f"""
        import sqlite3, threading
        from lineagehub.graph import BackendError, Node, open_store
        for round in range(20):
            store = open_store("sqlite:///{tmp_path}/hub-" + str(round) + ".db")
            store.upsert_nodes([Node("r", "Run")])
            started, errors = threading.Barrier(9), []

            def calls(k):
                started.wait()
                try:
                    for i in range(10_000):
                        if i % 4:
                            store.get_nodes(["r"])
                        else:
                            store.upsert_nodes([Node(f"n{{k}}-{{i}}", "Run")])
                except BackendError:
                    pass  # closed under it, as expected
                except sqlite3.Error as e:
                    errors.append(repr(e))

            threads = [threading.Thread(target=calls, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            started.wait()
            while len(store._all) < 8:  # every thread has its connection, and is calling
                store.get_nodes(["r"])
            connections = list(store._all)
            store.close()
            for t in threads:
                t.join(120)
            still_open = 0
            for conn in connections:
                try:
                    conn.execute("SELECT 1")
                    still_open += 1
                except sqlite3.ProgrammingError:
                    pass
            assert not errors, errors
            assert still_open == 0 and not store._in_use and not store._doomed, (
                round, still_open, store._in_use, store._doomed)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "ok", done.stdout
