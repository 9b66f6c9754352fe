"""A stand-in for the Neo4j driver that understands only the statements LineageHub builds.

No Neo4j server can run where these tests run, so this emulator answers each statement shape
of :mod:`lineagehub.graph.cypher` (told apart by the ``// lineagehub:<shape>`` tag every
statement ends with) over an in-memory graph, with Cypher's rules where they matter: three-
valued logic, cross-type comparisons (``=`` false, ``<`` null), ``IN`` with nulls, ORDER BY
across types. Filters are evaluated by parsing the ``WHERE`` text the builders produced, so
the rendering is tested, not bypassed.

It lets the Python side of the Neo4j backend (planning, merging, row mapping, transactions)
run against the same scenarios as the SQLite backend, and it records every statement sent,
so the lint test can check those exact statements with Neo4j's Cypher front end. It is not
evidence that Neo4j itself agrees: the contract suite against a real server is.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from neo4j.exceptions import ConstraintError, ServiceUnavailable

TAG_RE = re.compile(r"// lineagehub:([a-z_.]+)\s*$")


def shape_of(text: str) -> str:
    match = TAG_RE.search(text)
    assert match, f"statement without a lineagehub tag:\n{text}"
    return match.group(1)


@dataclass
class _Graph:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {labels, props}
    rels: dict[int, dict[str, Any]] = field(default_factory=dict)  # n -> {type, s, t, props}
    chunks: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    next_rel: int = 0


# --- Cypher values ---------------------------------------------------------------------------


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    return bool(a == b)


def _cmp(a: Any, b: Any) -> int | None:
    if a is None or b is None:
        return None
    if (_is_num(a) and _is_num(b)) or (type(a) is type(b) and isinstance(a, (str, bool))):
        return (a > b) - (a < b)
    return None  # incomparable types: null


def _in(x: Any, values: list[Any]) -> bool | None:
    if not values:
        return False
    if x is None:
        return None
    unknown = False
    for v in values:
        r = _eq(x, v)
        if r:
            return True
        if r is None:
            unknown = True
    return None if unknown else False


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _order_key(v: Any) -> tuple[int, Any]:
    # Cypher's ascending order across types: ... STRING < BOOLEAN < NUMBER < null.
    if v is None:
        return (3, 0)
    if isinstance(v, bool):
        return (1, v)
    if _is_num(v):
        return (2, v)
    return (0, v)


# --- the WHERE / ORDER BY subset the builders emit ------------------------------------------------

_TOKEN = re.compile(
    r"\s*(n\.`[^`]+`|n\.[A-Za-z_]+|\$[A-Za-z0-9_]+|<>|<=|>=|=|<|>|\(|\)|,|"
    r"IS NOT NULL|IS NULL|coalesce|NOT|AND|OR|IN|true|false)"
)


class _Expr:
    """Parses and evaluates one predicate over ``n`` with Cypher's three-valued logic."""

    def __init__(self, text: str, params: dict[str, Any]) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            assert m, f"emulator cannot parse {text[pos:]!r}"
            self.tokens.append(m.group(1))
            pos = m.end()
        self.params = params
        self.i = 0
        self.tree = self._or()
        assert self.i == len(self.tokens), f"trailing tokens in {text!r}"

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        tok = self.tokens[self.i]
        assert expected is None or tok == expected, (tok, expected)
        self.i += 1
        return tok

    def _or(self) -> Any:
        node = self._and()
        while self._peek() == "OR":
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._not()
        while self._peek() == "AND":
            self._take()
            node = ("and", node, self._not())
        return node

    def _not(self) -> Any:
        if self._peek() == "NOT":
            self._take()
            return ("not", self._not())
        return self._comparison()

    def _comparison(self) -> Any:
        left = self._primary()
        tok = self._peek()
        if tok in ("=", "<>", "<", "<=", ">", ">="):
            self._take()
            return ("cmp", tok, left, self._primary())
        if tok == "IN":
            self._take()
            return ("in", left, self._primary())
        if tok in ("IS NULL", "IS NOT NULL"):
            self._take()
            return ("isnull", tok == "IS NOT NULL", left)
        return left

    def _primary(self) -> Any:
        tok = self._take()
        if tok == "(":
            node = self._or()
            self._take(")")
            return node
        if tok == "coalesce":
            self._take("(")
            a = self._or()
            self._take(",")
            b = self._or()
            self._take(")")
            return ("coalesce", a, b)
        if tok in ("true", "false"):
            return ("lit", tok == "true")
        if tok.startswith("$"):
            return ("lit", self.params[tok[1:]])
        if tok.startswith("n."):
            return ("prop", tok[2:].strip("`"))
        raise AssertionError(f"unexpected token {tok!r}")

    def eval(self, props: dict[str, Any], node: Any = None) -> Any:
        node = self.tree if node is None else node
        op = node[0]
        if op == "lit":
            return node[1]
        if op == "prop":
            return props.get(node[1])
        if op == "or":
            return _or(self.eval(props, node[1]), self.eval(props, node[2]))
        if op == "and":
            return _and(self.eval(props, node[1]), self.eval(props, node[2]))
        if op == "not":
            v = self.eval(props, node[1])
            return None if v is None else not v
        if op == "coalesce":
            v = self.eval(props, node[1])
            return self.eval(props, node[2]) if v is None else v
        if op == "isnull":
            v = self.eval(props, node[2])
            return (v is not None) if node[1] else (v is None)
        if op == "in":
            return _in(self.eval(props, node[1]), self.eval(props, node[2]))
        a, b = self.eval(props, node[2]), self.eval(props, node[3])
        if node[1] in ("=", "<>"):
            r = _eq(a, b)
            return r if r is None or node[1] == "=" else not r
        c = _cmp(a, b)
        if c is None:
            return None
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[node[1]]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith("//")]


def _line(text: str, prefix: str) -> str | None:
    return next((ln for ln in _lines(text) if ln.startswith(prefix)), None)


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([A-Za-z0-9_]+)`", text)


# --- driver surface ------------------------------------------------------------------------------


class _Result:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def data(self) -> list[dict[str, Any]]:
        return self._rows

    def consume(self) -> None:
        return None


class FakeTransaction:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver
        self.closed = False

    def run(self, query: Any, parameters: dict[str, Any] | None = None, **kw: Any) -> _Result:
        assert not self.closed, "statement on a closed transaction"
        text = getattr(query, "text", query)
        return _Result(self.driver.execute(text, dict(parameters or {}, **kw)))

    def commit(self) -> None:
        self.closed = True
        self.driver._end(commit=True)

    def rollback(self) -> None:
        if not self.closed:
            self.closed = True
            self.driver._end(commit=False)

    def close(self) -> None:
        self.rollback()


class FakeSession:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        return None

    def run(self, query: Any, parameters: dict[str, Any] | None = None, **kw: Any) -> _Result:
        with self._managed() as tx:
            return tx.run(query, parameters, **kw)

    @contextmanager
    def _managed(self) -> Iterator[FakeTransaction]:
        tx = self.begin_transaction()
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        tx.commit()

    def begin_transaction(self, *a: Any, **kw: Any) -> FakeTransaction:
        self.driver._begin()
        return FakeTransaction(self.driver)

    def execute_read(self, work: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        with self._managed() as tx:
            return work(tx, *a, **kw)

    execute_write = execute_read


class FakeDriver:
    """Answers LineageHub's statements over an in-memory graph; records every statement.

    Transactions are serialised by one lock and rolled back by restoring a snapshot.
    ``available=False`` makes every call raise ServiceUnavailable, as a dead server would.
    """

    def __init__(self) -> None:
        self.graph = _Graph()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []  # (shape, text, params)
        self.available = True
        self._lock = threading.RLock()
        self._snapshots: list[_Graph] = []  # one per open transaction (same thread may nest)
        self.closed = False

    # driver API
    def session(self, **config: Any) -> FakeSession:
        return FakeSession(self)

    def verify_connectivity(self, **config: Any) -> None:
        if not self.available:
            raise ServiceUnavailable("Couldn't connect to fake:7687")

    def close(self) -> None:
        self.closed = True

    # transactions
    def _begin(self) -> None:
        if not self.available:
            raise ServiceUnavailable("Couldn't connect to fake:7687")
        self._lock.acquire()
        self._snapshots.append(copy.deepcopy(self.graph))

    def _end(self, commit: bool) -> None:
        snapshot = self._snapshots.pop()
        if not commit:
            self.graph = snapshot
        self._lock.release()

    # statements
    def execute(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        shape = shape_of(text)
        self.sent.append((shape, text, copy.deepcopy(params)))
        handler = getattr(self, "_" + shape.replace(".", "_"))
        rows: list[dict[str, Any]] = handler(text, params)
        return rows

    def _node_row(self, node_id: str) -> dict[str, Any]:
        p = self.graph.nodes[node_id]["props"]
        return {
            "id": node_id,
            "label": p["_label"],
            "props": p["_props"],
            "created_at": p["_created_at"],
            "updated_at": p.get("_updated_at"),
        }

    def _rel_row(self, r: dict[str, Any]) -> dict[str, Any]:
        p = r["props"]
        return {
            "id": p["id"],
            "kind": r["type"],
            "source": r["s"],
            "target": r["t"],
            "props": p["_props"],
            "event_time": p["_event_time"],
            "ingested_at": p["_ingested_at"],
            "asserted_by": p.get("_asserted_by"),
        }

    def _schema_node_id(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    _schema_node_label = _schema_node_created = _schema_node_updated = _schema_node_id
    _schema_series_chunk = _schema_relationship_id = _schema_node_id

    def _node_lock(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert params["ids"] == sorted(set(params["ids"])), "locks must be taken in id order"
        out = []
        for i in params["ids"]:
            if i in self.graph.nodes:
                row = self._node_row(i)
                del row["updated_at"]
                out.append(row)
        return out

    def _node_create(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        (label,) = _backticked(_line(text, "CREATE") or "")
        for row in params["rows"]:
            if row["id"] in self.graph.nodes:
                raise ConstraintError(f"Node already exists with label `Node` and id {row['id']}")
            self.graph.nodes[row["id"]] = {"labels": {"Node", label}, "props": dict(row)}
        return []

    def _node_update(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        for row in params["rows"]:
            if row["id"] in self.graph.nodes:
                self.graph.nodes[row["id"]]["props"] = dict(row)
        return []

    def _node_get(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._node_row(i) for i in params["ids"] if i in self.graph.nodes]

    def _series_delete(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        ids = set(params["ids"])
        for k in [k for k in self.graph.chunks if k[0] in ids]:
            del self.graph.chunks[k]
        return []

    def _node_delete(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        deleted = 0
        for i in params["ids"]:
            if i in self.graph.nodes:
                del self.graph.nodes[i]
                deleted += 1
                for rid in [rid for rid, r in self.graph.rels.items() if i in (r["s"], r["t"])]:
                    del self.graph.rels[rid]
        return [{"deleted": deleted}]

    def _matching(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        where = _line(text, "WHERE ")
        pred = _Expr(where[len("WHERE ") :], params) if where else None
        out = []
        for node in self.graph.nodes.values():
            if "Node" in node["labels"] and (pred is None or pred.eval(node["props"]) is True):
                out.append(node["props"])
        return out

    def _node_find(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = self._matching(text, params)
        order = (_line(text, "ORDER BY ") or "")[len("ORDER BY ") :]
        keys = []
        for item in order.split(", "):
            desc = item.endswith(" DESC")
            expr = _Expr(item[: -len(" DESC")] if desc else item, params)
            keys.append((expr, desc))
        for expr, desc in reversed(keys):  # stable sorts, last key first

            def key(p: dict[str, Any], e: _Expr = expr) -> tuple[int, Any]:
                return _order_key(e.eval(p))

            rows.sort(key=key, reverse=desc)
        return [self._node_row(p["id"]) for p in rows[: params["limit"]]]

    def _node_count(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"count": len(self._matching(text, params))}]

    def _edge_types(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"kind": k} for k in sorted({r["type"] for r in self.graph.rels.values()})]

    def _edge_lookup(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        kinds = [_backticked(ln)[0] for ln in _lines(text) if ln.startswith("MATCH")]
        ids = set(params["ids"])
        return [
            self._rel_row(r)
            for kind in kinds
            for r in self.graph.rels.values()
            if r["type"] == kind and r["props"]["id"] in ids
        ]

    def _edge_create(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        (kind,) = _backticked(_line(text, "CREATE") or "")
        for row in params["rows"]:
            if row["source"] in self.graph.nodes and row["target"] in self.graph.nodes:
                self.graph.next_rel += 1
                self.graph.rels[self.graph.next_rel] = {
                    "type": kind,
                    "s": row["source"],
                    "t": row["target"],
                    "props": dict(row["props"]),
                }
        return []

    def _edge_update(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        (kind,) = _backticked(_line(text, "MATCH") or "")
        for row in params["rows"]:
            for r in self.graph.rels.values():
                if r["type"] == kind and r["props"]["id"] == row["id"]:
                    r["props"] = dict(row["props"])
        return []

    def _edge_delete(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        (kind,) = _backticked(_line(text, "MATCH") or "")
        ids = set(params["ids"])
        gone = [
            rid
            for rid, r in self.graph.rels.items()
            if r["type"] == kind and r["props"]["id"] in ids
        ]
        for rid in gone:
            del self.graph.rels[rid]
        return [{"deleted": len(gone)}]

    def _edge_count(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"count": len(self.graph.rels)}]

    def _edge_expand(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        match = _line(text, "MATCH") or ""
        forward = "]->(b" in match
        kinds = set(_backticked(match)) or None
        where = _line(text, "WHERE ") or ""
        assert ("labels" in params) == ("b._label IN $labels" in where)
        assert ("as_of" in params) == ("$as_of" in where)
        assert ("limit" in params) == ("LIMIT $limit" in text)
        out = []
        for a in params["ids"]:
            if a not in self.graph.nodes:
                continue
            for r in self.graph.rels.values():
                near, far = (r["s"], r["t"]) if forward else (r["t"], r["s"])
                if near != a or (kinds is not None and r["type"] not in kinds):
                    continue
                b = self.graph.nodes[far]["props"]
                if "labels" in params and b["_label"] not in params["labels"]:
                    continue
                if "as_of" in params and not (
                    r["props"]["_ingested_at"] <= params["as_of"]
                    and b["_created_at"] <= params["as_of"]
                ):
                    continue
                row = self._rel_row(r)
                row.update(near=a, far=far, far_label=b["_label"])
                out.append(row)
        return out[: params["limit"]] if "limit" in params else out

    _STATS = (
        "node_id",
        "key",
        "seq",
        "n_points",
        "min_step",
        "max_step",
        "min_value",
        "max_value",
        "min_ts",
        "max_ts",
        "last_value",
    )

    def _stats(self, c: dict[str, Any]) -> dict[str, Any]:
        return {k: c.get(k) for k in self._STATS}

    def _series_chunk_stats(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        pairs = {(p["node_id"], p["key"]) for p in params["pairs"]}
        return [self._stats(c) for k, c in self.graph.chunks.items() if k[:2] in pairs]

    def _series_chunk_arrays(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for k in params["chunks"]:
            c = self.graph.chunks.get((k["node_id"], k["key"], k["seq"]))
            if c is not None:
                out.append({f: c[f] for f in ("node_id", "key", "seq", "steps", "ts", "vals")})
        return out

    def _series_write_chunks(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        for c in params["chunks"]:
            self.graph.chunks[(c["node_id"], c["key"], c["seq"])] = dict(c)
        return []

    def _series_extend_chunks(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        for c in params["chunks"]:
            x = self.graph.chunks[(c["node_id"], c["key"], c["seq"])]
            for f in ("steps", "ts", "vals"):
                x[f] = x[f] + c[f]
            for k, v in c["stats"].items():
                if v is None:
                    x.pop(k, None)
                else:
                    x[k] = v
        return []

    def _series_read(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = [
            {f: c[f] for f in ("seq", "steps", "ts", "vals")}
            for k, c in self.graph.chunks.items()
            if k[:2] == (params["node_id"], params["key"])
        ]
        return sorted(rows, key=lambda r: r["seq"])

    def _series_stats(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        ids = set(params["ids"])
        keys = set(params["keys"]) if "keys" in params else None
        return [
            self._stats(c)
            for k, c in self.graph.chunks.items()
            if k[0] in ids and (keys is None or k[1] in keys)
        ]

    def _store_wipe(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        ids = list(self.graph.nodes)[: params["batch"]]
        chunk_keys = list(self.graph.chunks)[: params["batch"] - len(ids)]
        for k in chunk_keys:
            del self.graph.chunks[k]
        deleted = self._node_delete(text, {"ids": ids})[0]["deleted"]
        return [{"deleted": deleted + len(chunk_keys)}]


# --- the audit log in the stand-in driver -----------------------------------------------------


def _audit_rows(driver: FakeDriver) -> dict[int, dict[str, Any]]:
    # On the graph object, so a transaction's rollback (a restored snapshot) undoes appends.
    rows: dict[int, dict[str, Any]] = driver.graph.__dict__.setdefault("audit", {})
    return rows


def _emulate_audit() -> None:
    def lock(self: FakeDriver, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"locked": 1}]

    def head(self: FakeDriver, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = _audit_rows(self)
        return [dict(rows[max(rows)])] if rows else []

    def create(self: FakeDriver, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = _audit_rows(self)
        assert params["entry"]["seq"] not in rows, "audit seq must be unique"
        rows[params["entry"]["seq"]] = dict(params["entry"])
        return []

    def read(self: FakeDriver, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = _audit_rows(self)
        out = [
            dict(rows[s])
            for s in sorted(rows)
            if s > params["after_seq"]
            and params.get("target", rows[s]["target"]) == rows[s]["target"]
        ]
        return out[: params["limit"]]

    def schema(self: FakeDriver, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    for name, handler in {
        "_audit_lock": lock,
        "_audit_head": head,
        "_audit_create": create,
        "_audit_read": read,
        "_schema_audit_seq": schema,
        "_schema_audit_target": schema,
        "_schema_audit_head": schema,
    }.items():
        if not hasattr(FakeDriver, name):
            setattr(FakeDriver, name, handler)


_emulate_audit()
