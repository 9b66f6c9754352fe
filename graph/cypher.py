"""Every Cypher statement the Neo4j backend can send, built by functions that need no server.

The backend (:mod:`lineagehub.graph.neo4j`) runs only :class:`Statement` objects made here, so
:func:`statement_catalog` can list every statement *shape* with example parameters, and the test
suite runs them all through Neo4j's own Cypher front end (``tests/test_cypher_lint.py``) where
no server can run.

Values always travel as parameters, but for one kind: a text compared by order (``<``,
``>``...) that holds a character from U+D800 on is written into the statement as a literal
(:func:`text_literal`: its backslashes and quotes escaped): Neo4j compares a text parameter by
UTF-16 code units, yet a literal, as ORDER BY sorts and SQLite compares, by code points.
Labels, relationship types and property keys cannot be
parameters in Neo4j 5, so the few that go into the text pass :func:`ident`, which checks them
against the strict patterns of :mod:`lineagehub.graph.model` *again*, right where the text is
built, and backtick-quotes them: a key such as ``x}) DETACH DELETE n //`` is a
:class:`~lineagehub.graph.errors.ValidationError` and never reaches a server.

The data model::

    (:Node:<Label> {id, _label, _props, _created_at, _updated_at, <flattened>...})
      -[:<KIND> {id, _props, _event_time, _ingested_at, _asserted_by, <flattened>...}]->
    (:SeriesChunk {node_id, key, seq, steps, ts, vals, n_points, min_step, max_step,
                   min_value, max_value, min_ts, max_ts, last_value})

``_props`` is the JSON text of the whole property document and the only source of truth for
reads. The flattened properties are native copies of every value at a dotted path whose
segments match the path pattern (``metrics.auc`` is ``n.`metrics.auc```), so filters and
orderings run over native, indexable properties. A nested mapping or a list is flattened as
its compact JSON text: that is what SQLite's ``json_extract`` yields for it, so ``$exists``,
``$eq`` and ordering mean the same thing in both backends. Edge system fields carry a leading
underscore so that user properties named ``event_time`` cannot collide with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lineagehub.graph.errors import ValidationError
from lineagehub.graph.filters import (
    FALSE,
    TRUE,
    And,
    Cmp,
    Expr,
    IsNull,
    Not,
    Or,
    SortKey,
    decode_cursor,
    encode_cursor,
    keyset_after,
    parse_order,
    parse_where,
)
from lineagehub.graph.model import (
    EDGE_KIND_RE,
    LABEL_RE,
    PATH_SEGMENT_RE,
    PROPERTY_KEY_RE,
    RESERVED_KEYS,
    SYSTEM_FIELDS,
    validate_edge_kind,
    validate_label,
    validate_path,
)

NODE_LABEL = "Node"
CHUNK_LABEL = "SeriesChunk"
# Points per series chunk. Appends ship only the new points (the server concatenates), and a
# chunk is rewritten whole only when a point replaces an existing step; 512 keeps that rare
# rewrite small while a million-point series is still only ~2000 chunks.
CHUNK_POINTS = 512
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The tag that ends every statement: it names the statement's shape, so server query logs
# (and the test suite's fake driver) can tell which builder made a query.
TAG = "lineagehub:"

# System properties of nodes, relationships and series chunks (the store's own names).
NODE_SYSTEM_PROPS = ("id", "_label", "_props", "_created_at", "_updated_at")
EDGE_SYSTEM_PROPS = ("id", "_props", "_event_time", "_ingested_at", "_asserted_by")
CHUNK_PROPS = (
    "node_id",
    "key",
    "seq",
    "steps",
    "ts",
    "vals",
    "n_points",
    "min_step",
    "max_step",
    "min_value",
    "max_value",
    "min_ts",
    "max_ts",
    "last_value",
)
LOCK_PROP = "_lock"
# The audit log: one node per entry, and a singleton head node writers lock to serialise.
AUDIT_LABEL = "AuditEntry"
AUDIT_HEAD_LABEL = "AuditHead"
AUDIT_HEAD_NAME = "audit"
AUDIT_PROPS = (
    "seq",
    "time",
    "actor",
    "action",
    "target",
    "payload_digest",
    "prev_hash",
    "hash",
    "records",
)
AUDIT_HEAD_PROPS = ("name",)
CHECKPOINT_LABEL = "AuditCheckpoint"
SECRET_LABEL = "StoreSecret"
CHECKPOINT_PROPS = ("tree_size", "root_hash", "head_hash", "time", "mac", "frontier", "signature")
PROPERTY_KEYS = tuple(
    dict.fromkeys(
        (
            *NODE_SYSTEM_PROPS,
            *EDGE_SYSTEM_PROPS,
            *CHUNK_PROPS,
            LOCK_PROP,
            *AUDIT_PROPS,
            *AUDIT_HEAD_PROPS,
            *CHECKPOINT_PROPS,
        )
    )
)

# Filter paths that name the store's own node properties rather than flattened ones.
_SYSTEM_COLUMNS = {f: f for f in ("id", "_label", "_created_at", "_updated_at")}
_OPS = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_INDEX_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class Statement:
    """One Cypher statement: its shape's name, its text, its parameters."""

    name: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)


def _statement(name: str, lines: Sequence[str], **params: Any) -> Statement:
    return Statement(name, "\n".join([*lines, f"// {TAG}{name}"]), params)


# --- identifiers ----------------------------------------------------------------------------

IdentKind = Literal["label", "type", "property", "index"]


def ident(name: str, kind: IdentKind) -> str:
    """Validate an identifier for the Cypher text and return it backtick-quoted.

    ``kind`` picks the pattern: a node ``label``, a relationship ``type`` (edge kind), a
    ``property`` path (dotted, as flattened), or an ``index`` name. The patterns admit no
    backtick, quote, brace, space or newline, so nothing can close the quoting; this is the
    second check (the first is on input), kept here so no code path can skip it.
    """
    if kind == "label":
        validate_label(name)
        ok = LABEL_RE.match(name) is not None
    elif kind == "type":
        validate_edge_kind(name)
        ok = EDGE_KIND_RE.match(name) is not None
    elif kind == "property":
        if not isinstance(name, str) or name in SYSTEM_FIELDS:
            raise ValidationError(f"not a property path: {name!r}", field="where")
        validate_path(name)
        ok = True
    elif kind == "index":
        ok = isinstance(name, str) and _INDEX_NAME_RE.match(name) is not None
        if not ok:
            raise ValidationError(f"invalid index name {name!r}", field="index")
    else:  # pragma: no cover - Literal guards this
        raise ValueError(kind)
    if not ok or "`" in name:  # pragma: no cover - the validators above already refuse
        raise ValidationError(f"invalid identifier {name!r}", field=kind)
    return f"`{name}`"


def _path_name(path: Sequence[str]) -> str:
    return ".".join(path)


# --- flattening ---------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """Compact JSON, as :func:`lineagehub.graph.model.encode_props` writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def native(value: Any) -> Any:
    """A JSON scalar as Neo4j can store it: integers beyond 64 bits become floats (as SQLite's
    ``json_extract`` makes them REAL), so the driver never fails to pack one."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (INT64_MIN <= value <= INT64_MAX)
    ):
        return float(value)
    return value


def flatten(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The native copies of a property document, keyed by dotted path.

    Scalars are copied as they are; nested mappings and lists as their compact JSON text
    (SQLite's ``json_extract`` answers the same for them), and mappings are also descended
    into. Keys that a filter path could not name (not matching the path pattern) are skipped
    with everything below them: a key ``"a.b"`` would otherwise pose as the path ``a`` → ``b``.
    Nulls are skipped: a missing property is null to Cypher.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str | None, mapping: Mapping[str, Any], depth: int) -> None:
        for key, value in mapping.items():
            if not isinstance(key, str):
                continue
            if prefix is None:
                if not PROPERTY_KEY_RE.match(key) or key in RESERVED_KEYS:
                    continue
                name = key
            else:
                if not PATH_SEGMENT_RE.match(key):
                    continue
                name = f"{prefix}.{key}"
            if value is None:
                continue
            if isinstance(value, Mapping):
                out[name] = to_json(value)
                if depth < 64:
                    walk(name, value, depth + 1)
            elif isinstance(value, (list, tuple)):
                out[name] = to_json(value)
            else:
                out[name] = native(value)

    walk(None, doc, 0)
    return out


def node_record(
    node_id: str, label: str, props: Mapping[str, Any], created_at: str, updated_at: str
) -> dict[str, Any]:
    """Every property of a node as stored (an update writes the difference between two of
    these, so flattened copies of removed keys disappear with them)."""
    record = flatten(props)
    record.update(
        id=node_id,
        _label=label,
        _props=to_json(props),
        _created_at=created_at,
        _updated_at=updated_at,
    )
    return record


def edge_record(
    edge_id: str,
    props: Mapping[str, Any],
    event_time: str,
    ingested_at: str,
    asserted_by: str | None,
) -> dict[str, Any]:
    """Every property of a relationship as stored (see :func:`node_record`)."""
    record = flatten(props)
    record.update(
        id=edge_id, _props=to_json(props), _event_time=event_time, _ingested_at=ingested_at
    )
    if asserted_by is not None:
        record["_asserted_by"] = asserted_by
    return record


# --- filters and orderings ------------------------------------------------------------------


class FilterRenderer:
    """Renders a :mod:`lineagehub.graph.filters` tree to a Cypher predicate over ``var``.

    Mirrors the SQLite backend: a comparison with a missing property is null and so matches
    nothing; ``$not`` of a null is false (``NOT coalesce(x, true)``, SQLite's
    ``NOT IFNULL(x, 1)``); ``x NOT IN []`` is true even for a missing ``x`` in both.
    """

    def __init__(self, var: str = "n", prefix: str = "p") -> None:
        self.var = var
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def ordered(self, value: Any) -> str:
        """A value an order comparison is made with: a parameter, or the literal of a text
        that holds a character from U+D800 on. Neo4j compares a text parameter by UTF-16 code
        units (U+1F600 before U+FF21) and a literal by code points, as ORDER BY sorts (U+FF21
        first): a page of a listing ordered by name ending on a fullwidth letter skipped every
        name with an emoji after it."""
        if isinstance(value, str) and any(c >= "\ud800" for c in value):
            return text_literal(value)
        return self.param(native(value))

    def column(self, path: tuple[str, ...]) -> str:
        if len(path) == 1 and path[0] in _SYSTEM_COLUMNS:
            return f"{self.var}.{_SYSTEM_COLUMNS[path[0]]}"
        return f"{self.var}.{ident(_path_name(path), 'property')}"

    def render(self, expr: Expr) -> str:
        if isinstance(expr, Cmp):
            col = self.column(expr.path)
            if expr.op in ("in", "nin"):
                values = self.param([native(v) for v in expr.value])
                return f"{col} IN {values}" if expr.op == "in" else f"NOT ({col} IN {values})"
            if expr.op == "contains":  # in text (lists and mappings are kept as JSON text)
                text = self.param(expr.value)
                return f"({col} IS :: STRING AND toLower({col}) CONTAINS {text})"
            if expr.op not in _OPS:
                raise ValidationError(f"unknown operator {expr.op!r}", field="where")
            value = expr.value
            if isinstance(value, (Mapping, list, tuple)):
                # Only keyset cursors carry containers (the value a page ended on); the
                # flattened copy of a container is its JSON text, so compare with that.
                value = to_json(value)
            operand = self.param(native(value)) if expr.op in ("eq", "ne") else self.ordered(value)
            compared = f"{col} {_OPS[expr.op]} {operand}"
            if expr.keyset and expr.op in ("gt", "lt"):
                # ORDER BY sorts texts, then booleans, then numbers, but a comparison of two
                # of them is null: after a text come the booleans and numbers too (a page
                # ending on "sqrt" dropped every 0.5 after it)
                rank = _TYPE_RANK.index(_type_of(value))
                later = _TYPE_RANK[rank + 1 :] if expr.op == "gt" else _TYPE_RANK[:rank]
                if later:
                    compared = f"({compared} OR {col} IS :: {' | '.join(later)})"
            return compared
        if isinstance(expr, IsNull):
            return f"{self.column(expr.path)} IS {'NOT ' if expr.negate else ''}NULL"
        if isinstance(expr, And):
            if not expr.items:
                return "true"
            return "(" + " AND ".join(self.render(e) for e in expr.items) + ")"
        if isinstance(expr, Or):
            if not expr.items:
                return "false"
            return "(" + " OR ".join(self.render(e) for e in expr.items) + ")"
        if isinstance(expr, Not):
            return f"NOT coalesce({self.render(expr.item)}, true)"
        raise ValidationError(f"not a filter expression: {expr!r}", field="where")


def text_literal(text: str) -> str:
    """A Cypher string literal of ``text``: its characters as they are, but for a backslash
    and a quote, escaped with a backslash. Neo4j reads ``\\uXXXX`` before it reads literals (as
    Java does: ``\\u0027`` would close the quote); a backslash of ours is always doubled, so
    none can start one."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: The kinds of stored values, in the order Cypher's ORDER BY puts them (ascending).
_TYPE_RANK = ("STRING", "BOOLEAN", "INTEGER | FLOAT")


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "INTEGER | FLOAT"
    return "STRING"


def order_clause(order: Sequence[SortKey], var: str = "n") -> str:
    """``ORDER BY`` items with nulls last in both directions (Cypher puts them first when
    descending), as the SQLite backend's ``(col IS NULL), col``."""
    renderer = FilterRenderer(var)
    items: list[str] = []
    for key in order:
        col = renderer.column(key.path)
        if not (len(key.path) == 1 and key.path[0] in _SYSTEM_COLUMNS):
            items.append(f"{col} IS NULL")  # system fields are never null
        items.append(f"{col} DESC" if key.descending else col)
    return ", ".join(items)


# Nodes come back as one row holding a list per node (id, label, props, created_at,
# updated_at), in the order of the rows before it: one message instead of one per node.
_NODE_RETURN = "RETURN collect([n.id, n._label, n._props, n._created_at, n._updated_at]) AS rows"
_EDGE_COLUMNS = (
    "r.id AS id, type(r) AS kind, s.id AS source, t.id AS target, r._props AS props, "
    "r._event_time AS event_time, r._ingested_at AS ingested_at, "
    "r._asserted_by AS asserted_by"
)
_CHUNK_STATS = (
    "c.node_id AS node_id, c.key AS key, c.seq AS seq, c.n_points AS n_points, "
    "c.min_step AS min_step, c.max_step AS max_step, c.min_value AS min_value, "
    "c.max_value AS max_value, c.min_ts AS min_ts, c.max_ts AS max_ts, "
    "c.last_value AS last_value"
)


def _node_where(label: str | None, expr: Expr, renderer: FilterRenderer) -> list[str]:
    conds: list[str] = []
    if label is not None:
        validate_label(label)
        conds.append("n._label = $label")
    if expr != TRUE:
        conds.append(renderer.render(expr))
    return ["WHERE " + " AND ".join(conds)] if conds else []


# --- schema -------------------------------------------------------------------------------


def schema_statements() -> list[Statement]:
    """Constraints and indexes created (idempotently) when a store opens."""
    node = ident(NODE_LABEL, "label")
    chunk = ident(CHUNK_LABEL, "label")
    audit = ident(AUDIT_LABEL, "label")
    head = ident(AUDIT_HEAD_LABEL, "label")
    checkpoint = ident(CHECKPOINT_LABEL, "label")
    secret = ident(SECRET_LABEL, "label")
    return [
        _statement(
            "schema.node_id",
            [f"CREATE CONSTRAINT lh_node_id IF NOT EXISTS FOR (n:{node}) REQUIRE n.id IS UNIQUE"],
        ),
        _statement(
            "schema.node_label",
            [f"CREATE INDEX lh_node_label IF NOT EXISTS FOR (n:{node}) ON (n._label)"],
        ),
        _statement(
            "schema.node_created",
            [f"CREATE INDEX lh_node_created IF NOT EXISTS FOR (n:{node}) ON (n._created_at)"],
        ),
        _statement(
            "schema.node_updated",
            [f"CREATE INDEX lh_node_updated IF NOT EXISTS FOR (n:{node}) ON (n._updated_at)"],
        ),
        # the registry's look-ups (a model's versions; a model's promote runs), as SQLite's
        # nodes_model and nodes_params_model: equality on both properties seeks them
        _statement(
            "schema.node_model",
            [f"CREATE INDEX lh_node_model IF NOT EXISTS FOR (n:{node}) ON (n._label, n.model)"],
        ),
        _statement(
            "schema.node_params_model",
            [
                f"CREATE INDEX lh_node_params_model IF NOT EXISTS FOR (n:{node}) "
                "ON (n._label, n.`params.model`)"
            ],
        ),
        _statement(
            "schema.series_chunk",
            [
                f"CREATE INDEX lh_series_chunk IF NOT EXISTS FOR (c:{chunk}) "
                "ON (c.node_id, c.key, c.seq)"
            ],
        ),
        _statement(
            "schema.audit_seq",
            [
                f"CREATE CONSTRAINT lh_audit_seq IF NOT EXISTS FOR (a:{audit}) "
                "REQUIRE a.seq IS UNIQUE"
            ],
        ),
        _statement(
            "schema.audit_target",
            [f"CREATE INDEX lh_audit_target IF NOT EXISTS FOR (a:{audit}) ON (a.target)"],
        ),
        _statement(
            "schema.audit_head",
            [
                f"CREATE CONSTRAINT lh_audit_head IF NOT EXISTS FOR (h:{head}) "
                "REQUIRE h.name IS UNIQUE"
            ],
        ),
        _statement(
            "schema.audit_checkpoint",
            [
                f"CREATE CONSTRAINT lh_audit_checkpoint IF NOT EXISTS FOR (c:{checkpoint}) "
                "REQUIRE c.tree_size IS UNIQUE"
            ],
        ),
        _statement(
            "schema.store_secret",
            [
                f"CREATE CONSTRAINT lh_store_secret IF NOT EXISTS FOR (s:{secret}) "
                "REQUIRE s.name IS UNIQUE"
            ],
        ),
    ]


def relationship_index(kind: str) -> Statement:
    """The uniqueness constraint (and so the index) on the id of one relationship type,
    created the first time a store writes it (Neo4j indexes relationships per type only).
    Two writers creating one edge id with different ends hold different node locks; the
    constraint makes the second fail, and its retry then reports the conflict."""
    rel = ident(kind, "type")
    name = ident(f"lh_rel_uid_{kind}", "index")
    return _statement(
        "schema.relationship_id",
        [f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR ()-[r:{rel}]-() REQUIRE r.id IS UNIQUE"],
    )


def drop_relationship_index(kind: str) -> Statement:
    """Drop the plain id index that stores made before the uniqueness constraint (it would
    keep the constraint from being created on the same property)."""
    name = ident(f"lh_rel_id_{kind}", "index")
    return _statement("schema.relationship_id_old", [f"DROP INDEX {name} IF EXISTS"])


# --- nodes --------------------------------------------------------------------------------


def lock_nodes(ids: Sequence[str]) -> Statement:
    """Write-lock existing nodes (in id order, so concurrent writers queue rather than
    deadlock) and read them *after* the lock: a read-merge-write never loses a concurrent
    update. ``SET`` then ``REMOVE`` leaves the node as it was; the lock stays to commit."""
    return _statement(
        "node.lock",
        [
            "UNWIND $ids AS id",
            "MATCH (n:Node {id: id})",
            "SET n._lock = true",
            "REMOVE n._lock",
            "RETURN n.id AS id, n._label AS label, n._props AS props, n._created_at AS created_at",
        ],
        ids=sorted(set(ids)),
    )


def create_nodes(label: str, records: Sequence[Mapping[str, Any]]) -> Statement:
    """Create nodes of one label (labels cannot be parameters in Neo4j 5). The unique
    constraint on ``id`` turns a concurrent creation of the same id into a ConstraintError,
    on which the store retries (and then merges into what the other writer made)."""
    return _statement(
        "node.create",
        ["UNWIND $rows AS row", f"CREATE (n:Node:{ident(label, 'label')})", "SET n = row"],
        rows=list(records),
    )


def update_nodes(records: Sequence[Mapping[str, Any]]) -> Statement:
    """Change existing nodes (labels never change): each row holds the properties that
    change, with null for those removed (see ``neo4j.record_changes``)."""
    return _statement(
        "node.update",
        ["UNWIND $rows AS row", "MATCH (n:Node {id: row.id})", "SET n += row"],
        rows=list(records),
    )


def get_nodes(ids: Sequence[str]) -> Statement:
    return _statement(
        "node.get",
        ["UNWIND $ids AS id", "MATCH (n:Node {id: id})", _NODE_RETURN],
        ids=list(dict.fromkeys(ids)),
    )


def delete_series_of(ids: Sequence[str]) -> Statement:
    """Series chunks are not connected to their node, so they are deleted by node id."""
    return _statement(
        "series.delete",
        ["UNWIND $ids AS id", "MATCH (c:SeriesChunk {node_id: id})", _CHUNK_ALL_KEYS, "DELETE c"],
        ids=list(ids),
    )


def delete_nodes(ids: Sequence[str]) -> Statement:
    return _statement(
        "node.delete",
        [
            "UNWIND $ids AS id",
            "MATCH (n:Node {id: id})",
            "DETACH DELETE n",
            "RETURN count(*) AS deleted",
        ],
        ids=list(ids),
    )


def find_nodes(label: str | None, expr: Expr, order: Sequence[SortKey], limit: int) -> Statement:
    renderer = FilterRenderer("n")
    lines = ["MATCH (n:Node)", *_node_where(label, expr, renderer)]
    lines += ["WITH n", "ORDER BY " + order_clause(order, "n"), "LIMIT $limit", _NODE_RETURN]
    params: dict[str, Any] = dict(renderer.params, limit=limit)
    if label is not None:
        params["label"] = label
    return _statement("node.find", lines, **params)


def node_values(
    label: str, expr: Expr, order: Sequence[SortKey], path: tuple[str, ...]
) -> Statement:
    """One property of every matching node, in order, as one list of one-item lists
    (``collect`` drops nulls; a list holding null it keeps)."""
    renderer = FilterRenderer("n")
    lines = ["MATCH (n:Node)", *_node_where(label, expr, renderer)]
    lines += [
        "WITH n",
        "ORDER BY " + order_clause(order, "n"),
        f"RETURN collect([{renderer.column(path)}]) AS values",
    ]
    return _statement("node.values", lines, **dict(renderer.params, label=label))


def count_nodes(label: str | None, expr: Expr) -> Statement:
    renderer = FilterRenderer("n")
    lines = ["MATCH (n:Node)", *_node_where(label, expr, renderer), "RETURN count(n) AS count"]
    params: dict[str, Any] = dict(renderer.params)
    if label is not None:
        params["label"] = label
    return _statement("node.count", lines, **params)


# --- edges --------------------------------------------------------------------------------


def relationship_types() -> Statement:
    """The relationship types in the database: an id lookup without a kind must name each
    type, because Neo4j indexes relationship properties per type only."""
    return _statement(
        "edge.types",
        ["CALL db.relationshipTypes() YIELD relationshipType", "RETURN relationshipType AS kind"],
    )


def lookup_edges(ids: Sequence[str], kinds: Sequence[str]) -> Statement | None:
    """Edges by id over the given types: one index seek per type, joined by ``UNION ALL``.
    ``None`` when there is no type to look in (nothing can match)."""
    kinds = list(dict.fromkeys(kinds))
    if not kinds:
        return None
    lines: list[str] = []
    for i, kind in enumerate(kinds):
        if i:
            lines.append("UNION ALL")
        lines += [
            f"MATCH (s)-[r:{ident(kind, 'type')}]->(t)",
            "WHERE r.id IN $ids",
            f"RETURN {_EDGE_COLUMNS}",
        ]
    return _statement("edge.lookup", lines, ids=list(dict.fromkeys(ids)))


def create_edges(kind: str, records: Sequence[Mapping[str, Any]]) -> Statement:
    """Create relationships of one type; each record carries ``source``, ``target`` and the
    relationship's ``props``. The store has locked both ends first. The target is matched in
    a subquery per row (two independent seeks would be planned as a cartesian product)."""
    return _statement(
        "edge.create",
        [
            "UNWIND $rows AS row",
            "MATCH (s:Node {id: row.source})",
            "CALL (s, row) {",
            "  MATCH (t:Node {id: row.target})",
            f"  CREATE (s)-[r:{ident(kind, 'type')}]->(t)",
            "  SET r = row.props",
            "}",
        ],
        rows=list(records),
    )


def update_edges(kind: str, records: Sequence[Mapping[str, Any]]) -> Statement:
    """Replace every property of existing relationships of one type."""
    return _statement(
        "edge.update",
        [
            "UNWIND $rows AS row",
            f"MATCH ()-[r:{ident(kind, 'type')} {{id: row.id}}]->()",
            "SET r = row.props",
        ],
        rows=list(records),
    )


def delete_edges(kind: str, ids: Sequence[str]) -> Statement:
    return _statement(
        "edge.delete",
        [
            f"MATCH ()-[r:{ident(kind, 'type')}]->()",
            "WHERE r.id IN $ids",
            "DELETE r",
            "RETURN count(*) AS deleted",
        ],
        ids=list(ids),
    )


def count_edges() -> Statement:
    return _statement("edge.count", ["MATCH ()-[r]->()", "RETURN count(r) AS count"])


def expand(
    frontier: Sequence[str],
    forward: bool,
    edge_kinds: Sequence[str] | None,
    labels: Sequence[str] | None,
    as_of: str | None,
    limit: int | None = None,
) -> Statement:
    """One traversal level over the whole frontier in one query: one hop, never a
    variable-length pattern. Kinds go into the pattern (so Neo4j expands only those types of
    a dense node); labels, ``as_of`` and the limit are parameters."""
    kinds = ""
    if edge_kinds is not None:
        if not edge_kinds:
            raise ValidationError("edge_kinds: an empty list matches nothing", field="edge_kinds")
        kinds = ":" + "|".join(ident(k, "type") for k in dict.fromkeys(edge_kinds))
    arrow = f"-[e{kinds}]->" if forward else f"<-[e{kinds}]-"
    lines = ["UNWIND $ids AS id", f"MATCH (a:Node {{id: id}}){arrow}(b:Node)"]
    params: dict[str, Any] = {"ids": list(frontier)}
    conds: list[str] = []
    # The far end's conditions name it through the edge (endNode(e) is b going forward): a
    # condition on b itself (b._label, b._created_at) is one the planner may answer from an
    # index of b's, and on some statistics it then starts there (every node of the labels,
    # or every node created before as_of) and joins to the frontier with a cartesian product.
    # Named through e, the frontier's seek is the only way in.
    far = "endNode(e)" if forward else "startNode(e)"
    if labels is not None:
        for label in labels:
            validate_label(label, "labels")
        conds.append(f"{far}._label IN $labels")
        params["labels"] = list(labels)
    if as_of is not None:
        conds.append(f"e._ingested_at <= $as_of AND {far}._created_at <= $as_of")
        params["as_of"] = as_of
    if conds:
        lines.append("WHERE " + " AND ".join(conds))
    if limit is not None:
        lines.append("WITH a, e, b LIMIT $limit")
        params["limit"] = limit
    # One row holding every edge as a list (:data:`EXPAND_COLUMNS`): one message instead of
    # one per edge, and no per-record work in the driver.
    lines.append(
        "RETURN collect([a.id, b.id, b._label, e.id, type(e), e._props, e._event_time, "
        "e._ingested_at, e._asserted_by]) AS rows"
    )
    return _statement("edge.expand", lines, **params)


#: The fields of each edge in :func:`expand`'s ``rows``, in order.
EXPAND_COLUMNS = (
    "near", "far", "far_label", "id", "kind", "props", "event_time", "ingested_at", "asserted_by"
)  # fmt: skip


# --- metric series ------------------------------------------------------------------------


# Neo4j seeks a composite index only when every one of its properties has a predicate: these
# always-true ones let the (node_id, key, seq) index serve look-ups by node, or node and key.
_CHUNK_ALL_SEQS = "WHERE c.seq IS NOT NULL"
_CHUNK_ALL_KEYS = "WHERE c.key IS NOT NULL AND c.seq IS NOT NULL"


def series_chunk_stats(pairs: Sequence[Mapping[str, Any]]) -> Statement:
    """The per-chunk statistics (no arrays) of some (node_id, key) series."""
    return _statement(
        "series.chunk_stats",
        [
            "UNWIND $pairs AS p",
            "MATCH (c:SeriesChunk {node_id: p.node_id, key: p.key})",
            _CHUNK_ALL_SEQS,
            f"RETURN {_CHUNK_STATS}",
        ],
        pairs=list(pairs),
    )


def series_chunk_arrays(chunks: Sequence[Mapping[str, Any]]) -> Statement:
    """The arrays of some chunks, by (node_id, key, seq): only fetched when a new point may
    replace one of theirs."""
    return _statement(
        "series.chunk_arrays",
        [
            "UNWIND $chunks AS k",
            "MATCH (c:SeriesChunk {node_id: k.node_id, key: k.key, seq: k.seq})",
            "RETURN c.node_id AS node_id, c.key AS key, c.seq AS seq, c.steps AS steps, "
            "c.ts AS ts, c.vals AS vals",
        ],
        chunks=list(chunks),
    )


def write_chunks(records: Sequence[Mapping[str, Any]]) -> Statement:
    """Create or wholly replace chunks (each record is every property of one chunk)."""
    return _statement(
        "series.write_chunks",
        [
            "UNWIND $chunks AS c",
            "MERGE (x:SeriesChunk {node_id: c.node_id, key: c.key, seq: c.seq})",
            "SET x = c",
        ],
        chunks=list(records),
    )


def extend_chunks(records: Sequence[Mapping[str, Any]]) -> Statement:
    """Append points to the tail chunk: only the new points cross the wire; ``stats`` replace
    the chunk's statistics (a null statistic removes the property, e.g. a min of all-NaN)."""
    return _statement(
        "series.extend_chunks",
        [
            "UNWIND $chunks AS c",
            "MATCH (x:SeriesChunk {node_id: c.node_id, key: c.key, seq: c.seq})",
            "SET x.steps = x.steps + c.steps, x.ts = x.ts + c.ts, x.vals = x.vals + c.vals, "
            "x += c.stats",
        ],
        chunks=list(records),
    )


def read_series(node_id: str, key: str) -> Statement:
    return _statement(
        "series.read",
        [
            "MATCH (c:SeriesChunk {node_id: $node_id, key: $key})",
            _CHUNK_ALL_SEQS,
            "RETURN c.seq AS seq, c.steps AS steps, c.ts AS ts, c.vals AS vals",
            "ORDER BY seq",
        ],
        node_id=node_id,
        key=key,
    )


def series_stats(node_ids: Sequence[str], keys: Sequence[str] | None) -> Statement:
    """Chunk statistics of every series of some nodes (optionally only some keys); the store
    folds them into one summary per series."""
    lines = ["UNWIND $ids AS id", "MATCH (c:SeriesChunk {node_id: id})"]
    params: dict[str, Any] = {"ids": list(dict.fromkeys(node_ids))}
    if keys is not None:
        lines.append("WHERE c.key IN $keys AND c.seq IS NOT NULL")
        params["keys"] = list(keys)
    else:
        lines.append(_CHUNK_ALL_KEYS)
    lines.append(f"RETURN {_CHUNK_STATS}")
    return _statement("series.stats", lines, **params)


# --- audit log ----------------------------------------------------------------------------

_AUDIT_RETURN = "RETURN " + ", ".join(f"a.{p} AS {p}" for p in AUDIT_PROPS)


def audit_lock() -> Statement:
    """Write-lock the singleton head node (creating it the first time; its unique constraint
    makes concurrent first creations meet on one node). Every append takes this lock before
    reading the newest entry, so appends serialise and the chain has no fork or gap."""
    return _statement(
        "audit.lock",
        [
            f"MERGE (h:{ident(AUDIT_HEAD_LABEL, 'label')} {{name: $head}})",
            "SET h._lock = true",
            "REMOVE h._lock",
            "RETURN count(h) AS locked",
        ],
        head=AUDIT_HEAD_NAME,
    )


def audit_lock_head() -> Statement:
    """:func:`audit_lock`, then :func:`audit_head` under the lock, in one round trip (no
    rows when the log is empty). The aggregation (an ``EagerAggregation``) finishes the lock
    before anything after it runs, and the subquery reads ``locked``, so it is planned as an
    ``Apply`` run after it, not a ``CartesianProduct`` that could read first; the newest
    entry is still found by the seq index (``NodeIndexScan`` under a ``Limit``)."""
    return _statement(
        "audit.lock_head",
        [
            f"MERGE (h:{ident(AUDIT_HEAD_LABEL, 'label')} {{name: $head}})",
            "SET h._lock = true",
            "REMOVE h._lock",
            "WITH count(h) AS locked",
            "CALL (locked) {",
            f"  MATCH (a:{ident(AUDIT_LABEL, 'label')})",
            "  WHERE a.seq IS NOT NULL AND locked > 0",
            "  RETURN a",
            "  ORDER BY a.seq DESC",
            "  LIMIT 1",
            "}",
            _AUDIT_RETURN,
        ],
        head=AUDIT_HEAD_NAME,
    )


def audit_head() -> Statement:
    """The newest audit entry (the seq constraint's index serves the ordering)."""
    return _statement(
        "audit.head",
        [
            f"MATCH (a:{ident(AUDIT_LABEL, 'label')})",
            "WHERE a.seq IS NOT NULL",  # so the seq index serves the ordering
            _AUDIT_RETURN,
            "ORDER BY a.seq DESC",
            "LIMIT 1",
        ],
    )


def audit_create(entry: Mapping[str, Any]) -> Statement:
    return _statement(
        "audit.create",
        [f"CREATE (a:{ident(AUDIT_LABEL, 'label')})", "SET a = $entry"],
        entry=dict(entry),
    )


def audit_read(after_seq: int, limit: int, target: str | None) -> Statement:
    """Entries after ``after_seq`` (of one target), in seq order."""
    where = "WHERE a.seq > $after_seq"
    params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
    if target is not None:
        where += " AND a.target = $target"
        params["target"] = target
    return _statement(
        "audit.read",
        [
            f"MATCH (a:{ident(AUDIT_LABEL, 'label')})",
            where,
            _AUDIT_RETURN,
            "ORDER BY a.seq",
            "LIMIT $limit",
        ],
        **params,
    )


_CHECKPOINT_RETURN = "RETURN " + ", ".join(f"c.{p} AS {p}" for p in CHECKPOINT_PROPS)


def checkpoint_last() -> Statement:
    return _statement(
        "audit.checkpoint_last",
        [
            f"MATCH (c:{ident(CHECKPOINT_LABEL, 'label')})",
            "WHERE c.tree_size IS NOT NULL",
            _CHECKPOINT_RETURN,
            "ORDER BY c.tree_size DESC",
            "LIMIT 1",
        ],
    )


def checkpoint_read(after_size: int, limit: int) -> Statement:
    return _statement(
        "audit.checkpoint_read",
        [
            f"MATCH (c:{ident(CHECKPOINT_LABEL, 'label')})",
            "WHERE c.tree_size > $after",
            _CHECKPOINT_RETURN,
            "ORDER BY c.tree_size",
            "LIMIT $limit",
        ],
        after=after_size,
        limit=limit,
    )


def checkpoint_create(record: Mapping[str, Any]) -> Statement:
    return _statement(
        "audit.checkpoint_create",
        [
            f"MERGE (c:{ident(CHECKPOINT_LABEL, 'label')} {{tree_size: $record.tree_size}})",
            "SET c = $record",
        ],
        record=dict(record),
    )


def audit_range(after_seq: int, upto_seq: int) -> Statement:
    """Entries ``after_seq < seq <= upto_seq`` in seq order (a head's new leaves)."""
    return _statement(
        "audit.range",
        [
            f"MATCH (a:{ident(AUDIT_LABEL, 'label')})",
            "WHERE a.seq > $after AND a.seq <= $upto",
            _AUDIT_RETURN,
            "ORDER BY a.seq",
        ],
        after=after_seq,
        upto=upto_seq,
    )


def audit_max_seq() -> Statement:
    return _statement(
        "audit.max_seq",
        [f"MATCH (a:{ident(AUDIT_LABEL, 'label')})", "RETURN max(a.seq) AS seq"],
    )


# --- maintenance --------------------------------------------------------------------------


def store_secret(name: str, value: str) -> Statement:
    """The secret named ``name``, made with ``value`` by the first caller (a node of its own
    label, outside the graph's ``Node`` label: no listing, trace or export reaches it)."""
    return _statement(
        "store.secret",
        [
            f"MERGE (s:{ident(SECRET_LABEL, 'label')} {{name: $key}})",
            "ON CREATE SET s.value = $value",
            "RETURN s.value AS value",
        ],
        key=name,
        value=value,
    )


def wipe(batch: int = 10_000) -> Statement:
    """Delete up to ``batch`` nodes (with their relationships): run until it deletes none.
    Batches keep each transaction's memory bounded, on every Neo4j 5 version."""
    return _statement(
        "store.wipe",
        ["MATCH (n)", "WITH n LIMIT $batch", "DETACH DELETE n", "RETURN count(*) AS deleted"],
        batch=batch,
    )


# --- the catalog --------------------------------------------------------------------------

EXAMPLE_LABELS = ("Run", "DatasetVersion", "ModelVersion")
EXAMPLE_KINDS = ("USED", "GENERATED_BY", "DERIVED_FROM")
# Filters that, between them, use every operator, combinator, system field and nesting.
EXAMPLE_FILTERS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "eq": {"status": "FINISHED"},
    "eq_nested": {"metrics.auc": 0.9},
    "eq_dashed_segment": {"metrics.val-auc": 0.9},
    "eq_bool": {"params.dirty": True},
    "eq_null": {"owner": None},
    "ne": {"status": {"$ne": "FAILED"}},
    "ne_null": {"owner": {"$ne": None}},
    "lt": {"metrics.loss": {"$lt": 0.5}},
    "lte": {"params.epochs": {"$lte": 10}},
    "gt": {"metrics.auc": {"$gt": 0.8}},
    "gte": {"row_count": {"$gte": 1000}},
    "range": {"metrics.auc": {"$gte": 0.8, "$lt": 0.95}},
    "in": {"kind": {"$in": ["train", "evaluate"]}},
    "contains": {"owner": {"$contains": "USER1"}},
    "contains_id": {"id": {"$contains": "r0"}},
    "in_empty": {"kind": {"$in": []}},
    "nin": {"kind": {"$nin": ["deploy"]}},
    "exists": {"owner": {"$exists": True}},
    "not_exists": {"owner": {"$exists": False}},
    "and": {"$and": [{"status": "FINISHED"}, {"metrics.auc": {"$gt": 0.8}}]},
    "and_empty": {"$and": []},
    "or": {"$or": [{"tags.team": "growth"}, {"owner": {"$exists": False}}]},
    "or_empty": {"$or": []},
    "not": {"$not": {"status": "FAILED"}},
    "nested": {
        "$or": [
            {"$and": [{"kind": "train"}, {"$not": {"metrics.loss": {"$gt": 1}}}]},
            {"kind": {"$in": ["evaluate"]}, "status": {"$ne": "FAILED"}},
        ]
    },
    "system_fields": {
        "id": {"$gt": "r-1"},
        "_label": "Run",
        "_created_at": {"$gte": "2024-01-01T00:00:00.000000Z"},
        "_updated_at": {"$lt": "2030-01-01T00:00:00.000000Z"},
    },
}
EXAMPLE_ORDERS: dict[str, list[str]] = {
    "default": [],
    "asc": ["metrics.auc"],
    "desc": ["-metrics.auc"],
    "multi": ["-metrics.auc", "params.lr", "_created_at"],
    "system_desc": ["-_updated_at", "-id"],
}
# Every property path the catalog's filters and orderings name (flattened property keys).
EXAMPLE_PROPERTY_KEYS = (
    "status",
    "owner",
    "kind",
    "row_count",
    "metrics.auc",
    "metrics.val-auc",
    "metrics.loss",
    "params.dirty",
    "params.epochs",
    "params.lr",
    "tags.team",
)


def _cursor_example(order_by: list[str], values: list[Any]) -> Expr:
    order = parse_order(order_by)
    return keyset_after(order, decode_cursor(encode_cursor(values), order))


def statement_catalog() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every statement shape the backend can send, as ``(name, cypher, example_params)``.

    Each entry is made by the same builder the store calls, with example arguments chosen to
    reach every branch of it: schema, every write, every read, every filter operator and
    combinator, both sort directions, keyset cursors, expansion in both directions with and
    without kinds, labels, ``as_of`` and a limit, series, deletes, wipe. Names are
    ``<shape>[<variant>]``; the shape is :attr:`Statement.name`.
    """
    now = "2024-05-01T12:00:00.000000Z"
    node = node_record("r1", "Run", {"status": "FINISHED", "metrics": {"auc": 0.91}}, now, now)
    edge = edge_record("e:1", {"role": "train"}, now, now, "agent:ci")

    def entry(variant: str, stmt: Statement | None) -> tuple[str, str, dict[str, Any]]:
        assert stmt is not None
        return (f"{stmt.name}[{variant}]", stmt.text, stmt.params)

    for stmt in schema_statements():
        yield entry("open", stmt)
    for kind in EXAMPLE_KINDS[:1]:
        yield entry(kind, relationship_index(kind))
        yield entry(kind, drop_relationship_index(kind))

    yield entry("ids", lock_nodes(["r2", "r1"]))
    for label in EXAMPLE_LABELS:
        yield entry(label, create_nodes(label, [node]))
    yield entry("rows", update_nodes([node]))
    yield entry("ids", get_nodes(["r1", "d1"]))
    yield entry("ids", delete_series_of(["r1"]))
    yield entry("ids", delete_nodes(["r1"]))

    for name, where in EXAMPLE_FILTERS.items():
        expr = parse_where(where)
        yield entry(f"{name},label", find_nodes("Run", expr, parse_order(None), 101))
        yield entry(f"{name},any", count_nodes(None, expr))
    yield entry("none,label", count_nodes("Run", TRUE))
    yield entry("false,label", count_nodes("Run", FALSE))
    for name, order_by in EXAMPLE_ORDERS.items():
        yield entry(f"order:{name}", find_nodes(None, TRUE, parse_order(order_by), 11))
    finished, by_auc = parse_where({"status": "FINISHED"}), parse_order("-metrics.auc")
    yield entry("auc", node_values("Run", finished, by_auc, ("metrics", "auc")))
    cursors: dict[str, tuple[list[str], list[Any]]] = {
        "cursor:asc": (["metrics.auc"], [0.9, "r7"]),
        "cursor:desc": (["-metrics.auc"], [0.9, "r7"]),
        "cursor:null": (["-metrics.auc"], [None, "r7"]),
        "cursor:multi": (["-metrics.auc", "params.lr", "_created_at"], [0.9, None, now, "r7"]),
        # a text past U+D800 is a literal (FilterRenderer.ordered)
        "cursor:literal": (["name"], ["it's \\ \U0001f680 \uff21\n", "r7"]),
    }
    for name, (order_by, values) in cursors.items():
        expr = And((parse_where({"status": "FINISHED"}), _cursor_example(order_by, values)))
        yield entry(name, find_nodes("Run", expr, parse_order(order_by), 51))

    yield entry("all", relationship_types())
    yield entry("one_kind", lookup_edges(["e:1"], EXAMPLE_KINDS[:1]))
    yield entry("kinds", lookup_edges(["e:1", "e:2"], EXAMPLE_KINDS))
    for kind in EXAMPLE_KINDS:
        row = {"source": "r1", "target": "d1", "props": edge}
        yield entry(kind, create_edges(kind, [row]))
        yield entry(kind, update_edges(kind, [{"id": "e:1", "props": edge}]))
        yield entry(kind, delete_edges(kind, ["e:1"]))
    yield entry("all", count_edges())

    for forward in (True, False):
        yield entry(
            f"{'forward' if forward else 'backward'},kinds=1",
            expand(["r1"], forward, ["USED"], None, None, None),
        )
        for kinds in (None, list(EXAMPLE_KINDS)):
            for labels in (None, ["DatasetVersion", "ModelVersion"]):
                for as_of in (None, now):
                    for limit in (None, 5000):
                        variant = ",".join(
                            [
                                "forward" if forward else "backward",
                                f"kinds={len(kinds)}" if kinds else "any_kind",
                                "labels" if labels else "any_label",
                                "as_of" if as_of else "now",
                                "limit" if limit else "all",
                            ]
                        )
                        yield entry(
                            variant, expand(["r1", "r2"], forward, kinds, labels, as_of, limit)
                        )

    pair = {"node_id": "r1", "key": "loss"}
    chunk = {
        "node_id": "r1",
        "key": "loss",
        "seq": 0,
        "steps": [0, 1],
        "ts": [now, now],
        "vals": [0.9, 0.8],
        "n_points": 2,
        "min_step": 0,
        "max_step": 1,
        "min_value": 0.8,
        "max_value": 0.9,
        "min_ts": now,
        "max_ts": now,
        "last_value": 0.8,
    }
    stats = {k: chunk[k] for k in CHUNK_PROPS[6:]}
    yield entry("pairs", series_chunk_stats([pair]))
    yield entry("chunks", series_chunk_arrays([{**pair, "seq": 0}]))
    yield entry("chunks", write_chunks([chunk]))
    yield entry(
        "chunks",
        extend_chunks(
            [{**pair, "seq": 0, "steps": [2], "ts": [now], "vals": [0.7], "stats": stats}]
        ),
    )
    yield entry("one", read_series("r1", "loss"))
    yield entry("all_keys", series_stats(["r1", "r2"], None))
    yield entry("some_keys", series_stats(["r1"], ["loss", "acc"]))
    yield entry("singleton", audit_lock())
    yield entry("singleton", audit_lock_head())
    yield entry("last", audit_head())
    audit = {
        "seq": 1,
        "time": now,
        "actor": "user:ann",
        "action": "node.upsert",
        "target": "r1",
        "payload_digest": "sha256:" + "1" * 64,
        "prev_hash": "sha256:" + "0" * 64,
        "hash": "sha256:" + "2" * 64,
        "records": "",
    }
    yield entry("entry", audit_create(audit))
    yield entry("all", audit_read(0, 1000, None))
    yield entry("target", audit_read(0, 1000, "r1"))
    yield entry("max", audit_max_seq())
    yield entry("span", audit_range(0, 2))
    yield entry("newest", checkpoint_last())
    yield entry("page", checkpoint_read(-1, 1000))
    head = {
        "tree_size": 2,
        "root_hash": "sha256:" + "3" * 64,
        "head_hash": "sha256:" + "2" * 64,
        "time": now,
        "mac": "4" * 64,
        "frontier": '["' + "5" * 64 + '"]',
        "signature": "6" * 128,
    }
    yield entry("head", checkpoint_create(head))
    yield entry("cursor", store_secret("cursor", "00" * 32))
    yield entry("batch", wipe())


__all__ = [
    "AUDIT_HEAD_LABEL",
    "AUDIT_LABEL",
    "CHECKPOINT_LABEL",
    "CHUNK_POINTS",
    "SECRET_LABEL",
    "FilterRenderer",
    "Statement",
    "edge_record",
    "flatten",
    "ident",
    "node_record",
    "statement_catalog",
]
