"""``GraphStore``: the few primitives every backend implements, and what is built on them.

A backend (SQLite, Neo4j) implements the abstract methods; traversal, neighbour look-ups,
series downsampling and input validation are written once here so every backend means the
same thing by them. The contract suite in ``tests/contract`` holds every backend to it.

All methods are synchronous and batch-friendly: training code, the SDK and the CLI are
synchronous, and the GraphQL layer calls a store from a thread pool (short reads and writes
of a local store on its event loop, through :meth:`GraphStore.without_waiting` and
:meth:`GraphStore.transaction_without_waiting`).
"""

from __future__ import annotations

import abc
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any, Protocol

from lineagehub.graph.audit import (
    AuditEntry,
    AuditVerification,
    CheckpointPolicy,
    TreeHead,
    next_head,
    record_key,
    record_state,
    records_field,
    state_digest,
    verify_chain,
)
from lineagehub.graph.errors import NotFoundError, ValidationError
from lineagehub.graph.filters import (
    Expr,
    SortKey,
    decode_cursor,
    encode_cursor,
    keyset_after,
    node_value,
    parse_order,
    parse_where,
)
from lineagehub.graph.model import (
    Adjacent,
    Direction,
    Edge,
    Node,
    Page,
    SeriesPoint,
    SeriesSummary,
    Subgraph,
    TraversedNode,
    encode_props,
    from_iso,
    to_iso,
    utcnow,
    validate_edge_kind,
    validate_id,
    validate_label,
    validate_path,
)

MAX_PAGE = 1000
# Depth is not what makes a walk expensive (nodes and time are, and both have budgets): a
# dataset rebuilt daily from yesterday's is a DERIVED_FROM chain thousands deep, and its
# origin must be reachable. The ceiling only keeps the argument a sane integer.
MAX_DEPTH_CEILING = 1_000_000
MAX_NODES_CEILING = 1_000_000
MAX_SERIES_KEY = 250

# A row from a backend's one-level expansion: the edge, the neighbour's id and its label.
Expansion = tuple[Edge, str, str]


class WouldWait(Exception):
    """A read in :meth:`GraphStore.without_waiting` could be answered only by waiting, a
    write was attempted there, or :meth:`GraphStore.transaction_without_waiting` could not
    begin at once: make the call again where waiting is fine. Never reaches a user (the
    server catches it)."""


_SECRET_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_secret_name(name: str) -> str:
    """``name`` when it may name a store secret (:meth:`GraphStore.secret`)."""
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise ValidationError(f"a secret's name: letters, digits and _, got {name!r:.40}")
    return name


#: Stores open in this process that a forked child must give a fresh start (_after_fork).
_FORKABLE: weakref.WeakSet[GraphStore] = weakref.WeakSet()
#: What a forked child inherited and neither uses nor closes, kept for its whole life (a
#: driver or connection collected there would close the parent's sockets or files).
INHERITED: list[Any] = []


def forks_open(store: GraphStore) -> None:
    """Have ``store`` start afresh in a forked child (a multiprocessing worker, a data loader
    worker): see :meth:`GraphStore._after_fork`."""
    _FORKABLE.add(store)


def _forked() -> None:
    for store in list(_FORKABLE):
        store._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forked)


class GraphStore(abc.ABC):
    """A lineage graph: labelled nodes with JSON properties, typed directed edges with
    provenance (``event_time``, ``ingested_at``, ``asserted_by``), and metric series.

    Open one with :func:`lineagehub.graph.open_store`. Stores are context managers
    (``with open_store(uri) as store:``) and safe to share between threads.
    """

    uri: str = ""

    # --- primitives every backend implements -----------------------------------------------

    @abc.abstractmethod
    def upsert_nodes(self, nodes: Iterable[Node]) -> int:
        """Create or update nodes, idempotent by id, in one transaction.

        Properties merge: mappings merge key by key (recursively), other values (``None``
        and lists included) replace, :data:`~lineagehub.graph.DELETE` removes a key, absent
        keys are kept (:func:`~lineagehub.graph.model.merge_patch`). Changing a node's label is a
        :class:`ConflictError`. Returns the number of nodes written.
        """

    @abc.abstractmethod
    def upsert_edges(self, edges: Iterable[Edge]) -> int:
        """Create or update edges, idempotent by id, in one transaction.

        Both ends must exist (else :class:`NotFoundError` naming the missing ids). On an
        existing edge, properties merge as for nodes; ``ingested_at`` and ``event_time``
        keep their first values; a different source, target or kind is a
        :class:`ConflictError`.
        """

    @abc.abstractmethod
    def get_nodes(self, ids: Sequence[str]) -> list[Node | None]:
        """The nodes with these ids, in input order, ``None`` where there is none."""

    @abc.abstractmethod
    def get_edges(self, ids: Sequence[str]) -> list[Edge | None]:
        """The edges with these ids, in input order, ``None`` where there is none."""

    @abc.abstractmethod
    def delete_nodes(self, ids: Sequence[str]) -> int:
        """Delete nodes with their edges and metric series; returns how many existed."""

    @abc.abstractmethod
    def delete_edges(self, ids: Sequence[str]) -> int:
        """Delete edges; returns how many existed."""

    @abc.abstractmethod
    def count_nodes(self, label: str | None = None, where: Mapping[str, Any] | None = None) -> int:
        """How many nodes (of a label, matching a filter) the store holds."""

    @abc.abstractmethod
    def append_series(self, points: Iterable[SeriesPoint]) -> int:
        """Append metric points (several nodes and keys at once) in one transaction.

        A point at an existing (node, key, step) replaces it. Unknown nodes:
        :class:`NotFoundError`.
        """

    @abc.abstractmethod
    def series_summary(
        self, node_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> dict[str, dict[str, SeriesSummary]]:
        """Per node and key: count, last value (at the highest step), min and max."""

    def last_steps(self, node_id: str, keys: Sequence[str]) -> dict[str, int]:
        """The highest step stored of each of ``keys`` on one node (keys without points left
        out). The default asks :meth:`series_summary`; a backend that would read every point
        for it answers from an index instead."""
        summary = self.series_summary([node_id], keys)[node_id]
        return {k: s.last_step for k, s in summary.items()}

    @abc.abstractmethod
    def append_audit(
        self, actor: str, action: str, target: str, payload: Mapping[str, Any]
    ) -> AuditEntry:
        """Append one entry to the audit chain (:mod:`lineagehub.graph.audit`) and return it.

        The sequence number and previous hash are read inside the write transaction, so
        concurrent writers serialise and the chain stays gap-free. Inside
        ``store.transaction()`` the entry commits or rolls back with the block's other writes.
        ``actor``, ``action`` and ``target`` are non-empty strings of at most 512 characters,
        ``payload`` a JSON object (only its digest is stored); otherwise
        :class:`ValidationError` naming the field.
        """

    @abc.abstractmethod
    def read_audit(
        self, after_seq: int = 0, limit: int = 1000, target: str | None = None
    ) -> list[AuditEntry]:
        """Up to ``limit`` audit entries with ``seq > after_seq`` (of one ``target``), by seq."""

    @abc.abstractmethod
    def audit_head(self) -> AuditEntry | None:
        """The newest audit entry, or ``None`` while the log is empty."""

    @abc.abstractmethod
    def audit_checkpoints(self, after_size: int = -1, limit: int = 1000) -> list[TreeHead]:
        """Up to ``limit`` stored tree heads (:class:`~lineagehub.graph.audit.TreeHead`) with
        ``tree_size > after_size`` (the default ``-1``: from the head of the empty log), by
        size."""

    @abc.abstractmethod
    def secret(self, name: str) -> bytes:
        """32 random bytes kept in the store under ``name`` (letters, digits, ``_``): made by
        the first caller, then the same for every process using the store (the server's
        workers seal listing cursors with one). Never in a node, an export or the audit log."""

    @abc.abstractmethod
    def checkpoint_audit(self) -> TreeHead:
        """Write a tree head at the current end of the log now (signed under the policy's
        key) and return it; the newest head when the log has not grown since."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """``with store.transaction():`` makes every write inside commit or roll back
        together. Nested blocks join the outer one."""

    def integrity_problems(self) -> list[str]:
        """What the backend's own check finds wrong with the stored data (SQLite's
        ``quick_check``: a damaged page, an index out of step); empty when it finds nothing
        or has no such check."""
        return []

    def without_waiting(self) -> AbstractContextManager[None]:
        """``with store.without_waiting():`` reads made in the block by this thread answer
        at once or raise :class:`WouldWait`; a write raises it too. The server answers short
        reads this way on its event loop, where a wait (a lock, a busy database, the
        network) would hold every other request, and makes the read again in a worker
        thread on :class:`WouldWait`. The default: :class:`WouldWait` at once (a remote
        store waits on the network); a local store answers when it can."""
        raise WouldWait(f"{type(self).__name__} reads over the network")

    def transaction_without_waiting(self) -> AbstractContextManager[None]:
        """``with store.transaction_without_waiting():`` a :meth:`transaction` whose beginning
        does not wait: it raises :class:`WouldWait` before anything is written when the
        store would first have to wait (for another writer's lock, the network), and is
        otherwise the thread's transaction, where nothing waits. The server makes a short
        write on its event loop this way and, on :class:`WouldWait`, in a worker thread.
        Inside this thread's own transaction the block joins it. The default:
        :class:`WouldWait` at once (a remote store waits on the network)."""
        raise WouldWait(f"{type(self).__name__} writes over the network")

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    def _after_fork(self) -> None:
        """In a forked child, before anything runs there: let go of the parent's connections
        (never used, never closed: a database connection is not shared across a fork, and
        closing one in the child can disturb the parent's) so the child opens its own. Called
        for stores that :func:`forks_open` was told of; a store holding no connection of its
        own needs nothing."""
        return

    @abc.abstractmethod
    def _find(
        self, label: str | None, expr: Expr, order: Sequence[SortKey], limit: int
    ) -> list[Node]:
        """Up to ``limit`` nodes matching ``expr``, sorted by ``order`` (nulls last)."""

    @abc.abstractmethod
    def _count(self, label: str | None, expr: Expr) -> int: ...

    @abc.abstractmethod
    def _values(
        self, label: str, expr: Expr, order: Sequence[SortKey], path: tuple[str, ...]
    ) -> list[Any]:
        """The value at ``path`` of every node matching ``expr``, sorted by ``order``."""

    @abc.abstractmethod
    def _read_series(self, node_id: str, key: str) -> list[SeriesPoint]:
        """Every point of one series, ordered by step."""

    @abc.abstractmethod
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
        """One traversal level in one query: the edges leaving ``frontier`` (``forward``:
        frontier is the source) or entering it, whose other end has one of ``labels``; with
        ``as_of``, only edges ingested and nodes created by then. With ``need_labels=False``
        (and no ``labels`` or ``as_of``) a backend may leave the neighbour's label empty,
        when reading it costs a join."""

    # --- built on the primitives ------------------------------------------------------------

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def get_node(self, node_id: str) -> Node:
        """The node with this id, or :class:`NotFoundError`."""
        node = self.get_nodes([node_id])[0]
        if node is None:
            raise NotFoundError(f"no node with id {node_id!r}", ids=[node_id])
        return node

    def find_nodes(
        self,
        label: str | None = None,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Nodes of a label matching a filter, ordered, one page at a time.

        ``where`` and ``order_by`` are described in :mod:`lineagehub.graph.filters`. Pass the
        returned page's ``next_cursor`` as ``after`` for the next page; it is ``None`` on the
        last page. Cursors are keyset cursors: stable while nodes are added.
        """
        if label is not None:
            validate_label(label)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        expr = parse_where(where)
        order = parse_order(order_by)
        if after is not None:
            from lineagehub.graph.filters import And

            expr = And((expr, keyset_after(order, decode_cursor(after, order))))
        rows = self._find(label, expr, order, limit + 1)
        items = rows[:limit]
        cursor = None
        if len(rows) > limit:
            last = items[-1]
            cursor = encode_cursor([node_value(last, k.path) for k in order])
        return Page(items=items, next_cursor=cursor)

    def iter_nodes(
        self,
        label: str | None = None,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        page_size: int = 500,
    ) -> Iterator[Node]:
        """Every matching node, fetched a page at a time."""
        after = None
        while True:
            page = self.find_nodes(label, where, order_by, after, page_size)
            yield from page.items
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def node_values(
        self,
        label: str,
        field: str,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
    ) -> list[Any]:
        """One scalar property of every matching node, in order (``None`` where a node has
        none): a projection, so no node is decoded. For short answers such as the version
        numbers in a stage; ``where`` and ``order_by`` as for :meth:`find_nodes`."""
        validate_label(label)
        path = validate_path(field, "field")
        return self._values(label, parse_where(where), parse_order(order_by), path)

    def neighbors(
        self,
        ids: Sequence[str],
        direction: Direction | str = Direction.BOTH,
        edge_kinds: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
    ) -> dict[str, list[Adjacent]]:
        """The nodes one edge away from each of ``ids`` (batched: one query per direction).

        UPSTREAM follows edges forward, DOWNSTREAM backward. Returns a list per input id
        (empty when it has none), in a stable order (edge kind, then neighbour id).
        """
        direction = _direction(direction)
        ids = [validate_id(i, "ids") for i in ids]
        kinds = _kinds(edge_kinds)
        labels_ = _labels(labels)
        result: dict[str, list[Adjacent]] = {i: [] for i in ids}
        if not ids:
            return result
        found: list[tuple[str, Edge, str, Direction]] = []
        with self._reading():
            for d in _directions(direction):
                forward = d is Direction.UPSTREAM
                for edge, other, _label in self._expand(
                    ids, forward, kinds, labels_, None, need_labels=False
                ):
                    origin = edge.source if forward else edge.target
                    found.append((origin, edge, other, d))
            others = list(dict.fromkeys(o for _, _, o, _ in found))
            nodes = dict(zip(others, self.get_nodes(others)))
        for origin, edge, other, d in sorted(found, key=lambda f: (f[1].kind, f[2], f[1].id)):
            node = nodes.get(other)
            if node is not None and origin in result:
                result[origin].append(Adjacent(edge=edge, node=node, direction=d))
        return result

    def traverse(
        self,
        start_ids: Sequence[str] | str,
        direction: Direction | str = Direction.UPSTREAM,
        max_depth: int = 3,
        *,
        upstream_depth: int | None = None,
        downstream_depth: int | None = None,
        edge_kinds: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        stop_at: Sequence[str] | None = None,
        pass_through: Sequence[str] | None = None,
        causal: Sequence[str] | None = None,
        max_nodes: int = 5000,
        timeout: float | None = None,
        as_of: datetime | None = None,
    ) -> Subgraph:
        """Walk the graph from several start nodes, level by level.

        Each level is one query over the whole frontier (never an enumeration of paths,
        which explodes on fan-in). UPSTREAM follows edges forward (towards what a thing came
        from), DOWNSTREAM backward, BOTH does each from the start nodes. ``edge_kinds``
        limits which edges are followed, ``labels`` which nodes may be entered (start nodes
        are always included). Every returned node carries its distance and the node it was
        first reached from; cycles are safe.

        ``upstream_depth`` and ``downstream_depth`` bound each direction separately (each
        defaults to ``max_depth``). Nodes of a ``stop_at`` label are returned but not
        expanded (start nodes always are). Nodes of a ``pass_through`` label are traversed
        without counting as a hop: such a node gets the distance of the node it was reached
        from and is expanded within the same level, so ``pass_through=["Run"]`` counts only
        data-to-data hops (still one query per expansion round over the whole set).

        ``causal`` names edge kinds that are followed only in time order with the edge the
        walk arrived by (see :mod:`lineagehub.graph.traverse`): upstream, such an edge is
        followed only if it happened no later than the edge that reached its source;
        downstream, after arriving through such an edge, only edges no earlier than it are
        followed. With ``causal=["GENERATED_BY"]`` a dataset version that a later run
        regenerated byte for byte does not put that run in the past of an earlier use.

        Budgets: the depths (levels), ``max_nodes`` nodes, ``timeout`` seconds. When one
        stops the walk early, ``truncated`` is true and ``truncation_reason`` says which;
        reaching a depth with more to explore beyond counts as truncation (``MAX_DEPTH``).
        ``as_of`` answers as the store knew the graph then (edges ingested, nodes created).
        Invalid arguments raise :class:`ValidationError` naming the field.
        """
        from lineagehub.graph.traverse import walk

        if isinstance(start_ids, str):
            start_ids = [start_ids]
        if not isinstance(max_depth, int) or not 0 <= max_depth <= MAX_DEPTH_CEILING:
            raise ValidationError(
                f"max_depth must be between 0 and {MAX_DEPTH_CEILING}", field="max_depth"
            )
        if not isinstance(max_nodes, int) or not 1 <= max_nodes <= MAX_NODES_CEILING:
            raise ValidationError(
                f"max_nodes must be between 1 and {MAX_NODES_CEILING}", field="max_nodes"
            )
        if timeout is not None and not timeout > 0:
            raise ValidationError("timeout must be a positive number of seconds", field="timeout")
        ids = [validate_id(i, "start_ids") for i in start_ids]
        with self._reading():
            return walk(
                self,
                ids,
                _direction(direction),
                max_depth,
                _kinds(edge_kinds),
                _labels(labels),
                max_nodes,
                None if timeout is None else time.monotonic() + timeout,
                None if as_of is None else to_iso(as_of, "as_of"),
                upstream_depth=upstream_depth,
                downstream_depth=downstream_depth,
                stop_at=stop_at,
                pass_through=pass_through,
                causal=causal,
            )

    def _reading(self) -> AbstractContextManager[None]:
        """The reads of one operation (a traversal) in one read transaction, where the
        backend gains by it (one consistent view, fewer round trips); else nothing."""
        return nullcontext()

    def read_series(
        self, node_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        """One metric series, ordered by step; with ``max_points``, downsampled so that the
        first and last points and each bucket's minimum and maximum are kept."""
        validate_id(node_id, "node_id")
        _series_key(key)
        if max_points is not None and (not isinstance(max_points, int) or max_points < 2):
            raise ValidationError("max_points must be at least 2", field="max_points")
        points = self._read_series(node_id, key)
        if max_points is None or len(points) <= max_points:
            return points
        return downsample(points, max_points)

    # --- audit checkpoints and record digests (shared by backends) ------------------------------

    # Heads are the hub's (lineagehub.open_store configures them from the settings); a store
    # opened on its own writes them only when asked (checkpoint_audit).
    audit_policy: CheckpointPolicy = CheckpointPolicy(every=None)
    _checkpoint_state: tuple[int, float | None] | None = None

    def configure_audit(self, policy: CheckpointPolicy) -> None:
        """Set when tree heads are written, the key that signs them and where they are
        copied (:class:`~lineagehub.graph.audit.CheckpointPolicy`; the default: unsigned,
        only when :meth:`checkpoint_audit` is called)."""
        self.audit_policy = policy
        self._checkpoint_state = None

    def iter_checkpoints(self) -> Iterator[TreeHead]:
        after = -1
        while True:
            page = self.audit_checkpoints(after, MAX_PAGE)
            yield from page
            if len(page) < MAX_PAGE:
                return
            after = page[-1].tree_size

    def _touch(self, kind: str, ids: Iterable[str]) -> None:
        """Note records written inside the open transaction: the next audit entry appended
        in it carries their digests. Writes outside a transaction are not noted (their
        entry, if any, is a separate transaction that cannot see them atomically). A noted
        record's state is read back when the entry is appended, unless the write reported
        it (:meth:`_written`)."""
        state: Any = getattr(self, "_local", None)
        if state is None or not getattr(state, "depth", 0):
            return
        touched = getattr(state, "touched", None)
        if touched is None:
            touched = state.touched = {}
        for i in ids:
            touched[(kind, i)] = _READ_BACK

    def _noting(self) -> bool:
        """Whether writes are being noted for an audit entry (inside a transaction)."""
        state: Any = getattr(self, "_local", None)
        return bool(getattr(state, "depth", 0)) if state is not None else False

    def _written(self, kind: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """The rows a write has just stored, as the store now holds them (``(id, ...)``, as
        the backend's :meth:`_row_state` reads them): the next audit entry digests these
        instead of reading the records back, and decodes them only then. Called only once
        the write succeeded; not for a write that stored one id twice."""
        state: Any = getattr(self, "_local", None)
        touched = getattr(state, "touched", None) if state is not None else None
        if not touched:
            return
        for row in rows:
            if (kind, row[0]) in touched:
                touched[(kind, row[0])] = row

    def _row_state(self, kind: str, row: tuple[Any, ...]) -> dict[str, Any]:
        """The :func:`~lineagehub.graph.audit.record_state` of a row given to :meth:`_written`
        (only backends that call it implement it)."""
        raise NotImplementedError

    def _take_records(self) -> str:
        """The ``records`` text for the entry being appended: the current state of every
        record noted since the last entry of this transaction."""
        state: Any = getattr(self, "_local", None)
        touched = getattr(state, "touched", None) if state is not None else None
        if not touched:
            return ""
        state.touched = None
        node_ids = [i for (k, i), v in touched.items() if k == "node" and v is _READ_BACK]
        edge_ids = [i for (k, i), v in touched.items() if k == "edge" and v is _READ_BACK]
        read: dict[tuple[str, str], dict[str, Any] | None] = {}
        for i, n in zip(node_ids, self.get_nodes(node_ids) if node_ids else [], strict=True):
            read[("node", i)] = None if n is None else record_state(n)
        for i, e in zip(edge_ids, self.get_edges(edge_ids) if edge_ids else [], strict=True):
            read[("edge", i)] = None if e is None else record_state(e)
        records: dict[str, Any] = {}
        for key, noted in touched.items():
            current = read[key] if noted is _READ_BACK else self._row_state(key[0], noted)
            records[record_key(*key)] = None if current is None else state_digest(current)
        return records_field(records)

    def _maybe_checkpoint(
        self,
        seq: int,
        load_last: Callable[[], TreeHead | None],
        load_after: Callable[[int], Iterable[AuditEntry]],
        insert: Callable[[TreeHead], None],
        force: bool = False,
    ) -> TreeHead | None:
        """Inside an append's write transaction: write a tree head when the policy says one is
        due (decided from an in-memory note of the last head; re-checked against the stored
        one before writing, as another process may have written it). One extra read and one
        extra write per head, none per entry."""
        policy = self.audit_policy
        now = time.time()
        if not force and not self._checkpoint_due(seq, load_last, now):
            return None
        last = load_last()
        stale = last is not None and (
            last.tree_size >= seq
            or (not force and not policy.due(seq, last.tree_size, _epoch(last.time), now))
        )
        if last is not None and stale:
            self._checkpoint_state = (last.tree_size, _epoch(last.time))
            return last if force else None
        entries = load_after(last.tree_size if last is not None else 0)
        head = next_head(last, entries, to_iso(utcnow()), policy.key, policy.signer)
        insert(head)
        self._checkpoint_state = (head.tree_size, now)
        return head

    def _checkpoint_due(
        self, seq: int, load_last: Callable[[], TreeHead | None], now: float | None = None
    ) -> bool:
        """Whether the policy wants a tree head after entry ``seq``, from the in-memory note
        of the last head (read once, with ``load_last``): what :meth:`_maybe_checkpoint`
        decides before it writes, so a backend can know beforehand that an append will be
        one statement."""
        if self._checkpoint_state is None:
            last = load_last()
            self._checkpoint_state = (
                (last.tree_size, _epoch(last.time)) if last is not None else (0, None)
            )
        size, stamp = self._checkpoint_state
        return self.audit_policy.due(seq, size, stamp, time.time() if now is None else now)

    def _published(self, head: TreeHead | None) -> None:
        """Hand a new head to the policy's ``on_checkpoint`` once it is committed: now, or
        when the open transaction commits (never if it rolls back)."""
        hook = self.audit_policy.on_checkpoint
        if head is None or hook is None:
            return
        self.after_commit(lambda: hook(head))

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what this thread wrote is committed: now outside a transaction,
        when the outermost block commits inside one (never if it rolls back). For caches of
        what is known to be stored, which a rolled-back write must not fill."""
        state: Any = getattr(self, "_local", None)
        pending = getattr(state, "after_commit", None) if state is not None else None
        depth: int = getattr(state, "depth", 0) if state is not None else 0
        if pending is not None and depth:
            pending.append(fn)
            return
        fn()

    def iter_audit(self, page_size: int = MAX_PAGE) -> Iterator[AuditEntry]:
        """Every audit entry in seq order, fetched a page at a time."""
        after = 0
        while True:
            page = self.read_audit(after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].seq

    def verify_audit(self) -> AuditVerification:
        """Check the whole audit chain (:func:`~lineagehub.graph.audit.verify_chain`)."""
        return verify_chain(self.iter_audit())

    # --- input checks shared by backends ------------------------------------------------------

    @staticmethod
    def _audit_query(after_seq: Any, limit: Any, target: Any) -> None:
        from lineagehub.graph.audit import validate_name

        if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
            raise ValidationError("after_seq must be a non-negative integer", field="after_seq")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if target is not None:
            validate_name(target, "target")

    @staticmethod
    def _prepare_nodes(nodes: Iterable[Node]) -> list[tuple[str, str, str]]:
        rows = []
        labels: set[str] = set()  # a batch holds few labels: each is checked once
        for node in nodes:
            if not isinstance(node, Node):
                raise ValidationError(f"expected a Node, got {type(node).__name__}", field="nodes")
            node_id, label = node.id, node.label
            validate_id(node_id)
            if type(label) is not str or label not in labels:
                labels.add(validate_label(label))
            rows.append((node_id, label, encode_props(node.props, f"node {node_id!r}")))
        return rows

    @staticmethod
    def _prepare_edges(edges: Iterable[Edge], now: str) -> list[tuple[Any, ...]]:
        """(id, kind, source, target, props, event_time, ingested_at, asserted_by) rows."""
        rows = []
        # A batch's ends, kinds, asserters and times repeat (a run's inputs, a popular
        # dataset, one time per event): each distinct value is checked once per call. Only
        # exact str and UTC datetimes are remembered (hashable, and equal means the same text).
        checked: set[str] = set()
        kinds: set[str] = set()
        times: dict[datetime, str] = {}
        for edge in edges:
            if not isinstance(edge, Edge):
                raise ValidationError(f"expected an Edge, got {type(edge).__name__}", field="edges")
            edge_id, kind, source, target = edge.id, edge.kind, edge.source, edge.target
            validate_id(edge_id, "edge.id")
            if type(source) is not str or source not in checked:
                checked.add(validate_id(source, "edge.source"))
            if type(target) is not str or target not in checked:
                checked.add(validate_id(target, "edge.target"))
            if type(kind) is not str or kind not in kinds:
                kinds.add(validate_edge_kind(kind))
            by = edge.asserted_by
            if by is not None and (type(by) is not str or by not in checked):
                checked.add(validate_id(by, "edge.asserted_by"))
            given = edge.props
            props = (
                "{}"
                if type(given) is dict and not given
                else encode_props(given, f"edge {edge_id!r}")
            )
            when = edge.event_time
            if when is None:
                event = now
            elif type(when) is datetime and when.tzinfo is timezone.utc:
                event = times.get(when) or times.setdefault(when, to_iso(when, "edge.event_time"))
            else:
                event = to_iso(when, "edge.event_time")
            rows.append((edge_id, kind, source, target, props, event, now, by))
        return rows

    @staticmethod
    def _prepare_points(points: Iterable[SeriesPoint], now: str) -> list[tuple[Any, ...]]:
        """(node_id, key, step, timestamp, value) rows."""
        rows = []
        checked: set[tuple[str, str]] = set()  # few (node, key) pairs, many points
        last_dt: datetime | None = None
        last_ts = now
        for p in points:
            if not isinstance(p, SeriesPoint):
                raise ValidationError(
                    f"expected a SeriesPoint, got {type(p).__name__}", field="points"
                )
            if (p.node_id, p.key) not in checked:
                validate_id(p.node_id, "node_id")
                _series_key(p.key)
                checked.add((p.node_id, p.key))
            if not isinstance(p.step, int) or isinstance(p.step, bool):
                raise ValidationError(f"{p.key}: step must be an integer", field="step")
            if isinstance(p.value, bool) or not isinstance(p.value, (int, float)):
                raise ValidationError(
                    f"{p.key}: metric value must be a number, got {type(p.value).__name__}",
                    field=p.key,
                )
            if p.timestamp is None:
                ts = now
            elif p.timestamp is not last_dt:  # points logged together share one timestamp
                last_dt, last_ts = p.timestamp, to_iso(p.timestamp, "timestamp")
                ts = last_ts
            else:
                ts = last_ts
            rows.append((p.node_id, p.key, p.step, ts, float(p.value)))
        return rows


def downsample(points: Sequence[SeriesPoint], max_points: int) -> list[SeriesPoint]:
    """Keep the first and last points and, per bucket of steps, the minimum and maximum:
    a downsampled curve keeps its spikes, unlike averaging or striding."""
    import math

    inner = points[1:-1]
    buckets = max(1, (max_points - 2) // 2)
    size = math.ceil(len(inner) / buckets)
    kept: list[SeriesPoint] = [points[0]]
    for start in range(0, len(inner), size):
        bucket = inner[start : start + size]
        # NaN compares false both ways; rank it as the lowest so it stays visible.
        lo = min(bucket, key=lambda p: (not math.isnan(p.value), p.value))
        hi = max(bucket, key=lambda p: (not math.isnan(p.value), p.value))
        kept.extend(sorted({id(lo): lo, id(hi): hi}.values(), key=lambda p: p.step))
    kept.append(points[-1])
    return kept[:max_points]


def _series_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_SERIES_KEY or "\x00" in key:
        raise ValidationError(
            f"metric key must be a non-empty string of at most {MAX_SERIES_KEY} characters, "
            f"got {key!r}",
            field="key",
        )
    return key


def _direction(direction: Direction | str) -> Direction:
    try:
        return Direction(direction)
    except ValueError:
        raise ValidationError(
            f"direction must be one of {[d.value for d in Direction]}, got {direction!r}",
            field="direction",
        ) from None


class _Nesting(Protocol):
    """Per-thread transaction state (a ``threading.local``): how deep the open blocks are."""

    depth: int
    touched: dict[tuple[str, str], None] | None
    after_commit: list[Callable[[], None]] | None
    audit_head: AuditEntry | None


@contextmanager
def nested_transaction(
    state: _Nesting, outermost: Callable[[], AbstractContextManager[None]]
) -> Iterator[None]:
    """The nesting rule of every ``transaction()`` here: on a thread, the outermost block runs
    ``outermost()`` (which begins, and commits on a normal exit or rolls back on an error);
    blocks inside it only join, so the whole commits or rolls back together. An error caught
    inside the outer block does not undo what the inner one wrote.

    ``state.depth`` is the thread's count of open blocks; it is back to 0 before the
    outermost block commits or rolls back, so code run by that commit starts afresh.
    ``state.after_commit`` collects what to run once the outermost block has committed.
    """
    if state.depth:
        state.depth += 1
        try:
            yield
        finally:
            state.depth -= 1
        return
    committed: list[Callable[[], None]] = []
    with outermost():
        state.depth = 1
        state.touched = None  # records noted for the next audit entry (GraphStore._touch)
        state.after_commit = committed
        state.audit_head = None  # the entry this transaction appended last, if a backend notes it
        try:
            yield
        finally:
            state.depth = 0
            state.touched = None
            state.after_commit = None
            state.audit_head = None
    for hook in committed:  # only once the block has committed
        hook()


_READ_BACK: Any = object()  # a noted record whose state the audit entry reads back


def _epoch(text: str) -> float | None:
    try:
        dt = from_iso(text)
    except (TypeError, ValueError):
        return None
    return dt.timestamp() if dt is not None else None


def _directions(direction: Direction) -> tuple[Direction, ...]:
    if direction is Direction.BOTH:
        return (Direction.UPSTREAM, Direction.DOWNSTREAM)
    return (direction,)


def _kinds(kinds: Sequence[str] | None) -> list[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    return [validate_edge_kind(k, "edge_kinds") for k in kinds]


def _labels(labels: Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    return [validate_label(x, "labels") for x in labels]


__all__ = [
    "Expansion",
    "GraphStore",
    "TraversedNode",
    "WouldWait",
    "downsample",
    "nested_transaction",
]
