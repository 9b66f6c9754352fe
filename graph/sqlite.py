"""The embedded default backend: one SQLite file (or memory), zero set-up.

Several processes may write to one file at once (a hyper-parameter sweep of 8 workers logging
into one hub loses nothing): the database runs in WAL mode, so readers never block writers;
every write is an ``IMMEDIATE`` transaction, so two writers never deadlock upgrading read
locks; and a busy timeout makes a writer wait its turn instead of failing. Batches are
written with ``executemany`` inside one transaction.

Nodes and edges are rows with their properties as JSON text (queried with SQLite's JSON
functions); metric series live in a side table, one row per point, never as graph nodes.
The schema is versioned (``PRAGMA user_version``) and migrated forward on open.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from lineagehub.graph import wal
from lineagehub.graph.audit import AuditEntry, TreeHead, make_entry, prepare
from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.filters import And, Cmp, Expr, IsNull, Not, Or, SortKey, parse_where
from lineagehub.graph.hydrate import stored_edge, stored_node, stored_props, stored_time
from lineagehub.graph.model import (
    MAX_PROPS_BYTES,
    Edge,
    Node,
    SeriesPoint,
    SeriesSummary,
    merge_patch,
    merged_too_large,
    strip_deletes,
    to_iso,
    utcnow,
    validate_id,
    validate_label,
)
from lineagehub.graph.store import (
    INHERITED,
    Expansion,
    GraphStore,
    WouldWait,
    _series_key,
    check_secret_name,
    forks_open,
    nested_transaction,
)

# Each entry moves the schema one version forward; never edit one that has shipped.
MIGRATIONS: list[str] = [
    # 1: the graph
    """
    CREATE TABLE nodes (
        id          TEXT PRIMARY KEY,
        label       TEXT NOT NULL,
        props       TEXT NOT NULL DEFAULT '{}',
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX nodes_label ON nodes(label, created_at);
    CREATE TRIGGER nodes_label_immutable BEFORE UPDATE OF label ON nodes
        WHEN old.label IS NOT new.label
        BEGIN SELECT RAISE(ABORT, 'lineagehub: node label is immutable'); END;

    CREATE TABLE edges (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        source      TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        target      TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        props       TEXT NOT NULL DEFAULT '{}',
        event_time  TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        asserted_by TEXT
    );
    CREATE INDEX edges_source ON edges(source, kind);
    CREATE INDEX edges_target ON edges(target, kind);
    CREATE TRIGGER edges_ends_immutable BEFORE UPDATE OF kind, source, target ON edges
        WHEN old.kind IS NOT new.kind OR old.source IS NOT new.source
             OR old.target IS NOT new.target
        BEGIN SELECT RAISE(ABORT, 'lineagehub: edge kind and ends are immutable'); END;
    """,
    # 2: metric series side table (NULL value = NaN: SQLite cannot store a NaN REAL),
    #    and the store's own identity
    """
    CREATE TABLE series (
        node_id  TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        key      TEXT NOT NULL,
        step     INTEGER NOT NULL,
        ts       TEXT NOT NULL,
        value    REAL,
        PRIMARY KEY (node_id, key, step)
    ) WITHOUT ROWID;
    CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: pages of one label in id order (the default ordering) without sorting the label
    """
    CREATE INDEX nodes_label_id ON nodes(label, id);
    """,
    # 4: the audit log, a hash chain (append-only by convention: verification shows edits)
    """
    CREATE TABLE audit (
        seq             INTEGER PRIMARY KEY,
        time            TEXT NOT NULL,
        actor           TEXT NOT NULL,
        action          TEXT NOT NULL,
        target          TEXT NOT NULL,
        payload_digest  TEXT NOT NULL,
        prev_hash       TEXT NOT NULL,
        hash            TEXT NOT NULL
    );
    CREATE INDEX audit_target ON audit(target, seq);
    """,
    # 5: record digests on entries; the log's signed Merkle tree heads
    """
    ALTER TABLE audit ADD COLUMN records TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_checkpoints (
        tree_size   INTEGER PRIMARY KEY,
        root_hash   TEXT NOT NULL,
        head_hash   TEXT,
        time        TEXT NOT NULL,
        mac         TEXT,
        frontier    TEXT NOT NULL,
        signature   TEXT
    );
    """,
    # 6: the registry's look-ups: a model's versions (by stage, by alias holder, the latest)
    #    and a model's promote runs (its last stage or alias change) seek these instead of
    #    reading every node of the label (the expressions are the ones filters render; the
    #    runs' index is in the order of their latest first, so that query stops at one row)
    """
    CREATE INDEX nodes_model ON nodes(label, json_extract(props, '$."model"'));
    CREATE INDEX nodes_params_model ON nodes(
        label,
        json_extract(props, '$."params"."model"'),
        (json_extract(props, '$."ended_at"') IS NULL),
        json_extract(props, '$."ended_at"') DESC,
        id DESC
    );
    """,
    # 7: a model's versions by what the registry asks of them, seeking only the versions
    #    concerned (partial indexes: other labels pay nothing on write): the latest (the
    #    number the next registration takes: the index is in the order that query renders,
    #    version descending, nulls last, then id), the holders of a stage, the holders of an
    #    alias (the versions whose aliases are not "[]"; these two in version order). They
    #    replace nodes_model, and nodes_params_model becomes partial too: every other node
    #    written no longer pays for an entry in either
    """
    CREATE INDEX nodes_mv_latest ON nodes(
        json_extract(props, '$."model"'),
        (json_extract(props, '$."version"') IS NULL),
        json_extract(props, '$."version"') DESC,
        id
    ) WHERE label = 'ModelVersion';
    CREATE INDEX nodes_mv_stage ON nodes(
        json_extract(props, '$."model"'),
        json_extract(props, '$."stage"'),
        (json_extract(props, '$."version"') IS NULL),
        json_extract(props, '$."version"'),
        id
    ) WHERE label = 'ModelVersion';
    CREATE INDEX nodes_mv_aliased ON nodes(
        json_extract(props, '$."model"'),
        (json_extract(props, '$."version"') IS NULL),
        json_extract(props, '$."version"'),
        id
    ) WHERE label = 'ModelVersion' AND json_extract(props, '$."aliases"') != '[]';
    DROP INDEX nodes_model;
    CREATE INDEX nodes_run_params_model ON nodes(
        json_extract(props, '$."params"."model"'),
        (json_extract(props, '$."ended_at"') IS NULL),
        json_extract(props, '$."ended_at"') DESC,
        id DESC
    ) WHERE label = 'Run';
    DROP INDEX nodes_params_model;
    """,
    # 8: a node's or edge's properties stay within MAX_PROPS_BYTES (1,000,000 characters of
    #    JSON) once a patch is merged into them too, not only as sent: a run whose params,
    #    tags and metrics grew over many small writes would otherwise outgrow what the other
    #    backend and every reader accept. A row stored larger before this stays writable as
    #    long as a write does not make it larger (a heartbeat, removing keys)
    """
    CREATE TRIGGER nodes_props_size BEFORE UPDATE OF props ON nodes
        WHEN length(new.props) > 1000000 AND length(new.props) > length(old.props)
        BEGIN SELECT RAISE(ABORT, 'lineagehub: merged properties too large'); END;
    CREATE TRIGGER edges_props_size BEFORE UPDATE OF props ON edges
        WHEN length(new.props) > 1000000 AND length(new.props) > length(old.props)
        BEGIN SELECT RAISE(ABORT, 'lineagehub: merged properties too large'); END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 60.0
_BUSY_TIMEOUT_PRAGMA = f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000):d}"

_NODE_COLS = "n.id, n.label, n.props, n.created_at, n.updated_at"
_EDGE_COLS = "e.id, e.kind, e.source, e.target, e.props, e.event_time, e.ingested_at, e.asserted_by"
_AUDIT_COLS = "seq, time, actor, action, target, payload_digest, prev_hash, hash, records"
_HEAD_COLS = "tree_size, root_hash, head_hash, time, mac, frontier, signature"
_SYSTEM_COLUMNS = {
    "id": "n.id",
    "_label": "n.label",
    "_created_at": "n.created_at",
    "_updated_at": "n.updated_at",
}
_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


_dt = stored_time
_props = stored_props


def _node(row: Sequence[Any]) -> Node:
    return stored_node(row[0], row[1], row[2], row[3], row[4])


def _edge(row: Sequence[Any]) -> Edge:
    """An edge from its row (:data:`_EDGE_COLS`)."""
    return stored_edge(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


# The terms partial indexes are declared with (migration 7), written as they are there: a
# parameter in their place is compared with the index's constant when SQLite plans, and the
# statement is then prepared again at every execution (see SqliteStore._where).
_INDEX_TERMS = {(("aliases",), "ne", "[]")}  # values without a quote


class _SqlBuilder:
    """Renders a filter tree to SQL with ``?`` parameters."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    @staticmethod
    def column(path: tuple[str, ...]) -> str:
        if path[0] in _SYSTEM_COLUMNS:
            return _SYSTEM_COLUMNS[path[0]]
        # Segments were validated against a pattern that admits no quote of either kind.
        return "json_extract(n.props, '$." + ".".join(f'"{p}"' for p in path) + "')"

    def render(self, expr: Expr) -> str:
        if isinstance(expr, Cmp):
            col = self.column(expr.path)
            if type(expr.value) is str and (expr.path, expr.op, expr.value) in _INDEX_TERMS:
                return f"{col} {_OPS[expr.op]} '{expr.value}'"
            if expr.op in ("in", "nin"):
                self.params.append(json.dumps(list(expr.value)))
                neg = "NOT " if expr.op == "nin" else ""
                return f"{col} {neg}IN (SELECT value FROM json_each(?))"
            value = expr.value
            if type(value) is int and not -(2**63) <= value < 2**63:
                # a keyset cursor's value (filters refuse these): json_extract reads an
                # integer beyond 64 bits as a REAL, and sqlite3 cannot bind it as an integer
                value = float(value)
            self.params.append(value)
            if expr.op == "contains":
                # in text, or in a list's or mapping's compact JSON text (as Neo4j keeps
                # them), never in a number or a boolean's rendering
                # case-insensitive as Neo4j's toLower is, beyond ASCII (SQLite's lower()
                # folds ASCII letters only: 'Ärzte' did not contain 'ärzte'); an ASCII
                # needle keeps the built-in function
                lower = "lower" if expr.value.isascii() else "lh_lower"
                if expr.path[0] in _SYSTEM_COLUMNS:
                    return f"instr({lower}({col}), ?) > 0"
                typed = col.replace("json_extract(", "json_type(", 1)
                return f"({typed} IN ('text', 'array', 'object') AND instr({lower}({col}), ?) > 0)"
            return f"{col} {_OPS[expr.op]} ?"
        if isinstance(expr, IsNull):
            return f"{self.column(expr.path)} IS {'NOT ' if expr.negate else ''}NULL"
        if isinstance(expr, And):
            if not expr.items:
                return "1"
            return "(" + " AND ".join(self.render(e) for e in expr.items) + ")"
        if isinstance(expr, Or):
            if not expr.items:
                return "0"
            return "(" + " OR ".join(self.render(e) for e in expr.items) + ")"
        if isinstance(expr, Not):
            # IFNULL: a comparison with a missing property is unknown, and NOT unknown must
            # not match either (Cypher agrees: NOT null is null).
            return f"NOT IFNULL({self.render(expr.item)}, 1)"
        raise TypeError(expr)  # pragma: no cover


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None
    depth: int = 0
    touched: dict[tuple[str, str], None] | None = None
    after_commit: list[Callable[[], None]] | None = None
    audit_head: AuditEntry | None = None
    #: Inside :meth:`SqliteStore.without_waiting`: reads do not wait, writes are refused.
    nowait: bool = False
    #: The thread's connection for those reads (no busy timeout), opened on first use.
    nowait_conn: sqlite3.Connection | None = None


class SqliteStore(GraphStore):
    """The embedded store. ``path`` is a file path or ``":memory:"``.

    Open it with ``open_store("sqlite:///relative.db")``, ``sqlite:////absolute.db`` or
    ``sqlite://`` (memory). Each thread gets its own connection to a file; an in-memory
    database is one connection shared under a lock.
    """

    def __init__(self, path: str | Path = ":memory:", *, uri: str | None = None) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.uri = uri or ("sqlite://" if self.memory else f"sqlite:///{self.path}")
        self._local = _ThreadState()
        self._lock = threading.RLock()
        self._shared: sqlite3.Connection | None = None
        self._all: list[sqlite3.Connection] = []
        self._closed = False
        # Connections inside a block of sqlite calls (how deep), and those close() found so:
        # closed by their own thread when the block ends, never under a running statement
        # (closing a connection another thread is using crashes the process). No lock: a
        # connection is used by one thread at a time, so each count has one writer, and the
        # order of the steps (see _mark, _unmark and close) does the rest.
        self._in_use: dict[sqlite3.Connection, int] = {}
        self._doomed: set[sqlite3.Connection] = set()
        self._checkpointer = None if self.memory else wal.Checkpointer(self.path)
        forks_open(self)
        if not self.memory:
            parent = Path(self.path).expanduser().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create the folder for {self.path}: {e}") from e
        self._migrate()

    # --- connections and transactions ------------------------------------------------------

    def _connect(self, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=timeout,
                isolation_level=None,  # we issue BEGIN IMMEDIATE ourselves
                check_same_thread=False,
            )
            if not self.memory:
                conn.execute("PRAGMA journal_mode=WAL")
                # the store's thread copies the WAL back (graph/wal.py); writers only past this
                conn.execute(f"PRAGMA wal_autocheckpoint={wal.AUTOCHECKPOINT_PAGES:d}")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.create_function("lh_merge", 2, _sql_merge, deterministic=True)
            conn.create_function("lh_strip", 1, _sql_strip, deterministic=True)
            conn.create_function("lh_lower", 1, _sql_lower, deterministic=True)
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"cannot open SQLite database {self.path}: {e}") from e
        self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendError(f"{self!r} is closed")
        if self.memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared
        conn = self._local.conn
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _mark(self) -> sqlite3.Connection:
        """The thread's connection, marked in use until :meth:`_unmark` (see :meth:`close`).
        Marked first, then the store checked open: close() either sees the mark or this
        thread sees the store closed."""
        conn = self._conn()
        in_use = self._in_use
        in_use[conn] = in_use.get(conn, 0) + 1
        if self._closed:
            self._unmark(conn)
            if not in_use.get(conn):
                # opened (or last used) as close() looked: it may have missed it, so this
                # thread, the only one using it now, closes it
                with suppress(ValueError):
                    self._all.remove(conn)
                if self._local.conn is conn:
                    self._local.conn = None
                with suppress(sqlite3.Error):
                    conn.close()
            raise BackendError(f"{self!r} is closed")
        return conn

    def _unmark(self, conn: sqlite3.Connection) -> None:
        in_use = self._in_use
        left = in_use[conn] - 1
        if left:
            in_use[conn] = left
            return
        del in_use[conn]
        if self._doomed and conn in self._doomed:
            self._doomed.discard(conn)
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The thread's connection, marked in use for the block (see :meth:`close`)."""
        conn = self._mark()
        try:
            yield conn
        finally:
            self._unmark(conn)

    def _read(self) -> _Reading:
        return _Reading(self)

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Reads that answer at once or raise :class:`WouldWait` (see ``GraphStore``). A
        file: a second connection of this thread's, with no busy timeout (in WAL mode a
        reader waits only in rare cases: another connection's recovery or cleanup); the in-memory
        database: its lock taken only if free. A write in the block raises WouldWait before
        it begins. Inside this thread's own transaction nothing waits and the block is
        plain."""
        local = self._local
        if local.nowait or local.depth:
            yield
            return
        if self.memory:
            if not self._lock.acquire(blocking=False):
                raise WouldWait("another thread is using the in-memory database")
            local.nowait = True
            try:
                yield
            finally:
                local.nowait = False
                self._lock.release()
            return
        own = local.conn
        try:
            if local.nowait_conn is None:
                if self._closed:
                    raise BackendError(f"{self!r} is closed")
                try:
                    local.nowait_conn = self._connect(timeout=0.0)
                except ConfigError as e:  # busy while opening: another's recovery or cleanup
                    if _busy(e.__cause__):
                        raise WouldWait(str(e)) from e
                    raise
            local.conn = local.nowait_conn  # what this thread's reads use in the block
            local.nowait = True
            yield
        except BackendUnavailable as e:
            if _busy(e.__cause__):  # it would have waited
                raise WouldWait(str(e)) from e
            raise
        finally:
            local.nowait = False
            local.conn = own

    @contextmanager
    def transaction_without_waiting(self) -> Iterator[None]:
        """A transaction begun without waiting (see ``GraphStore``). A file: the thread's own
        connection begins with no busy timeout (another connection holding the write lock is
        :class:`WouldWait` at once) and has its timeout back as soon as the lock is held; the
        in-memory database: its lock taken only if free."""
        local = self._local
        if local.depth:  # this thread's own transaction: joined, nothing waits
            with self.transaction():
                yield
            return
        if local.nowait:
            raise WouldWait("a transaction, in a block of reads that must not wait")
        if self.memory:
            if not self._lock.acquire(blocking=False):
                raise WouldWait("another thread is using the in-memory database")
            try:
                with self.transaction():
                    yield
            finally:
                self._lock.release()
            return
        with self._using() as conn:
            conn.execute("PRAGMA busy_timeout=0")
            began = False
            try:
                with self.transaction():
                    began = True
                    conn.execute(_BUSY_TIMEOUT_PRAGMA)
                    yield
            except BackendUnavailable as e:
                if not began and _busy(e.__cause__):  # BEGIN IMMEDIATE would have waited
                    raise WouldWait(str(e)) from e
                raise
            finally:
                if not began:
                    conn.execute(_BUSY_TIMEOUT_PRAGMA)

    @contextmanager
    def _write(self, statements: int = 2) -> Iterator[sqlite3.Connection]:
        """One write: its own IMMEDIATE transaction, or a savepoint inside an open one, so a
        failed write never leaves half of itself behind. A write of one statement needs no
        savepoint: SQLite undoes a failed statement whole and the transaction goes on."""
        if self._local.nowait:
            raise WouldWait("a write, in a block of reads that must not wait")
        with self._lock if self.memory else _nolock, _translate():
            conn = self._mark()
            try:
                if self._local.depth and statements == 1:
                    yield conn
                    return
                if self._local.depth:
                    with _savepoint(conn):
                        yield conn
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    self._checkpoint_state = None
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                if self._checkpointer is not None:
                    self._checkpointer.committed(conn)
            finally:
                self._unmark(conn)

    def transaction(self) -> AbstractContextManager[None]:
        return nested_transaction(self._local, self._outermost)

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        """The thread's outermost transaction: IMMEDIATE (the write lock at once), holding
        the in-memory database's lock until it ends."""
        if self._local.nowait:
            raise WouldWait("a transaction, in a block of reads that must not wait")
        with self._lock if self.memory else _nolock, self._using() as conn:
            with _translate():
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._checkpoint_state = None  # a head it wrote is undone: read it afresh
                with _translate():
                    conn.execute("ROLLBACK")
                raise
            with _translate():
                conn.execute("COMMIT")
            if self._checkpointer is not None:
                self._checkpointer.committed(conn)

    def close(self) -> None:
        """Close every connection. One another thread is using now (a statement running, a
        transaction open) is interrupted and closed by that thread when it is done with it:
        closing it under a running statement would crash the process."""
        self._closed = True  # no new use from here: _mark() refuses
        if self._checkpointer is not None:  # its connection closes before the last of ours
            self._checkpointer.close()
        in_use = self._in_use
        connections, self._all = self._all, []
        self._shared = None
        busy = [c for c in connections if in_use.get(c)]
        self._doomed.update(busy)
        for conn in busy:
            with suppress(sqlite3.Error):
                conn.interrupt()  # thread-safe: the statement stops, its block ends
        for conn in connections:
            # idle, or its block ended between the look above and the doom (its thread then
            # found nothing to close): closing is best effort, and twice is harmless
            if not in_use.get(conn):
                self._doomed.discard(conn)
                with suppress(sqlite3.Error):
                    conn.close()

    def _after_fork(self) -> None:
        # SQLite: "do not carry an open database connection across a fork"; the in-memory
        # database lives in its connection, so the child keeps its copy of that one
        INHERITED.append((self._all, self._local, self._checkpointer))
        self._local = _ThreadState()
        self._lock = threading.RLock()
        self._all = [self._shared] if self._shared is not None else []
        self._in_use = {}
        self._doomed = set()
        self._checkpointer = None if self.memory else wal.Checkpointer(self.path)

    def _migrate(self) -> None:
        with self._read() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} has schema version {version}, newer than this lineagehub "
                f"understands ({SCHEMA_VERSION}); upgrade lineagehub"
            )
        with self._write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                if version < 2:
                    conn.execute(
                        "INSERT OR IGNORE INTO store_meta VALUES ('store_id', ?)",
                        (uuid.uuid4().hex,),
                    )
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def secret(self, name: str) -> bytes:
        key = "secret:" + check_secret_name(name)
        select = "SELECT value FROM store_meta WHERE key = ?"
        with self._read() as conn:
            row = conn.execute(select, (key,)).fetchone()
        if row is None:
            with self._write() as conn:  # the first writer's value is everyone's
                made = secrets.token_hex(32)
                conn.execute("INSERT OR IGNORE INTO store_meta VALUES (?, ?)", (key, made))
                row = conn.execute(select, (key,)).fetchone()
        return bytes.fromhex(row[0])

    def integrity_problems(self) -> list[str]:
        try:
            with self._read() as conn:
                found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)")]
        except BackendUnavailable:
            raise  # busy, not damaged
        except BackendError as e:  # too damaged for the check to run ("malformed")
            return [e.message]
        return [] if found == ["ok"] else found

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # --- writes -----------------------------------------------------------------------------

    def upsert_nodes(self, nodes: Iterable[Node]) -> int:
        rows = self._prepare_nodes(nodes)
        if not rows:
            return 0
        self._touch("node", (r[0] for r in rows))
        now = to_iso(utcnow())
        # Inside a transaction the audit entry to come digests the rows as stored: RETURNING
        # gives them without a read back.
        noting = self._noting()
        returning = " RETURNING id, label, props" if noting else ""
        stored: list[tuple[str, str, str]] = []
        try:
            with self._write(_statements_of(rows, 2)) as conn:
                for chunk in _chunks(rows):
                    stored += conn.execute(
                        _node_sql(len(chunk)) + returning,
                        [x for i, label, props in chunk for x in (i, label, props, now, now)],
                    ).fetchall()
                _strip_new(conn, "nodes", rows, 2)
        except sqlite3.IntegrityError as e:
            if "label is immutable" in str(e):
                raise self._label_conflict(rows) from e
            if "properties too large" in str(e):
                raise self._too_large("nodes", rows, 2) from e
            raise BackendError(f"could not write nodes: {e}") from e
        if noting and len(stored) == len({r[0] for r in rows}):  # else an id twice: read back
            self._written("node", stored)
        return len(rows)

    def _row_state(self, kind: str, row: tuple[Any, ...]) -> dict[str, Any]:
        if kind == "node":  # RETURNING id, label, props
            return {"id": row[0], "label": row[1], "props": _stored(row[2])}
        # RETURNING id, kind, source, target, props
        return {
            "id": row[0],
            "kind": row[1],
            "source": row[2],
            "target": row[3],
            "props": _stored(row[4]),
        }

    def _label_conflict(self, rows: list[tuple[str, str, str]]) -> ConflictError:
        existing = {n.id: n.label for n in self.get_nodes([r[0] for r in rows]) if n}
        for node_id, label, _ in rows:
            if node_id in existing and existing[node_id] != label:
                return ConflictError(
                    f"node {node_id!r} is a {existing[node_id]}; cannot make it a {label}"
                )
        return ConflictError("a node's label cannot change")

    def _too_large(self, table: str, rows: list[Any], col: int) -> ValidationError:
        """The refusal of a write whose merge would take a row's properties past the limit,
        naming the rows it could be (what is stored and the patches, together, past it)."""
        with self._read() as conn:
            stored: dict[str, int] = dict(
                conn.execute(
                    f"SELECT id, length(props) FROM {table} "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps([r[0] for r in rows]),),
                ).fetchall()
            )
        grown: dict[str, int] = {}
        for row in rows:
            grown[row[0]] = grown.get(row[0], stored.get(row[0], 0)) + len(row[col])
        ids = [i for i, n in grown.items() if n > MAX_PROPS_BYTES] or list(grown)
        return merged_too_large(table[:-1], ids)

    def upsert_edges(self, edges: Iterable[Edge]) -> int:
        now = to_iso(utcnow())
        rows = self._prepare_edges(edges, now)
        if not rows:
            return 0
        self._touch("edge", (r[0] for r in rows))
        noting = self._noting()
        returning = " RETURNING id, kind, source, target, props" if noting else ""
        stored: list[tuple[str, str, str, str, str]] = []
        try:
            with self._write(_statements_of(rows, 4)) as conn:
                for chunk in _chunks(rows):
                    stored += conn.execute(
                        _edge_sql(len(chunk)) + returning, [x for row in chunk for x in row]
                    ).fetchall()
                _strip_new(conn, "edges", rows, 4)
        except sqlite3.IntegrityError as e:
            if "FOREIGN KEY" in str(e):
                ends = list(dict.fromkeys(x for r in rows for x in (r[2], r[3])))
                missing = [i for i, n in zip(ends, self.get_nodes(ends)) if n is None]
                raise NotFoundError(
                    "edges refer to nodes that do not exist: " + ", ".join(map(repr, missing[:20])),
                    ids=missing,
                ) from e
            if "immutable" in str(e):
                raise ConflictError(
                    "an edge's kind, source and target cannot change; give the new edge another id"
                ) from e
            if "properties too large" in str(e):
                raise self._too_large("edges", rows, 4) from e
            raise BackendError(f"could not write edges: {e}") from e
        if noting and len(stored) == len({r[0] for r in rows}):  # else an id twice: read back
            self._written("edge", stored)
        return len(rows)

    def delete_nodes(self, ids: Sequence[str]) -> int:
        ids = [validate_id(i, "ids") for i in ids]
        self._touch("node", ids)
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM nodes WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
            )
            return cur.rowcount

    def delete_edges(self, ids: Sequence[str]) -> int:
        ids = [validate_id(i, "ids") for i in ids]
        self._touch("edge", ids)
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM edges WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
            )
            return cur.rowcount

    def append_series(self, points: Iterable[SeriesPoint]) -> int:
        rows = self._prepare_points(points, to_iso(utcnow()))
        if not rows:
            return 0
        try:
            with self._write() as conn:
                conn.executemany(
                    "INSERT INTO series (node_id, key, step, ts, value) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(node_id, key, step) DO UPDATE SET ts = excluded.ts, "
                    "value = excluded.value",
                    rows,
                )
        except sqlite3.IntegrityError as e:
            ids = list(dict.fromkeys(r[0] for r in rows))
            missing = [i for i, n in zip(ids, self.get_nodes(ids)) if n is None]
            raise NotFoundError(
                "metric points for nodes that do not exist: " + ", ".join(map(repr, missing)),
                ids=missing,
            ) from e
        return len(rows)

    def append_audit(
        self, actor: str, action: str, target: str, payload: Mapping[str, Any]
    ) -> AuditEntry:
        actor, action, target, digest = prepare(actor, action, target, payload)
        records = self._take_records()
        state = self._local
        # The IMMEDIATE transaction (or the open one) holds the write lock: no other writer
        # can append between reading the head and inserting after it. So inside an open
        # transaction the head is the entry it appended last, when it has appended one, and
        # the append is one INSERT (no savepoint), unless a tree head is due with it.
        with self._write(1) as conn:
            head = state.audit_head if state.depth else None
            if head is None:
                row = conn.execute(
                    f"SELECT {_AUDIT_COLS} FROM audit ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                head = None if row is None else AuditEntry(*row)
            entry = make_entry(head, to_iso(utcnow()), actor, action, target, digest, records)
            due = self._checkpoint_due(entry.seq, lambda: _last_head(conn))
            with _savepoint(conn) if due and state.depth else nullcontext():
                conn.execute(
                    f"INSERT INTO audit ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.seq,
                        entry.time,
                        entry.actor,
                        entry.action,
                        entry.target,
                        entry.payload_digest,
                        entry.prev_hash,
                        entry.hash,
                        entry.records,
                    ),
                )
                tree_head = self._checkpoint_in(conn, entry.seq) if due else None
        if state.depth:
            state.audit_head = entry
        self._published(tree_head)
        return entry

    def _checkpoint_in(
        self, conn: sqlite3.Connection, seq: int, force: bool = False
    ) -> TreeHead | None:
        def load_last() -> TreeHead | None:
            return _last_head(conn)

        def load_after(size: int) -> Iterator[AuditEntry]:
            cur = conn.execute(
                f"SELECT {_AUDIT_COLS} FROM audit WHERE seq > ? AND seq <= ? ORDER BY seq",
                (size, seq),
            )
            return (AuditEntry(*r) for r in cur)

        def insert(h: TreeHead) -> None:
            conn.execute(
                f"INSERT INTO audit_checkpoints ({_HEAD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    h.tree_size,
                    h.root_hash,
                    h.head_hash,
                    h.time,
                    h.mac,
                    json.dumps(h.frontier),
                    h.signature,
                ),
            )

        return self._maybe_checkpoint(seq, load_last, load_after, insert, force)

    def checkpoint_audit(self) -> TreeHead:
        with self._write() as conn:
            row = conn.execute("SELECT max(seq) FROM audit").fetchone()
            seq = int(row[0] or 0)
            head = self._checkpoint_in(conn, seq, force=True)
        assert head is not None  # forced: the newest head, or a new one
        self._published(head)
        return head

    def audit_checkpoints(self, after_size: int = -1, limit: int = 1000) -> list[TreeHead]:
        self._audit_query(after_size + 1, limit, None)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_HEAD_COLS} FROM audit_checkpoints WHERE tree_size > ? "
                "ORDER BY tree_size LIMIT ?",
                (after_size, limit),
            ).fetchall()
        return [_tree_head(r) for r in rows]

    # --- reads ------------------------------------------------------------------------------

    def read_audit(
        self, after_seq: int = 0, limit: int = 1000, target: str | None = None
    ) -> list[AuditEntry]:
        self._audit_query(after_seq, limit, target)
        sql = f"SELECT {_AUDIT_COLS} FROM audit WHERE seq > ?"
        params: list[Any] = [after_seq]
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [AuditEntry(*r) for r in rows]

    def audit_head(self) -> AuditEntry | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_AUDIT_COLS} FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return None if row is None else AuditEntry(*row)

    def get_nodes(self, ids: Sequence[str]) -> list[Node | None]:
        ids = list(ids)
        if not ids:
            return []
        for i in ids:
            validate_id(i, "ids")
        with self._read() as conn:
            if len(ids) == 1:  # most reads: a seek, without a JSON list to build and walk
                rows = conn.execute(f"SELECT {_NODE_COLS} FROM nodes n WHERE n.id = ?", ids)
            else:
                rows = conn.execute(
                    f"SELECT {_NODE_COLS} FROM json_each(?) f CROSS JOIN nodes n ON n.id = f.value",
                    (json.dumps(ids),),
                )
            found = {r[0]: r for r in rows}
        node = stored_node
        return [None if (r := found.get(i)) is None else node(*r) for i in ids]

    def get_edges(self, ids: Sequence[str]) -> list[Edge | None]:
        ids = list(ids)
        if not ids:
            return []
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_EDGE_COLS} FROM json_each(?) f CROSS JOIN edges e ON e.id = f.value",
                (json.dumps(ids),),
            ).fetchall()
        found = {r[0]: r for r in rows}
        return [_edge(found[i]) if i in found else None for i in ids]

    def _where(self, label: str | None, expr: Expr) -> tuple[str, list[Any]]:
        builder = _SqlBuilder()
        clauses = []
        if label is not None:
            # In the text, not a parameter: SQLite's planner reads a parameter compared with
            # the partial indexes' `label = '…'` and then prepares the statement again at
            # every execution (15-50 µs each); a validated label holds no quote.
            clauses.append(f"n.label = '{validate_label(label)}'")
        clauses.append(builder.render(expr))
        return " AND ".join(clauses), builder.params

    def _find(
        self, label: str | None, expr: Expr, order: Sequence[SortKey], limit: int
    ) -> list[Node]:
        where, params = self._where(label, expr)
        sql = f"SELECT {_NODE_COLS} FROM nodes n WHERE {where} ORDER BY {_order_sql(order)} LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [_node(r) for r in rows]

    def _values(
        self, label: str, expr: Expr, order: Sequence[SortKey], path: tuple[str, ...]
    ) -> list[Any]:
        where, params = self._where(label, expr)
        column = _SqlBuilder.column(path)
        sql = f"SELECT {column} FROM nodes n WHERE {where} ORDER BY {_order_sql(order)}"
        with self._read() as conn:
            return [r[0] for r in conn.execute(sql, params)]

    def _count(self, label: str | None, expr: Expr) -> int:
        where, params = self._where(label, expr)
        with self._read() as conn:
            return int(
                conn.execute(f"SELECT count(*) FROM nodes n WHERE {where}", params).fetchone()[0]
            )

    def count_nodes(self, label: str | None = None, where: Mapping[str, Any] | None = None) -> int:
        if label is not None:
            validate_label(label)
        return self._count(label, parse_where(where))

    def count_edges(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) FROM edges").fetchone()[0])

    def _expand(
        self,
        frontier: Sequence[str],
        forward: bool,
        edge_kinds: Sequence[str] | None,
        labels: Sequence[str] | None,
        as_of: str | None,
        limit: int | None = None,
        need_labels: bool = True,
    ) -> list[Expansion]:
        near, far = ("source", "target") if forward else ("target", "source")
        labelled = need_labels or labels is not None or as_of is not None
        if not labelled:
            # The far end exists (foreign key); skipping the join to nodes saves a lookup per
            # edge on the hottest query of a trace.
            sql = [
                f"SELECT {_EDGE_COLS} FROM json_each(?) f CROSS JOIN edges e ON e.{near} = f.value"
            ]
        else:
            sql = [
                f"SELECT {_EDGE_COLS}, n.label FROM json_each(?) f "
                f"CROSS JOIN edges e ON e.{near} = f.value CROSS JOIN nodes n ON n.id = e.{far}"
            ]
        params: list[Any] = [json.dumps(list(frontier))]
        conds = []
        if edge_kinds is not None:
            conds.append("e.kind IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(edge_kinds)))
        if labels is not None:
            conds.append("n.label IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(labels)))
        if as_of is not None:
            conds.append("e.ingested_at <= ? AND n.created_at <= ?")
            params += [as_of, as_of]
        if conds:
            sql.append("WHERE " + " AND ".join(conds))
        if limit is not None:
            sql.append("LIMIT ?")
            params.append(limit)
        with self._read() as conn:
            rows = conn.execute(" ".join(sql), params).fetchall()
        edge = stored_edge  # one call per row, not two: a trace reads thousands
        # The far end is a column of the edge: 3 (target) forward, 2 (source) backward; the
        # label, when read, the ninth.
        i = 3 if forward else 2
        if not labelled:
            return [(edge(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]), r[i], "") for r in rows]
        return [(edge(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]), r[i], r[8]) for r in rows]

    def _read_series(self, node_id: str, key: str) -> list[SeriesPoint]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT step, ts, value FROM series WHERE node_id = ? AND key = ? ORDER BY step",
                (node_id, key),
            ).fetchall()
        return [SeriesPoint(node_id, key, step, _nan(value), _dt(ts)) for step, ts, value in rows]

    def series_summary(
        self, node_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> dict[str, dict[str, SeriesSummary]]:
        node_ids = [validate_id(i, "node_ids") for i in node_ids]
        result: dict[str, dict[str, SeriesSummary]] = {i: {} for i in node_ids}
        if not node_ids:
            return result
        sql = (
            "SELECT s.node_id, s.key, count(*), min(s.value), max(s.value), min(s.ts), "
            "max(s.ts), max(s.step), (SELECT l.value FROM series l WHERE l.node_id = s.node_id "
            "AND l.key = s.key ORDER BY l.step DESC LIMIT 1) "
            "FROM json_each(?) f CROSS JOIN series s ON s.node_id = f.value"
        )
        params: list[Any] = [json.dumps(node_ids)]
        if keys is not None:
            sql += " WHERE s.key IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([_series_key(k) for k in keys]))
        sql += " GROUP BY s.node_id, s.key"
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        for node_id, key, count, lo, hi, first_ts, last_ts, last_step, last in rows:
            result[node_id][key] = SeriesSummary(
                key=key,
                count=count,
                last=_nan(last),
                last_step=last_step,
                min=_nan(lo),
                max=_nan(hi),
                first_timestamp=_dt(first_ts),
                last_timestamp=_dt(last_ts),
            )
        return result

    def last_steps(self, node_id: str, keys: Sequence[str]) -> dict[str, int]:
        node_id = validate_id(node_id, "node_id")
        found: dict[str, int] = {}
        with self._read() as conn:
            for key in keys:  # one seek each (min/max on the key's index): never a scan
                row = conn.execute(
                    "SELECT max(step) FROM series WHERE node_id = ? AND key = ?",
                    (node_id, _series_key(key)),
                ).fetchone()
                if row[0] is not None:
                    found[key] = row[0]
        return found


def _order_sql(order: Sequence[SortKey]) -> str:
    return ", ".join(
        # system columns are never null: no null-ordering term, so indexes can serve
        f"{col} {'DESC' if k.descending else 'ASC'}"
        if k.path[0] in _SYSTEM_COLUMNS
        else f"({col} IS NULL), {col} {'DESC' if k.descending else 'ASC'}"
        for k in order
        for col in [_SqlBuilder.column(k.path)]
    )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


# SQLite's json_patch (RFC 7396, in C) is our merge exactly when the patch holds no null and
# no DELETE marker; otherwise the Python twin runs, for the rows that already exist only.
_MERGE = (
    "CASE WHEN instr({patch}, 'null') OR instr({patch}, '\\u0000') "
    "THEN lh_merge({old}, {patch}) ELSE json_patch({old}, {patch}) END"
)
# Rows per INSERT statement: one multi-row statement per chunk, not one per row. Inside a
# savepoint each statement pays a statement journal; per row that dominated bulk writes.
_CHUNK_ROWS = 500


def _chunks(rows: list[Any]) -> Iterator[list[Any]]:
    for lo in range(0, len(rows), _CHUNK_ROWS):
        yield rows[lo : lo + _CHUNK_ROWS]


@functools.lru_cache(maxsize=16)
def _node_sql(n: int) -> str:
    # A new row stores the patch as it is (DELETE markers are stripped after, see _strip_new);
    # an existing row merges it. Later duplicates in one statement merge onto earlier ones.
    return (
        "INSERT INTO nodes (id, label, props, created_at, updated_at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * n)
        + " ON CONFLICT(id) DO UPDATE SET label = excluded.label, props = "
        + _MERGE.format(old="nodes.props", patch="excluded.props")
        + ", updated_at = excluded.updated_at"
    )


@functools.lru_cache(maxsize=16)
def _edge_sql(n: int) -> str:
    return (
        "INSERT INTO edges (id, kind, source, target, props, event_time, ingested_at, "
        "asserted_by) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n)
        + " ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, source = excluded.source, "
        + "target = excluded.target, props = "
        + _MERGE.format(old="edges.props", patch="excluded.props")
    )


def _statements_of(rows: list[Any], col: int) -> int:
    """How many statements an upsert of ``rows`` runs: one per chunk, and one more when some
    carry DELETE markers (:func:`_strip_new`)."""
    chunks = -(-len(rows) // _CHUNK_ROWS)
    return chunks + any("\\u0000" in row[col] for row in rows)


def _strip_new(conn: sqlite3.Connection, table: str, rows: list[Any], col: int) -> None:
    """New rows were inserted with their patch as is: drop the DELETE markers from them."""
    marked = [row[0] for row in rows if "\\u0000" in row[col]]
    if marked:
        conn.execute(
            f"UPDATE {table} SET props = lh_strip(props) "
            "WHERE id IN (SELECT value FROM json_each(?)) AND instr(props, '\\u0000')",
            (json.dumps(marked),),
        )


def _last_head(conn: sqlite3.Connection) -> TreeHead | None:
    row = conn.execute(
        f"SELECT {_HEAD_COLS} FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _tree_head(row)


@contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """Statements that stand or fall together inside an open transaction."""
    conn.execute("SAVEPOINT lh_write")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO lh_write")
        conn.execute("RELEASE lh_write")
        raise
    conn.execute("RELEASE lh_write")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stored(props: str) -> dict[str, Any]:
    """A row's properties as an upsert's RETURNING gave them: a new row's still carry the
    DELETE markers :func:`_strip_new` removes after."""
    value = _props(props)
    return strip_deletes(value) if "\\u0000" in props else value


def _sql_merge(old: str, patch: str) -> str:
    return _dumps(merge_patch(json.loads(old), json.loads(patch)))


def _sql_lower(text: Any) -> Any:
    return text.lower() if isinstance(text, str) else text


def _sql_strip(props: str) -> str:
    return _dumps(strip_deletes(json.loads(props)))


def _tree_head(row: Sequence[Any]) -> TreeHead:
    size, root, head_hash, time, mac, frontier, signature = row
    return TreeHead(size, root, head_hash, time, mac, tuple(json.loads(frontier)), signature)


def _statements(script: str) -> list[str]:
    """Split a migration script on statement boundaries (triggers contain semicolons)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_nolock = _NoLock()


class _Translate:
    """Driver errors become ours at this boundary. (A class, not a generator: every store
    call passes through it, several times a write.)"""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, _: Any) -> None:
        if kind is None or not issubclass(kind, sqlite3.DatabaseError):
            return
        if issubclass(kind, sqlite3.OperationalError):
            text = str(e)
            if _busy(e):
                raise BackendUnavailable(f"SQLite database is busy: {text}") from e
            if getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in text:
                raise BackendError(
                    f"SQLite: the disk is full ({text}): nothing of this write was stored; "
                    "free space and write again"
                ) from e
            raise BackendError(f"SQLite: {text}") from e
        if issubclass(kind, sqlite3.IntegrityError):
            return
        raise BackendError(f"SQLite: {e}") from e


def _busy(e: BaseException | None) -> bool:
    """Whether a driver error says the database is locked by another connection."""
    if not isinstance(e, sqlite3.OperationalError):
        return False
    text = str(e)
    return "locked" in text or "busy" in text


_SQLITE_FULL = 13  # SQLITE_FULL: the disk (or a quota) is full
_TRANSLATE = _Translate()


def _translate() -> _Translate:
    return _TRANSLATE


class _Reading:
    """``with store._read() as conn``: the thread's connection (under the lock of an
    in-memory database), marked in use, driver errors translated."""

    __slots__ = ("conn", "lock", "store")

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.lock: Any = store._lock if store.memory else _nolock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.__enter__()
        try:
            self.conn = conn = self.store._mark()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return conn

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        try:
            _TRANSLATE.__exit__(kind, e, tb)
        finally:
            try:
                self.store._unmark(self.conn)
            finally:
                self.lock.__exit__(None, None, None)


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
