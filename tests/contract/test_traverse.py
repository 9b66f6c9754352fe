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
    assert sub.roots == ["mv1"]
    assert lineage.traverse(["raw", "mv1"], Direction.BOTH, max_depth=1).roots == ["raw", "mv1"]
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


def test_at_the_depth_limit_edges_back_into_the_result_are_returned(store: GraphStore) -> None:
    """A run that registered a version and then used it (a model fine-tuned from itself, a
    run reading its own output): at depth 1 from the version the result holds both nodes
    and both edges between them, and is complete (nothing lies beyond)."""
    store.upsert_nodes([Node("mv", "ModelVersion"), Node("run", "Run"), Node("m", "Model")])
    store.upsert_edges(
        [
            Edge("mv", "run", "GENERATED_BY"),
            Edge("mv", "m", "VERSION_OF"),
            Edge("run", "mv", "USED", {"role": "base-model"}),
        ]
    )
    sub = store.traverse(["mv"], "UPSTREAM", max_depth=1)
    assert dist(sub) == {"mv": 0, "run": 1, "m": 1}
    assert sorted((e.source, e.kind, e.target) for e in sub.edges) == [
        ("mv", "GENERATED_BY", "run"),
        ("mv", "VERSION_OF", "m"),
        ("run", "USED", "mv"),
    ]
    assert not sub.truncated
    deeper = store.traverse(["mv"], "UPSTREAM", max_depth=2)
    assert sorted(e.id for e in deeper.edges) == sorted(e.id for e in sub.edges)
    narrow = store.traverse(["mv"], "UPSTREAM", max_depth=1, edge_kinds=["GENERATED_BY"])
    assert [e.kind for e in narrow.edges] == ["GENERATED_BY"]  # the filter holds there too


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
    with pytest.raises(NotFoundError, match="'mv2' did not exist yet at") as e:
        lineage.traverse(["mv2"], "UPSTREAM", as_of=cut)  # there, but not then: said so
    assert e.value.ids == ["mv2"]


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
        ({"max_depth": 10_000_000}, "max_depth"),
        ({"max_nodes": 0}, "max_nodes"),
        ({"edge_kinds": ["USED]-() DETACH DELETE n //"]}, "edge_kinds"),
        ({"labels": ["Run`) DETACH DELETE n //"]}, "labels"),
        ({"timeout": 0}, "timeout"),
        ({"upstream_depth": -1}, "upstream_depth"),
        ({"downstream_depth": 10_000_000}, "downstream_depth"),
        ({"upstream_depth": "3"}, "upstream_depth"),
        ({"stop_at": ["Run`) DETACH DELETE n //"]}, "stop_at"),
        ({"pass_through": ["Run OR 1=1"]}, "pass_through"),
        ({"pass_through": 7}, "pass_through"),
        ({"stop_at": ["Run"], "pass_through": ["Run"]}, "pass_through"),
    ],
)
def test_bad_traversal_arguments(lineage: GraphStore, kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        lineage.traverse(["mv1"], **kwargs)
    assert info.value.field == field
    assert lineage.count_nodes() == 9


# --- separate depths, stop-at, pass-through -------------------------------------------------


def reached(sub: object) -> dict[str, str | None]:
    return {i: t.reached_from for i, t in sub.nodes.items()}  # type: ignore[attr-defined]


def count_expansions(store: GraphStore) -> list[int]:
    """Count the backend's one-level expansion queries (and the frontier sizes they got)."""
    calls: list[int] = []
    original = store._expand

    def counting(frontier, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(frontier))
        return original(frontier, *args, **kwargs)

    store._expand = counting  # type: ignore[method-assign]
    return calls


def test_separate_depths_per_direction(lineage: GraphStore) -> None:
    sub = lineage.traverse(["clean"], "BOTH", upstream_depth=1, downstream_depth=3)
    assert dist(sub) == {
        "clean": 0, "prep": 1, "raw": 1, "train": 1, "eval": 1, "mv1": 2, "deploy": 3,
    }  # fmt: skip
    # BOTH walks each direction from the roots: what train ran is upstream of train, not of
    # clean, and never reached going downstream from clean
    assert not {"commit", "exp"} & set(sub.nodes)
    assert not sub.truncated
    # each direction defaults to max_depth
    short = lineage.traverse(["clean"], "BOTH", max_depth=1, downstream_depth=2)
    assert "mv1" in short.nodes and "deploy" not in short.nodes
    assert short.truncated and short.truncation_reason is TruncationReason.MAX_DEPTH
    # a depth of 0 in one direction keeps only the other's nodes, and says there was more
    only_down = lineage.traverse(["clean"], "BOTH", upstream_depth=0, downstream_depth=5)
    assert not {"prep", "raw"} & set(only_down.nodes) and "deploy" in only_down.nodes
    assert only_down.truncation_reason is TruncationReason.MAX_DEPTH
    # with one direction, its own depth overrides max_depth; the other's is ignored
    up = lineage.traverse(["mv1"], "UPSTREAM", max_depth=1, upstream_depth=3, downstream_depth=0)
    assert dist(up)["raw"] == 3 and not up.truncated


def test_stop_at_returns_but_does_not_expand(lineage: GraphStore) -> None:
    sub = lineage.traverse(["raw"], "DOWNSTREAM", 10, stop_at=["Run"])
    assert dist(sub) == {"raw": 0, "prep": 1, "clean": 1, "train": 2, "eval": 2}
    assert not sub.truncated  # stopping where asked is not a budget cut
    # the walked edges to the stop nodes are there, none beyond them (clean -> prep is not
    # walked: downstream it leaves the stop node prep)
    assert {(e.source, e.target) for e in sub.edges} == {
        ("prep", "raw"), ("clean", "raw"), ("train", "clean"), ("eval", "clean"),
    }  # fmt: skip
    models = lineage.traverse(["raw"], "DOWNSTREAM", 10, stop_at="ModelVersion")
    assert "mv1" in models.nodes and "deploy" not in models.nodes
    # start nodes are expanded whatever their label
    from_run = lineage.traverse(["train"], "UPSTREAM", 10, stop_at=["Run", "DatasetVersion"])
    assert dist(from_run) == {"train": 0, "clean": 1, "commit": 1, "exp": 1}


def test_pass_through_counts_only_data_hops(lineage: GraphStore) -> None:
    kinds = ["USED", "GENERATED_BY", "SERVES"]  # no DERIVED_FROM shortcut: through the runs
    sub = lineage.traverse(["raw"], "DOWNSTREAM", 10, edge_kinds=kinds, pass_through=["Run"])
    assert dist(sub) == {
        "raw": 0, "prep": 0, "clean": 1, "train": 1, "eval": 1, "mv1": 2, "deploy": 3,
    }  # fmt: skip
    assert reached(sub) == {
        "raw": None, "prep": "raw", "clean": "prep", "train": "clean", "eval": "clean",
        "mv1": "train", "deploy": "mv1",
    }  # fmt: skip
    assert all(t.direction is Direction.DOWNSTREAM for i, t in sub.nodes.items() if i != "raw")
    assert not sub.truncated
    # every walked edge, with provenance
    assert {(e.source, e.kind, e.target) for e in sub.edges} == {
        ("prep", "USED", "raw"), ("clean", "GENERATED_BY", "prep"), ("train", "USED", "clean"),
        ("eval", "USED", "clean"), ("mv1", "GENERATED_BY", "train"), ("eval", "USED", "mv1"),
        ("deploy", "SERVES", "mv1"),
    }  # fmt: skip
    assert all(e.ingested_at is not None and e.event_time is not None for e in sub.edges)
    # upstream: a model version's training data is one hop away, the raw data two
    up = lineage.traverse(["mv1"], "UPSTREAM", 10, pass_through=["Run"])
    assert dist(up) == {
        "mv1": 0, "train": 0, "clean": 1, "commit": 1, "exp": 1, "prep": 1, "raw": 2,
    }  # fmt: skip


def test_pass_through_at_the_depth_limit(lineage: GraphStore) -> None:
    kinds = ["USED", "GENERATED_BY", "SERVES"]
    one = lineage.traverse(["raw"], "DOWNSTREAM", 1, edge_kinds=kinds, pass_through=["Run"])
    # the runs at distance 1 are within the depth; what they lead to is not
    assert dist(one) == {"raw": 0, "prep": 0, "clean": 1, "train": 1, "eval": 1}
    assert one.truncated and one.truncation_reason is TruncationReason.MAX_DEPTH
    zero = lineage.traverse(["raw"], "DOWNSTREAM", 0, edge_kinds=kinds, pass_through=["Run"])
    assert dist(zero) == {"raw": 0, "prep": 0}
    assert zero.truncation_reason is TruncationReason.MAX_DEPTH
    exact = lineage.traverse(["raw"], "DOWNSTREAM", 3, edge_kinds=kinds, pass_through=["Run"])
    assert "deploy" in exact.nodes and not exact.truncated


def test_pass_through_with_stop_at_and_labels(lineage: GraphStore) -> None:
    sub = lineage.traverse(
        ["raw"], "DOWNSTREAM", 10, pass_through=["Run"], stop_at=["ModelVersion"],
        labels=["Run", "DatasetVersion", "ModelVersion", "Deployment"],
    )  # fmt: skip
    assert "mv1" in sub.nodes and "deploy" not in sub.nodes and not sub.truncated
    # a pass-through label that may not be entered is not entered
    no_runs = lineage.traverse(
        ["raw"], "DOWNSTREAM", 10, pass_through=["Run"], labels=["DatasetVersion"]
    )
    assert dist(no_runs) == {"raw": 0, "clean": 1}


def test_pass_through_chains_cycles_and_budgets(store: GraphStore) -> None:
    # d0 <-USED- r1 -CHILD_OF-> r2 -CHILD_OF-> r3 -CHILD_OF-> r1 (a cycle of runs); d1 made
    # by r3. Downstream from d0 through runs: r1 (used d0), then r1's children...
    store.upsert_nodes([Node("d0", "DatasetVersion"), Node("d1", "DatasetVersion")])
    store.upsert_nodes([Node(f"r{i}", "Run") for i in (1, 2, 3)])
    store.upsert_edges(
        [
            Edge("r1", "d0", "USED"),
            Edge("r2", "r1", "CHILD_OF"),
            Edge("r3", "r2", "CHILD_OF"),
            Edge("r1", "r3", "CHILD_OF"),
            Edge("d1", "r3", "GENERATED_BY"),
        ]
    )
    calls = count_expansions(store)
    sub = store.traverse(["d0"], "DOWNSTREAM", 5, pass_through=["Run"])
    assert dist(sub) == {"d0": 0, "r1": 0, "r2": 0, "r3": 0, "d1": 1}
    assert reached(sub)["r3"] == "r2" and reached(sub)["d1"] == "r3"
    assert not sub.truncated and len(sub.edges) == 5
    # one query per round: [d0], [r1], [r2], [r3], then level 1: [d1]
    assert calls == [1, 1, 1, 1, 1]
    capped = store.traverse(["d0"], "DOWNSTREAM", 5, pass_through=["Run"], max_nodes=3)
    assert len(capped.nodes) == 3 and capped.truncation_reason is TruncationReason.MAX_NODES
    timed = store.traverse(["d0"], "DOWNSTREAM", 5, pass_through=["Run"], timeout=1e-9)
    assert timed.truncation_reason is TruncationReason.TIMEOUT


def test_pass_through_is_one_query_per_round_on_fan_out(store: GraphStore) -> None:
    # raw feeds 60 runs, each making its own clean version, each used by one training run
    # making a model: downstream through runs, 4 levels of 60 nodes each.
    n = 60
    store.upsert_nodes([Node("raw", "DatasetVersion")])
    store.upsert_nodes([Node(f"prep{i}", "Run") for i in range(n)])
    store.upsert_nodes([Node(f"clean{i}", "DatasetVersion") for i in range(n)])
    store.upsert_nodes([Node(f"train{i}", "Run") for i in range(n)])
    store.upsert_nodes([Node(f"mv{i}", "ModelVersion") for i in range(n)])
    edges = []
    for i in range(n):
        edges += [
            Edge(f"prep{i}", "raw", "USED"),
            Edge(f"clean{i}", f"prep{i}", "GENERATED_BY"),
            Edge(f"train{i}", f"clean{i}", "USED"),
            Edge(f"mv{i}", f"train{i}", "GENERATED_BY"),
        ]
    store.upsert_edges(edges)
    calls = count_expansions(store)
    sub = store.traverse(["raw"], "DOWNSTREAM", 2, pass_through=["Run"])
    assert len(sub.nodes) == 1 + 4 * n and not sub.truncated
    assert {sub.nodes[f"mv{i}"].distance for i in range(n)} == {2}
    # level 0: [raw] then its 60 runs; level 1: 60 clean, then 60 runs; level 2 (the last):
    # 60 models (only runs may be entered there), then the probe beyond
    assert calls == [1, n, n, n, n, n]
    calls.clear()
    cut = store.traverse(["raw"], "DOWNSTREAM", 1, pass_through=["Run"])
    assert cut.truncation_reason is TruncationReason.MAX_DEPTH
    assert len(cut.nodes) == 1 + 3 * n
    assert calls == [1, n, n, n, 2 * n]  # the probe covers the clean versions and their runs


def test_pass_through_as_of(lineage: GraphStore) -> None:
    time.sleep(0.01)
    cut = datetime.now(timezone.utc)
    time.sleep(0.01)
    lineage.upsert_nodes([Node("clean2", "DatasetVersion"), Node("prep2", "Run")])
    lineage.upsert_edges([Edge("prep2", "raw", "USED"), Edge("clean2", "prep2", "GENERATED_BY")])
    now = lineage.traverse(["raw"], "DOWNSTREAM", 1, pass_through=["Run"])
    assert dist(now)["clean2"] == 1 and dist(now)["prep2"] == 0
    then = lineage.traverse(["raw"], "DOWNSTREAM", 1, pass_through=["Run"], as_of=cut)
    assert not {"clean2", "prep2"} & set(then.nodes)
    assert dist(then)["clean"] == 1
