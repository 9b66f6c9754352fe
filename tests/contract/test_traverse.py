"""traverse: direction, depth, filters, budgets, cycles, as_of, several roots."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

import pytest

from lineagehub.graph import (
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    TruncationReason,
    ValidationError,
)

#   raw --DERIVED_FROM-- clean --USED(train)-- train --GENERATED_BY-- mv1 --SERVES-- deploy
#   (edges point from the later thing to what it came from)
#   train --RAN_CODE--> commit ; eval --USED--> mv1 ; eval --USED--> clean ; train --PART_OF--> exp


@pytest.fixture
def lineage(store: GraphStore) -> GraphStore:
    store.upsert_nodes(
        [
            Node("raw", "DatasetVersion", {"name": "raw"}),
            Node("clean", "DatasetVersion", {"name": "clean"}),
            Node("prep", "Run", {"kind": "transform"}),
            Node("train", "Run", {"kind": "train"}),
            Node("commit", "CodeCommit", {"sha": "abc"}),
            Node("exp", "Experiment"),
            Node("mv1", "ModelVersion", {"version": 1}),
            Node("eval", "Run", {"kind": "evaluate"}),
            Node("deploy", "Deployment"),
        ]
    )
    store.upsert_edges(
        [
            Edge("clean", "prep", "GENERATED_BY"),
            Edge("prep", "raw", "USED"),
            Edge("clean", "raw", "DERIVED_FROM"),
            Edge("train", "clean", "USED", {"role": "train"}),
            Edge("train", "commit", "RAN_CODE"),
            Edge("train", "exp", "PART_OF"),
            Edge("mv1", "train", "GENERATED_BY"),
            Edge("eval", "mv1", "USED"),
            Edge("eval", "clean", "USED", {"role": "test"}),
            Edge("deploy", "mv1", "SERVES"),
        ]
    )
    return store


def dist(sub: object) -> dict[str, int]:
    return {i: t.distance for i, t in sub.nodes.items()}  # type: ignore[attr-defined]


def test_upstream_follows_edges_forward(lineage: GraphStore) -> None:
    sub = lineage.traverse(["mv1"], Direction.UPSTREAM, max_depth=10)
    assert dist(sub) == {
        "mv1": 0, "train": 1, "clean": 2, "commit": 2, "exp": 2, "prep": 3, "raw": 3,
    }  # fmt: skip
    assert not sub.truncated and sub.truncation_reason is None
    t = sub.nodes["clean"]
    assert t.reached_from == "train" and t.direction is Direction.UPSTREAM
    assert sub.nodes["mv1"].reached_from is None and sub.nodes["mv1"].direction is None
    assert sub.nodes["train"].node.props == {"kind": "train"}
    # every edge among the returned nodes that was walked, with provenance
    kinds = sorted((e.source, e.kind, e.target) for e in sub.edges)
    assert ("clean", "DERIVED_FROM", "raw") in kinds
    assert ("mv1", "GENERATED_BY", "train") in kinds
    assert all(e.ingested_at is not None for e in sub.edges)
    assert len(kinds) == 7


def test_downstream_follows_edges_backward(lineage: GraphStore) -> None:
    sub = lineage.traverse(["raw"], "DOWNSTREAM", max_depth=10)
    assert dist(sub) == {
        "raw": 0, "prep": 1, "clean": 1, "train": 2, "eval": 2, "mv1": 3, "deploy": 4,
    }  # fmt: skip
    assert sub.nodes["deploy"].reached_from == "mv1"


def test_both_directions_from_the_roots(lineage: GraphStore) -> None:
    sub = lineage.traverse(["train"], "BOTH", max_depth=1)
    assert dist(sub) == {"train": 0, "clean": 1, "commit": 1, "exp": 1, "mv1": 1}
    assert sub.nodes["mv1"].direction is Direction.DOWNSTREAM
    assert sub.nodes["clean"].direction is Direction.UPSTREAM


def test_edge_kind_and_label_filters(lineage: GraphStore) -> None:
    data_only = lineage.traverse(["clean"], "UPSTREAM", 5, edge_kinds=["DERIVED_FROM"])
    assert dist(data_only) == {"clean": 0, "raw": 1}
    no_grouping = lineage.traverse(
        ["mv1"], "UPSTREAM", 5,
        edge_kinds=["USED", "GENERATED_BY", "DERIVED_FROM", "RAN_CODE"],
    )  # fmt: skip
    assert "exp" not in no_grouping.nodes and "commit" in no_grouping.nodes
    # nodes of other labels are not entered, so nothing beyond them is reached either
    runs_only = lineage.traverse(["raw"], "DOWNSTREAM", 5, labels=["Run", "ModelVersion"])
    assert set(runs_only.nodes) == {"raw", "prep"}
    no_deploy = lineage.traverse(
        ["raw"], "DOWNSTREAM", 5, labels=["Run", "ModelVersion", "DatasetVersion"]
    )
    assert set(no_deploy.nodes) == {"raw", "prep", "clean", "train", "eval", "mv1"}


def test_several_roots_and_shortest_distance(lineage: GraphStore) -> None:
    sub = lineage.traverse(["eval", "mv1", "eval"], "UPSTREAM", 1)
    # clean is one hop from eval, train one hop from mv1
    assert dist(sub) == {"eval": 0, "mv1": 0, "clean": 1, "train": 1}


def test_max_depth_reached_with_more_beyond_is_truncated(lineage: GraphStore) -> None:
    sub = lineage.traverse(["mv1"], "UPSTREAM", max_depth=2)
    assert set(sub.nodes) == {"mv1", "train", "clean", "commit", "exp"}
    assert sub.truncated and sub.truncation_reason is TruncationReason.MAX_DEPTH
    exact = lineage.traverse(["mv1"], "UPSTREAM", max_depth=3)
    assert not exact.truncated
    zero = lineage.traverse(["commit"], "UPSTREAM", max_depth=0)
    assert set(zero.nodes) == {"commit"} and not zero.truncated


def test_node_budget(lineage: GraphStore) -> None:
    sub = lineage.traverse(["raw"], "DOWNSTREAM", max_depth=10, max_nodes=4)
    assert len(sub.nodes) == 4
    assert sub.truncated and sub.truncation_reason is TruncationReason.MAX_NODES
    # the edges returned only join returned nodes
    assert all(e.source in sub.nodes and e.target in sub.nodes for e in sub.edges)


def test_cycles_are_safe(store: GraphStore) -> None:
    store.upsert_nodes([Node(n, "Run") for n in "abc"])
    store.upsert_edges(
        [Edge("a", "b", "CHILD_OF"), Edge("b", "c", "CHILD_OF"), Edge("c", "a", "CHILD_OF")]
    )
    sub = store.traverse(["a"], "UPSTREAM", max_depth=50)
    assert dist(sub) == {"a": 0, "b": 1, "c": 2}
    assert len(sub.edges) == 3 and not sub.truncated
    both = store.traverse(["a"], "BOTH", max_depth=50)
    assert set(both.nodes) == {"a", "b", "c"}


def test_fan_in_is_walked_level_by_level(store: GraphStore) -> None:
    # 3 levels of 30 nodes, each node using every node of the level above: 27,000 paths
    # from the bottom to the top, but only 90 nodes; a path enumeration would explode.
    levels = [[f"l{lv}n{i}" for i in range(30)] for lv in range(3)]
    store.upsert_nodes([Node(n, "DatasetVersion") for lv in levels for n in lv])
    store.upsert_nodes([Node("root", "Run")])
    edges = [Edge("root", n, "USED") for n in levels[0]]
    for upper, lower in itertools.pairwise(levels):
        edges += [Edge(a, b, "DERIVED_FROM") for a in upper for b in lower]
    store.upsert_edges(edges)
    sub = store.traverse(["root"], "UPSTREAM", max_depth=10)
    assert len(sub.nodes) == 91 and len(sub.edges) == 30 + 2 * 900
    assert {t.distance for i, t in sub.nodes.items() if i.startswith("l2")} == {3}


def test_as_of_sees_the_graph_as_it_was(lineage: GraphStore) -> None:
    time.sleep(0.01)
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    lineage.upsert_nodes([Node("mv2", "ModelVersion"), Node("retrain", "Run")])
    lineage.upsert_edges([Edge("retrain", "clean", "USED"), Edge("mv2", "retrain", "GENERATED_BY")])
    now = lineage.traverse(["clean"], "DOWNSTREAM", 5)
    assert {"mv2", "retrain"} <= set(now.nodes)
    then = lineage.traverse(["clean"], "DOWNSTREAM", 5, as_of=cut)
    assert not {"mv2", "retrain"} & set(then.nodes)
    assert {"train", "mv1", "deploy"} <= set(then.nodes)
    with pytest.raises(NotFoundError):
        lineage.traverse(["mv2"], "UPSTREAM", as_of=cut)


def test_unknown_start_nodes_are_named(lineage: GraphStore) -> None:
    with pytest.raises(NotFoundError) as info:
        lineage.traverse(["mv1", "ghost", "phantom"])
    assert info.value.ids == ["ghost", "phantom"]


def test_timeout_budget(store: GraphStore) -> None:
    store.upsert_nodes([Node(f"n{i}", "Run") for i in range(60)])
    store.upsert_edges([Edge(f"n{i}", f"n{i + 1}", "CHILD_OF") for i in range(59)])
    sub = store.traverse(["n0"], "UPSTREAM", max_depth=50, timeout=1e-9)
    assert sub.truncated and sub.truncation_reason is TruncationReason.TIMEOUT
    assert "n0" in sub.nodes and len(sub.nodes) < 60


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"direction": "SIDEWAYS"}, "direction"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_depth": 10_000}, "max_depth"),
        ({"max_nodes": 0}, "max_nodes"),
        ({"edge_kinds": ["USED]-() DETACH DELETE n //"]}, "edge_kinds"),
        ({"labels": ["Run`) DETACH DELETE n //"]}, "labels"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_traversal_arguments(lineage: GraphStore, kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        lineage.traverse(["mv1"], **kwargs)
    assert info.value.field == field
    assert lineage.count_nodes() == 9
