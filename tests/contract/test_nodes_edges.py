"""Nodes and edges: idempotent upserts, merges, look-ups, deletes, bad input."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from lineagehub.graph import (
    DELETE,
    ConflictError,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    ValidationError,
    edge_id,
)


def test_upsert_and_get_in_input_order_with_gaps(store: GraphStore) -> None:
    assert store.upsert_nodes([Node("a", "Dataset", {"name": "a"}), Node("b", "Run")]) == 2
    got = store.get_nodes(["b", "missing", "a", "b"])
    assert [n.id if n else None for n in got] == ["b", None, "a", "b"]
    a = got[2]
    assert a is not None and a.label == "Dataset" and a.props == {"name": "a"}
    assert a.created_at is not None and a.created_at.tzinfo is not None
    assert store.get_nodes([]) == []


def test_upsert_is_idempotent_and_merges_properties(store: GraphStore) -> None:
    store.upsert_nodes([Node("r", "Run", {"params": {"lr": 0.1}, "status": "RUNNING"})])
    first = store.get_node("r")
    store.upsert_nodes([Node("r", "Run", {"params": {"epochs": 3}, "status": "FINISHED"})])
    store.upsert_nodes([Node("r", "Run", {"params": {"epochs": 3}, "status": "FINISHED"})])
    node = store.get_node("r")
    assert node.props == {"params": {"lr": 0.1, "epochs": 3}, "status": "FINISHED"}
    assert node.created_at == first.created_at
    assert node.updated_at is not None and node.updated_at >= first.created_at  # type: ignore[operator]
    assert store.count_nodes() == 1


def test_delete_removes_a_property_and_none_is_a_value(store: GraphStore) -> None:
    store.upsert_nodes([Node("r", "Run", {"note": "x", "params": {"a": 1, "b": 2, "c": 3}})])
    store.upsert_nodes([Node("r", "Run", {"note": DELETE, "params": {"a": DELETE, "b": None}})])
    assert store.get_node("r").props == {"params": {"b": None, "c": 3}}
    # on a new node, DELETE is simply absent and None is kept, at any depth
    store.upsert_nodes([Node("s", "Run", {"gone": DELETE, "k": None, "p": {"d": None}})])
    assert store.get_node("s").props == {"k": None, "p": {"d": None}}
    # a new sub-document written over a scalar keeps its values, drops its DELETEs
    store.upsert_nodes([Node("s", "Run", {"k": {"x": DELETE, "y": None, "z": [1, None]}})])
    assert store.get_node("s").props == {"k": {"y": None, "z": [1, None]}, "p": {"d": None}}
    # edges merge the same way
    store.upsert_edges([Edge("r", "s", "CHILD_OF", {"a": 1, "b": 2})])
    store.upsert_edges([Edge("r", "s", "CHILD_OF", {"a": DELETE, "b": None})])
    edge = store.get_edges([edge_id("CHILD_OF", "r", "s")])[0]
    assert edge is not None and edge.props == {"b": None}


def test_delete_is_only_for_keys(store: GraphStore) -> None:
    with pytest.raises(ValidationError):
        store.upsert_nodes([Node("r", "Run", {"xs": [1, DELETE]})])


def test_duplicate_ids_in_one_batch_apply_in_order(store: GraphStore) -> None:
    store.upsert_nodes([Node("r", "Run", {"a": 1, "b": 1}), Node("r", "Run", {"b": 2, "c": 3})])
    assert store.get_node("r").props == {"a": 1, "b": 2, "c": 3}


def test_label_cannot_change(store: GraphStore) -> None:
    store.upsert_nodes([Node("x", "Run", {"a": 1})])
    with pytest.raises(ConflictError, match="'x'"):
        store.upsert_nodes([Node("y", "Run"), Node("x", "Dataset", {"a": 2})])
    # nothing of the failed batch was written
    assert store.get_nodes(["y"]) == [None]
    assert store.get_node("x").props == {"a": 1}


def test_unicode_and_nested_values_round_trip(store: GraphStore) -> None:
    props = {
        "name": "données 🚀 \"quoted\" 'single' `tick`",
        "nested": {"list": [1, 2.5, "x", None, True, {"deep": []}], "empty": {}},
        "big": 2**53,
        "neg": -0.125,
        "flag": False,
    }
    store.upsert_nodes([Node("ü/ñ:1@sha256:ab", "DatasetVersion", props)])
    assert store.get_node("ü/ñ:1@sha256:ab").props == props


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"loss": math.nan}, "props.loss"),
        ({"m": {"auc": math.inf}}, "props.m.auc"),
        ({"obj": object()}, "props.obj"),
        ({"when": datetime(2024, 1, 1)}, "props.when"),
        ({"x}) DETACH DELETE n //": 1}, "props.x}) DETACH DELETE n //"),
        ({"bad key": 1}, "props.bad key"),
        ({"_props": "{}"}, "props._props"),
        ({"id": "other"}, "props.id"),
        ({1: "int key"}, "props.1"),
        ({"m": {"\x00lineagehub.delete": True}}, "props.m"),
        # a lone surrogate (text decoded with surrogateescape): no UTF-8 for it
        ({"note": "caf\udce9"}, "props.note"),
        ({"m": ["ok", {"deep": "\ud800"}]}, "props.m[1].deep"),
        ({"m": {"k\udce9": 1}}, "props.m"),
    ],
)
def test_bad_properties_are_rejected_naming_the_field(
    store: GraphStore, props: dict, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        store.upsert_nodes([Node("ok", "Run"), Node("bad", "Run", props)])
    assert info.value.field == field
    assert store.get_nodes(["ok", "bad"]) == [None, None]


@pytest.mark.parametrize(
    "node",
    [
        Node("", "Run"),
        Node("x" * 513, "Run"),
        Node("a", "Run`) DETACH DELETE n //"),
        Node("a", "Run:Admin"),
        Node("a", ""),
        Node("a", "1Run"),
    ],
)
def test_bad_ids_and_labels_are_rejected(store: GraphStore, node: Node) -> None:
    with pytest.raises(ValidationError):
        store.upsert_nodes([node])
    assert store.count_nodes() == 0


def test_oversized_properties_are_rejected(store: GraphStore) -> None:
    with pytest.raises(ValidationError, match="limit"):
        store.upsert_nodes([Node("big", "Artifact", {"blob": "x" * 1_100_000})])


def test_get_node_unknown_raises_not_found(store: GraphStore) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get_node("nope")
    assert info.value.ids == ["nope"] and info.value.code == "NOT_FOUND"


def _graph(store: GraphStore) -> None:
    store.upsert_nodes([Node("d", "DatasetVersion"), Node("r", "Run"), Node("m", "ModelVersion")])


def test_edges_carry_provenance(store: GraphStore) -> None:
    _graph(store)
    when = datetime(2024, 3, 3, 12, 0, tzinfo=timezone.utc)
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    e = Edge("r", "d", "USED", {"role": "train"}, event_time=when, asserted_by="agent:ann")
    assert store.upsert_edges([e, Edge("m", "r", "GENERATED_BY")]) == 2
    got = store.get_edges([e.id, "e:none"])
    assert got[1] is None
    edge = got[0]
    assert edge is not None
    assert (edge.source, edge.target, edge.kind) == ("r", "d", "USED")
    assert edge.props == {"role": "train"}
    assert edge.event_time == when
    assert edge.asserted_by == "agent:ann"
    assert edge.ingested_at is not None and edge.ingested_at >= before
    # event_time defaults to when the store learned it
    gen = store.get_edges([edge_id("GENERATED_BY", "m", "r")])[0]
    assert gen is not None and gen.event_time == gen.ingested_at


def test_edges_are_idempotent_and_keep_first_times(store: GraphStore) -> None:
    _graph(store)
    e = Edge("r", "d", "USED", {"role": "train"})
    store.upsert_edges([e])
    first = store.get_edges([e.id])[0]
    later = datetime(2030, 1, 1, tzinfo=timezone.utc)
    store.upsert_edges([Edge("r", "d", "USED", {"rows": 10}, event_time=later)])
    again = store.get_edges([e.id])[0]
    assert first is not None and again is not None
    assert again.props == {"role": "train", "rows": 10}
    assert again.ingested_at == first.ingested_at
    assert again.event_time == first.event_time
    assert len(store.neighbors(["r"], "UPSTREAM")["r"]) == 1


def test_explicit_ids_allow_parallel_edges(store: GraphStore) -> None:
    _graph(store)
    store.upsert_edges(
        [
            Edge("r", "d", "USED", {"role": "train"}, id=edge_id("USED", "r", "d", "train")),
            Edge("r", "d", "USED", {"role": "test"}, id=edge_id("USED", "r", "d", "test")),
        ]
    )
    roles = sorted(a.edge.props["role"] for a in store.neighbors(["r"], "UPSTREAM")["r"])
    assert roles == ["test", "train"]


def test_edge_ends_and_kind_are_immutable(store: GraphStore) -> None:
    _graph(store)
    store.upsert_edges([Edge("r", "d", "USED", id="e1")])
    with pytest.raises(ConflictError):
        store.upsert_edges([Edge("r", "m", "USED", id="e1")])
    with pytest.raises(ConflictError):
        store.upsert_edges([Edge("r", "d", "RAN_CODE", id="e1")])
    edge = store.get_edges(["e1"])[0]
    assert edge is not None and (edge.target, edge.kind) == ("d", "USED")


def test_edge_to_unknown_node_is_not_found_and_nothing_is_written(store: GraphStore) -> None:
    _graph(store)
    with pytest.raises(NotFoundError) as info:
        store.upsert_edges([Edge("m", "r", "GENERATED_BY"), Edge("r", "ghost", "USED")])
    assert info.value.ids == ["ghost"]
    assert store.get_edges([edge_id("GENERATED_BY", "m", "r")]) == [None]


@pytest.mark.parametrize("kind", ["used", "USED`]->() DETACH DELETE n //", "USED-X", "", "1X"])
def test_bad_edge_kinds_are_rejected(store: GraphStore, kind: str) -> None:
    _graph(store)
    with pytest.raises(ValidationError):
        store.upsert_edges([Edge("r", "d", kind)])


def test_delete_nodes_removes_their_edges_and_series(store: GraphStore) -> None:
    from lineagehub.graph import SeriesPoint

    _graph(store)
    store.upsert_edges([Edge("r", "d", "USED"), Edge("m", "r", "GENERATED_BY")])
    store.append_series([SeriesPoint("r", "loss", 0, 1.0)])
    assert store.delete_nodes(["r", "unknown"]) == 1
    assert store.get_nodes(["r"]) == [None]
    assert store.neighbors(["d", "m"]) == {"d": [], "m": []}
    assert store.read_series("r", "loss") == []
    assert store.get_edges([edge_id("USED", "r", "d")]) == [None]


def test_delete_edges(store: GraphStore) -> None:
    _graph(store)
    e = Edge("r", "d", "USED")
    store.upsert_edges([e])
    assert store.delete_edges([e.id, "e:none"]) == 1
    assert store.neighbors(["r"])["r"] == []
    assert store.count_nodes() == 3


def test_neighbors_batch_both_directions(store: GraphStore) -> None:
    _graph(store)
    store.upsert_edges([Edge("r", "d", "USED"), Edge("m", "r", "GENERATED_BY")])
    result = store.neighbors(["r", "d", "lonely"], "BOTH")
    assert {(a.node.id, a.direction.value) for a in result["r"]} == {
        ("d", "UPSTREAM"),
        ("m", "DOWNSTREAM"),
    }
    assert [a.node.id for a in result["d"]] == ["r"]
    assert result["lonely"] == []
    only_used = store.neighbors(["r"], "BOTH", edge_kinds=["USED"])["r"]
    assert [a.edge.kind for a in only_used] == ["USED"]
    only_models = store.neighbors(["r"], "BOTH", labels=["ModelVersion"])["r"]
    assert [a.node.id for a in only_models] == ["m"]


def test_properties_stay_within_the_limit_once_merged(store: GraphStore) -> None:
    """A patch within the limit that would take what is stored past it is refused, naming
    the node or edge, and nothing of the write is kept (before, SQLite stored it and grew a
    row past what Neo4j and every reader accept)."""
    from lineagehub.graph.model import MAX_PROPS_BYTES

    half = "x" * (MAX_PROPS_BYTES // 2)
    store.upsert_nodes([Node("r", "Run", {"a": half}), Node("s", "Run")])
    store.upsert_edges([Edge("r", "s", "CHILD_OF", {"a": half})])
    before_node, before_edge = store.get_node("r"), store.get_edges([edge_id("CHILD_OF", "r", "s")])
    for write in (
        lambda: store.upsert_nodes([Node("s", "Run", {"k": 1}), Node("r", "Run", {"b": half})]),
        lambda: store.upsert_edges([Edge("r", "s", "CHILD_OF", {"b": half})]),
    ):
        with pytest.raises(ValidationError) as err:
            write()
        assert err.value.field == "props"
        assert "'r'" in str(err.value) or "CHILD_OF" in str(err.value)
        assert f"more than {MAX_PROPS_BYTES:,} characters" in str(err.value)
    assert store.get_node("r") == before_node and store.get_node("s").props == {}
    assert store.get_edges([edge_id("CHILD_OF", "r", "s")]) == before_edge
    # two patches of one new node in one call are merged too
    with pytest.raises(ValidationError):
        store.upsert_nodes([Node("t", "Run", {"a": half}), Node("t", "Run", {"b": half})])
    assert store.get_nodes(["t"]) == [None]
    # a merge that fits, and replacing a big value by a small one, still work
    store.upsert_nodes([Node("r", "Run", {"b": "y" * 1000})])
    store.upsert_nodes([Node("r", "Run", {"a": "small", "c": half})])
    assert store.get_node("r").props == {"a": "small", "b": "y" * 1000, "c": half}
