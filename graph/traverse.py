"""Lineage traversal semantics, shared by every backend.

The walk is breadth-first over *frontier sets*: each expansion round asks the backend for
every edge leaving the whole frontier in one query (``GraphStore._expand``). Enumerating
variable-length paths instead (``-[*1..5]->`` in Cypher, a recursive CTE over paths in SQL)
multiplies work by the number of paths, which explodes on the fan-in that lineage graphs
are full of (one dataset feeding thousands of runs). Here each node and edge is touched once
per direction.

Distances are hop counts from the nearest start node, walked as a 0-1 breadth-first search:

- an edge into a node of an ordinary label costs one hop;
- an edge into a node of a ``pass_through`` label costs nothing: such a node gets the
  distance of the node it was reached from, and it is expanded within the same level (so
  with ``pass_through=["Run"]``, a dataset version and the one a transform run made from it
  are one hop apart, and a model version's training data is one hop upstream of it);
- a node of a ``stop_at`` label is returned (with its distance) but not expanded. Start
  nodes are always expanded, whatever their label.

A level is the frontier (the nodes at distance ``level``) plus its zero-cost closure, found
in as many rounds as the longest chain of pass-through nodes; every round is one backend
query over the whole set. ``upstream_depth`` and ``downstream_depth`` bound the distance in
each direction. At the last level only pass-through nodes (still at that distance) are
entered; one more bounded query then tells whether anything lies beyond, which makes the
result ``truncated`` with reason ``MAX_DEPTH``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import NotFoundError, ValidationError
from .model import (
    Direction,
    Edge,
    Subgraph,
    TraversedNode,
    TruncationReason,
    to_iso,
    validate_label,
)

if TYPE_CHECKING:
    from .store import GraphStore


def check_labels(labels: Sequence[str] | str | None, field_name: str) -> frozenset[str]:
    """A set of labels (one label may be given as a string); ValidationError naming the
    field when one is not a valid label."""
    if labels is None:
        return frozenset()
    if isinstance(labels, str):
        labels = [labels]
    try:
        items = list(labels)
    except TypeError:
        raise ValidationError(f"{field_name} must be a list of labels", field=field_name) from None
    return frozenset(validate_label(x, field_name) for x in items)


def check_depth(value: object, field_name: str, ceiling: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ceiling:
        raise ValidationError(
            f"{field_name} must be between 0 and {ceiling}, got {value!r}", field=field_name
        )
    return value


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
    *,
    upstream_depth: int | None = None,
    downstream_depth: int | None = None,
    stop_at: Sequence[str] | None = None,
    pass_through: Sequence[str] | None = None,
) -> Subgraph:
    """The traversal behind :meth:`GraphStore.traverse` (see the module docstring).

    ``start_ids``, ``direction``, ``max_depth``, ``edge_kinds``, ``labels``, ``max_nodes``
    and ``as_of`` (ISO text) arrive checked; the depths per direction, ``stop_at`` and
    ``pass_through`` are checked here.
    """
    from .store import MAX_DEPTH_CEILING

    depths = {
        Direction.UPSTREAM: max_depth
        if upstream_depth is None
        else check_depth(upstream_depth, "upstream_depth", MAX_DEPTH_CEILING),
        Direction.DOWNSTREAM: max_depth
        if downstream_depth is None
        else check_depth(downstream_depth, "downstream_depth", MAX_DEPTH_CEILING),
    }
    stops = check_labels(stop_at, "stop_at")
    passes = check_labels(pass_through, "pass_through")
    if stops & passes:
        raise ValidationError(
            f"labels {sorted(stops & passes)} are both stop_at and pass_through",
            field="pass_through",
        )
    need_labels = bool(stops or passes)  # only these read the neighbour's label
    # Pass-through labels that may be entered at all (``labels`` limits which nodes are).
    entering_passes = sorted(passes if labels is None else passes & set(labels))

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
    depth_cut = False  # some direction had more beyond its depth

    directions = (
        (Direction.UPSTREAM, Direction.DOWNSTREAM) if direction is Direction.BOTH else (direction,)
    )
    for d in directions:
        forward = d is Direction.UPSTREAM
        limit_depth = depths[d]
        seen = set(starts)
        frontier = list(starts)  # start nodes are always expanded
        level = 0
        while frontier and reason is None:
            last = level >= limit_depth
            nxt: list[str] = []  # ordinary nodes found: the next level's frontier
            expanded: list[str] = []  # every node expanded at this level
            wave = frontier
            while wave:
                if deadline is not None and time.monotonic() > deadline:
                    reason = TruncationReason.TIMEOUT
                    break
                expanded += wave
                if last:
                    # Nothing beyond the depth may be entered; pass-through nodes, at this
                    # level's distance, still may.
                    if not entering_passes:
                        break
                    rows = store._expand(wave, forward, edge_kinds, entering_passes, as_of)
                else:
                    rows = store._expand(
                        wave, forward, edge_kinds, labels, as_of, need_labels=need_labels
                    )
                order = {node_id: i for i, node_id in enumerate(wave)}
                # Backends return rows in any order; sort so budgets cut deterministically.
                rows.sort(
                    key=lambda r: (order[r[0].source if forward else r[0].target], r[0].kind, r[1])
                )
                same: list[str] = []  # pass-through nodes found: expanded in this level
                for edge, other, label in rows:
                    origin = edge.source if forward else edge.target
                    if other in seen:
                        edges[edge.id] = edge
                        continue
                    free = label in passes
                    if other not in info:
                        if len(info) >= max_nodes:
                            reason = TruncationReason.MAX_NODES
                            break
                        info[other] = (level if free else level + 1, origin, d)
                    seen.add(other)
                    edges[edge.id] = edge
                    if label in stops:
                        continue
                    (same if free else nxt).append(other)
                if reason is not None:
                    break
                wave = same
            if reason is not None:
                break
            if last:
                # Stopped by depth: is there anything beyond? One bounded query says.
                probe = store._expand(
                    expanded, forward, edge_kinds, labels, as_of, limit=max_nodes, need_labels=False
                )
                if any(other not in seen for _, other, _ in probe) or len(probe) >= max_nodes:
                    depth_cut = True
                break
            frontier = nxt
            level += 1
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
