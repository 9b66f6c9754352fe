"""Deep histories: walks are bounded by their work (nodes, time), not by depth.

A dataset rebuilt daily from yesterday's is a ``DERIVED_FROM`` chain as long as its history;
its origin must be reachable, and when a budget does stop the walk the result says which.
"""

from __future__ import annotations

import pytest

from lineagehub.graph import Direction, Edge, GraphStore, Node, TruncationReason, ValidationError
from lineagehub.graph.store import MAX_DEPTH_CEILING

DEPTH = 1000


@pytest.fixture
def chain(store: GraphStore) -> GraphStore:
    """day0 <- day1 <- ... <- day1000 (each DERIVED_FROM the day before)."""
    store.upsert_nodes([Node(f"day{i}", "DatasetVersion", {"day": i}) for i in range(DEPTH + 1)])
    store.upsert_edges(
        [Edge(f"day{i}", f"day{i - 1}", "DERIVED_FROM") for i in range(1, DEPTH + 1)]
    )
    return store


def test_the_origin_of_a_thousand_deep_chain_is_reached(chain: GraphStore) -> None:
    sub = chain.traverse([f"day{DEPTH}"], Direction.UPSTREAM, max_depth=MAX_DEPTH_CEILING)
    assert len(sub.nodes) == DEPTH + 1 and len(sub.edges) == DEPTH
    assert sub.nodes["day0"].distance == DEPTH
    assert sub.nodes["day0"].reached_from == "day1"
    assert not sub.truncated and sub.truncation_reason is None
    down = chain.traverse(["day0"], Direction.DOWNSTREAM, max_depth=DEPTH, timeout=60)
    assert down.nodes[f"day{DEPTH}"].distance == DEPTH and not down.truncated


def test_the_budget_that_stops_a_deep_walk_is_named(chain: GraphStore) -> None:
    cut = chain.traverse([f"day{DEPTH}"], Direction.UPSTREAM, max_depth=100_000, max_nodes=100)
    assert cut.truncated and cut.truncation_reason is TruncationReason.MAX_NODES
    assert len(cut.nodes) == 100 and "day0" not in cut.nodes
    late = chain.traverse([f"day{DEPTH}"], Direction.UPSTREAM, max_depth=100_000, timeout=1e-9)
    assert late.truncated and late.truncation_reason is TruncationReason.TIMEOUT
    shallow = chain.traverse([f"day{DEPTH}"], Direction.UPSTREAM, max_depth=10)
    assert shallow.truncated and shallow.truncation_reason is TruncationReason.MAX_DEPTH
    with pytest.raises(ValidationError) as info:
        chain.traverse(["day0"], max_depth=MAX_DEPTH_CEILING + 1)
    assert info.value.field == "max_depth"
