"""Lineage results as pictures and files: Graphviz (DOT, SVG, PNG, PDF), Mermaid, GraphML,
Cytoscape.js JSON, W3C PROV-JSON and OpenLineage run events.

::

    from lineagehub.services.export import export_lineage, format_for_path

    sub = LineageService(store).lineage(["model:churn@champion"], "BOTH")
    svg = export_lineage(sub, "svg", focus=["mv:churn/2"], cluster=True)
    Path("lineage.prov.json").write_bytes(export_lineage(sub, format_for_path("x.prov.json")))

Pictures read left to right, in the order things happened: an arrow goes from what a thing
came from to the thing (a dataset version to the run that used it, the run to the model
version it generated, the model version to the deployment serving it), so stored edges,
which point the other way as in PROV, are drawn reversed; each arrow is labelled with the
stored edge kind (and its ``role``). Shapes and colours by node kind are in
:data:`NODE_STYLES`. Above ``collapse_above`` nodes, the runs of one experiment (and the
outputs only they touch) become one group node, so a sweep of 500 runs stays one box.

The data formats keep the stored direction: GraphML and Cytoscape JSON have every node's
properties; PROV-JSON and OpenLineage map the vocabulary onto those standards.

Only ``svg``, ``png`` and ``pdf`` need Graphviz's ``dot`` program; ``openlineage`` needs the
``openlineage`` extra. Every text that comes from the graph is escaped by the format's own
rules (the ``graphviz`` package's quoting, Mermaid entity codes, XML, JSON): a node named
``"]; x [`` is a label, never syntax.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from lineagehub.graph import ConfigError, Edge, HubError, Node, Subgraph, ValidationError
from lineagehub.graph.model import parse_time
from lineagehub.services.headline import RANKED_METRICS, headline_metric, policy_metrics

__all__ = [
    "DEFAULT_COLLAPSE_ABOVE",
    "FORMATS",
    "KEY_METRICS",
    "NODE_STYLES",
    "SUFFIXES",
    "export_lineage",
    "format_for_path",
]

FORMATS: dict[str, str] = {
    "dot": "text/vnd.graphviz",
    "svg": "image/svg+xml",
    "png": "image/png",
    "pdf": "application/pdf",
    "mmd": "text/vnd.mermaid",
    "graphml": "application/graphml+xml",
    "json": "application/json",
    "prov": "application/json",
    "openlineage": "application/x-ndjson",
}
"""Format name -> media type."""

SUFFIXES: dict[str, str] = {
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".mmd": "mmd",
    ".mermaid": "mmd",
    ".graphml": "graphml",
    ".json": "json",
    ".cyjs": "json",
    ".prov.json": "prov",
    ".provjson": "prov",
    ".jsonl": "openlineage",
    ".ndjson": "openlineage",
}
"""File suffix -> format (the longest matching suffix wins: ``x.prov.json`` is PROV)."""

DEFAULT_COLLAPSE_ABOVE = 60
#: Seconds Graphviz's ``dot`` may take to draw one picture.
RENDER_TIMEOUT = 60.0
#: Pictures show at most this many nodes (after collapsing): those nearest the roots. Larger
#: drawings are neither readable nor quick to lay out (Graphviz takes about a minute for 1,500
#: nodes with 8,000 edges); the data formats always hold everything.
MAX_PICTURE_NODES = 300
#: ... and at most this many edges (after merging those between the same two nodes): 300 nodes
#: where many runs each used many of the same 150 datasets made 11,400 edges, which ``dot``
#: took a minute and a half to lay out (an HTTP request held as long); 1,000 take a second.
MAX_PICTURE_EDGES = 1000
#: Mermaid's own defaults refuse a diagram of more than 500 edges (``maxEdges``) or 50,000
#: characters (``maxTextSize``): GitHub, GitLab and wikis then show an error, not the
#: picture. A Mermaid export keeps within both.
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000

_PICTURES = frozenset({"dot", "svg", "png", "pdf"})

NODE_STYLES: dict[str, tuple[str, str]] = {
    # kind: (Graphviz shape, fill colour)
    "Project": ("tab", "#fde68a"),
    "Experiment": ("folder", "#fef3c7"),
    "Run": ("box", "#fff7d6"),
    "Dataset": ("cylinder", "#bfdbfe"),
    "DatasetVersion": ("cylinder", "#dbeafe"),
    "CodeCommit": ("cds", "#e5e7eb"),
    "Environment": ("hexagon", "#ede9fe"),
    "Artifact": ("note", "#f5f5f4"),
    "Model": ("component", "#bbf7d0"),
    "ModelVersion": ("box3d", "#dcfce7"),
    "Deployment": ("doubleoctagon", "#99f6e4"),
    "MonitoringWindow": ("parallelogram", "#cffafe"),
    "Alert": ("octagon", "#fecaca"),
    "Agent": ("house", "#fed7aa"),
}
"""Node kind -> (Graphviz shape, fill colour) in pictures; other kinds are white ellipses."""
_DEFAULT_STYLE = ("ellipse", "#ffffff")

# Mermaid's closest shapes: (opening, closing) around the quoted label.
_MERMAID_SHAPES: dict[str, tuple[str, str]] = {
    "Project": ("[/", "\\]"),
    "Experiment": ("[/", "\\]"),
    "Run": ("(", ")"),
    "Dataset": ("[(", ")]"),
    "DatasetVersion": ("[(", ")]"),
    "CodeCommit": (">", "]"),
    "Environment": ("{{", "}}"),
    "Artifact": ("[\\", "\\]"),
    "Model": ("[[", "]]"),
    "ModelVersion": ("[[", "]]"),
    "Deployment": ("([", "])"),
    "MonitoringWindow": ("[/", "/]"),
    "Alert": ("{", "}"),
    "Agent": ("((", "))"),
}

KEY_METRICS = RANKED_METRICS
"""The common metric names a label's headline metric is chosen from (see
:mod:`lineagehub.services.headline` for the whole rule)."""

_ACTIVITIES = frozenset({"Run", "Deployment", "MonitoringWindow"})
_AGENTS = frozenset({"Agent"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_PRODUCER = "https://github.com/lineagehub/lineagehub"
_PROV_NS = "https://lineagehub.dev/ns#"
_PROV_SAFE = ":/@-_.~&+*?#$!"
_MAX_TEXT = 60
_DASH = "\u2013"  # en dash, for ranges
_TIMES = "\u00d7"  # multiplication sign, for merged edges


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format a file name asks for, from its suffix (see :data:`SUFFIXES`, any case)."""
    name = os.fspath(path).lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise ValidationError(
        f"cannot tell the export format from {os.fspath(path)!r:.200}: known suffixes are "
        f"{', '.join(SUFFIXES)}",
        field="format",
    )


def export_lineage(
    sub: Subgraph,
    fmt: str,
    *,
    focus: Sequence[str] = (),
    cluster: bool = False,
    collapse_above: int | None = DEFAULT_COLLAPSE_ABOVE,
    title: str | None = None,
    policies: Mapping[Any, Any] | None = None,
    context_nodes: bool = False,
    render_timeout: float = RENDER_TIMEOUT,
) -> bytes:
    """A lineage result (:meth:`LineageService.lineage`) in format ``fmt`` (a key of
    :data:`FORMATS`), as bytes.

    ``focus``: ids of nodes to highlight (ids not in the result are ignored). For pictures
    (``dot``, ``svg``, ``png``, ``pdf``, ``mmd``): ``cluster`` groups the runs of each
    experiment, with what they generated, in a labelled box; results of more than
    ``collapse_above`` nodes (``None`` or 0: never) collapse sibling runs into group nodes;
    ``title`` heads the picture. A truncated result says so in the picture and in every
    data format that can hold it. Each node's label shows its headline metric
    (:mod:`lineagehub.services.headline`); ``policies`` (the registry's promotion policies) let the
    metric a policy names win for model versions. Context (the agents, environments and
    code commits of runs) is folded into the runs' labels (``code wt@1a2b3c4``, ``env python
    3.11``, ``by ann``) unless ``context_nodes``; roots and focus nodes are always drawn.
    Edges between the same two nodes are drawn once, with their kinds and a count.

    An unknown format is a :class:`ValidationError` (``field="format"``); ``svg``, ``png``
    and ``pdf`` without Graphviz's ``dot`` program, and ``openlineage`` without
    openlineage-python, are a :class:`ConfigError` saying what to install. ``dot`` drawing
    for longer than ``render_timeout`` seconds is stopped: a :class:`ValidationError`.
    """
    if fmt not in FORMATS:
        raise ValidationError(
            f"unknown export format {fmt!r:.50}: known formats are {', '.join(FORMATS)}",
            field="format",
        )
    if collapse_above is not None and (
        isinstance(collapse_above, bool)
        or not isinstance(collapse_above, int)
        or collapse_above < 0
    ):
        raise ValidationError(
            "collapse_above must be a non-negative integer or None", field="collapse_above"
        )
    focus_ids = [f for f in dict.fromkeys(focus) if f in sub.nodes]
    if fmt in _PICTURES or fmt == "mmd":
        args = (sub, focus_ids, cluster, collapse_above, title, policies, context_nodes)
        if fmt == "mmd":
            return _mermaid_within_limits(*args).encode()
        return _graphviz(_build_view(*args), fmt, render_timeout)
    if fmt == "graphml":
        return _graphml(sub, focus_ids, title)
    if fmt == "json":
        return _cytoscape(sub, focus_ids, title)
    if fmt == "prov":
        return _prov(sub, title)
    return _openlineage(sub)


# --- labels ----------------------------------------------------------------------------------


def _clean(value: Any, limit: int = _MAX_TEXT) -> str:
    """One line of readable text: control characters and newlines become spaces."""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key_metric(node: Node, policies: Mapping[Any, Any] | None = None) -> tuple[str, float] | None:
    """The node's headline metric (:func:`lineagehub.services.headline.headline_metric`)."""
    props = node.props
    model = props.get("model") if node.label == "ModelVersion" else None
    return headline_metric(props, policy_metrics(policies or {}, model))


def _num(value: float) -> str:
    return f"{value:.4g}"


def _short_digest(value: Any) -> str:
    text = str(value or "")
    return text.split(":", 1)[-1][:12] if text else ""


def _describe(node: Node, policies: Mapping[Any, Any] | None = None) -> list[str]:
    """The lines of a node's label: its kind, its name (with version), a detail or two."""
    p = node.props
    kind = node.label
    head = kind
    lines: list[str] = []
    if kind == "Run":
        if p.get("kind"):
            head = f"Run ({_clean(p['kind'], 20)})"
        lines.append(p.get("name") or node.id)
        if p.get("status") not in (None, "FINISHED"):
            lines.append(str(p["status"]))
    elif kind == "ModelVersion":
        lines.append(f"{p.get('model', '')} v{p.get('version', '?')}")
        extra = [str(p["stage"])] if p.get("stage") not in (None, "None") else []
        extra += [f"@{a}" for a in p.get("aliases") or [] if isinstance(a, str)]
        if extra:
            lines.append(" ".join(extra))
    elif kind in ("Dataset", "DatasetVersion"):
        lines.append(p.get("name") or node.id)
        if kind == "DatasetVersion":
            detail = _short_digest(p.get("digest"))
            if isinstance(p.get("row_count"), int):
                detail += f" · {p['row_count']:,} rows"
            lines.append(detail)
    elif kind == "CodeCommit":
        repo = str(p.get("repo") or "").rstrip("/").split("/")[-1]
        lines.append(f"{repo}@{str(p.get('sha') or '')[:7]}")
        if p.get("dirty"):
            lines.append("dirty")
    elif kind == "Environment":
        lines.append(f"python {p.get('python', '?')}")
        if p.get("platform"):
            lines.append(str(p["platform"]))
    elif kind == "Artifact":
        lines.append(f"{p.get('kind', '')} {_short_digest(p.get('digest'))}".strip())
    elif kind == "Deployment":
        lines.append(p.get("name") or p.get("environment") or node.id)
        lines.append(" ".join(str(p[k]) for k in ("environment", "status") if p.get(k)))
    elif kind == "MonitoringWindow":
        span = [str(p[k])[:10] for k in ("start", "end") if p.get(k)]
        lines.append(f" {_DASH} ".join(span) or node.id)
    elif kind == "Alert":
        lines.append(p.get("rule") or node.id)
        lines.append(" ".join(str(p[k]) for k in ("severity", "state") if p.get(k)))
    elif kind == "Experiment" and p.get("project"):
        lines.append(f"{p['project']}/{p.get('name', '')}")
    else:
        lines.append(p.get("name") or node.id)
    metric = _key_metric(node, policies)
    if metric is not None:
        lines.append(f"{metric[0]} {_num(metric[1])}")
    return [_clean(head)] + [_clean(line) for line in lines if line]


def _edge_label(edge: Edge) -> str:
    role = edge.props.get("role")
    return f"{edge.kind} ({_clean(role, 30)})" if role else edge.kind


# --- the picture's model: what both Graphviz and Mermaid draw ---------------------------------


@dataclass
class _VNode:
    key: str
    kind: str
    lines: list[str]
    focus: bool = False
    members: int = 1  # > 1: a group node standing for that many nodes
    cluster: str | None = None


@dataclass
class _VEdge:
    tail: str
    head: str
    label: str
    count: int = 1


@dataclass
class _View:
    nodes: dict[str, _VNode]
    edges: list[_VEdge]
    clusters: dict[str, str] = field(default_factory=dict)  # cluster key -> label
    caption: list[str] = field(default_factory=list)


def _experiments(sub: Subgraph) -> dict[str, tuple[str, str]]:
    """Run id -> (experiment key, label), from the run's properties, else a PART_OF edge."""
    result: dict[str, tuple[str, str]] = {}
    for node_id, t in sub.nodes.items():
        p = t.node.props
        if t.node.label == "Run" and p.get("experiment"):
            project = p.get("project")
            name = f"{project}/{p['experiment']}" if project else str(p["experiment"])
            result[node_id] = (name, name)
    for e in sub.edges:
        if e.kind == "PART_OF" and e.source not in result and e.target in sub.nodes:
            run, exp = sub.nodes[e.source].node, sub.nodes[e.target].node
            if run.label == "Run" and exp.label == "Experiment":
                project = exp.props.get("project")
                name = str(exp.props.get("name") or exp.id)
                name = f"{project}/{name}" if project else name
                result[e.source] = (name, name)
    return result


CONTEXT_LABELS = frozenset({"Agent", "Environment", "CodeCommit"})
"""Node kinds that are context of a run rather than lineage: folded into the labels of the
nodes they are attached to unless a picture asks for ``context_nodes``."""


def _context_line(node: Node, edge: Edge) -> str:
    """How a context node reads inside the label of the node it is attached to."""
    p = node.props
    if node.label == "CodeCommit":
        lines = _describe(node)
        text = f"code {lines[1] if len(lines) > 1 else node.id}"
        return text + (" (dirty)" if p.get("dirty") else "")
    if node.label == "Environment":
        return "env " + " ".join(_describe(node)[1:2])
    name = str(p.get("name") or node.id.removeprefix("agent:"))
    if edge.kind == "ATTRIBUTED_TO":
        return f"owner {name}"
    role = edge.props.get("role")
    verb = {"launcher": "by", "requester": "requested by", "approver": "approved by"}
    return f"{verb.get(str(role), str(role or 'with'))} {name}"


def _fold_context(
    sub: Subgraph,
    focused: set[str],
    rep: Mapping[str, str],
    keys: Mapping[str, str],
    groups: Mapping[str, list[str]],
    nodes: dict[str, _VNode],
) -> set[str]:
    """Fold context nodes (:data:`CONTEXT_LABELS`) into the labels of the nodes they are
    attached to; returns the ids folded. A root, a focus node, a node in a group, one
    attached to a group or to other context, or one attached to nothing stays a node."""
    touching: dict[str, list[tuple[Edge, str]]] = {}
    for e in sub.edges:
        for mine, other in ((e.source, e.target), (e.target, e.source)):
            if mine in sub.nodes and other in sub.nodes:
                touching.setdefault(mine, []).append((e, other))
    folded: set[str] = set()
    for node_id, t in sub.nodes.items():
        if (
            t.node.label not in CONTEXT_LABELS
            or node_id in focused
            or t.reached_from is None
            or rep[node_id] != keys[node_id]
            or not touching.get(node_id)
        ):
            continue
        others = touching[node_id]
        if any(
            sub.nodes[o].node.label in CONTEXT_LABELS or rep[o] in groups or rep[o] not in nodes
            for _, o in others
        ):
            continue
        folded.add(node_id)
        for e, o in sorted(others, key=lambda x: x[0].id):
            line = _clean(_context_line(t.node, e))
            target = nodes[rep[o]]
            if line not in target.lines:
                target.lines.append(line)
        del nodes[keys[node_id]]
    return folded


def _build_view(
    sub: Subgraph,
    focus: Sequence[str],
    cluster: bool,
    collapse_above: int | None,
    title: str | None,
    policies: Mapping[Any, Any] | None = None,
    context_nodes: bool = False,
    max_nodes: int = MAX_PICTURE_NODES,
    max_edges: int = MAX_PICTURE_EDGES,
) -> _View:
    keys = {node_id: f"n{i}" for i, node_id in enumerate(sub.nodes)}
    focused = set(focus)
    experiment_of = _experiments(sub)
    # Who each node stands in for: itself, or a group.
    rep: dict[str, str] = {node_id: keys[node_id] for node_id in sub.nodes}
    groups: dict[str, list[str]] = {}  # group key -> member ids
    group_label: dict[str, tuple[str, str | None]] = {}  # group key -> (kind, experiment)
    collapsed = bool(collapse_above) and len(sub.nodes) > (collapse_above or 0)
    if collapsed:
        _collapse(sub, focused, experiment_of, rep, groups, group_label)

    nodes: dict[str, _VNode] = {}
    for node_id, t in sub.nodes.items():
        key = rep[node_id]
        if key != keys[node_id]:
            continue
        nodes[key] = _VNode(
            key, t.node.label, _describe(t.node, policies), focus=node_id in focused
        )
    for gkey, members in groups.items():
        kind, experiment = group_label[gkey]
        nodes[gkey] = _VNode(
            gkey, kind, _group_lines(sub, kind, experiment, members, policies), members=len(members)
        )

    folded: set[str] = set()
    if not context_nodes:
        folded = _fold_context(sub, focused, rep, keys, groups, nodes)

    # One drawn edge per pair of drawn nodes: its kinds (with roles), and how many edges.
    pairs: dict[tuple[str, str], dict[str, int]] = {}
    for e in sub.edges:
        if e.source not in rep or e.target not in rep:
            continue
        if e.source in folded or e.target in folded:
            continue
        # Drawn from what a thing came from to the thing: time flows left to right.
        tail, head = rep[e.target], rep[e.source]
        if tail == head and (tail in groups):
            continue  # an edge inside a group (a child run of a sibling)
        labels = pairs.setdefault((tail, head), {})
        labels[_edge_label(e)] = labels.get(_edge_label(e), 0) + 1
    edges: list[_VEdge] = []
    for (tail, head), labels in pairs.items():
        if len(labels) == 1:
            ((label, count),) = labels.items()
            edges.append(_VEdge(tail, head, label, count))
        else:  # several kinds between one pair: each named, with its own count
            text = ", ".join(f"{k} {_TIMES}{n}" if n > 1 else k for k, n in sorted(labels.items()))
            edges.append(_VEdge(tail, head, _clean(text, 120)))

    view = _View(nodes, edges)
    shown_all = len(view.nodes)
    if shown_all > max_nodes or len(view.edges) > max_edges:
        _keep_nearest(sub, view, rep, focused, max_nodes, max_edges)
    if cluster:
        _assign_clusters(sub, view, rep, experiment_of, groups, group_label)
    if title:
        view.caption.append(_clean(title, 200))
    if collapsed and groups:
        hidden = sum(len(m) for m in groups.values())
        view.caption.append(
            f"{len(sub.nodes)} nodes: {hidden} collapsed into {len(groups)} group(s)"
        )
    if len(view.nodes) < shown_all:
        view.caption.append(
            f"showing the {len(view.nodes)} nodes nearest the roots of {shown_all}: lower the "
            "depth, or export graphml, json or prov for everything"
        )
    if sub.truncated:
        reason = getattr(sub.truncation_reason, "value", sub.truncation_reason) or "a budget"
        view.caption.append(f"TRUNCATED ({reason}): there is more lineage than shown")
    return view


def _keep_nearest(
    sub: Subgraph,
    view: _View,
    rep: Mapping[str, str],
    focused: set[str],
    max_nodes: int,
    max_edges: int,
) -> None:
    """Cut the view to ``max_nodes`` nodes and ``max_edges`` edges:
    the focus nodes and those nearest the roots (a group node is as near as its nearest
    member, and comes before single nodes as near: it stands for many), in discovery order
    among equals, up to the first node whose edges to those kept would pass the edge budget
    (the focus nodes are kept whatever their edges)."""
    distance: dict[str, int] = {}
    order: dict[str, int] = {}
    for i, (node_id, t) in enumerate(sub.nodes.items()):
        key = rep[node_id]
        distance[key] = min(distance.get(key, t.distance), t.distance)
        order.setdefault(key, i)
    ranked = sorted(
        view.nodes,
        key=lambda k: (
            not view.nodes[k].focus,
            distance.get(k, 0),
            view.nodes[k].members <= 1,
            order.get(k, 0),
        ),
    )
    touching: dict[str, list[_VEdge]] = {}
    for e in view.edges:
        touching.setdefault(e.tail, []).append(e)
        if e.head != e.tail:
            touching.setdefault(e.head, []).append(e)
    keep: set[str] = set()
    edges = 0
    for k in ranked[:max_nodes]:
        more = sum(1 for e in touching.get(k, ()) if {e.tail, e.head} <= keep | {k})
        if keep and edges + more > max_edges and not view.nodes[k].focus:
            break
        keep.add(k)
        edges += more
    view.nodes = {k: n for k, n in view.nodes.items() if k in keep}
    view.edges = [e for e in view.edges if e.tail in keep and e.head in keep]


def _collapse(
    sub: Subgraph,
    focused: set[str],
    experiment_of: Mapping[str, tuple[str, str]],
    rep: dict[str, str],
    groups: dict[str, list[str]],
    group_label: dict[str, tuple[str, str | None]],
) -> None:
    """Fold sibling runs (same experiment, or else same neighbours) into group nodes, then
    the nodes that only such a group touches (one model version per run of a sweep)."""
    neighbours: dict[str, set[tuple[str, str, bool]]] = {n: set() for n in sub.nodes}
    for e in sub.edges:
        if e.source in neighbours and e.target in neighbours:
            neighbours[e.source].add((e.target, e.kind, True))
            neighbours[e.target].add((e.source, e.kind, False))
    candidates: dict[Any, list[str]] = {}
    for node_id, t in sub.nodes.items():
        if t.node.label != "Run" or node_id in focused or t.distance == 0:
            continue
        if node_id in experiment_of:
            gkey: Any = ("experiment", experiment_of[node_id][0])
        else:
            gkey = ("neighbours", frozenset(neighbours[node_id]))
        candidates.setdefault(gkey, []).append(node_id)
    count = 0
    for gkey, members in candidates.items():
        if len(members) < 2:
            continue
        key = f"g{count}"
        count += 1
        groups[key] = members
        group_label[key] = ("Run", gkey[1] if gkey[0] == "experiment" else None)
        for m in members:
            rep[m] = key
    # Second pass: nodes all of whose neighbours sit in one group, by kind.
    followers: dict[tuple[str, str], list[str]] = {}
    for node_id, t in sub.nodes.items():
        if node_id in focused or t.distance == 0 or rep[node_id] in groups:
            continue
        around = {rep[other] for other, _, _ in neighbours[node_id]}
        if len(around) == 1:
            (only,) = around
            if only in groups:
                followers.setdefault((t.node.label, only), []).append(node_id)
    for (kind, owner), members in followers.items():
        if len(members) < 2:
            continue
        key = f"g{count}"
        count += 1
        groups[key] = members
        group_label[key] = (kind, group_label[owner][1])
        for m in members:
            rep[m] = key


def _group_lines(
    sub: Subgraph,
    kind: str,
    experiment: str | None,
    members: list[str],
    policies: Mapping[Any, Any] | None = None,
) -> list[str]:
    noun = "runs" if kind == "Run" else f"{kind} nodes"
    if kind == "Run" and experiment:
        lines = [_clean(f"Experiment {experiment}: {len(members)} runs")]
    elif experiment:
        lines = [_clean(f"{len(members)} {noun} of experiment {experiment}")]
    else:
        lines = [f"{len(members)} {noun}"]
    values: dict[str, list[float]] = {}
    for m in members:
        metric = _key_metric(sub.nodes[m].node, policies)
        if metric is not None:
            values.setdefault(metric[0], []).append(metric[1])
    if values:
        name, numbers = max(values.items(), key=lambda kv: len(kv[1]))
        lo, hi = min(numbers), max(numbers)
        lines.append(_clean(f"{name} {_num(lo)}" + (f" {_DASH} {_num(hi)}" if hi != lo else "")))
    return lines


def _assign_clusters(
    sub: Subgraph,
    view: _View,
    rep: Mapping[str, str],
    experiment_of: Mapping[str, tuple[str, str]],
    groups: Mapping[str, list[str]],
    group_label: Mapping[str, tuple[str, str | None]],
) -> None:
    """Runs of one experiment share a box, with what they generated."""
    cluster_of: dict[str, str] = {}  # view key -> experiment
    for run_id, (experiment, _) in experiment_of.items():
        cluster_of[rep[run_id]] = experiment
    for gkey, (_kind, group_experiment) in group_label.items():
        if group_experiment:
            cluster_of[gkey] = group_experiment
    for e in sub.edges:
        if e.kind == "GENERATED_BY" and e.target in experiment_of and e.source in rep:
            cluster_of.setdefault(rep[e.source], experiment_of[e.target][0])
    names: dict[str, str] = {}
    for key, experiment in cluster_of.items():
        if key not in view.nodes:
            continue
        ckey = names.setdefault(experiment, f"cluster_{len(names)}")
        view.clusters[ckey] = _clean(f"Experiment {experiment}")
        view.nodes[key].cluster = ckey


# --- Graphviz ----------------------------------------------------------------------------------


def _dot_text(lines: Iterable[str]) -> str:
    """A label's lines as a DOT escString, every character literal but our line breaks.

    Backslashes are doubled (``\\N`` or ``\\G`` in a name stay text), ``&`` is written
    ``&amp;`` (Graphviz decodes HTML entities in every label: ``&lt;`` in a name would be
    drawn as ``<``, and ``&#1;`` was copied into the SVG as a character XML refuses, so the
    picture did not open) and the result is marked not-HTML (a name like ``<b>`` stays text);
    the ``graphviz`` package quotes it."""
    import graphviz

    return graphviz.nohtml(
        "\\n".join(line.replace("\\", "\\\\").replace("&", "&amp;") for line in lines)
    )


MAX_ASPECT = 3.0
"""A picture laid out left to right that would be more than this many times wider than tall
(a long chain of few nodes per step) is laid out top to bottom instead."""


def _ranks(view: _View) -> tuple[int, int]:
    """(how many ranks, most nodes on one rank) of the view laid out along its edges: each
    node on the rank after its furthest predecessor (edges closing a cycle are ignored)."""
    preds: dict[str, set[str]] = {key: set() for key in view.nodes}
    for e in view.edges:
        if e.tail in preds and e.head in preds and e.tail != e.head:
            preds[e.head].add(e.tail)
    rank: dict[str, int] = {}
    visiting: set[str] = set()

    def place(key: str) -> int:
        if key in rank:
            return rank[key]
        visiting.add(key)
        rank[key] = 1 + max((place(p) for p in preds[key] if p not in visiting), default=-1)
        visiting.discard(key)
        return rank[key]

    for key in view.nodes:
        place(key)
    per_rank: dict[int, int] = {}
    for r in rank.values():
        per_rank[r] = per_rank.get(r, 0) + 1
    return (max(per_rank) + 1, max(per_rank.values())) if per_rank else (0, 0)


def _rankdir(view: _View) -> str:
    """``LR`` (time flows left to right), or ``TB`` when that would be too wide for its
    height (:data:`MAX_ASPECT`); estimated from ranks, about 190 x 70 pt per node."""
    if len(view.nodes) > 120:
        return "LR"  # large pictures are read by zooming; keep time left to right
    ranks, widest = _ranks(view)
    return "TB" if ranks * 190 > MAX_ASPECT * widest * 70 else "LR"


def _graphviz(view: _View, fmt: str, timeout: float = RENDER_TIMEOUT) -> bytes:
    import graphviz

    font = "Helvetica"
    graph = graphviz.Digraph(
        "lineage",
        graph_attr={
            "rankdir": _rankdir(view),
            "fontname": font,
            "fontsize": "12",
            "labelloc": "t",
            "labeljust": "l",
            "nodesep": "0.25",
            "ranksep": "0.6",
        },
        node_attr={"fontname": font, "fontsize": "10", "style": "filled", "color": "#444444"},
        edge_attr={"fontname": font, "fontsize": "8", "color": "#666666", "arrowsize": "0.7"},
    )
    if view.caption:
        graph.attr(label=_dot_text(view.caption))
    if len(view.nodes) > 120 or len(view.edges) > 400:
        # Bound Graphviz's crossing minimisation and network simplex passes: large pictures
        # lay out in seconds instead of minutes, slightly less tidy.
        graph.attr(mclimit="0.3", nslimit="2", nslimit1="2", remincross="false")

    def add(target: graphviz.Digraph, node: _VNode) -> None:
        shape, fill = NODE_STYLES.get(node.kind, _DEFAULT_STYLE)
        attrs = {"shape": shape, "fillcolor": fill, "tooltip": _dot_text(node.lines[:2])}
        style = ["filled"]
        if node.kind == "Run":
            style.append("rounded")
        if node.members > 1:
            style.append("dashed")
            attrs["peripheries"] = "2"
        if node.focus:
            style.append("bold")
            attrs.update(penwidth="3", color="#c2410c", fontname=f"{font}-Bold")
        attrs["style"] = ",".join(style)
        target.node(node.key, _dot_text(node.lines), **attrs)

    by_cluster: dict[str, list[_VNode]] = {}
    for node in view.nodes.values():
        if node.cluster is None:
            add(graph, node)
        else:
            by_cluster.setdefault(node.cluster, []).append(node)
    for ckey, members in by_cluster.items():
        with graph.subgraph(name=ckey) as box:
            box.attr(
                label=_dot_text([view.clusters[ckey]]),
                style="rounded,dashed",
                color="#b45309",
                fontcolor="#b45309",
            )
            for node in members:
                add(box, node)
    for edge in view.edges:
        label = edge.label if edge.count == 1 else f"{edge.label} {_TIMES}{edge.count}"
        attrs = {"penwidth": "2"} if edge.count > 1 else {}
        graph.edge(edge.tail, edge.head, _dot_text([label]), **attrs)
    if fmt == "dot":
        return graph.source.encode()
    # `dot` itself, not graphviz's pipe(), which has no time limit: a picture it cannot draw
    # in time is refused, and the process killed (a dense graph held a request for minutes)
    try:
        done = subprocess.run(
            ["dot", f"-T{fmt}"],
            input=graph.source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(
            f"rendering {fmt} needs Graphviz's `dot` program: install graphviz (apt install "
            "graphviz, brew install graphviz, conda install graphviz), or export dot, mmd, "
            "graphml, json, prov or openlineage"
        ) from None
    except subprocess.TimeoutExpired:
        raise ValidationError(
            f"Graphviz did not draw the picture within {timeout:g} s: draw less (maxNodes, "
            "depth, collapseAbove) or export dot, mmd or json",
            field="format",
        ) from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        raise HubError(f"Graphviz could not render the picture: {_clean(stderr, 300)}")
    return done.stdout


# --- Mermaid -----------------------------------------------------------------------------------

# Inside a quoted Mermaid label: entity codes for what would end the string, start a markdown
# string, an entity, or HTML, and ``%`` (Mermaid reads ``%%{init: ...}%%`` anywhere in the
# text as a directive, even inside a quoted label: a name could restyle the whole picture).
_MERMAID_ESCAPES = str.maketrans(
    {
        '"': "#quot;",
        "%": "#37;",
        "#": "#35;",
        "&": "#amp;",
        "<": "#lt;",
        ">": "#gt;",
        "`": "#96;",
        ";": "#59;",
        "|": "#124;",
    }
)


def _mermaid_text(lines: Iterable[str]) -> str:
    return '"' + "<br/>".join(line.translate(_MERMAID_ESCAPES) for line in lines) + '"'


def _mermaid_within_limits(
    sub: Subgraph,
    focus: Sequence[str],
    cluster: bool,
    collapse_above: int | None,
    title: str | None,
    policies: Mapping[Any, Any] | None,
    context_nodes: bool,
) -> str:
    """The Mermaid text of the picture, cut (nearest the roots kept, as for Graphviz) until it
    is within :data:`MERMAID_MAX_EDGES` and :data:`MERMAID_MAX_TEXT` (UTF-16 code units, as
    Mermaid counts)."""
    max_nodes = MAX_PICTURE_NODES
    while True:
        view = _build_view(
            sub, focus, cluster, collapse_above, title, policies, context_nodes,
            max_nodes=max_nodes, max_edges=MERMAID_MAX_EDGES,
        )  # fmt: skip
        text = _mermaid(view)
        if len(text.encode("utf-16-le")) // 2 <= MERMAID_MAX_TEXT or len(view.nodes) <= 1:
            return text
        max_nodes = max(1, len(view.nodes) * 3 // 4)


def _mermaid(view: _View) -> str:
    out: list[str] = []
    if view.caption:
        # JSON is YAML; "%" as \u0025, as in labels (never the start of a directive)
        caption = json.dumps(" · ".join(view.caption)).replace("%", "\\u0025")
        out += ["---", "title: " + caption, "---"]
    out.append("flowchart LR")

    def declare(node: _VNode, indent: str) -> None:
        opening, closing = _MERMAID_SHAPES.get(node.kind, ("(", ")"))
        css = f"k_{node.kind}"
        out.append(f"{indent}{node.key}{opening}{_mermaid_text(node.lines)}{closing}:::{css}")

    by_cluster: dict[str, list[_VNode]] = {}
    for node in view.nodes.values():
        if node.cluster is None:
            declare(node, "    ")
        else:
            by_cluster.setdefault(node.cluster, []).append(node)
    for ckey, members in by_cluster.items():
        out.append(f"    subgraph {ckey}[{_mermaid_text([view.clusters[ckey]])}]")
        for node in members:
            declare(node, "        ")
        out.append("    end")
    for edge in view.edges:
        label = edge.label if edge.count == 1 else f"{edge.label} {_TIMES}{edge.count}"
        arrow = "==>" if edge.count > 1 else "-->"
        out.append(f"    {edge.tail} {arrow}|{_mermaid_text([label])}| {edge.head}")
    kinds = sorted({node.kind for node in view.nodes.values()})
    for kind in kinds:
        _shape, fill = NODE_STYLES.get(kind, _DEFAULT_STYLE)
        out.append(f"    classDef k_{kind} fill:{fill},stroke:#444444,color:#111111")
    out.append("    classDef focus stroke:#c2410c,stroke-width:4px,font-weight:bold")
    out.append("    classDef group stroke-dasharray:5 3,stroke-width:2px")
    focus = [n.key for n in view.nodes.values() if n.focus]
    if focus:
        out.append(f"    class {','.join(focus)} focus")
    grouped = [n.key for n in view.nodes.values() if n.members > 1]
    if grouped:
        out.append(f"    class {','.join(grouped)} group")
    return "\n".join(out) + "\n"


# --- GraphML and Cytoscape.js ------------------------------------------------------------------

_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters, even escaped."""
    return _XML_INVALID.sub("\ufffd", text)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _name(node: Node) -> str:
    p = node.props
    for key in ("name", "model", "rule", "sha"):
        if p.get(key):
            return str(p[key])
    return ""


def _graphml(sub: Subgraph, focus: Sequence[str], title: str | None) -> bytes:
    import networkx as nx

    graph = nx.MultiDiGraph()
    graph.graph["truncated"] = bool(sub.truncated)
    if sub.truncation_reason is not None:
        graph.graph["truncation_reason"] = str(
            getattr(sub.truncation_reason, "value", sub.truncation_reason)
        )
    if title:
        graph.graph["title"] = _xml_safe(title)
    for node_id, t in sub.nodes.items():
        attrs: dict[str, Any] = {
            "label": _xml_safe("\n".join(_describe(t.node))),
            "kind": t.node.label,
            "name": _xml_safe(_name(t.node)),
            "distance": int(t.distance),
            "focus": node_id in focus,
            "props": _xml_safe(json.dumps(t.node.props, sort_keys=True, ensure_ascii=False)),
        }
        if isinstance(t.node.props.get("version"), int):
            attrs["version"] = t.node.props["version"]
        if t.reached_from is not None:
            attrs["reached_from"] = _xml_safe(t.reached_from)
        graph.add_node(_xml_safe(node_id), **attrs)
    for e in sub.edges:
        attrs = {"kind": e.kind, "props": _xml_safe(json.dumps(e.props, sort_keys=True))}
        if e.props.get("role"):
            attrs["role"] = _xml_safe(str(e.props["role"]))
        for name, value in (
            ("event_time", _iso(e.event_time)),
            ("ingested_at", _iso(e.ingested_at)),
            ("asserted_by", e.asserted_by),
        ):
            if value is not None:
                attrs[name] = _xml_safe(value)
        graph.add_edge(_xml_safe(e.source), _xml_safe(e.target), key=_xml_safe(e.id), **attrs)
    return "\n".join(nx.generate_graphml(graph, encoding="utf-8")).encode() + b"\n"


# ours, and Cytoscape.js's reserved "parent" (a compound node's parent: a child run's own
# ``parent`` property would draw it inside its parent run); every property stays in ``props``
_CY_OWN = frozenset({"id", "label", "kind", "distance", "reachedFrom", "focus", "props", "parent"})


def _cytoscape(sub: Subgraph, focus: Sequence[str], title: str | None) -> bytes:
    nodes = []
    for node_id, t in sub.nodes.items():
        data: dict[str, Any] = {
            k: v for k, v in t.node.props.items() if k not in _CY_OWN and not isinstance(v, dict)
        }
        data.update(
            id=node_id,
            label="\n".join(_describe(t.node)),
            kind=t.node.label,
            distance=t.distance,
            reachedFrom=t.reached_from,
            focus=node_id in focus,
            props=t.node.props,
        )
        nodes.append({"group": "nodes", "data": data, "classes": t.node.label})
    edges = []
    for e in sub.edges:
        edges.append(
            {
                "group": "edges",
                "data": {
                    "id": e.id,
                    "source": e.source,
                    "target": e.target,
                    "kind": e.kind,
                    "label": _edge_label(e),
                    "role": e.props.get("role"),
                    "eventTime": _iso(e.event_time),
                    "ingestedAt": _iso(e.ingested_at),
                    "assertedBy": e.asserted_by,
                    "props": e.props,
                },
                "classes": e.kind,
            }
        )
    doc = {
        "elements": {"nodes": nodes, "edges": edges},
        "truncated": bool(sub.truncated),
        "truncationReason": getattr(sub.truncation_reason, "value", sub.truncation_reason),
        "focus": list(focus),
        "title": title,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1, default=str).encode() + b"\n"


# --- W3C PROV ----------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_time(value, "time")
        except ValidationError:
            return None
    return None


def _prov_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) and not (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**31
    ):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _prov(sub: Subgraph, title: str | None) -> bytes:
    from prov.model import ProvDocument

    doc = ProvDocument()
    ns = doc.add_namespace("lineagehub", _PROV_NS)
    doc.add_namespace("prov", "http://www.w3.org/ns/prov#")

    def qn(node_id: str) -> Any:
        # Ids are kept readable; what PROV-N cannot write in a local name is %-encoded.
        return ns[quote(node_id, safe=_PROV_SAFE)]

    kinds: dict[str, str] = {}
    for node_id, t in sub.nodes.items():
        node = t.node
        attrs: dict[Any, Any] = {
            "prov:type": ns[node.label],
            "prov:label": "\n".join(_describe(node)),
        }
        for key, value in node.props.items():
            if value is not None:
                attrs[ns[key]] = _prov_value(value)
        if node.label in _AGENTS:
            doc.agent(qn(node_id), attrs)
            kinds[node_id] = "agent"
        elif node.label in _ACTIVITIES:
            p = node.props
            start = _time(p.get("started_at") or p.get("start"))
            end = _time(p.get("ended_at") or p.get("end"))
            doc.activity(qn(node_id), start, end, attrs)
            kinds[node_id] = "activity"
        else:
            doc.entity(qn(node_id), attrs)
            kinds[node_id] = "entity"

    for e in sub.edges:
        if e.source not in kinds or e.target not in kinds:
            continue
        pair = (kinds[e.source], kinds[e.target])
        source, target = qn(e.source), qn(e.target)
        extra: dict[Any, Any] = {ns["edgeKind"]: e.kind}
        if e.props.get("role"):
            extra["prov:role"] = str(e.props["role"])
        if e.asserted_by:
            extra[ns["assertedBy"]] = e.asserted_by
        when = e.event_time
        if pair == ("activity", "entity") and e.kind in ("USED", "RAN_CODE", "RAN_IN", "SERVES"):
            doc.used(source, target, when, other_attributes=extra)
        elif pair == ("entity", "activity") and e.kind == "GENERATED_BY":
            doc.wasGeneratedBy(source, target, when, other_attributes=extra)
        elif pair == ("entity", "entity") and e.kind == "DERIVED_FROM":
            doc.wasDerivedFrom(source, target, other_attributes=extra)
        elif pair == ("entity", "entity") and e.kind == "VERSION_OF":
            doc.specializationOf(source, target)
        elif pair == ("activity", "agent") and e.kind == "ASSOCIATED_WITH":
            doc.wasAssociatedWith(source, target, other_attributes=extra)
        elif pair == ("entity", "agent") and e.kind == "ATTRIBUTED_TO":
            doc.wasAttributedTo(source, target, other_attributes=extra)
        elif pair == ("activity", "activity") and e.kind in ("CHILD_OF", "OBSERVED"):
            doc.wasInformedBy(source, target, other_attributes=extra)
        else:  # PART_OF, ABOUT and anything else: PROV's most general relation
            extra["prov:type"] = ns[e.kind]
            doc.wasInfluencedBy(source, target, other_attributes=extra)
    if title or sub.truncated:
        # A bundle-free way to carry document facts: one entity describing the export.
        facts: dict[Any, Any] = {"prov:type": ns["LineageExport"]}
        facts[ns["truncated"]] = bool(sub.truncated)
        if sub.truncation_reason is not None:
            facts[ns["truncationReason"]] = str(
                getattr(sub.truncation_reason, "value", sub.truncation_reason)
            )
        if title:
            facts["prov:label"] = title
        doc.entity(ns["export"], facts)
    text = doc.serialize(format="json", indent=1)
    return str(text).encode() + b"\n"


# --- OpenLineage -------------------------------------------------------------------------------

_EVENT_TYPES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "ABORT", "RUNNING": "START"}
_OPENLINEAGE_NAMESPACE = "lineagehub"


def _run_uuid(run_id: str) -> str:
    """A run's OpenLineage runId: the UUID in its id (``run:<uuid7>``), else a stable uuid5."""
    tail = run_id.split(":", 1)[-1]
    try:
        return str(uuid.UUID(tail))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{_PRODUCER}/{run_id}"))


def _ol_dataset(node: Node) -> tuple[str, str, str | None]:
    """(namespace, name, version) of a dataset version, model version or artifact."""
    p = node.props
    if node.label in ("DatasetVersion", "Dataset") and p.get("namespace") and p.get("name"):
        return str(p["namespace"]), str(p["name"]), p.get("digest")
    if node.label == "ModelVersion":
        return _OPENLINEAGE_NAMESPACE, f"models/{p.get('model')}", str(p.get("version"))
    return _OPENLINEAGE_NAMESPACE, node.id, p.get("digest")


def _openlineage(sub: Subgraph) -> bytes:
    try:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import (
            dataset_version_dataset,
            error_message_run,
            parent_run,
        )
        from openlineage.client.serde import Serde
    except ImportError:
        raise ConfigError(
            "the openlineage export needs openlineage-python: pip install 'lineagehub[openlineage]'"
        ) from None

    experiment_of = _experiments(sub)
    inputs: dict[str, list[str]] = {}
    outputs: dict[str, list[str]] = {}
    parent: dict[str, str] = {}
    for e in sub.edges:
        if e.source not in sub.nodes or e.target not in sub.nodes:
            continue
        if e.kind == "USED":
            inputs.setdefault(e.source, []).append(e.target)
        elif e.kind == "GENERATED_BY":
            outputs.setdefault(e.target, []).append(e.source)
        elif e.kind == "CHILD_OF":
            parent[e.source] = e.target

    def job_of(run: Node) -> tuple[str, str]:
        p = run.props
        namespace = str(p.get("project") or _OPENLINEAGE_NAMESPACE)
        if p.get("experiment"):
            return namespace, str(p["experiment"])
        if run.id in experiment_of:
            project, _, name = experiment_of[run.id][0].rpartition("/")
            return (project or namespace), name
        return namespace, str(p.get("name") or run.id)

    def facets(node: Node) -> dict[str, Any]:
        version = _ol_dataset(node)[2]
        if version is None:
            return {}
        return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(str(version))}

    lines: list[str] = []
    for run_id, t in sub.nodes.items():
        run = t.node
        if run.label != "Run":
            continue
        p = run.props
        state = _EVENT_TYPES.get(str(p.get("status")), "OTHER")
        when = (
            _time(p.get("ended_at"))
            or _time(p.get("started_at"))
            or run.updated_at
            or run.created_at
            or datetime.now(timezone.utc)
        )
        run_facets: dict[str, Any] = {}
        if state == "FAIL" and p.get("error"):
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(p["error"]), programmingLanguage="python"
            )
        if run_id in parent and parent[run_id] in sub.nodes:
            parent_node = sub.nodes[parent[run_id]].node
            pns, pname = job_of(parent_node)
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=_run_uuid(parent_node.id)),
                job=parent_run.Job(namespace=pns, name=pname),
            )
        namespace, name = job_of(run)
        event = RunEvent(
            eventType=RunState(state),
            eventTime=when.astimezone(timezone.utc).isoformat(),
            run=Run(runId=_run_uuid(run_id), facets=run_facets),
            job=Job(namespace=namespace, name=name),
            producer=_PRODUCER,
            inputs=[
                InputDataset(*_ol_dataset(sub.nodes[i].node)[:2], facets=facets(sub.nodes[i].node))
                for i in inputs.get(run_id, [])
            ],
            outputs=[
                OutputDataset(*_ol_dataset(sub.nodes[o].node)[:2], facets=facets(sub.nodes[o].node))
                for o in outputs.get(run_id, [])
            ],
        )
        lines.append(Serde.to_json(event))
    return "".join(line + "\n" for line in lines).encode()
