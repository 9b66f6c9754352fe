"""What a read hands back is the plain value a constructor makes, each its own: backends
build nodes and edges from stored text by a faster path (``graph.hydrate``: times parsed
once per distinct text, small property texts decoded once and copied, slots set directly),
and a batch write checks each distinct end, kind and time once. None of it may show."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from lineagehub.graph import Direction, Edge, GraphStore, Node, ValidationError
from lineagehub.graph.hydrate import stored_edge, stored_node, stored_props, stored_time

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def _fan_in(store: GraphStore) -> None:
    """Three runs that used the same two partitions, every edge with the same properties
    and, per run, the same time: what the caches see repeated."""
    store.upsert_nodes(
        [Node(f"dsv:{i}", "DatasetVersion", {"n": i, "cols": ["a", "b"]}) for i in range(2)]
        + [Node(f"run:{i}", "Run", {"params": {"lr": 0.1}}) for i in range(3)]
    )
    store.upsert_edges(
        [
            Edge(f"run:{r}", f"dsv:{d}", "USED", {"role": "input"}, event_time=T0 + timedelta(r))
            for r in range(3)
            for d in range(2)
        ]
    )


def test_read_values_are_plain_and_equal_to_constructed_ones(store: GraphStore) -> None:
    _fan_in(store)
    sub = store.traverse(["run:0"], Direction.UPSTREAM, 2)
    node = sub.nodes["dsv:1"].node
    assert type(node) is Node
    assert node == Node("dsv:1", "DatasetVersion", {"n": 1, "cols": ["a", "b"]},
                        node.created_at, node.updated_at)  # fmt: skip
    assert node.created_at is not None and node.created_at.tzinfo is not None
    edge = next(e for e in sub.edges if e.target == "dsv:1")
    assert type(edge) is Edge
    assert edge == Edge("run:0", "dsv:1", "USED", {"role": "input"}, event_time=T0,
                        id=edge.id, ingested_at=edge.ingested_at)  # fmt: skip
    assert edge.event_time == T0 and edge.event_time.tzinfo is not None
    assert dataclasses.replace(edge, props={}).props == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        edge.kind = "X"  # type: ignore[misc]


def test_every_read_gets_its_own_properties(store: GraphStore) -> None:
    _fan_in(store)
    sub = store.traverse(["dsv:0", "dsv:1"], Direction.DOWNSTREAM, 1)
    props = [e.props for e in sub.edges]
    assert len(props) == 6 and all(p == {"role": "input"} for p in props)
    assert len({id(p) for p in props}) == 6  # six mappings, not one shared
    props[0]["role"] = "changed"
    props[1]["extra"] = 1
    again = store.traverse(["dsv:0", "dsv:1"], Direction.DOWNSTREAM, 1)
    assert all(e.props == {"role": "input"} for e in again.edges)
    nodes = store.get_nodes(["dsv:0", "dsv:0"])
    assert nodes[0] is not None and nodes[1] is not None
    nodes[0].props["cols"].append("c")
    assert store.get_node("dsv:0").props == {"n": 0, "cols": ["a", "b"]}


def test_a_batch_refuses_a_bad_end_kind_or_time_after_good_repeats(store: GraphStore) -> None:
    store.upsert_nodes([Node("a", "Run"), Node("b", "Dataset")])
    good = [Edge("a", "b", "USED", event_time=T0, id=f"e{i}") for i in range(3)]
    bad = [
        Edge("a", "", "USED", id="x1"),
        Edge("a", "b", "used", id="x2"),
        Edge("a", "b", "USED", event_time=datetime(2025, 3, 1), id="x3"),  # naive
        Edge("a", "b", "USED", asserted_by="", id="x4"),
    ]
    fields = ["edge.target", "kind", "edge.event_time", "edge.asserted_by"]
    for edge, field in zip(bad, fields):
        with pytest.raises(ValidationError) as err:
            store.upsert_edges([*good, edge])
        assert err.value.field == field
    assert store.count_edges() == 0  # nothing of a refused batch is written


def test_a_time_in_another_zone_is_stored_as_the_same_instant(store: GraphStore) -> None:
    store.upsert_nodes([Node("a", "Run"), Node("b", "Dataset")])
    plus2 = timezone(timedelta(hours=2))
    store.upsert_edges(
        [
            Edge("a", "b", "USED", event_time=T0, id="utc"),
            Edge("a", "b", "USED", event_time=T0.astimezone(plus2), id="plus2"),
        ]
    )
    utc, other = store.get_edges(["utc", "plus2"])
    assert utc is not None and other is not None
    assert utc.event_time == other.event_time == T0
    assert other.event_time is not None and other.event_time.utcoffset() == timedelta(0)


def test_hydration_matches_the_constructors() -> None:
    text = "2025-03-01T12:00:00.000000Z"
    assert stored_time(text) == T0 and stored_time(None) is None
    assert stored_props("{}") == {} and stored_props("{}") is not stored_props("{}")
    flat = '{"role":"input","n":1,"x":null,"ok":true,"f":1.5}'
    first, second = stored_props(flat), stored_props(flat)
    assert first == second == {"role": "input", "n": 1, "x": None, "ok": True, "f": 1.5}
    assert first is not second
    nested = '{"cols":["a"]}'
    one, two = stored_props(nested), stored_props(nested)
    assert one == two and one["cols"] is not two["cols"]
    assert stored_node("n", "Run", '{"a":[1]}', text, None) == Node("n", "Run", {"a": [1]}, T0)
    assert stored_edge("e", "USED", "s", "t", "{}", text, text, "me") == Edge(
        "s", "t", "USED", {}, event_time=T0, asserted_by="me", id="e", ingested_at=T0
    )
