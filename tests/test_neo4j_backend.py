"""The Neo4j backend: identifiers refused before any query, URIs and credentials, error
translation, the pure merge/flatten/series logic, its schema, races between writers, and the
same scenarios run side by side on SQLite and on the real Neo4j server that ``make test``
starts (``tests/neo4j``), which must agree. The contract suite (``tests/contract``) holds
both backends to the same behaviour too.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import neo4j_test_store, neo4j_uri
from neo4j.exceptions import TransientError

import lineagehub.graph.neo4j as neo4j_module
from lineagehub.graph import (
    DELETE,
    BackendUnavailable,
    ConfigError,
    ConflictError,
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    SeriesPoint,
    ValidationError,
    cypher,
    open_store,
)
from lineagehub.graph.audit import CheckpointPolicy
from lineagehub.graph.filters import Cmp, IsNull, SortKey, parse_order, parse_where
from lineagehub.graph.model import encode_props
from lineagehub.graph.neo4j import (
    Neo4jStore,
    _dt,
    chunk_stats,
    merge_chunks,
    parse_uri,
    plan_edges,
    plan_nodes,
    plan_series,
    summarize_chunks,
)

INJECTIONS = [
    "x}) DETACH DELETE n //",
    "x` DETACH DELETE n //",
    "Run`) MATCH (m) DETACH DELETE m //",
    "a b",
    "a\nb",
    "",
    "_label2",
]
NOW = "2024-05-01T12:00:00.000000Z"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def neo() -> Iterator[Neo4jStore]:
    """The real test server, emptied."""
    store = neo4j_test_store()
    assert isinstance(store, Neo4jStore)
    yield store
    store.close()


def schema_names(store: Neo4jStore) -> dict[str, str]:
    """Constraint and index names on the server, with their kind."""
    with store._driver.session() as session:
        names = {r["name"]: r["type"] for r in session.run("SHOW CONSTRAINTS YIELD name, type")}
        for r in session.run("SHOW INDEXES YIELD name, type, owningConstraint"):
            if r["owningConstraint"] is None:
                names[r["name"]] = r["type"]
    return names


# --- identifiers never reach the text unchecked ------------------------------------------------


@pytest.mark.parametrize("bad", INJECTIONS)
def test_builders_refuse_bad_identifiers(bad: str) -> None:
    with pytest.raises(ValidationError):
        cypher.ident(bad, "label")
    with pytest.raises(ValidationError):
        cypher.ident(bad, "type")
    with pytest.raises(ValidationError):
        cypher.ident(bad, "property")
    with pytest.raises(ValidationError):
        cypher.create_nodes(bad, [])
    with pytest.raises(ValidationError):
        cypher.relationship_index(bad)
    with pytest.raises(ValidationError):
        cypher.create_edges(bad, [])
    with pytest.raises(ValidationError):
        cypher.expand(["a"], True, ["USED", bad], None, None)
    with pytest.raises(ValidationError):
        cypher.lookup_edges(["e"], ["USED", bad])
    # Filter trees built by hand (bypassing parse_where) are checked again when rendered.
    with pytest.raises(ValidationError):
        cypher.find_nodes(None, Cmp((bad,), "eq", 1), (SortKey(("id",)),), 10)
    with pytest.raises(ValidationError):
        cypher.count_nodes(None, IsNull((bad, "x")))
    with pytest.raises(ValidationError):
        cypher.find_nodes(None, parse_where(None), (SortKey((bad,)),), 10)


def test_store_refuses_bad_identifiers_before_sending(neo: Neo4jStore) -> None:
    neo.upsert_nodes([Node("keep", "Run", {"a": 1})])
    bad = "x}) DETACH DELETE n //"
    with pytest.raises(ValidationError):
        neo.find_nodes(where={bad: 1})
    with pytest.raises(ValidationError):
        neo.find_nodes(order_by=[bad])
    with pytest.raises(ValidationError):
        neo.count_nodes(label=bad)
    with pytest.raises(ValidationError):
        neo.upsert_nodes([Node("n1", bad)])
    with pytest.raises(ValidationError):
        neo.upsert_nodes([Node("n1", "Run", {bad: 1})])
    with pytest.raises(ValidationError):
        neo.upsert_edges([Edge("a", "b", bad)])
    with pytest.raises(ValidationError):
        neo.traverse(["a"], edge_kinds=[bad])
    with pytest.raises(ValidationError):
        neo.neighbors(["a"], labels=[bad])
    assert neo.count_nodes() == 1 and neo.get_node("keep").props == {"a": 1}


def test_nested_keys_that_paths_cannot_name_are_not_flattened() -> None:
    flat = cypher.flatten({"m": {"a.b": 1, "ok-1": 2, "x}) //": 3, "n": {"deep": True}}})
    assert flat == {
        "m": '{"a.b":1,"ok-1":2,"x}) //":3,"n":{"deep":true}}',
        "m.ok-1": 2,
        "m.n": '{"deep":true}',
        "m.n.deep": True,
    }


# --- URIs, credentials, unreachable servers -------------------------------------------------


def test_parse_uri_takes_credentials_and_database_from_the_uri() -> None:
    t = parse_uri("neo4j+s://alice:p%40ss%3Aw0rd@db.example:7687/?database=lineage&policy=eu")
    assert t.user == "alice"
    assert t.password == "p@ss:w0rd"
    assert t.database == "lineage"
    assert t.driver_uri == "neo4j+s://db.example:7687/?policy=eu"
    assert "p@ss" not in repr(t) and "w0rd" not in t.redacted_uri


def test_parse_uri_options_win_and_bolt_keeps_no_query() -> None:
    t = parse_uri("bolt://u:pw@127.0.0.1:7687?database=a", "bob", "other", "b")
    assert (t.user, t.password, t.database) == ("bob", "other", "b")
    assert t.driver_uri == "bolt://127.0.0.1:7687"
    with pytest.raises(ConfigError, match="neo4j://"):
        parse_uri("bolt://h:7687?policy=eu")
    with pytest.raises(ConfigError, match="scheme"):
        parse_uri("http://h:7474")
    with pytest.raises(ConfigError):
        parse_uri("neo4j://h:notaport")
    with pytest.raises(ConfigError) as info:
        parse_uri("neo4j://u:topsecret@h:notaport")
    assert "topsecret" not in str(info.value)
    assert parse_uri("bolt+ssc://[::1]:7687").driver_uri == "bolt+ssc://[::1]:7687"


@pytest.mark.parametrize("scheme", ["bolt", "neo4j"])
def test_unreachable_server_fails_fast_with_redacted_uri(scheme: str) -> None:
    port = closed_port()
    secret = "s3cret-Pa55word"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        open_store(
            f"{scheme}://lineage:{secret}@127.0.0.1:{port}",
            database="hub",
            connection_timeout=2.0,
        )
    assert time.monotonic() - started < 10
    err = info.value
    assert err.retryable and err.code == "BACKEND_UNAVAILABLE"
    assert f"{scheme}://lineage:***@127.0.0.1:{port}" in err.message
    assert secret not in str(err) and secret not in repr(err.to_dict())


def test_password_option_never_shows() -> None:
    port = closed_port()
    with pytest.raises(BackendUnavailable) as info:
        Neo4jStore(f"bolt://127.0.0.1:{port}", user="u", password="hunter22", connection_timeout=1)
    assert "hunter22" not in str(info.value)
    with pytest.raises(ConfigError) as cfg:
        Neo4jStore(f"bolt://127.0.0.1:{port}", user="u", password="hunter22", no_such_option=1)
    assert "hunter22" not in str(cfg.value)


def test_wrong_password_is_a_clear_error_at_connect() -> None:
    good = neo4j_uri()
    scheme, rest = good.split("://", 1)
    hostport = rest.split("@", 1)[1]
    with pytest.raises(ConfigError, match="refused the credentials as 'neo4j'") as info:
        open_store(f"{scheme}://neo4j:not-the-password-42@{hostport}")
    assert "not-the-password-42" not in str(info.value)
    assert f"{scheme}://neo4j:***@{hostport}" in str(info.value)


def test_a_closed_store_refuses_work(neo: Neo4jStore) -> None:
    neo.close()
    neo.close()  # twice is fine
    with pytest.raises(Exception, match="closed"):
        neo.get_nodes(["a"])


CONSTRAINTS = (
    "lh_node_id",
    "lh_audit_seq",
    "lh_audit_head",
    "lh_audit_checkpoint",
    "lh_store_secret",
)


def test_schema_is_created_idempotently_by_concurrent_openers(neo: Neo4jStore) -> None:
    """Constraints and indexes exist after open; stores opening at once on a database without
    them all succeed, and each rule exists once; a relationship type gets its id constraint
    when first written."""
    expected = {
        "lh_node_id", "lh_node_label", "lh_node_created", "lh_node_updated",
        "lh_series_chunk", "lh_audit_seq", "lh_audit_target", "lh_audit_head",
        "lh_audit_checkpoint", "lh_store_secret",
    }  # fmt: skip
    assert expected <= set(schema_names(neo))
    with neo._driver.session() as session:
        for name in schema_names(neo):
            kind = (
                "CONSTRAINT" if name.startswith("lh_rel_uid_") or name in CONSTRAINTS else "INDEX"
            )
            session.run(f"DROP {kind} {name} IF EXISTS").consume()
    assert not expected & set(schema_names(neo))
    errors: list[BaseException] = []
    opened: list[GraphStore] = []

    def open_one() -> None:
        try:
            opened.append(open_store(neo4j_uri()))
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in opened:
        s.close()
    assert errors == [] and len(opened) == 4
    names = schema_names(neo)
    assert expected <= set(names)
    neo.upsert_nodes([Node("a", "Run"), Node("b", "DatasetVersion")])
    for _ in range(2):
        neo.upsert_edges([Edge("a", "b", "USED"), Edge("b", "a", "GENERATED_BY")])
    names = schema_names(neo)
    assert names["lh_rel_uid_USED"] == "RELATIONSHIP_UNIQUENESS"
    assert names["lh_rel_uid_GENERATED_BY"] == "RELATIONSHIP_UNIQUENESS"


def test_an_old_plain_relationship_index_is_replaced(neo: Neo4jStore) -> None:
    with neo._driver.session() as session:
        session.run(
            "CREATE INDEX lh_rel_id_SERVES IF NOT EXISTS FOR ()-[r:SERVES]-() ON (r.id)"
        ).consume()
    with open_store(neo4j_uri()) as fresh:
        fresh.upsert_nodes([Node("d", "Deployment"), Node("m", "ModelVersion")])
        fresh.upsert_edges([Edge("d", "m", "SERVES")])
    names = schema_names(neo)
    assert "lh_rel_id_SERVES" not in names
    assert names["lh_rel_uid_SERVES"] == "RELATIONSHIP_UNIQUENESS"


# --- pure logic ----------------------------------------------------------------------------


def test_flatten_copies_scalars_and_json_text_of_containers() -> None:
    flat = cypher.flatten(
        {"status": "ok", "n": 2**70, "flag": False, "tags": ["a", 1], "params": {"lr": 0.1}}
    )
    assert flat == {
        "status": "ok",
        "n": float(2**70),
        "flag": False,
        "tags": '["a",1]',
        "params": '{"lr":0.1}',
        "params.lr": 0.1,
    }
    record = cypher.node_record("r1", "Run", {"a": {"b": 1}}, NOW, NOW)
    assert record["_props"] == '{"a":{"b":1}}' and record["a.b"] == 1 and record["id"] == "r1"


def test_plan_nodes_merges_in_order_and_refuses_label_changes() -> None:
    existing = {"r1": {"label": "Run", "props": '{"a":1,"m":{"x":1}}', "created_at": "T0"}}
    rows = [
        ("r1", "Run", encode_props({"m": {"y": 2, "x": DELETE}, "a": DELETE}, "t")),
        ("r2", "Run", encode_props({"k": DELETE, "v": 1, "n": None}, "t")),
        ("r2", "Run", encode_props({"v": 2}, "t")),
    ]
    creates, updates = plan_nodes(rows, existing, NOW)
    # An update carries only what changes: removed keys as None (``SET n += row`` removes
    # them), unchanged ones (the creation time) not at all.
    assert [u["_props"] for u in updates] == ['{"m":{"y":2}}']
    assert "_created_at" not in updates[0] and updates[0]["_updated_at"] == NOW
    assert updates[0]["a"] is None and updates[0]["m.x"] is None and updates[0]["m.y"] == 2
    assert updates[0]["id"] == "r1" and "_label" not in updates[0]
    assert [c["_props"] for c in creates["Run"]] == ['{"v":2,"n":null}']
    assert "n" not in creates["Run"][0]  # null is stored in _props, but not flattened
    with pytest.raises(ConflictError, match="is a Run; cannot make it a Model"):
        plan_nodes([("r1", "Model", "{}")], existing, NOW)
    with pytest.raises(ConflictError):
        plan_nodes([("n", "Run", "{}"), ("n", "Model", "{}")], {}, NOW)


def test_plan_edges_keeps_first_times_and_checks_ends() -> None:
    existing = {
        "e1": {
            "kind": "USED",
            "source": "r",
            "target": "d",
            "props": '{"role":"train"}',
            "event_time": "T0",
            "ingested_at": "T0",
            "asserted_by": "alice",
        }
    }
    row = ("e1", "USED", "r", "d", '{"w":1}', "T9", "T9", "bob")
    creates, updates = plan_edges([row], existing, {"r", "d"})
    props = updates["USED"][0]["props"]
    assert props["_props"] == '{"role":"train","w":1}'
    assert (props["_event_time"], props["_ingested_at"], props["_asserted_by"]) == (
        "T0",
        "T0",
        "alice",
    )
    assert not creates
    with pytest.raises(ConflictError):
        plan_edges([("e1", "USED", "r", "x", "{}", "T", "T", None)], existing, {"r", "x", "d"})
    with pytest.raises(NotFoundError) as info:
        plan_edges(
            [
                ("e2", "USED", "r", "m1", "{}", "T", "T", None),
                ("e3", "USED", "m2", "d", "{}", "T", "T", None),
            ],
            {},
            {"r", "d"},
        )
    assert info.value.ids == ["m1", "m2"]


def test_plans_refuse_growth_past_the_size_limit_and_let_an_oversized_row_shrink() -> None:
    """As SQLite's schema 8: merged properties past 1,000,000 characters are refused when a
    write makes them larger; a row stored larger before (no limit on merges then) still
    takes writes that do not grow it."""
    from lineagehub.graph.model import MAX_PROPS_BYTES

    big = cypher.to_json({"at": "2024-01-01", "log": "x" * MAX_PROPS_BYTES})
    half = encode_props({"b": "y" * (MAX_PROPS_BYTES // 2)}, "t")
    nodes = {
        "r": {"label": "Run", "props": big, "created_at": "T0"},
        "s": {"label": "Run", "props": half, "created_at": "T0"},
    }
    plan_nodes([("r", "Run", encode_props({"at": "2024-01-02"}, "t"))], nodes, NOW)
    plan_nodes([("r", "Run", encode_props({"log": DELETE, "done": True}, "t"))], nodes, NOW)
    for rows in (
        [("r", "Run", encode_props({"status": "FINISHED"}, "t"))],
        [("s", "Run", half.replace('"b"', '"c"'))],
        [("n", "Run", half), ("n", "Run", half.replace('"b"', '"c"'))],  # one new node, twice
    ):
        with pytest.raises(ValidationError, match="more than 1,000,000 characters") as info:
            plan_nodes(rows, nodes, NOW)
        assert info.value.field == "props" and repr(rows[0][0]) in str(info.value)
    edges = {
        "e": {
            "kind": "USED",
            "source": "r",
            "target": "d",
            "props": big,
            "event_time": "T0",
            "ingested_at": "T0",
            "asserted_by": None,
        }
    }
    plan_edges([("e", "USED", "r", "d", '{"at":"2024-01-02"}', "T", "T", None)], edges, {"r", "d"})
    with pytest.raises(ValidationError, match="edge 'e'"):
        plan_edges([("e", "USED", "r", "d", '{"more":1}', "T", "T", None)], edges, {"r", "d"})


def test_series_plan_replaces_in_place_and_extends_the_tail() -> None:
    def pts(*steps: int, v: float = 1.0) -> dict[int, tuple[str, float]]:
        return {s: (NOW, v) for s in steps}

    plan = plan_series({("r", "loss"): pts(0, 1, 2)}, [], [], chunk_points=2)
    assert [c["steps"] for c in plan.write] == [[0, 1], [2]] and not plan.extend
    stats = [
        {"node_id": "r", "key": "loss", "seq": 0, **chunk_stats([0, 1], [NOW] * 2, [1.0, 1.0])},
        {"node_id": "r", "key": "loss", "seq": 1, **chunk_stats([2], [NOW], [1.0])},
    ]
    arrays = [
        {
            "node_id": "r",
            "key": "loss",
            "seq": 0,
            "steps": [0, 1],
            "ts": [NOW] * 2,
            "vals": [1.0, 1.0],
        }
    ]
    plan = plan_series({("r", "loss"): {**pts(1, v=math.nan), **pts(3, 9)}}, stats, arrays, 2)
    rewritten = next(c for c in plan.write if c["seq"] == 0)
    assert math.isnan(rewritten["vals"][1]) and rewritten["max_value"] == 1.0
    assert plan.extend[0]["seq"] == 1 and plan.extend[0]["steps"] == [3]
    assert plan.extend[0]["stats"]["n_points"] == 2
    assert [c["steps"] for c in plan.write if c["seq"] == 2] == [[9]]


def test_summaries_ignore_nan_like_sqlite() -> None:
    t1, t2, t3 = (f"2024-05-01T12:00:0{i}.000000Z" for i in (1, 2, 3))
    rows = [
        {"node_id": "r", "key": "k", "seq": 0, **chunk_stats([0, 1], [t2, t1], [math.nan, 2.0])},
        {"node_id": "r", "key": "k", "seq": 1, **chunk_stats([5], [t3], [math.inf])},
        {"node_id": "r", "key": "n", "seq": 0, **chunk_stats([0], [t1], [math.nan])},
    ]
    for r in rows:  # absent properties come back as null
        r.setdefault("min_value", None)
        r.setdefault("max_value", None)
    out = summarize_chunks(rows)
    k = out[("r", "k")]
    assert (k.count, k.min, k.max, k.last, k.last_step) == (3, 2.0, math.inf, math.inf, 5)
    assert (k.first_timestamp, k.last_timestamp) == (_dt(t1), _dt(t3))
    n = out[("r", "n")]
    assert math.isnan(n.min) and math.isnan(n.max) and math.isnan(n.last)
    merged = merge_chunks(
        "r",
        "k",
        [
            {"seq": 1, "steps": [1], "ts": [NOW], "vals": [5.0]},
            {"seq": 0, "steps": [1, 0], "ts": [NOW] * 2, "vals": [1.0, 0.0]},
        ],
    )
    assert [(p.step, p.value) for p in merged] == [(0, 0.0), (1, 5.0)]


# --- the same scenarios on SQLite and on the real Neo4j ------------------------------------------


@pytest.fixture
def pair(neo: Neo4jStore) -> Iterator[tuple[GraphStore, GraphStore]]:
    sqlite = open_store("sqlite://")
    yield sqlite, neo
    sqlite.close()


def _both(pair: tuple[GraphStore, GraphStore], fn: Any) -> tuple[Any, Any]:
    return fn(pair[0]), fn(pair[1])


def _catch(fn: Any) -> Any:
    try:
        return fn()
    except Exception as e:  # compared by type and ids
        return (type(e).__name__, getattr(e, "ids", None))


def _nodes(nodes: list[Node | None]) -> list[Any]:
    return [None if n is None else (n.id, n.label, n.props) for n in nodes]


def _edges(edges: list[Edge | None]) -> list[Any]:
    return [
        None if e is None else (e.id, e.kind, e.source, e.target, e.props, e.asserted_by)
        for e in edges
    ]


def _seed(store: GraphStore) -> None:
    runs = []
    for i in range(30):
        props: dict[str, Any] = {
            "status": ["FINISHED", "FAILED", "RUNNING"][i % 3],
            "kind": ["train", "evaluate", "deploy"][i % 3 if i % 4 else 0],
            "params": {"lr": [0.1, 0.01, 0.001][i % 3], "epochs": i % 7, "dirty": i % 2 == 0},
            "tags": {"team": "growth" if i % 5 else "core"},
            "row_count": i * 100,
            "labels_list": ["a", "b"] if i % 6 == 0 else ["c"],
        }
        if i % 4:
            props["metrics"] = {"auc": round(0.5 + (i % 9) / 20, 3), "val-auc": i / 40}
        if i % 3 == 0:
            props["owner"] = f"user{i % 4}"
        runs.append(Node(f"r{i:02d}", "Run", props))
    store.upsert_nodes(runs)
    store.upsert_nodes([Node(f"d{i}", "DatasetVersion", {"rows": i}) for i in range(6)])


FILTERS: list[dict[str, Any] | None] = [
    *cypher.EXAMPLE_FILTERS.values(),
    {"tags": '{"team":"growth"}'},
    {"labels_list": '["a","b"]'},
    {"tags": {"$exists": True}},
    {"$not": {"metrics.auc": {"$gt": 0.7}}},
    {"$not": {"$or": [{"owner": "user0"}, {"metrics.auc": {"$lt": 0.6}}]}},
    {"owner": {"$nin": []}},
    {"owner": {"$nin": ["user0"]}},
    {"params.dirty": False, "row_count": {"$gt": 500, "$lte": 2500}},
    {"metrics.auc": {"$in": [0.55, 0.6, 1]}},
    # $contains: in text and in lists' and mappings' JSON text, never in numbers or booleans
    {"labels_list": {"$contains": "a"}},
    {"tags": {"$contains": "GROW"}},
    {"row_count": {"$contains": "1"}},
    {"params.dirty": {"$contains": "t"}},
    {"$not": {"status": {"$contains": "fail"}}},
]
ORDERS = [*cypher.EXAMPLE_ORDERS.values(), ["owner"], ["-owner", "-params.lr"], ["tags.team"]]


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: str(w)[:60])
def test_filters_match_sqlite(pair: tuple[GraphStore, GraphStore], where: Any) -> None:
    for store in pair:
        _seed(store)
    a, b = _both(pair, lambda s: [n.id for n in s.iter_nodes(where=where, page_size=7)])
    assert a == b
    a, b = _both(pair, lambda s: (s.count_nodes("Run", where), s.count_nodes(None, where)))
    assert a == b


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_orderings_and_cursors_match_sqlite(
    pair: tuple[GraphStore, GraphStore], order: list[str]
) -> None:
    for store in pair:
        _seed(store)
    for where in (None, {"status": {"$ne": "RUNNING"}}):
        a, b = _both(
            pair,
            lambda s, w=where: [
                n.id for n in s.iter_nodes("Run", where=w, order_by=order, page_size=4)
            ],
        )
        assert a == b


def test_writes_and_reads_match_sqlite(pair: tuple[GraphStore, GraphStore]) -> None:
    for store in pair:
        _seed(store)
        store.upsert_nodes(
            [Node("r01", "Run", {"params": {"lr": DELETE, "new": 1}, "status": None})]
        )
        store.upsert_nodes(
            [Node("x", "Run", {"a": 1, "z": DELETE}), Node("x", "Run", {"b": {"c": None}})]
        )
    a, b = _both(pair, lambda s: _nodes(s.get_nodes(["r01", "nope", "x", "r01"])))
    assert a == b
    a, b = _both(
        pair, lambda s: _catch(lambda: s.upsert_nodes([Node("d9", "Run"), Node("r00", "Model")]))
    )
    assert a == b == ("ConflictError", None)
    assert _both(pair, lambda s: s.get_nodes(["d9"])) == ([None], [None])

    event = datetime(2024, 1, 2, tzinfo=timezone.utc)
    edges = [
        Edge("r00", "d0", "USED", {"role": "train"}, event_time=event, asserted_by="ci"),
        Edge("r00", "d1", "USED", {"role": "test"}),
        Edge("d0", "r00", "GENERATED_BY", id="g1"),
    ]
    assert _both(pair, lambda s: s.upsert_edges(edges)) == (3, 3)
    again = [Edge("r00", "d0", "USED", {"weight": 2, "role": None}, asserted_by="other")]
    assert _both(pair, lambda s: s.upsert_edges(again)) == (1, 1)
    ids = [edges[0].id, "g1", "nope", edges[1].id]
    a, b = _both(pair, lambda s: s.get_edges(ids))
    assert _edges(a) == _edges(b)
    assert a[0].event_time == b[0].event_time == event
    assert a[0].asserted_by == b[0].asserted_by == "ci"
    cases = [
        [Edge("r00", "zz", "USED"), Edge("yy", "d0", "USED")],
        [Edge("r00", "d1", "DERIVED_FROM", id="g1")],
        [Edge("r00", "d2", "GENERATED_BY", id="g1")],
        [Edge("r00", "d5", "USED", id="fresh"), Edge("r00", "d4", "USED", id="fresh")],
    ]
    for batch in cases:
        a, b = _both(pair, lambda s, e=batch: _catch(lambda: s.upsert_edges(e)))
        assert a == b and a[0] in ("NotFoundError", "ConflictError")
    assert _both(pair, lambda s: s.get_edges(["fresh"])) == ([None], [None])

    a, b = _both(pair, lambda s: s.delete_edges(["g1", "g1", "nope"]))
    assert a == b == 1
    a, b = _both(pair, lambda s: s.delete_nodes(["d0", "d0", "nope"]))
    assert a == b == 1
    a, b = _both(pair, lambda s: _edges(s.get_edges([edges[0].id, edges[1].id])))
    assert a == b and a[0] is None
    assert _both(pair, lambda s: s.count_edges()) == (1, 1)


def test_traversals_match_sqlite(pair: tuple[GraphStore, GraphStore]) -> None:
    def build(store: GraphStore, stage: int) -> None:
        if stage == 0:
            store.upsert_nodes(
                [Node(f"d{i}", "DatasetVersion") for i in range(4)]
                + [Node(f"r{i}", "Run") for i in range(4)]
                + [Node("m1", "ModelVersion"), Node("dep", "Deployment")]
            )
            store.upsert_edges(
                [
                    Edge("r0", "d0", "USED"),
                    Edge("d1", "r0", "GENERATED_BY"),
                    Edge("d1", "d0", "DERIVED_FROM"),
                    Edge("r1", "d1", "USED"),
                    Edge("m1", "r1", "GENERATED_BY"),
                    Edge("dep", "m1", "SERVES"),
                    Edge("r2", "d1", "USED"),
                    Edge("r2", "r2", "CHILD_OF"),
                ]
            )
        else:
            store.upsert_nodes([Node("late", "Run")])
            store.upsert_edges([Edge("late", "d0", "USED"), Edge("r3", "m1", "USED")])

    for store in pair:
        build(store, 0)
    time.sleep(0.002)
    as_of = datetime.now(timezone.utc)
    time.sleep(0.002)
    for store in pair:
        build(store, 1)

    def walk(s: GraphStore, **kw: Any) -> Any:
        g = s.traverse(**kw)
        nodes = [(i, t.distance, t.reached_from, t.direction) for i, t in g.nodes.items()]
        return nodes, sorted(e.id for e in g.edges), g.truncated, g.truncation_reason

    cases: list[dict[str, Any]] = [
        {"start_ids": ["dep"], "direction": "UPSTREAM", "max_depth": 5},
        {"start_ids": ["d0"], "direction": "DOWNSTREAM", "max_depth": 3},
        {"start_ids": ["d1", "r2"], "direction": "BOTH", "max_depth": 1},
        {"start_ids": ["dep"], "max_depth": 2},
        {"start_ids": ["dep"], "max_depth": 9, "edge_kinds": ["SERVES", "GENERATED_BY"]},
        {"start_ids": ["d0"], "direction": "DOWNSTREAM", "labels": ["Run"]},
        {"start_ids": ["d0"], "direction": "DOWNSTREAM", "as_of": as_of, "max_depth": 6},
        {"start_ids": ["d0"], "direction": "DOWNSTREAM", "max_nodes": 3},
        {"start_ids": ["d0"], "edge_kinds": []},
    ]
    for kw in cases:
        a, b = _both(pair, lambda s, kw=kw: _catch(lambda: walk(s, **kw)))
        assert a == b, kw
    a, b = _both(pair, lambda s: _catch(lambda: walk(s, start_ids=["late"], as_of=as_of)))
    assert a == b == ("NotFoundError", ["late"])

    def adj(s: GraphStore, **kw: Any) -> Any:
        return {
            k: [(x.edge.id, x.node.id, x.direction) for x in v]
            for k, v in s.neighbors(**kw).items()
        }

    for kw in (
        {"ids": ["d1", "m1", "nope"]},
        {"ids": ["d1"], "direction": Direction.DOWNSTREAM, "edge_kinds": ["USED"]},
        {"ids": ["r0"], "direction": "UPSTREAM", "labels": ["DatasetVersion"]},
    ):
        a, b = _both(pair, lambda s, kw=kw: adj(s, **kw))
        assert a == b, kw


def test_series_match_sqlite(pair: tuple[GraphStore, GraphStore]) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def at(i: int) -> datetime:
        return t0 + timedelta(seconds=i)

    batches = [
        [SeriesPoint("r", "loss", i, 1 / (i + 1), at(i)) for i in range(700)],
        [SeriesPoint("r", "loss", i, float(i), at(i)) for i in range(690, 1300)],
        [SeriesPoint("r", "loss", 5, math.nan, at(5)), SeriesPoint("r", "loss", 5, -1.0, at(6))],
        [SeriesPoint("r", "loss", -3, math.inf, at(0)), SeriesPoint("r", "acc", 0, math.nan)],
        [SeriesPoint("q", "acc", 2, 0.5, at(2)), SeriesPoint("q", "acc", 1, 0.7, at(1))],
        [SeriesPoint("r", "loss", 1299, math.nan, at(9999))],
    ]
    for store in pair:
        store.upsert_nodes([Node("r", "Run"), Node("q", "Run")])
        for batch in batches:
            store.append_series(batch)

    def points(s: GraphStore, key: str, **kw: Any) -> list[Any]:
        return [(p.step, repr(p.value), p.timestamp) for p in s.read_series("r", key, **kw)]

    assert _both(pair, lambda s: points(s, "loss")) == _both(pair, lambda s: points(s, "loss"))
    a, b = _both(pair, lambda s: points(s, "loss"))
    assert a == b and len(a) == 1301
    a, b = _both(pair, lambda s: points(s, "loss", max_points=50))
    assert a == b
    a, b = _both(pair, lambda s: [(p.step, repr(p.value)) for p in s.read_series("r", "acc")])
    assert a == b

    def summary(s: GraphStore, *args: Any) -> Any:
        out = s.series_summary(*args)
        return {
            n: {
                k: (v.count, repr(v.last), v.last_step, repr(v.min), repr(v.max))
                + ((v.first_timestamp, v.last_timestamp) if k != "acc" or n == "q" else ())
                for k, v in d.items()
            }
            for n, d in out.items()
        }

    for args in ((["r", "q", "none"],), (["r"], ["loss"]), (["q"], []), ([],)):
        a, b = _both(pair, lambda s, args=args: summary(s, *args))
        assert a == b, args
    a, b = _both(
        pair, lambda s: _catch(lambda: s.append_series([SeriesPoint("ghost", "x", 0, 1.0)]))
    )
    assert a == b == ("NotFoundError", ["ghost"])
    assert _both(pair, lambda s: s.delete_nodes(["r"])) == (1, 1)
    assert _both(pair, lambda s: s.read_series("r", "loss")) == ([], [])
    assert _both(pair, lambda s: s.series_summary(["r"])) == ({"r": {}}, {"r": {}})


def test_transactions_match_sqlite(pair: tuple[GraphStore, GraphStore]) -> None:
    class Boom(Exception):
        pass

    for store in pair:
        with pytest.raises(Boom), store.transaction():
            store.upsert_nodes([Node("a", "Run")])
            assert store.get_nodes(["a"])[0] is not None  # reads see the open transaction
            raise Boom
        assert store.get_nodes(["a"]) == [None]

        with store.transaction():
            store.upsert_nodes([Node("a", "Run"), Node("b", "DatasetVersion")])
            try:
                with store.transaction():  # nested: joins the outer one
                    store.upsert_edges([Edge("a", "b", "USED")])
                    raise Boom
            except Boom:
                pass
            with pytest.raises(ConflictError):  # refused before writing: the rest stays
                store.upsert_nodes([Node("c", "Run"), Node("b", "Run")])
            with pytest.raises(NotFoundError):
                store.upsert_edges([Edge("a", "ghost", "USED")])
            store.append_series([SeriesPoint("a", "loss", 0, 1.0)])
    a, b = _both(pair, lambda s: (_nodes(s.get_nodes(["a", "b", "c"])), s.count_edges()))
    assert a == b
    assert a[1] == 1 and a[0][2] is None


def test_wipe_deletes_everything(neo: Neo4jStore) -> None:
    _seed(neo)
    neo.upsert_edges([Edge("r00", "d0", "USED")])
    neo.append_series([SeriesPoint("r00", "loss", 0, 1.0)])
    neo.append_audit("ann", "test", "r00", {})
    neo._wipe()
    with neo._driver.session() as session:
        assert session.run("MATCH (n) RETURN count(n) AS c").single()["c"] == 0
    assert neo.count_nodes() == 0 and neo.count_edges() == 0


def _race(n: int, work: Any) -> list[BaseException | None]:
    """Run ``work(i)`` in ``n`` threads released together; each thread's error or None."""
    barrier = threading.Barrier(n)
    out: list[BaseException | None] = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as e:  # collected for the assertions
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_creation_race_is_retried_and_merged(neo: Neo4jStore) -> None:
    """Writers creating one node id at once: the unique constraint refuses all but one
    create, and the retries merge into what the first wrote; nothing is lost."""
    stores = [open_store(neo4j_uri()) for _ in range(6)]
    try:
        for round_ in range(5):
            node_id = f"n{round_}"
            errors = _race(
                6, lambda i, n=node_id: stores[i].upsert_nodes([Node(n, "Run", {f"k{i}": i})])
            )
            assert errors == [None] * 6
            assert neo.get_node(node_id).props == {f"k{i}": i for i in range(6)}
    finally:
        for st in stores:
            st.close()
    assert neo.count_nodes("Run") == 5


def test_a_write_the_driver_runs_again_forgets_the_tree_head_its_first_attempt_wrote(
    neo: Neo4jStore,
) -> None:
    """The driver runs a write again after a transient failure, in a new transaction: a tree
    head the failed attempt wrote was rolled back with it. The store must read the last head
    afresh rather than take that one as written, or the next head due is skipped until the
    interval after it."""
    neo.configure_audit(CheckpointPolicy(every=2))
    for i in range(3):
        neo.append_audit("alice", "test", f"t{i}", {})
    assert [h.tree_size for h in neo.iter_checkpoints()] == [2]
    attempts = 0

    def work(tx: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            # a head over entries 1-3, written in this attempt's transaction...
            assert neo._checkpoint_in(tx, 3, force=True) is not None
            # ...which the driver rolls back, then runs the work again
            raise TransientError("the first attempt fails after writing its head")

    neo._write(work, "a write the driver retries")
    assert attempts == 2
    assert [h.tree_size for h in neo.iter_checkpoints()] == [2]  # the head was rolled back
    neo.append_audit("alice", "test", "t3", {})  # entry 4: two after the head at 2
    assert [h.tree_size for h in neo.iter_checkpoints()] == [2, 4]
    assert neo.verify_audit().ok


def test_a_failed_write_forgets_the_tree_head_it_wrote(neo: Neo4jStore) -> None:
    """The same for a write that fails for good (here: an error that is not retried)."""
    neo.configure_audit(CheckpointPolicy(every=2))
    for i in range(3):
        neo.append_audit("alice", "test", f"t{i}", {})

    def work(tx: Any) -> None:
        neo._checkpoint_in(tx, 3, force=True)
        raise ValidationError("refused after the head was written", field="x")

    with pytest.raises(ValidationError):
        neo._write(work, "a write that fails")
    neo.append_audit("alice", "test", "t3", {})
    assert [h.tree_size for h in neo.iter_checkpoints()] == [2, 4]


def test_one_edge_id_with_different_ends_from_two_writers(neo: Neo4jStore) -> None:
    """Two writers create one edge id between different nodes at once (their node locks do
    not overlap): one edge is stored, the other writer gets a ConflictError, never a second
    relationship with the same id."""
    neo.upsert_nodes(
        [Node(f"r{i}", "Run") for i in range(8)]
        + [Node(f"d{i}", "DatasetVersion") for i in range(8)]
    )
    neo.upsert_nodes([Node("x0", "Run"), Node("y0", "DatasetVersion")])
    neo.upsert_edges([Edge("x0", "y0", "USED", id="warm")])  # the type's constraint exists
    stores = [open_store(neo4j_uri()) for _ in range(2)]
    try:
        for round_ in range(4):
            edge_id = f"e{round_}"
            errors = _race(
                2,
                lambda i, r=round_, e=edge_id: stores[i].upsert_edges(
                    [Edge(f"r{2 * r + i}", f"d{2 * r + i}", "USED", id=e)]
                ),
            )
            assert sorted(type(e).__name__ for e in errors if e is not None) in (
                [],
                ["ConflictError"],
            )
            with neo._driver.session() as session:
                count = session.run(
                    "MATCH ()-[r]->() WHERE r.id = $id RETURN count(r) AS c", id=edge_id
                ).single()["c"]
            assert count == 1
    finally:
        for st in stores:
            st.close()


def test_a_transaction_reads_the_relationship_types_once_and_looks_in_those_it_creates(
    neo: Neo4jStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edge look-up searches every relationship type (an id is unique across them). The
    types are read once per transaction, not once per look-up; a type the transaction
    creates is searched by its later look-ups, so an id it wrote under that type is refused
    under another; and the next transaction reads them afresh (a type another store created
    since is searched)."""
    neo.upsert_nodes([Node("a", "Run"), Node("b", "DatasetVersion")])
    neo.upsert_edges([Edge("a", "b", "USED", id="used")])
    sent: list[str] = []
    real = neo4j_module._run

    def counting(tx: Any, stmt: cypher.Statement, *args: Any, **kwargs: Any) -> Any:
        sent.append(stmt.name)
        return real(tx, stmt, *args, **kwargs)

    monkeypatch.setattr(neo4j_module, "_run", counting)
    new_kind = f"NEW_{uuid.uuid4().hex.upper()}"  # a type the server has never held
    with neo.transaction():
        neo.upsert_edges([Edge("a", "b", "USED", {"n": 1}, id="used")])
        neo.upsert_edges([Edge("a", "b", new_kind, id="fresh")])
        with pytest.raises(ConflictError):
            neo.upsert_edges([Edge("b", "a", "OTHER_KIND", id="fresh")])
        assert [e.kind for e in neo.get_edges(["fresh", "used"]) if e] == [new_kind, "USED"]
    assert sent.count("edge.types") == 1
    assert sent.count("edge.lookup") == 4

    other = open_store(neo4j_uri())
    try:
        other.upsert_edges([Edge("b", "a", f"ELSEWHERE_{new_kind}", id="far")])
    finally:
        other.close()
    sent.clear()
    with neo.transaction(), pytest.raises(ConflictError):
        neo.upsert_edges([Edge("a", "b", "USED", id="far")])
    assert sent.count("edge.types") == 1


def _operators_in_order(plan: Any) -> list[str]:
    """A plan's operators, each before its children."""
    found = [plan["operatorType"].split("@")[0]]
    for child in plan.get("children", []):
        found += _operators_in_order(child)
    return found


def _db_hits(plan: Any) -> int:
    return int(plan.get("dbHits") or 0) + sum(_db_hits(c) for c in plan.get("children", []))


def test_an_append_locks_the_head_and_reads_the_newest_entry_in_one_statement(
    neo: Neo4jStore,
) -> None:
    """The first append of a transaction takes the head's lock and reads the newest entry in
    one round trip. The plan must run the read after the lock (an Apply under an eager
    aggregation, never a CartesianProduct that may read first) and find the entry through the
    seq index, in as many database hits for 400 entries as for 40."""
    hits = []
    for entries in (40, 400):
        newest = neo.audit_head()
        with neo.transaction():
            for i in range(entries - (newest.seq if newest else 0)):
                neo.append_audit("alice", "test", f"t{i}", {"i": i})
        stmt = cypher.audit_lock_head()
        with neo._driver.session() as session:
            summary = session.run("PROFILE " + stmt.text, stmt.params).consume()
        assert summary.profile is not None
        ops = _operators_in_order(summary.profile)
        assert ops.index("Apply") < ops.index("EagerAggregation") < ops.index("Merge")
        assert "NodeIndexScan" in ops and "Limit" in ops
        assert not {"CartesianProduct", "AllNodesScan", "NodeByLabelScan"} & set(ops)
        hits.append(_db_hits(summary.profile))
        head = neo.audit_head()
        assert head is not None and head.seq == entries
    assert hits[0] == hits[1]
    assert neo.verify_audit().ok


def test_order_clause_puts_nulls_last_both_ways() -> None:
    clause = cypher.order_clause(parse_order(["-metrics.auc", "owner"]))
    assert clause == (
        "n.`metrics.auc` IS NULL, n.`metrics.auc` DESC, n.`owner` IS NULL, n.`owner`, n.id"
    )


def test_pages_by_a_container_valued_path(neo: Neo4jStore) -> None:
    """Ordering by a list or mapping orders by its JSON text (what SQLite's json_extract
    yields); the cursor then holds the container and is compared as JSON text too."""
    _seed(neo)
    ids = [n.id for n in neo.iter_nodes("Run", order_by=["labels_list"], page_size=4)]
    everything = neo.find_nodes("Run", order_by=["labels_list"], limit=100).items
    assert ids == [n.id for n in everything] and len(ids) == 30
    assert ids[:5] == ["r00", "r06", "r12", "r18", "r24"]  # '["a","b"]' < '["c"]'


def test_relationship_constraint_waits_for_the_transaction(neo: Neo4jStore) -> None:
    """Schema changes cannot share a transaction with data, and one from another session
    could queue behind the open transaction's locks: it is made after the transaction."""
    neo.upsert_nodes([Node("a", "Run"), Node("b", "DatasetVersion")])
    with neo._driver.session() as session:
        session.run("DROP CONSTRAINT lh_rel_uid_CHILD_OF IF EXISTS").consume()
    with neo.transaction():
        neo.upsert_edges([Edge("a", "b", "CHILD_OF")])
        assert "lh_rel_uid_CHILD_OF" not in schema_names(neo)
    assert schema_names(neo)["lh_rel_uid_CHILD_OF"] == "RELATIONSHIP_UNIQUENESS"


def test_docker_compose_runs_the_neo4j_release_the_tests_run() -> None:
    root = Path(__file__).resolve().parent.parent
    pom = (root / "tests" / "neo4j" / "pom.xml").read_text()
    version = re.search(r"<neo4j.version>([0-9.]+)</neo4j.version>", pom)
    assert version and version.group(1).startswith("5.26.")
    compose = (root / "docker-compose.yml").read_text()
    assert f"image: neo4j:{version.group(1)}-community" in compose


def test_a_new_database_logs_no_driver_warnings(
    neo: Neo4jStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Statements that read properties nothing has yet (a fresh database) make the server
    warn "property key does not exist"; the store asks the driver not to send those."""
    with neo._driver.session() as session:
        session.run("DROP CONSTRAINT lh_rel_uid_SERVES IF EXISTS").consume()
    caplog.set_level("WARNING", logger="neo4j")
    with open_store(neo4j_uri()) as fresh:
        fresh.upsert_nodes([Node("d", "Deployment"), Node("m", "ModelVersion")])
        fresh.upsert_edges([Edge("d", "m", "SERVES", {"x": 1})])
        fresh.traverse(["d"], as_of=datetime.now(timezone.utc))
    assert [r.getMessage()[:200] for r in caplog.records if r.name.startswith("neo4j")] == []


def _operators(plan: Any) -> set[str]:
    out = {str(plan["operatorType"]).split("@")[0]}
    for child in plan.get("children", []):
        out |= _operators(child)
    return out


def test_no_statement_scans_every_node_or_joins_a_cartesian_product(neo: Neo4jStore) -> None:
    """Every statement shape the store sends, planned by the real server (``EXPLAIN``): none
    scans all nodes or plans a cartesian product, except the two that mean to read
    everything (wiping a test database; a search over every kind of node)."""
    neo.upsert_nodes([Node("a", "Run"), Node("b", "DatasetVersion")])
    for kind in cypher.EXAMPLE_KINDS:
        neo.upsert_edges([Edge("a", "b", kind)])  # the relationship id constraints exist
    bad: dict[str, set[str]] = {}
    with neo._driver.session() as session:
        # index statistics sampled from this graph (not an earlier test's), caches cleared
        session.run("CALL db.prepareForReplanning()").consume()
        for name, text, params in cypher.statement_catalog():
            if name.startswith("schema.") or name.startswith("store.wipe"):
                continue
            every_kind = (
                name.startswith(("node.count", "node.find")) and "_label = $label" not in text
            )
            plan = session.run("EXPLAIN " + text, params).consume().plan
            found = _operators(plan) & {"AllNodesScan", "CartesianProduct"}
            if found and not (every_kind and found == {"AllNodesScan"}):
                bad[name] = found
    assert bad == {}


def _leaves(plan: Any) -> list[str]:
    children = plan.get("children", [])
    if not children:
        return [str(plan["operatorType"]).split("@")[0]]
    return [leaf for child in children for leaf in _leaves(child)]


@pytest.mark.parametrize("nodes", [0, 2000])
def test_a_traversal_level_starts_from_its_frontier_whatever_the_graph(
    neo: Neo4jStore, nodes: int
) -> None:
    """Every shape of one traversal level (kinds, far labels, ``as_of``, a limit) is planned
    from the frontier's ids (the unique id index), on a nearly empty graph and a fuller one.
    A condition on the far end that an index of its could answer let the planner start there
    on some statistics: every node of the labels (an index seek over all DatasetVersions), or
    every node created before ``as_of`` joined to the frontier by a cartesian product."""
    neo.upsert_nodes(
        [Node("a", "Run"), Node("b", "DatasetVersion")]
        + [Node(f"n{i}", "DatasetVersion" if i % 2 else "Run") for i in range(nodes)]
    )
    for kind in cypher.EXAMPLE_KINDS:
        neo.upsert_edges([Edge("a", "b", kind)])
    starts: dict[str, list[str]] = {}
    with neo._driver.session() as session:
        # index statistics sampled from this graph (not an earlier test's), caches cleared
        session.run("CALL db.prepareForReplanning()").consume()
        for name, text, params in cypher.statement_catalog():
            if name.startswith("edge.expand"):
                plan = session.run("EXPLAIN " + text, params).consume().plan
                starts[name] = _leaves(plan)
    assert len(starts) >= 30  # every variant of the catalog
    # the frontier: its ids unwound, each node sought by the unique id index; nothing else read
    frontier = {"Unwind", "Argument", "NodeUniqueIndexSeek"}
    elsewhere = {
        n: s for n, s in starts.items() if not set(s) <= frontier or "NodeUniqueIndexSeek" not in s
    }
    assert elsewhere == {}
