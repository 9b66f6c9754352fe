"""Nodes and edges from the text a backend stores, fast: a trace hydrates thousands of them.

Both backends keep times as fixed-width UTC text (``...Z``, :func:`~lineagehub.graph.model.to_iso`)
and properties as compact JSON; what is read back is the same :class:`Node` and :class:`Edge`
values the public constructors make, only built for less:

- many rows share a time (one batch, one "now"): each text is parsed once, and the one
  (immutable) datetime stands for every row that carries it;
- small flat property texts recur on edges (``{"role":"input"}`` on every input of a run):
  each is decoded once and every row gets a shallow copy, which shares nothing mutable when
  every value is an immutable scalar (the only texts remembered);
- the frozen dataclasses' ``__init__`` sets each field through ``object.__setattr__`` (and
  for an edge runs ``__post_init__``, a no-op for a stored edge, whose id is never empty):
  setting the slots of a new object directly costs about half. The fields are checked
  against the dataclasses' at import, so a field added to either cannot be left unset.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from lineagehub.graph.model import Edge, Node, load_json

_TIMES: dict[str | None, datetime] = {}  # (None is never a key: get(None) is None)
_TIMES_SIZE = 65536
_FLAT: dict[str, dict[str, Any]] = {}
_FLAT_SIZE = 4096
_FLAT_TEXT = 256  # longer texts rarely repeat: decoded each time
_SCALARS = frozenset((str, int, float, bool, type(None)))


def stored_time(text: str | None) -> datetime | None:
    """The datetime of a stored time text (``2025-01-06T02:00:00.000000Z``), or None."""
    if text is None:
        return None
    value = _TIMES.get(text)
    if value is None:
        value = datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
        if len(_TIMES) >= _TIMES_SIZE:
            _TIMES.clear()
        _TIMES[text] = value
    return value


def stored_props(text: str) -> dict[str, Any]:
    """A fresh mapping of stored JSON properties (the caller may change it)."""
    if text == "{}":  # most edges have no properties
        return {}
    cached = _FLAT.get(text)
    if cached is not None:
        return cached.copy()
    value: dict[str, Any] = load_json(text)
    if len(text) <= _FLAT_TEXT and all(type(v) in _SCALARS for v in value.values()):
        if len(_FLAT) >= _FLAT_SIZE:
            _FLAT.clear()
        _FLAT[text] = value
        return value.copy()
    return value


_NODE_FIELDS = ("id", "label", "props", "created_at", "updated_at")
_EDGE_FIELDS = (
    "id",
    "kind",
    "source",
    "target",
    "props",
    "event_time",
    "ingested_at",
    "asserted_by",
)
if {f.name for f in dataclasses.fields(Node)} != set(_NODE_FIELDS) or {
    f.name for f in dataclasses.fields(Edge)
} != set(_EDGE_FIELDS):  # pragma: no cover - a guard for whoever changes the model
    raise ImportError("lineagehub.graph.hydrate builds Node and Edge by their fields: update it")
_n_id, _n_label, _n_props, _n_created, _n_updated = (
    getattr(Node, name).__set__ for name in _NODE_FIELDS
)
_e_id, _e_kind, _e_source, _e_target, _e_props, _e_event, _e_ingested, _e_by = (
    getattr(Edge, name).__set__ for name in _EDGE_FIELDS
)
_new = object.__new__


def stored_node(
    node_id: str, label: str, props: str, created_at: str | None, updated_at: str | None
) -> Node:
    """``Node(node_id, label, ...)`` from the stored texts of its properties and times."""
    node = _new(Node)
    _n_id(node, node_id)
    _n_label(node, label)
    _n_props(node, stored_props(props))
    _n_created(node, _TIMES.get(created_at) or stored_time(created_at))
    _n_updated(node, _TIMES.get(updated_at) or stored_time(updated_at))
    return node


def stored_edge(
    edge_id: str,
    kind: str,
    source: str,
    target: str,
    props: str,
    event_time: str | None,
    ingested_at: str | None,
    asserted_by: str | None,
) -> Edge:
    """``Edge(source, target, kind, ..., id=edge_id)`` from its stored texts."""
    edge = _new(Edge)
    _e_id(edge, edge_id)
    _e_kind(edge, kind)
    _e_source(edge, source)
    _e_target(edge, target)
    # A trace builds thousands: the common cases (no properties, a time seen before) are
    # answered here without a call.
    _e_props(edge, {} if props == "{}" else stored_props(props))
    _e_event(edge, _TIMES.get(event_time) or stored_time(event_time))
    _e_ingested(edge, _TIMES.get(ingested_at) or stored_time(ingested_at))
    _e_by(edge, asserted_by)
    return edge


__all__ = ["stored_edge", "stored_node", "stored_props", "stored_time"]
