"""Lineage traversal semantics, shared by every backend.

The walk is breadth-first over *frontier sets*: each level asks the backend for every edge
leaving the whole frontier in one query (``GraphStore._expand``). Enumerating
variable-length paths instead (``-[*1..5]->`` in Cypher, a recursive CTE over paths in SQL)
multiplies work by the number of paths, which explodes on the fan-in that lineage graphs
are full of (one dataset feeding thousands of runs). Here each node and edge is touched once
per direction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import NotFoundError
from .model import Direction, Edge, Subgraph, TraversedNode, TruncationReason, to_iso

if TYPE_CHECKING:
    from .store import GraphStore


def walk(
    store: GraphStore,
    start_ids: Sequence[str],
    direction: Direction,
    max_depth: int,
    edge_kinds: Sequence[str] | None,
    labels: Sequence[str] | None,
    max_nodes: int,
    deadline: float | None,
    as_of: str | None,
) -> Subgraph:
    starts = list(dict.fromkeys(start_ids))
    start_nodes = store.get_nodes(starts)
    missing = [i for i, n in zip(starts, start_nodes) if n is None]
    if as_of is not None:
        missing += [
            n.id
            for n in start_nodes
            if n is not None and n.created_at is not None and to_iso(n.created_at) > as_of
        ]
    if missing:
        raise NotFoundError(f"no node with id {', '.join(map(repr, missing))}", ids=missing)

    # id -> (distance, reached_from, direction); discovery order is kept by the dict.
    info: dict[str, tuple[int, str | None, Direction | None]] = {i: (0, None, None) for i in starts}
    edges: dict[str, Edge] = {}
    reason: TruncationReason | None = None  # a budget that stops the whole walk
    depth_cut = False  # some direction had more beyond max_depth

    directions = (
        (Direction.UPSTREAM, Direction.DOWNSTREAM) if direction is Direction.BOTH else (direction,)
    )
    for d in directions:
        forward = d is Direction.UPSTREAM
        seen = set(starts)
        frontier = list(starts)
        depth = 0
        while frontier and depth < max_depth and reason is None:
            if deadline is not None and time.monotonic() > deadline:
                reason = TruncationReason.TIMEOUT
                break
            depth += 1
            order = {node_id: i for i, node_id in enumerate(frontier)}
            rows = store._expand(frontier, forward, edge_kinds, labels, as_of)
            # Backends return rows in any order; sort so budgets cut deterministically.
            rows.sort(
                key=lambda r: (order[r[0].source if forward else r[0].target], r[0].kind, r[1])
            )
            nxt: list[str] = []
            for edge, other, _label in rows:
                origin = edge.source if forward else edge.target
                if other in seen:
                    edges[edge.id] = edge
                    continue
                if other not in info:
                    if len(info) >= max_nodes:
                        reason = TruncationReason.MAX_NODES
                        break
                    info[other] = (depth, origin, d)
                seen.add(other)
                nxt.append(other)
                edges[edge.id] = edge
            frontier = nxt
        if reason is None and frontier and depth >= max_depth:
            # Stopped by depth: is there anything beyond? One bounded query says.
            probe = store._expand(frontier, forward, edge_kinds, labels, as_of, limit=max_nodes)
            if any(other not in seen for _, other, _ in probe) or len(probe) >= max_nodes:
                depth_cut = True
        if reason is not None:
            break
    if reason is None and depth_cut:
        reason = TruncationReason.MAX_DEPTH

    ids = list(info)
    nodes = store.get_nodes(ids)
    result: dict[str, TraversedNode] = {}
    for node_id, node in zip(ids, nodes):
        if node is None:  # deleted while we walked
            continue
        distance, reached_from, how = info[node_id]
        result[node_id] = TraversedNode(node, distance, reached_from, how)
    kept = [e for e in edges.values() if e.source in result and e.target in result]
    return Subgraph(
        nodes=result, edges=kept, truncated=reason is not None, truncation_reason=reason
    )
