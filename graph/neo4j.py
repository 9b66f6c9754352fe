"""The Neo4j 5 backend: the official driver, one transaction per call, Cypher from one module.

Open it with ``open_store("neo4j://host:7687", user=..., password=..., database=...)``; any of
the six schemes ``neo4j``, ``bolt`` (each also ``+s`` / ``+ssc``) works. Credentials may also
come as URI userinfo (``neo4j://user:pass@host``) and the database as ``?database=name``;
explicit options win. ``store.uri`` is always the redacted URI, and no message, log line or
``repr`` carries the password.

How it keeps :class:`~lineagehub.graph.store.GraphStore`'s semantics (the SQLite backend is the
reference; the data model is described in :mod:`lineagehub.graph.cypher`):

- Writes read what they change *after* write-locking it (nodes in id order), merge in Python
  (:func:`~lineagehub.graph.model.merge_patch`, the merge every backend applies), check conflicts, and only then write:
  a new node gets its whole record, an existing one the difference from its stored record
  (:func:`record_changes`, removed keys as null) so flattened copies never go stale. A check that
  fails (label change, missing edge end, changed edge end) raises before anything is written,
  so inside ``store.transaction()`` the other writes of the block stay intact, as with SQLite's
  savepoints. Two writers creating the same node id at once: the unique constraint stops the
  second, which retries and merges into what the first wrote.
- Every statement is built by :mod:`lineagehub.graph.cypher`, values as parameters, identifiers
  validated again where they enter the text; :func:`statement_catalog` lists every shape.
- Traversal levels are one query over the whole frontier (``UNWIND $ids ... MATCH (a)-[e]->(b)``),
  never variable-length paths.
- Metric series are chunked arrays (``:SeriesChunk``), not nodes per point. Steps are unique
  across a series' chunks: a point at an existing step replaces it in place, so summaries fold
  per-chunk statistics without reading the arrays.
- Driver errors become :mod:`lineagehub.graph.errors` types here, and nowhere else:
  unavailable / expired / transient → :class:`BackendUnavailable` (retryable); authentication →
  :class:`ConfigError`; constraint → :class:`ConflictError`; other server errors →
  :class:`BackendError`.

The store is safe to share between threads: the driver is; each operation takes its own
session, and ``transaction()`` keeps one session and transaction per thread.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from neo4j import READ_ACCESS, GraphDatabase, unit_of_work
from neo4j.exceptions import (
    AuthError,
    ConfigurationError,
    ConnectionAcquisitionTimeoutError,
    ConstraintError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from lineagehub.graph import cypher
from lineagehub.graph.audit import AuditEntry, TreeHead, make_entry, prepare
from lineagehub.graph.cypher import CHUNK_POINTS, INT64_MAX, INT64_MIN, Statement, statement_catalog
from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.filters import Expr, SortKey, parse_where
from lineagehub.graph.hydrate import stored_edge, stored_node, stored_time
from lineagehub.graph.model import (
    EDGE_KIND_RE,
    MAX_PROPS_BYTES,
    Edge,
    Node,
    SeriesPoint,
    SeriesSummary,
    load_json,
    merge_patch,
    merged_too_large,
    to_iso,
    utcnow,
    validate_id,
    validate_label,
)
from lineagehub.graph.store import (
    INHERITED,
    Expansion,
    GraphStore,
    _series_key,
    check_secret_name,
    forks_open,
    nested_transaction,
)
from lineagehub.graph.uri import NEO4J_SCHEMES, redact

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_CONNECTION_TIMEOUT_S = 10.0
DEFAULT_RETRY_TIME_S = 15.0
# How often a write is re-run after losing a creation race on the unique id constraint.
RACE_RETRIES = 3
# Lazily creating a relationship index waits at most this long for schema locks; on timeout
# the write goes on without it (the index is an optimisation) and a later write retries.
INDEX_TIMEOUT_S = 5.0
USER_AGENT = "lineagehub-neo4j"


class _Tx(Protocol):
    """What the store needs of a driver transaction (managed or explicit)."""

    def run(self, query: Any, parameters: dict[str, Any] | None = None) -> Any: ...


def _run(tx: _Tx, stmt: Statement) -> list[dict[str, Any]]:
    """Run one built statement; every query the store sends passes here. Rows hold plain
    values (never graph objects), so they need none of ``Record.data()``'s conversion."""
    result = tx.run(stmt.text, stmt.params)
    keys = result.keys()
    return [dict(zip(keys, record)) for record in result]


def _schema_change(
    session: Any, text: str, params: dict[str, Any], timeout: float | None = None
) -> None:
    """One idempotent schema statement in a managed transaction, so the driver retries the
    deadlocks that stores opening at once run into. Two of them can both pass ``IF NOT
    EXISTS``; the loser is told the rule exists, which is all it wanted."""

    @unit_of_work(timeout=timeout)
    def work(tx: _Tx) -> None:
        tx.run(text, params).consume()

    try:
        session.execute_write(work)
    except Neo4jError as e:
        if "AlreadyExists" not in (e.code or ""):
            raise


# --- URI and credentials ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionTarget:
    """Where and as whom to connect. ``repr`` never shows the password."""

    driver_uri: str  # what the driver gets: no userinfo, no ``database`` query parameter
    redacted_uri: str
    user: str | None
    password: str | None = field(repr=False)
    database: str | None


def parse_uri(
    uri: str, user: str | None = None, password: str | None = None, database: str | None = None
) -> ConnectionTarget:
    """Split a Neo4j URI into what the driver accepts and the credentials and database it may
    carry. The driver refuses userinfo (and would echo it, password included, in its error),
    and refuses any query on ``bolt://``; routing context on ``neo4j://`` is kept."""
    if not isinstance(uri, str):
        raise ConfigError(f"not a Neo4j URI: {uri!r}")
    try:
        redacted = redact(uri)
    except ValueError:  # unparseable (a bad port): show only the scheme, it may hold a secret
        redacted = uri.split("://", 1)[0] + "://..."
    try:
        parts = urlsplit(uri)
        port = parts.port
        uri_user, uri_password = parts.username, parts.password
    except ValueError as e:
        raise ConfigError(f"bad Neo4j URI {redacted!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in NEO4J_SCHEMES:
        raise ConfigError(
            f"unsupported Neo4j URI scheme {scheme!r} in {redacted!r}; use one of "
            + ", ".join(NEO4J_SCHEMES)
        )
    if not parts.hostname:
        raise ConfigError(f"Neo4j URI {redacted!r} names no host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    uri_database = [v for k, v in query if k == "database"]
    routing = [(k, v) for k, v in query if k != "database"]
    if routing and scheme.startswith("bolt"):
        raise ConfigError(
            f"{redacted!r}: bolt:// URIs take no query parameters except database; "
            "use neo4j:// for routing context"
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    driver_uri = parts._replace(netloc=netloc, query=urlencode(routing), fragment="").geturl()
    if user is None and uri_user:
        user = unquote(uri_user)
    if password is None and uri_password is not None:
        password = unquote(uri_password)
    if database is None and uri_database:
        database = uri_database[-1] or None
    return ConnectionTarget(driver_uri, redacted, user, password, database)


# --- pure planning: what to write, given what exists -------------------------------------------


@dataclass(slots=True)
class _NodeState:
    label: str
    props: dict[str, Any]
    created_at: str
    exists: bool
    stored: dict[str, Any] | None = None  # the stored props of an existing node


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def record_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What ``SET n += changes`` needs to turn the stored record ``old`` into ``new``: the
    keys that differ, and ``None`` (which removes) for keys gone. A node with thousands of
    flattened keys (a run's metric summaries) then changes only what changed."""
    changes = {k: v for k, v in new.items() if not _same(old.get(k), v)}
    changes.update((k, None) for k in old if k not in new)
    return changes


def plan_nodes(
    rows: Sequence[tuple[str, str, str]],
    existing: Mapping[str, Mapping[str, Any]],
    now: str,
    final: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Apply node upserts in order to what exists; return (records to create per label,
    records to update). ``rows`` are ``(id, label, props_json)``; ``existing`` maps id to
    ``{label, props, created_at}`` as stored. Patches merge with
    :func:`~lineagehub.graph.model.merge_patch` (a new node starts from the patch applied to
    nothing, so DELETE markers vanish). A repeated id applies in order; a label change is a
    :class:`ConflictError` raised before anything is written. ``final``, when given, gets
    each node's state as it will be stored: ``(id, label, props)``."""
    state: dict[str, _NodeState] = {}
    for node_id, label, patch_text in rows:
        patch = load_json(patch_text)
        cur = state.get(node_id)
        if cur is None and node_id in existing:
            old = existing[node_id]
            text = old["props"] or "{}"
            cur = state[node_id] = _NodeState(
                old["label"], json.loads(text), old["created_at"], True, json.loads(text)
            )
        if cur is None:
            state[node_id] = _NodeState(label, merge_patch({}, patch), now, False)
            continue
        if cur.label != label:
            raise ConflictError(f"node {node_id!r} is a {cur.label}; cannot make it a {label}")
        cur.props = merge_patch(cur.props, patch)
    creates: dict[str, list[dict[str, Any]]] = {}
    updates: list[dict[str, Any]] = []
    too_large: list[str] = []
    for node_id, st in state.items():
        record = cypher.node_record(node_id, st.label, st.props, st.created_at, now)
        if st.exists:
            before = cypher.node_record(node_id, st.label, st.stored or {}, st.created_at, "")
            updates.append({**record_changes(before, record), "id": node_id})
        else:
            creates.setdefault(st.label, []).append(record)
        if final is not None:
            final.append((node_id, st.label, st.props))
        if _grows_past_limit(record["_props"], existing.get(node_id)):
            too_large.append(node_id)
    if too_large:  # a patch fits, but merged with what is stored it would not
        raise merged_too_large("node", too_large)
    return creates, updates


def _grows_past_limit(text: str, stored: Mapping[str, Any] | None) -> bool:
    """Whether properties about to be stored pass MAX_PROPS_BYTES and are larger than the
    stored ones (as SQLite's schema 8: a row stored larger before stays writable as long as
    a write does not make it larger)."""
    return len(text) > MAX_PROPS_BYTES and (
        stored is None or len(text) > len(stored["props"] or "")
    )


@dataclass(slots=True)
class _EdgeState:
    kind: str
    source: str
    target: str
    props: dict[str, Any]
    event_time: str
    ingested_at: str
    asserted_by: str | None
    exists: bool


def plan_edges(
    rows: Sequence[tuple[Any, ...]],
    existing: Mapping[str, Mapping[str, Any]],
    present: set[str],
    final: list[tuple[str, str, str, str, dict[str, Any]]] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Apply edge upserts in order; return (creates per kind, updates per kind).

    ``rows`` are GraphStore._prepare_edges rows ``(id, kind, source, target, props_json,
    event_time, now, asserted_by)``; ``existing`` maps id to the stored edge's columns;
    ``present`` holds the endpoint ids that exist. As in SQLite: a new edge with a missing end
    is a :class:`NotFoundError` naming every missing end of the batch; a changed kind, source
    or target of an existing id is a :class:`ConflictError`; an update merges properties and
    keeps ``event_time``, ``ingested_at`` and ``asserted_by`` from the first write.
    ``final``, when given, gets each edge's state as it will be stored: ``(id, kind, source,
    target, props)``.
    """
    state: dict[str, _EdgeState] = {}
    for edge_id, kind, source, target, patch_text, event_time, now, asserted_by in rows:
        patch = load_json(patch_text)
        cur = state.get(edge_id)
        if cur is None and edge_id in existing:
            old = existing[edge_id]
            cur = state[edge_id] = _EdgeState(
                old["kind"],
                old["source"],
                old["target"],
                json.loads(old["props"] or "{}"),
                old["event_time"],
                old["ingested_at"],
                old["asserted_by"],
                True,
            )
        if cur is None:
            if source not in present or target not in present:
                ends = dict.fromkeys(x for r in rows for x in (r[2], r[3]))
                missing = [i for i in ends if i not in present]
                raise NotFoundError(
                    "edges refer to nodes that do not exist: " + ", ".join(map(repr, missing[:20])),
                    ids=missing,
                )
            state[edge_id] = _EdgeState(
                kind, source, target, merge_patch({}, patch), event_time, now, asserted_by, False
            )
            continue
        if (cur.kind, cur.source, cur.target) != (kind, source, target):
            raise ConflictError(
                f"edge {edge_id!r} is {cur.source!r} -{cur.kind}-> {cur.target!r}: an edge's "
                "kind, source and target cannot change; give the new edge another id"
            )
        cur.props = merge_patch(cur.props, patch)
    creates: dict[str, list[dict[str, Any]]] = {}
    updates: dict[str, list[dict[str, Any]]] = {}
    too_large: list[str] = []
    for edge_id, st in state.items():
        record = cypher.edge_record(
            edge_id, st.props, st.event_time, st.ingested_at, st.asserted_by
        )
        if st.exists:
            updates.setdefault(st.kind, []).append({"id": edge_id, "props": record})
        else:
            creates.setdefault(st.kind, []).append(
                {"source": st.source, "target": st.target, "props": record}
            )
        if final is not None:
            final.append((edge_id, st.kind, st.source, st.target, st.props))
        if _grows_past_limit(record["_props"], existing.get(edge_id)):
            too_large.append(edge_id)
    if too_large:
        raise merged_too_large("edge", too_large)
    return creates, updates


def _nanmin(values: Iterable[float]) -> float | None:
    real = [v for v in values if not math.isnan(v)]
    return min(real) if real else None


def _nanmax(values: Iterable[float]) -> float | None:
    real = [v for v in values if not math.isnan(v)]
    return max(real) if real else None


def chunk_stats(steps: Sequence[int], ts: Sequence[str], vals: Sequence[float]) -> dict[str, Any]:
    """A chunk's statistics, from which summaries are folded without reading arrays. Min and
    max ignore NaN, as SQLite's aggregates ignore the NULLs it stores for NaN; ``None`` (the
    property is then absent) when every value is NaN."""
    last = max(range(len(steps)), key=lambda i: steps[i])
    return {
        "n_points": len(steps),
        "min_step": min(steps),
        "max_step": steps[last],
        "min_value": _nanmin(vals),
        "max_value": _nanmax(vals),
        "min_ts": min(ts),
        "max_ts": max(ts),
        "last_value": vals[last],
    }


def _merge_stats(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics of a chunk extended by points whose steps it does not hold."""

    def pick(f: Callable[[list[float]], float], *xs: Any) -> Any:
        real = [x for x in xs if x is not None]
        return f(real) if real else None

    later = new["max_step"] > old["max_step"]
    return {
        "n_points": old["n_points"] + new["n_points"],
        "min_step": min(old["min_step"], new["min_step"]),
        "max_step": max(old["max_step"], new["max_step"]),
        "min_value": pick(min, old.get("min_value"), new["min_value"]),
        "max_value": pick(max, old.get("max_value"), new["max_value"]),
        "min_ts": min(old["min_ts"], new["min_ts"]),
        "max_ts": max(old["max_ts"], new["max_ts"]),
        "last_value": new["last_value"] if later else old["last_value"],
    }


@dataclass(slots=True)
class SeriesPlan:
    """The chunk writes for one append: whole chunks (created or rewritten), and extensions
    of tail chunks (only the new points)."""

    write: list[dict[str, Any]] = field(default_factory=list)
    extend: list[dict[str, Any]] = field(default_factory=list)


def group_points(
    rows: Sequence[tuple[Any, ...]],
) -> dict[tuple[str, str], dict[int, tuple[str, float]]]:
    """``(node_id, key, step, ts, value)`` rows per series, a later row at a step winning (as
    SQLite's ``ON CONFLICT ... DO UPDATE`` applies a batch in order)."""
    groups: dict[tuple[str, str], dict[int, tuple[str, float]]] = {}
    for node_id, key, step, ts, value in rows:
        groups.setdefault((node_id, key), {})[step] = (ts, value)
    return groups


def chunks_to_fetch(
    groups: Mapping[tuple[str, str], Mapping[int, Any]],
    stats: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The chunks whose step range covers a new point: only they may hold a step to replace.
    Appends in step order (the usual case) fetch nothing."""
    out = []
    for c in stats:
        steps = groups.get((c["node_id"], c["key"]), {})
        if any(c["min_step"] <= s <= c["max_step"] for s in steps):
            out.append({"node_id": c["node_id"], "key": c["key"], "seq": c["seq"]})
    return out


def plan_series(
    groups: Mapping[tuple[str, str], Mapping[int, tuple[str, float]]],
    stats: Sequence[Mapping[str, Any]],
    arrays: Sequence[Mapping[str, Any]],
    chunk_points: int = CHUNK_POINTS,
) -> SeriesPlan:
    """Place new points: a step a chunk already holds is replaced there (that chunk is
    rewritten); the rest extend the series' last chunk up to ``chunk_points``, then fill new
    chunks. Steps therefore stay unique across a series' chunks."""
    plan = SeriesPlan()
    by_series: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in stats:
        by_series.setdefault((c["node_id"], c["key"]), []).append(c)
    fetched = {(a["node_id"], a["key"], a["seq"]): a for a in arrays}
    for (node_id, key), points in groups.items():
        pending = dict(points)
        chunks = sorted(by_series.get((node_id, key), []), key=lambda c: c["seq"])
        rewritten: dict[int, dict[str, list[Any]]] = {}
        for c in chunks:
            a = fetched.get((node_id, key, c["seq"]))
            if a is None:
                continue
            steps, ts, vals = list(a["steps"]), list(a["ts"]), list(a["vals"])
            hit = False
            for i, s in enumerate(steps):
                if s in pending:
                    ts[i], vals[i] = pending.pop(s)
                    hit = True
            if hit:
                rewritten[c["seq"]] = {"steps": steps, "ts": ts, "vals": vals}
        tail = chunks[-1] if chunks else None
        new = sorted(pending.items())
        if tail is not None and new and tail["n_points"] < chunk_points:
            room = chunk_points - tail["n_points"]
            head, new = new[:room], new[room:]
            if tail["seq"] in rewritten:
                arr = rewritten[tail["seq"]]
                for s, (t, v) in head:
                    arr["steps"].append(s)
                    arr["ts"].append(t)
                    arr["vals"].append(v)
            else:
                steps = [s for s, _ in head]
                ts = [t for _, (t, _v) in head]
                vals = [v for _, (_t, v) in head]
                plan.extend.append(
                    {
                        "node_id": node_id,
                        "key": key,
                        "seq": tail["seq"],
                        "steps": steps,
                        "ts": ts,
                        "vals": vals,
                        "stats": _merge_stats(tail, chunk_stats(steps, ts, vals)),
                    }
                )
        for seq, arr in rewritten.items():
            plan.write.append(
                _chunk_record(node_id, key, seq, arr["steps"], arr["ts"], arr["vals"])
            )
        seq = (tail["seq"] + 1) if tail is not None else 0
        for start in range(0, len(new), chunk_points):
            part = new[start : start + chunk_points]
            plan.write.append(
                _chunk_record(
                    node_id,
                    key,
                    seq,
                    [s for s, _ in part],
                    [t for _, (t, _v) in part],
                    [v for _, (_t, v) in part],
                )
            )
            seq += 1
    return plan


def _chunk_record(
    node_id: str, key: str, seq: int, steps: list[int], ts: list[str], vals: list[float]
) -> dict[str, Any]:
    record = {"node_id": node_id, "key": key, "seq": seq, "steps": steps, "ts": ts, "vals": vals}
    record.update({k: v for k, v in chunk_stats(steps, ts, vals).items() if v is not None})
    return record


def merge_chunks(node_id: str, key: str, chunks: Sequence[Mapping[str, Any]]) -> list[SeriesPoint]:
    """One series from its chunks, ordered by step; at a step held twice (which writes
    avoid), the later chunk wins."""
    points: dict[int, tuple[str, float]] = {}
    for c in sorted(chunks, key=lambda c: c["seq"]):
        for s, t, v in zip(c["steps"], c["ts"], c["vals"]):
            points[s] = (t, v)
    return [SeriesPoint(node_id, key, s, float(v), _dt(t)) for s, (t, v) in sorted(points.items())]


def summarize_chunks(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], SeriesSummary]:
    """Fold per-chunk statistics into one summary per (node, key), meaning what SQLite's
    ``count/min/max`` and value-at-highest-step mean (NaN when every value is NaN)."""
    acc: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        acc.setdefault((r["node_id"], r["key"]), []).append(r)
    out: dict[tuple[str, str], SeriesSummary] = {}
    for (node_id, key), chunks in acc.items():
        last = max(chunks, key=lambda c: c["max_step"])
        lows = [c["min_value"] for c in chunks if c.get("min_value") is not None]
        highs = [c["max_value"] for c in chunks if c.get("max_value") is not None]
        out[(node_id, key)] = SeriesSummary(
            key=key,
            count=sum(c["n_points"] for c in chunks),
            last=float(last["last_value"]),
            last_step=last["max_step"],
            min=min(lows) if lows else math.nan,
            max=max(highs) if highs else math.nan,
            first_timestamp=_dt(min(c["min_ts"] for c in chunks)),
            last_timestamp=_dt(max(c["max_ts"] for c in chunks)),
        )
    return out


# --- reading rows -----------------------------------------------------------------------------


_dt = stored_time  # each distinct text parsed once (graph.hydrate)


def _audit_entry(row: Mapping[str, Any]) -> AuditEntry:
    # Entries written before records were digested have no ``records`` property.
    values: list[Any] = [row[p] for p in cypher.AUDIT_PROPS]
    values[cypher.AUDIT_PROPS.index("records")] = row["records"] or ""
    return AuditEntry(*values)


def _tree_head(row: Mapping[str, Any]) -> TreeHead:
    return TreeHead(
        row["tree_size"],
        row["root_hash"],
        row["head_hash"],
        row["time"],
        row["mac"],
        tuple(json.loads(row["frontier"] or "[]")),
        row["signature"],
    )


def _audit_record(entry: AuditEntry) -> dict[str, Any]:
    return {p: getattr(entry, p) for p in cypher.AUDIT_PROPS}


def _nodes(rows: Sequence[Mapping[str, Any]]) -> list[Node]:
    """The nodes of a statement that collects them (``cypher._NODE_RETURN``), in order."""
    return [
        stored_node(node_id, label, props, created_at, updated_at)
        for node_id, label, props, created_at, updated_at in (rows[0]["rows"] if rows else ())
    ]


def _edge_of(values: Sequence[Any], source: str, target: str) -> Edge:
    """An edge from the ``id, kind, props, event_time, ingested_at, asserted_by`` values of
    an expansion row."""
    edge_id, kind, props, event_time, ingested_at, asserted_by = values
    return stored_edge(edge_id, kind, source, target, props, event_time, ingested_at, asserted_by)


def _edge(row: Mapping[str, Any], source: str, target: str) -> Edge:
    return stored_edge(
        row["id"],
        row["kind"],
        source,
        target,
        row["props"],
        row["event_time"],
        row["ingested_at"],
        row["asserted_by"],
    )


# --- the store ----------------------------------------------------------------------------------


class _NotInAFork:
    """The driver of a store over a driver it did not create (:meth:`Neo4jStore.from_driver`),
    in a forked child: it cannot be made again there, and the parent's must not be used."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def session(self, **_: Any) -> Any:
        raise BackendError(
            f"a store over a Neo4j driver given to it ({self.uri!r}) cannot be used in a "
            "forked process: open a store in the child (open_store) instead"
        )

    def close(self) -> None:
        pass


class _ThreadState(threading.local):
    session: Any = None
    tx: Any = None
    depth: int = 0
    touched: dict[tuple[str, str], None] | None = None
    after_commit: list[Callable[[], None]] | None = None
    audit_head: AuditEntry | None = None
    #: The newest audit entry when the open transaction began, read under the head's lock.
    begun_head: AuditEntry | None = None
    # Relationship types written inside the open transaction whose id index this store has
    # not created yet: created after it ends, never while it holds locks.
    pending_kinds: list[str] | None = None
    # The relationship types read in the open transaction ``kinds_tx``: its later edge
    # look-ups reuse them, with the types its own creations add (``_edge_kinds``).
    kinds: list[str] | None = None
    kinds_tx: Any = None


class Neo4jStore(GraphStore):
    """A lineage graph in Neo4j 5.

    ``uri`` is ``neo4j://``, ``neo4j+s://``, ``neo4j+ssc://``, ``bolt://``, ``bolt+s://`` or
    ``bolt+ssc://``, optionally with ``user:password@`` and ``?database=``. ``user``,
    ``password`` and ``database`` options override what the URI says. ``connection_timeout``
    (seconds, default 10) bounds each connection attempt, so an unreachable server fails
    fast; ``max_transaction_retry_time`` (default 15) bounds the driver's retries of
    transient failures. Other keyword options go to :func:`neo4j.GraphDatabase.driver`.

    Opening checks the server is reachable (:class:`BackendUnavailable` naming the redacted
    URI if not) and creates constraints and indexes if they do not exist.
    """

    def __init__(
        self,
        uri: str,
        *,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        connection_timeout: float = DEFAULT_CONNECTION_TIMEOUT_S,
        max_transaction_retry_time: float = DEFAULT_RETRY_TIME_S,
        **driver_options: Any,
    ) -> None:
        target = parse_uri(uri, user, password, database)
        self.uri = target.redacted_uri
        self._secret = target.password or ""
        self._user = target.user
        auth = (target.user, target.password or "") if target.user is not None else None
        # "Property key does not exist" warnings come for every statement that reads a
        # property no node has yet (a new database): noise in every log, not a problem.
        if "notifications_min_severity" not in driver_options:
            driver_options.setdefault("notifications_disabled_classifications", ["UNRECOGNIZED"])

        def make_driver() -> Any:
            return GraphDatabase.driver(
                target.driver_uri,
                auth=auth,
                connection_timeout=connection_timeout,
                max_transaction_retry_time=max_transaction_retry_time,
                user_agent=USER_AGENT,
                **driver_options,
            )

        try:
            driver = make_driver()
        except (ConfigurationError, ValueError, TypeError) as e:
            raise ConfigError(
                f"cannot configure the Neo4j driver for {self.uri!r}: {self._scrub(str(e))}"
            ) from e
        self._setup(driver, target.database, owns_driver=True)
        self._retry_time = max_transaction_retry_time
        self._make_driver: Callable[[], Any] | None = make_driver

    @classmethod
    def from_driver(
        cls, driver: Any, *, uri: str = "neo4j://", database: str | None = None
    ) -> Neo4jStore:
        """A store over an already configured :class:`neo4j.Driver` (custom auth managers,
        TLS settings...). The store does not close a driver it did not create."""
        self = cls.__new__(cls)
        self.uri = redact(uri)
        self._secret = ""
        self._user = None
        self._setup(driver, database, owns_driver=False)
        self._make_driver = None  # not ours to remake in a forked child
        return self

    def _setup(self, driver: Any, database: str | None, *, owns_driver: bool) -> None:
        self._driver = driver
        self._database = database
        self._owns_driver = owns_driver
        self._local = _ThreadState()
        self._closed = False
        self._retry_time = DEFAULT_RETRY_TIME_S
        self._kinds_lock = threading.Lock()
        self._indexed_kinds: set[str] = set()
        # One bookmark chain for the whole store: in a cluster, a read after a write (from
        # any thread of this store) waits until the member it reads from has that write.
        self._bookmarks = GraphDatabase.bookmark_manager()
        try:
            with self._translate("connecting"):
                driver.verify_connectivity()
            self._ensure_schema()
        except BaseException:
            if owns_driver:
                driver.close()
            raise
        forks_open(self)

    def _after_fork(self) -> None:
        # the driver's pooled connections are the parent's sockets: a child using them
        # interleaved its messages with the parent's ("Expected structure, found marker")
        INHERITED.append(self._driver)
        self._local = _ThreadState()
        self._kinds_lock = threading.Lock()
        if self._make_driver is not None:
            self._driver, self._owns_driver = self._make_driver(), True
        else:
            self._driver, self._owns_driver = _NotInAFork(self.uri), False

    # --- errors -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Driver messages may echo a URI or config; never let the password through."""
        return text.replace(self._secret, "***") if self._secret else text

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Driver errors become ours at this boundary (``raise ... from e``)."""
        try:
            yield
        except AuthError as e:
            who = f" as {self._user!r}" if self._user else ""
            raise ConfigError(
                f"Neo4j at {self.uri!r} refused the credentials{who} while {what}: "
                f"{self._scrub(str(e))}"
            ) from e
        except ConstraintError as e:
            raise ConflictError(
                f"Neo4j at {self.uri!r}: a constraint was violated while {what}: "
                f"{self._scrub(str(e))}"
            ) from e
        except (
            ServiceUnavailable,
            SessionExpired,
            TransientError,
            ConnectionAcquisitionTimeoutError,
        ) as e:
            raise BackendUnavailable(
                f"Neo4j at {self.uri!r} is unavailable while {what} (retry later): "
                f"{self._scrub(str(e))}"
            ) from e
        except Neo4jError as e:
            raise BackendError(
                f"Neo4j at {self.uri!r} failed while {what}: {self._scrub(str(e))}"
            ) from e
        except ConfigurationError as e:
            raise ConfigError(f"Neo4j at {self.uri!r}: {self._scrub(str(e))}") from e
        except DriverError as e:
            raise BackendError(
                f"Neo4j at {self.uri!r} failed while {what}: {self._scrub(str(e))}"
            ) from e

    # --- sessions and transactions --------------------------------------------------------------

    def _session(self, access_mode: str | None = None) -> Any:
        if self._closed:
            raise BackendError(f"{self!r} is closed")
        options = {} if access_mode is None else {"default_access_mode": access_mode}
        return self._driver.session(
            database=self._database, bookmark_manager=self._bookmarks, **options
        )

    def _read(self, work: Callable[[_Tx], T], what: str) -> T:
        tx = self._local.tx
        with self._translate(what):
            if tx is not None:
                return work(tx)
            with self._session() as session:
                return session.execute_read(work)

    def _write(self, work: Callable[[_Tx], T], what: str) -> T:
        """Run ``work`` in the thread's open transaction, else in its own (the driver retries
        transient failures). A lost creation race on the unique id re-runs it: the next
        attempt reads what the other writer committed and merges into it.

        An attempt that does not commit may have written a tree head and noted it
        (:meth:`_maybe_checkpoint`); the note is dropped before the next attempt and when the
        write fails, so the head is read afresh rather than taken as written (as a rolled-back
        transaction does in :meth:`_outermost`)."""
        tx = self._local.tx
        with self._translate(what):
            if tx is not None:
                return work(tx)
            attempts = 0

            def attempt(tx: _Tx) -> T:
                nonlocal attempts
                if attempts:
                    self._checkpoint_state = None
                attempts += 1
                return work(tx)

            races = 0
            while True:
                try:
                    with self._session() as session:
                        return session.execute_write(attempt)
                except BaseException as e:
                    self._checkpoint_state = None
                    if not isinstance(e, ConstraintError):
                        raise
                    races += 1
                    if races > RACE_RETRIES:
                        raise

    def transaction(self) -> AbstractContextManager[None]:
        return nested_transaction(self._local, self._outermost)

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        """The thread's outermost transaction: one session and one explicit transaction that
        every write and read inside joins; relationship-type indexes it needs are created
        once it has ended."""
        state = self._local
        with self._translate("beginning a transaction"):
            session, tx = self._begin()
        state.session, state.tx, state.pending_kinds = session, tx, []
        try:
            try:
                # The audit head's lock first, as SQLite's BEGIN IMMEDIATE takes the write
                # lock first: transactions take their locks in one order (no deadlock between
                # one that appended an entry and then locked a model, and one that locked the
                # model and then appended), and what one reads after this (an alias's holders,
                # a stage's) no other transaction changes before it commits. Every
                # transaction appends an entry anyway, holding this lock to its commit; the
                # head read here spares its first append the round trip.
                with self._translate("beginning a transaction"):
                    rows = _run(tx, cypher.audit_lock_head())
                state.begun_head = _audit_entry(rows[0]) if rows else None
                yield
            except BaseException:
                state.tx = None
                self._checkpoint_state = None  # a head it wrote is undone: read it afresh
                try:
                    tx.rollback()
                except (DriverError, Neo4jError) as e:  # the original error matters more
                    log.debug("rollback failed: %s", self._scrub(str(e)))
                raise
            state.tx = None
            with self._translate("committing a transaction"):
                tx.commit()
        finally:
            kinds, state.pending_kinds = state.pending_kinds or [], None
            state.tx, state.session, state.begun_head = None, None, None
            state.kinds, state.kinds_tx = None, None
            session.close()
            if kinds:
                self._ensure_kind_indexes(kinds)

    def _begin(self) -> tuple[Any, Any]:
        """A session and an explicit transaction begun in it. While the server cannot be
        reached (restarting, a leader being elected) beginning is tried again, with back-off,
        for up to ``max_transaction_retry_time``, as the driver retries its own transactions:
        nothing has run yet, so trying again is always safe."""
        deadline = time.monotonic() + self._retry_time
        delay = 0.1
        while True:
            session = self._session()
            try:
                return session, session.begin_transaction()
            except (ServiceUnavailable, SessionExpired):
                session.close()
                if time.monotonic() + delay > deadline:
                    raise
            except BaseException:
                session.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """One read transaction for every read of a traversal: a consistent view, and one
        round trip per level instead of a session and a commit each. Inside ``transaction()``
        the reads join it."""
        state = self._local
        if state.tx is not None:
            yield
            return
        with self._translate("beginning a read transaction"):
            session = self._session(READ_ACCESS)
            try:
                tx = session.begin_transaction()
            except BaseException:
                session.close()
                raise
        state.tx = tx
        try:
            yield
        finally:
            state.tx, state.kinds, state.kinds_tx = None, None, None
            try:
                tx.close()  # nothing to commit: a read transaction ends by closing
            except (DriverError, Neo4jError) as e:
                log.debug("closing a read transaction failed: %s", self._scrub(str(e)))
            session.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_driver:
            self._driver.close()

    # --- schema ---------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        with self._translate("creating constraints and indexes"), self._session() as session:
            for stmt in cypher.schema_statements():
                _schema_change(session, stmt.text, stmt.params)

    def _ensure_kind_indexes(self, kinds: Iterable[str]) -> None:
        """Create the id index of relationship types this store instance has not written
        yet, each in its own auto-commit transaction (Neo4j forbids schema changes in a
        transaction that writes data). Inside ``transaction()`` this waits for its end: a
        schema change from another session could queue behind that transaction's locks."""
        with self._kinds_lock:
            todo = [k for k in dict.fromkeys(kinds) if k not in self._indexed_kinds]
        pending = self._local.pending_kinds
        if pending is not None:
            pending.extend(todo)
            return
        for kind in todo:
            try:
                with self._session() as session:
                    for stmt in (
                        cypher.drop_relationship_index(kind),
                        cypher.relationship_index(kind),
                    ):
                        _schema_change(session, stmt.text, stmt.params, INDEX_TIMEOUT_S)
            except (DriverError, Neo4jError) as e:
                # The index only speeds up id look-ups; the write itself will report a real
                # outage. Try again on the next write of this kind.
                log.warning("could not create the id index of %s: %s", kind, self._scrub(str(e)))
                continue
            with self._kinds_lock:
                self._indexed_kinds.add(kind)

    def _edge_kinds(self, tx: _Tx) -> list[str]:
        """The relationship types to look an edge id up in. Read once per explicit
        transaction: its later look-ups reuse the list, with the types the transaction
        created since (:meth:`_created_kinds`). A type first committed by another transaction
        meanwhile is missed, as the read itself misses one committed just after it (Neo4j
        locks no absent id): the ends' locks, not this list, order writers of one edge."""
        state = self._local
        if tx is state.kinds_tx and state.kinds is not None:
            return state.kinds
        kinds = [
            r["kind"]
            for r in _run(tx, cypher.relationship_types())
            if EDGE_KIND_RE.match(r["kind"])
        ]
        if tx is state.tx:
            state.kinds, state.kinds_tx = kinds, tx
        return kinds

    def _created_kinds(self, tx: _Tx, kinds: Iterable[str]) -> None:
        """Note types the open transaction has written edges of, for its later look-ups."""
        state = self._local
        if tx is state.kinds_tx and state.kinds is not None:
            state.kinds = list(dict.fromkeys([*state.kinds, *kinds]))

    def _lookup_edges(self, tx: _Tx, ids: Sequence[str]) -> list[dict[str, Any]]:
        stmt = cypher.lookup_edges(ids, self._edge_kinds(tx))
        return [] if stmt is None else _run(tx, stmt)

    # --- writes -----------------------------------------------------------------------------

    def upsert_nodes(self, nodes: Iterable[Node]) -> int:
        rows = self._prepare_nodes(nodes)
        if not rows:
            return 0
        self._touch("node", (r[0] for r in rows))

        final: list[tuple[str, str, dict[str, Any]]] = []

        def work(tx: _Tx) -> None:
            now = to_iso(utcnow())
            existing = {r["id"]: r for r in _run(tx, cypher.lock_nodes([r[0] for r in rows]))}
            final.clear()  # (the driver may run this again)
            creates, updates = plan_nodes(rows, existing, now, final)
            if updates:
                _run(tx, cypher.update_nodes(updates))
            for label, records in creates.items():
                _run(tx, cypher.create_nodes(label, records))

        self._write(work, "writing nodes")
        if self._noting():  # the states written, read under the nodes' locks: no read-back
            self._written("node", final)
        return len(rows)

    def upsert_edges(self, edges: Iterable[Edge]) -> int:
        now = to_iso(utcnow())
        rows = self._prepare_edges(edges, now)
        if not rows:
            return 0
        self._touch("edge", (r[0] for r in rows))
        self._ensure_kind_indexes(r[1] for r in rows)

        final: list[tuple[str, str, str, str, dict[str, Any]]] = []

        def work(tx: _Tx) -> None:
            ends = list(dict.fromkeys(x for r in rows for x in (r[2], r[3])))
            # Lock the ends first: a concurrent writer of the same edge holds them too, so the
            # look-up below sees its committed edge instead of creating a second one.
            present = {r["id"] for r in _run(tx, cypher.lock_nodes(ends))}
            existing: dict[str, dict[str, Any]] = {}
            for r in self._lookup_edges(tx, list(dict.fromkeys(r[0] for r in rows))):
                existing.setdefault(r["id"], r)
            final.clear()
            creates, updates = plan_edges(rows, existing, present, final)
            for kind, records in updates.items():
                _run(tx, cypher.update_edges(kind, records))
            for kind, records in creates.items():
                _run(tx, cypher.create_edges(kind, records))
            self._created_kinds(tx, creates)

        self._write(work, "writing edges")
        if self._noting():
            self._written("edge", final)
        return len(rows)

    def _row_state(self, kind: str, row: tuple[Any, ...]) -> dict[str, Any]:
        if kind == "node":  # plan_nodes' final state: (id, label, props)
            return {"id": row[0], "label": row[1], "props": row[2]}
        # plan_edges': (id, kind, source, target, props)
        return {"id": row[0], "kind": row[1], "source": row[2], "target": row[3], "props": row[4]}

    def delete_nodes(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(validate_id(i, "ids") for i in ids))
        if not ids:
            return 0
        self._touch("node", ids)

        def work(tx: _Tx) -> int:
            _run(tx, cypher.delete_series_of(ids))
            return int(_run(tx, cypher.delete_nodes(ids))[0]["deleted"])

        return self._write(work, "deleting nodes")

    def delete_edges(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(validate_id(i, "ids") for i in ids))
        if not ids:
            return 0
        self._touch("edge", ids)

        def work(tx: _Tx) -> int:
            by_kind: dict[str, set[str]] = {}
            for r in self._lookup_edges(tx, ids):
                by_kind.setdefault(r["kind"], set()).add(r["id"])
            for kind, found in by_kind.items():
                _run(tx, cypher.delete_edges(kind, sorted(found)))
            return len(set().union(*by_kind.values())) if by_kind else 0

        return self._write(work, "deleting edges")

    def append_series(self, points: Iterable[SeriesPoint]) -> int:
        rows = self._prepare_points(points, to_iso(utcnow()))
        if not rows:
            return 0
        for r in rows:
            if not INT64_MIN <= r[2] <= INT64_MAX:
                raise ValidationError(f"{r[1]}: step {r[2]} is out of 64-bit range", field="step")
        groups = group_points(rows)

        def work(tx: _Tx) -> None:
            node_ids = list(dict.fromkeys(r[0] for r in rows))
            # The node lock also serialises appends to one series, which rewrite its tail.
            present = {r["id"] for r in _run(tx, cypher.lock_nodes(node_ids))}
            missing = [i for i in node_ids if i not in present]
            if missing:
                raise NotFoundError(
                    "metric points for nodes that do not exist: " + ", ".join(map(repr, missing)),
                    ids=missing,
                )
            pairs = [{"node_id": n, "key": k} for n, k in groups]
            stats = _run(tx, cypher.series_chunk_stats(pairs))
            wanted = chunks_to_fetch(groups, stats)
            arrays = _run(tx, cypher.series_chunk_arrays(wanted)) if wanted else []
            plan = plan_series(groups, stats, arrays)
            if plan.extend:
                _run(tx, cypher.extend_chunks(plan.extend))
            if plan.write:
                _run(tx, cypher.write_chunks(plan.write))

        self._write(work, "appending metric points")
        return len(rows)

    def append_audit(
        self, actor: str, action: str, target: str, payload: Mapping[str, Any]
    ) -> AuditEntry:
        actor, action, target, digest = prepare(actor, action, target, payload)
        records = self._take_records()
        state = self._local
        # Inside an open transaction the head's lock is held (taken as it began) and the
        # newest entry is the one it appended, or the one it read then: no need to lock and
        # read again.
        noted = (state.audit_head or state.begun_head) if state.depth else None

        def work(tx: _Tx) -> tuple[AuditEntry, TreeHead | None]:
            head = noted
            if head is None:
                # Lock the head first: the newest entry read after it cannot change until
                # commit.
                rows = _run(tx, cypher.audit_lock_head())
                head = _audit_entry(rows[0]) if rows else None
            entry = make_entry(head, to_iso(utcnow()), actor, action, target, digest, records)
            _run(tx, cypher.audit_create(_audit_record(entry)))
            return entry, self._checkpoint_in(tx, entry.seq)

        entry, tree_head = self._write(work, "appending an audit entry")
        if state.depth:
            state.audit_head = entry
        self._published(tree_head)
        return entry

    def _checkpoint_in(self, tx: _Tx, seq: int, force: bool = False) -> TreeHead | None:
        def load_last() -> TreeHead | None:
            rows = _run(tx, cypher.checkpoint_last())
            return _tree_head(rows[0]) if rows else None

        def load_after(size: int) -> list[AuditEntry]:
            return [_audit_entry(r) for r in _run(tx, cypher.audit_range(size, seq))]

        def insert(h: TreeHead) -> None:
            record = {p: getattr(h, p) for p in cypher.CHECKPOINT_PROPS if p != "frontier"}
            _run(tx, cypher.checkpoint_create({**record, "frontier": json.dumps(h.frontier)}))

        return self._maybe_checkpoint(seq, load_last, load_after, insert, force)

    def checkpoint_audit(self) -> TreeHead:
        def work(tx: _Tx) -> TreeHead | None:
            _run(tx, cypher.audit_lock())
            seq = _run(tx, cypher.audit_max_seq())[0]["seq"] or 0
            return self._checkpoint_in(tx, int(seq), force=True)

        head = self._write(work, "writing an audit checkpoint")
        assert head is not None  # forced: the newest head, or a new one
        self._published(head)
        return head

    def secret(self, name: str) -> bytes:
        stmt = cypher.store_secret(check_secret_name(name), secrets.token_hex(32))
        # MERGE on a unique constraint: concurrent first callers meet on one node
        rows = self._write(lambda tx: _run(tx, stmt), "reading a store secret")
        return bytes.fromhex(rows[0]["value"])

    def audit_checkpoints(self, after_size: int = -1, limit: int = 1000) -> list[TreeHead]:
        self._audit_query(after_size + 1, limit, None)
        stmt = cypher.checkpoint_read(after_size, limit)
        rows = self._read(lambda tx: _run(tx, stmt), "reading audit checkpoints")
        return [_tree_head(r) for r in rows]

    def _wipe(self) -> None:
        """Delete everything in the database: for throwaway test databases only."""
        stmt = cypher.wipe()
        while self._write(lambda tx: int(_run(tx, stmt)[0]["deleted"]), "wiping") > 0:
            pass

    # --- reads ------------------------------------------------------------------------------

    def get_nodes(self, ids: Sequence[str]) -> list[Node | None]:
        ids = list(ids)
        if not ids:
            return []
        for i in ids:
            validate_id(i, "ids")
        rows = self._read(lambda tx: _run(tx, cypher.get_nodes(ids)), "reading nodes")
        found = {n.id: n for n in _nodes(rows)}
        return [found.get(i) for i in ids]

    def get_edges(self, ids: Sequence[str]) -> list[Edge | None]:
        ids = list(ids)
        if not ids:
            return []
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, str)]
        rows = self._read(lambda tx: self._lookup_edges(tx, wanted), "reading edges")
        found: dict[str, Edge] = {}
        for r in rows:
            found.setdefault(r["id"], _edge(r, r["source"], r["target"]))
        return [found.get(i) if isinstance(i, str) else None for i in ids]

    def read_audit(
        self, after_seq: int = 0, limit: int = 1000, target: str | None = None
    ) -> list[AuditEntry]:
        self._audit_query(after_seq, limit, target)
        stmt = cypher.audit_read(after_seq, limit, target)
        rows = self._read(lambda tx: _run(tx, stmt), "reading the audit log")
        return [_audit_entry(r) for r in rows]

    def audit_head(self) -> AuditEntry | None:
        rows = self._read(lambda tx: _run(tx, cypher.audit_head()), "reading the audit head")
        return _audit_entry(rows[0]) if rows else None

    def count_nodes(self, label: str | None = None, where: Mapping[str, Any] | None = None) -> int:
        if label is not None:
            validate_label(label)
        return self._count(label, parse_where(where))

    def count_edges(self) -> int:
        """How many edges the store holds."""
        rows = self._read(lambda tx: _run(tx, cypher.count_edges()), "counting edges")
        return int(rows[0]["count"])

    def _find(
        self, label: str | None, expr: Expr, order: Sequence[SortKey], limit: int
    ) -> list[Node]:
        stmt = cypher.find_nodes(label, expr, order, limit)
        return _nodes(self._read(lambda tx: _run(tx, stmt), "finding nodes"))

    def _values(
        self, label: str, expr: Expr, order: Sequence[SortKey], path: tuple[str, ...]
    ) -> list[Any]:
        stmt = cypher.node_values(label, expr, order, path)
        rows = self._read(lambda tx: _run(tx, stmt), "reading node values")
        return [v[0] for v in rows[0]["values"]] if rows else []

    def _count(self, label: str | None, expr: Expr) -> int:
        stmt = cypher.count_nodes(label, expr)
        return int(self._read(lambda tx: _run(tx, stmt), "counting nodes")[0]["count"])

    def _expand(
        self,
        frontier: Sequence[str],
        forward: bool,
        edge_kinds: Sequence[str] | None,
        labels: Sequence[str] | None,
        as_of: str | None,
        limit: int | None = None,
        need_labels: bool = True,  # labels come with the match at no extra cost
    ) -> list[Expansion]:
        if not frontier or (edge_kinds is not None and not edge_kinds):
            return []  # nothing to expand from, or no kind allowed: SQLite's empty IN ()
        if labels is not None and not labels:
            return []
        stmt = cypher.expand(frontier, forward, edge_kinds, labels, as_of, limit)
        rows = self._read(lambda tx: _run(tx, stmt), "expanding a traversal level")
        out: list[Expansion] = []
        for near, far, far_label, *edge in rows[0]["rows"] if rows else ():
            source, target = (near, far) if forward else (far, near)
            out.append((_edge_of(edge, source, target), far, far_label))
        return out

    def _read_series(self, node_id: str, key: str) -> list[SeriesPoint]:
        stmt = cypher.read_series(node_id, key)
        chunks = self._read(lambda tx: _run(tx, stmt), "reading a metric series")
        return merge_chunks(node_id, key, chunks)

    def series_summary(
        self, node_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> dict[str, dict[str, SeriesSummary]]:
        node_ids = [validate_id(i, "node_ids") for i in node_ids]
        result: dict[str, dict[str, SeriesSummary]] = {i: {} for i in node_ids}
        if not node_ids:
            return result
        key_list = None if keys is None else [_series_key(k) for k in keys]
        if key_list is not None and not key_list:
            return result
        stmt = cypher.series_stats(node_ids, key_list)
        rows = self._read(lambda tx: _run(tx, stmt), "summarising metric series")
        for (node_id, key), summary in summarize_chunks(rows).items():
            result[node_id][key] = summary
        return result


__all__ = [
    "ConnectionTarget",
    "Neo4jStore",
    "chunk_stats",
    "merge_chunks",
    "parse_uri",
    "plan_edges",
    "plan_nodes",
    "plan_series",
    "statement_catalog",
    "summarize_chunks",
]
