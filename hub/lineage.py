"""The compound lineage questions, over any :class:`~lineagehub.graph.GraphStore`.

:class:`LineageService` answers what ML teams and auditors ask of the lineage graph:

- :meth:`~LineageService.resolve`: a node from its id or a natural reference
  (``model:churn@production``, ``dataset:warehouse/customers@sha256:ab12cd34``);
- :meth:`~LineageService.lineage`: the graph around several roots, upstream, downstream or
  both, with separate depths, filters, stop-at and pass-through kinds, ``as_of`` and budgets;
- :meth:`~LineageService.impact`: what depends on a dataset version, a commit, any node:
  model versions, deployments serving them now, open alerts, runs, owners to notify;
- :meth:`~LineageService.path`: why one node is upstream of another (or how they connect);
- :meth:`~LineageService.compare_runs` and :meth:`~LineageService.compare_model_versions`.

It only calls the store's public methods and every answer takes a number of store queries
bounded by its depth arguments, never by the size of the graph: traversals expand a whole
frontier per query, and follow-up look-ups are batched over every node found
(``neighbors``, ``get_nodes``, ``series_summary``). Results are frozen dataclasses whose
fields the GraphQL layer maps one to one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from lineagehub.graph import (
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    Subgraph,
    TruncationReason,
    ValidationError,
)
from lineagehub.graph.model import MAX_ID_LENGTH, check_time, to_iso

from .vocabulary import (
    ID_PREFIXES,
    LINEAGE_EDGE_KINDS,
    AssociationRole,
    Dataset,
    DatasetVersion,
    DeploymentStatus,
    EdgeKind,
    NodeKind,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "Impact",
    "InputRow",
    "LineageDiff",
    "LineageService",
    "MetricDelta",
    "MetricRow",
    "NodeChange",
    "NodeSetDiff",
    "ParamChange",
    "ParamRow",
    "Paths",
    "PropertyChange",
    "RunComparison",
]

DEFAULT_MAX_DEPTH = 20
"""The default ceiling on any depth a caller may ask for."""
DEFAULT_MAX_NODES = 100_000
"""The default ceiling on any node budget a caller may ask for."""
MAX_ROOTS = 1000
MAX_COMPARED_RUNS = 50
MAX_PATHS = 100

_LINEAGE_KINDS = sorted(k.value for k in LINEAGE_EDGE_KINDS)
# What "depends on" means for impact: everything but grouping, serving and monitoring (those
# are attached afterwards, one hop each, so that monitoring windows and alerts neither use up
# the depth nor the node budget of the walk).
_IMPACT_KINDS = sorted(
    k.value
    for k in LINEAGE_EDGE_KINDS
    - {EdgeKind.SERVES, EdgeKind.ABOUT, EdgeKind.OBSERVED, EdgeKind.PART_OF}
)
_STAGES = {"production": "Production", "staging": "Staging", "archived": "Archived"}
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9]{1,19}$")
_DIGEST_SEL_RE = re.compile(r"^(?:sha256:)?([0-9a-f]+)$", re.IGNORECASE)
_KNOWN_PREFIXES = frozenset(ID_PREFIXES.values())


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    """Everything downstream of a root (a dataset version, a code commit, any node).

    Every affected node list includes the root when it is of that kind, and is sorted
    (model versions by model and number, the others by id). ``deployments`` are the ones
    serving an affected model version now (a ``SERVES`` edge without ``valid_to`` or with
    ``valid_to`` in the future, and not retired); ``open_alerts`` the alerts about an affected
    deployment, model version or dataset version that are not resolved; ``owners`` the agents
    to notify: owners (``ATTRIBUTED_TO``) of the affected model versions, models, dataset
    versions and datasets, and launchers of the affected runs. ``truncated`` and
    ``truncation_reason`` come from the walk downstream: a truncated impact may miss some.
    """

    root: str
    model_versions: tuple[Node, ...]
    deployments: tuple[Node, ...]
    open_alerts: tuple[Node, ...]
    runs: tuple[Node, ...]
    dataset_versions: tuple[Node, ...]
    owners: tuple[Node, ...]
    truncated: bool
    truncation_reason: TruncationReason | None


@dataclass(frozen=True, slots=True)
class Paths:
    """The shortest paths between two nodes, each a list of edges read from ``from`` to
    ``to`` (every edge keeps its own direction and provenance).

    ``relation`` says what the paths show: ``"upstream"`` (``from`` is upstream of ``to``:
    ``to`` came from it), ``"downstream"`` (``to`` is upstream of ``from``), ``"connected"``
    (neither, but they share an ancestor or descendant, or are joined otherwise), or ``None``
    when there is no path within ``max_depth``. ``truncated`` is true when the node budget
    stopped a search early: then a shorter or a directed path may exist.
    """

    from_id: str
    to_id: str
    relation: str | None
    length: int | None
    paths: tuple[tuple[Edge, ...], ...]
    truncated: bool
    truncation_reason: TruncationReason | None


@dataclass(frozen=True, slots=True)
class ParamRow:
    """One parameter key across the compared runs: one value per run (``None`` where the
    run does not have it; ``present`` tells an absent key from a logged null)."""

    key: str
    values: tuple[Any, ...]
    present: tuple[bool, ...]
    differs: bool


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One metric key across the compared runs: last value (at the highest step), minimum
    and maximum per run, ``None`` where the run has no such metric; NaN stays ``nan``.
    A metric logged only as a value on the run (no series) counts as a single point."""

    key: str
    last: tuple[float | None, ...]
    min: tuple[float | None, ...]
    max: tuple[float | None, ...]
    differs: bool


@dataclass(frozen=True, slots=True)
class InputRow:
    """An input (a dataset version, a model version, an artifact) some compared run USED:
    per run the roles it was used in (empty when that run did not use it)."""

    node: Node
    roles: tuple[tuple[str, ...], ...]
    used_by_all: bool


@dataclass(frozen=True, slots=True)
class RunComparison:
    """Runs side by side: params, metrics, inputs, code and environment.

    Tuples indexed "per run" follow the order of ``runs`` (the order asked for).
    ``inputs_only_in[i]`` are the ids of the inputs run ``i`` used that not every run used.
    """

    runs: tuple[Node, ...]
    params: tuple[ParamRow, ...]
    metrics: tuple[MetricRow, ...]
    inputs: tuple[InputRow, ...]
    inputs_only_in: tuple[tuple[str, ...], ...]
    code: tuple[str | None, ...]
    code_differs: bool
    environments: tuple[str | None, ...]
    environment_differs: bool


@dataclass(frozen=True, slots=True)
class NodeSetDiff:
    """Nodes upstream of ``b`` only (added) and of ``a`` only (removed), sorted by id."""

    added: tuple[Node, ...]
    removed: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class PropertyChange:
    """A property (dotted path into nested mappings) whose value differs: ``None`` where
    a side does not have it."""

    path: str
    a: Any
    b: Any


@dataclass(frozen=True, slots=True)
class NodeChange:
    """The same logical thing in both upstream graphs as two different nodes: two versions
    of one dataset (a changed digest), two commits of one repository, two environments, the
    two producing training runs, two runs of one name and kind, two versions of one
    upstream model. ``key`` names the logical thing (``dataset:<ns>/<name>``...)."""

    label: str
    key: str
    a: Node
    b: Node
    properties: tuple[PropertyChange, ...]


@dataclass(frozen=True, slots=True)
class ParamChange:
    """A training parameter added (``a`` is None), removed (``b`` is None) or changed."""

    key: str
    a: Any
    b: Any


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """A metric of the two versions' snapshots; ``delta`` is ``b - a`` when both exist."""

    key: str
    a: float | None
    b: float | None
    delta: float | None


@dataclass(frozen=True, slots=True)
class LineageDiff:
    """The difference between the upstream graphs of two model versions ``a`` and ``b``.

    ``added`` / ``removed``: every node upstream of ``b`` only / of ``a`` only;
    ``datasets``, ``commits``, ``environments``, ``runs``: the same, per kind (dataset
    versions, code commits, environments, runs). ``changed`` pairs an added and a removed
    node that are the same logical thing (see :class:`NodeChange`). ``training_runs`` are the
    runs that generated ``a`` and ``b``; ``params_*`` compare their params.
    ``metric_deltas`` compare the versions' ``metrics`` snapshots.
    """

    a: Node
    b: Node
    added: tuple[Node, ...]
    removed: tuple[Node, ...]
    datasets: NodeSetDiff
    commits: NodeSetDiff
    environments: NodeSetDiff
    runs: NodeSetDiff
    changed: tuple[NodeChange, ...]
    training_runs: tuple[str | None, str | None]
    params_added: tuple[ParamChange, ...]
    params_removed: tuple[ParamChange, ...]
    params_changed: tuple[ParamChange, ...]
    metric_deltas: tuple[MetricDelta, ...]
    truncated: bool
    truncation_reason: TruncationReason | None


# --- the service -----------------------------------------------------------------------------


class LineageService:
    """Lineage questions over a graph store (any backend).

    ``max_depth`` and ``max_nodes`` are the ceilings callers may ask for (a depth or budget
    beyond them is a :class:`ValidationError`), as the deployment configures them.
    """

    def __init__(
        self,
        store: GraphStore,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> None:
        from lineagehub.graph.store import MAX_DEPTH_CEILING, MAX_NODES_CEILING

        _check_int(max_depth, "max_depth", 1, MAX_DEPTH_CEILING)
        _check_int(max_nodes, "max_nodes", 1, MAX_NODES_CEILING)
        self.store = store
        self.max_depth = max_depth
        self.max_nodes = max_nodes

    # --- references ------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The id of the node a reference names.

        - an existing node's id: itself (so every id resolves to itself, the ``dataset:`` id
          of a Dataset and the ``model:`` id of a Model included);
        - ``model:<name>/<n>``, ``model:<name>@<n>``: version ``n`` (``mv:<name>/<n>``);
          ``model:<name>@latest``: the highest version; ``model:<name>@<alias>``: the
          (highest) version whose ``aliases`` hold the alias, else, for ``production``,
          ``staging`` and ``archived``, the highest version in that ``stage`` (any case);
        - ``dataset:<namespace>/<name>@sha256:<hex>`` (or ``@<hex>``): that version;
          ``@<hex prefix>`` (at least 8 hex digits): the one version whose digest starts so;
          ``@latest``, or no ``@`` (when that is not a Dataset's id): the most recently
          created version. The namespace may be written as in ids (``s3:%2F%2Flake``) or
          plainly (``s3://lake``); names may contain ``/``;
        - ``<name>/<n>``, ``<name>@<alias|n|latest>`` (no prefix): the registry's short
          form of the ``model:`` references;
        - ``run:<uuid7>``, ``commit:...``, any other id: as it is.

        Unknown: :class:`NotFoundError` (``ids=[ref]``); malformed or ambiguous:
        :class:`ValidationError` with ``field="ref"``. One to three store queries.
        """
        return self.resolve_many([ref])[0]

    def resolve_many(self, refs: Sequence[str], field: str = "ref") -> list[str]:
        """:meth:`resolve` for several references at once (one query for those that are
        ids); unknown ones are named together in one :class:`NotFoundError`."""
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValidationError(f"{field} must be a list of references", field=field)
        for ref in refs:
            _check_ref(ref, field)
        existing = self.store.get_nodes(list(refs)) if refs else []
        result: list[str] = []
        missing: list[str] = []
        for ref, node in zip(refs, existing):
            if node is not None:
                result.append(ref)
                continue
            found = self._resolve_key(ref, field)
            if found is None:
                missing.append(ref)
            result.append(found or ref)
        if missing:
            raise NotFoundError(f"nothing found for {', '.join(map(repr, missing))}", ids=missing)
        return result

    def _resolve_key(self, ref: str, field: str) -> str | None:
        if ":" not in ref and ("/" in ref or "@" in ref):
            # the registry's short form: churn/3, churn@champion, churn@latest
            return self._resolve_model(f"model:{ref}", ref, field)
        prefix, _, rest = ref.partition(":")
        if prefix in ("model", "mv"):
            return self._resolve_model(ref, rest, field)
        if prefix in ("dataset", "dsv"):
            return self._resolve_dataset(ref, rest, field)
        if prefix in _KNOWN_PREFIXES and rest:
            return None  # an id of ours that names nothing
        raise ValidationError(
            f"{field}: {ref[:100]!r} is not a reference: expected a node id "
            f"({', '.join(sorted(p + ':' for p in _KNOWN_PREFIXES))}) or a natural key "
            "(model:<name>@<version|latest|alias>, dataset:<namespace>/<name>@<digest|latest>)",
            field=field,
        )

    def _resolve_model(self, ref: str, rest: str, field: str) -> str | None:
        if "@" in rest:
            name, _, selector = rest.rpartition("@")
            if not name or not selector or "@" in name:
                raise ValidationError(
                    f"{field}: {ref!r}: expected model:<name>@<version|latest|alias>",
                    field=field,
                )
            if _VERSION_RE.match(selector):
                return self._existing(f"mv:{name}/{int(selector)}")
            if selector == "latest":
                page = self.store.find_nodes(
                    NodeKind.MODEL_VERSION.value, {"model": name}, "-version", limit=1
                )
                return page.items[0].id if page.items else None
            return self._resolve_alias(ref, name, selector, field)
        name, _, number = rest.rpartition("/")
        if name and _VERSION_RE.match(number):
            return self._existing(f"mv:{name}/{int(number)}")
        if not rest:
            raise ValidationError(f"{field}: {ref!r}: no model name", field=field)
        return None

    def _resolve_alias(self, ref: str, name: str, alias: str, field: str) -> str | None:
        if not _ALIAS_RE.match(alias.lower()):
            raise ValidationError(
                f"{field}: {ref!r}: {alias!r} is neither a version number, 'latest' nor an "
                "alias (a-z, 0-9, '_', '-')",
                field=field,
            )
        # Aliases are a list property, which filters cannot look into: scan the model's
        # versions, newest first, a page at a time (the registry keeps an alias on one
        # version, so this is one query in practice).
        for node in self.store.iter_nodes(
            NodeKind.MODEL_VERSION.value, {"model": name}, "-version", page_size=1000
        ):
            aliases = node.props.get("aliases")
            if isinstance(aliases, list) and alias in aliases:
                return node.id
        stage = _STAGES.get(alias.lower())
        if stage is None:
            return None
        spellings = sorted({stage, stage.lower(), stage.upper(), alias})
        page = self.store.find_nodes(
            NodeKind.MODEL_VERSION.value,
            {"model": name, "stage": {"$in": spellings}},
            "-version",
            limit=1,
        )
        return page.items[0].id if page.items else None

    def _resolve_dataset(self, ref: str, rest: str, field: str) -> str | None:
        key, selector = rest, None
        if "@" in rest:
            head, _, tail = rest.rpartition("@")
            if not tail:
                raise ValidationError(f"{field}: {ref!r}: nothing after '@'", field=field)
            if tail == "latest" or _DIGEST_SEL_RE.match(tail):
                key, selector = head, tail
        candidates = _dataset_candidates(key)
        if not candidates:
            raise ValidationError(
                f"{field}: {ref!r}: expected dataset:<namespace>/<name>[@<digest|latest>]",
                field=field,
            )
        if selector is not None and selector != "latest":
            m = _DIGEST_SEL_RE.match(selector)
            assert m is not None
            hex_ = m[1].lower()
            if len(hex_) > 64:
                raise ValidationError(f"{field}: {ref!r}: a digest has 64 hex digits", field)
            if len(hex_) == 64:
                ids = [
                    DatasetVersion(namespace=ns, name=name, digest=f"sha256:{hex_}").node_id
                    for ns, name in candidates
                ]
                found = [n.id for n in self.store.get_nodes(ids) if n is not None]
                return self._one(found, ref, field)
            if len(hex_) < 8:
                raise ValidationError(
                    f"{field}: {ref!r}: a digest prefix needs at least 8 hex digits", field=field
                )
            candidates = self._known_datasets(candidates, ref, field)
            page = self.store.find_nodes(
                NodeKind.DATASET_VERSION.value,
                {
                    "$or": [{"namespace": ns, "name": name} for ns, name in candidates],
                    # every digest with this prefix sorts between the prefix and prefix + "g"
                    "digest": {"$gte": f"sha256:{hex_}", "$lt": f"sha256:{hex_}g"},
                },
                limit=2,
            )
            return self._one([n.id for n in page.items], ref, field)
        candidates = self._known_datasets(candidates, ref, field)
        page = self.store.find_nodes(
            NodeKind.DATASET_VERSION.value,
            {"$or": [{"namespace": ns, "name": name} for ns, name in candidates]},
            ["-_created_at"],
            limit=1,
        )
        return page.items[0].id if page.items else None

    def _known_datasets(
        self, candidates: list[tuple[str, str]], ref: str, field: str
    ) -> list[tuple[str, str]]:
        """Of the ways to split ``<namespace>/<name>``, the ones naming a Dataset (all of
        them when none does: versions may have been written without their Dataset)."""
        if len(candidates) == 1:
            return candidates
        ids = [Dataset(namespace=ns, name=name).node_id for ns, name in candidates]
        nodes = self.store.get_nodes(ids)
        known = [c for c, n in zip(candidates, nodes) if n is not None]
        if len(known) > 1:
            raise ValidationError(
                f"{field}: {ref!r} is ambiguous: it names datasets "
                f"{', '.join(Dataset(namespace=ns, name=nm).node_id for ns, nm in known)}",
                field=field,
            )
        return known or candidates

    def _existing(self, node_id: str) -> str | None:
        return node_id if self.store.get_nodes([node_id])[0] is not None else None

    @staticmethod
    def _one(found: list[str], ref: str, field: str) -> str | None:
        if len(found) > 1:
            raise ValidationError(
                f"{field}: {ref!r} is ambiguous: it matches {', '.join(found)}", field=field
            )
        return found[0] if found else None

    # --- lineage ---------------------------------------------------------------------------

    def lineage(
        self,
        roots: Sequence[str],
        direction: Direction | str = Direction.UPSTREAM,
        upstream_depth: int = 3,
        downstream_depth: int = 3,
        *,
        node_kinds: Sequence[NodeKind | str] | None = None,
        edge_kinds: Sequence[EdgeKind | str] | None = None,
        stop_at: Sequence[NodeKind | str] | None = None,
        pass_through: Sequence[NodeKind | str] | None = None,
        as_of: datetime | None = None,
        max_nodes: int = 5000,
        timeout: float | None = None,
    ) -> Subgraph:
        """The lineage graph around several roots (references, see :meth:`resolve`).

        UPSTREAM walks towards what the roots came from, DOWNSTREAM towards what came from
        them, BOTH does each with its own depth. ``node_kinds`` limits which nodes may be
        entered (roots always are), ``edge_kinds`` which edges are followed (default: every
        lineage edge; the grouping edge ``PART_OF`` only when asked). Nodes of a ``stop_at``
        kind are returned but not expanded; nodes of a ``pass_through`` kind are traversed
        without counting as a hop (``pass_through=["Run"]`` counts data-to-data hops only).
        ``as_of``: the graph as the hub knew it then. Every node carries its distance and
        the node it was reached from; ``truncated`` says whether a budget (depth, nodes,
        ``timeout`` seconds) cut the walk. Depths and ``max_nodes`` beyond the service's
        ceilings are a :class:`ValidationError`.
        """
        if isinstance(roots, str) or not isinstance(roots, Sequence) or not roots:
            raise ValidationError("roots: give at least one reference", field="roots")
        if len(roots) > MAX_ROOTS:
            raise ValidationError(f"roots: at most {MAX_ROOTS} roots", field="roots")
        up = _check_int(upstream_depth, "upstream_depth", 0, self.max_depth)
        down = _check_int(downstream_depth, "downstream_depth", 0, self.max_depth)
        budget = _check_int(max_nodes, "max_nodes", 1, self.max_nodes)
        labels = _node_kinds(node_kinds, "node_kinds")
        stops = _node_kinds(stop_at, "stop_at")
        passes = _node_kinds(pass_through, "pass_through")
        kinds = _edge_kinds(edge_kinds, "edge_kinds")
        try:
            way = Direction(direction)
        except ValueError:
            raise ValidationError(
                f"direction must be one of {[d.value for d in Direction]}, got {direction!r:.50}",
                field="direction",
            ) from None
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ValidationError("timeout must be a positive number of seconds", field="timeout")
        if as_of is not None:
            as_of = check_time(as_of, "as_of")
        ids = self.resolve_many(list(roots), "roots")
        return self.store.traverse(
            ids,
            way,
            max(up, down),
            upstream_depth=up,
            downstream_depth=down,
            edge_kinds=kinds,
            labels=labels,
            stop_at=stops,
            pass_through=passes,
            max_nodes=budget,
            timeout=timeout,
            as_of=as_of,
        )

    # --- impact ----------------------------------------------------------------------------

    def impact(self, ref: str, depth: int = 10, *, max_nodes: int = 10_000) -> Impact:
        """Everything downstream of ``ref`` (a dataset version, a code commit, any node):
        the model versions, dataset versions and runs that came from it within ``depth``
        hops, the deployments serving an affected version now, the open alerts about any of
        them, and the owners to notify (see :class:`Impact`).

        From a code commit (or an environment), downstream means the runs that ran it, then
        onward. A bounded number of queries: one walk (one query per level) and three
        batched look-ups, whatever the number of affected nodes.
        """
        depth = _check_int(depth, "depth", 1, self.max_depth)
        budget = _check_int(max_nodes, "max_nodes", 1, self.max_nodes)
        root = self.resolve(ref)
        sub = self.store.traverse(
            [root], Direction.DOWNSTREAM, depth, edge_kinds=_IMPACT_KINDS, max_nodes=budget
        )
        by_label: dict[str, list[Node]] = {}
        for t in sub.nodes.values():
            by_label.setdefault(t.node.label, []).append(t.node)
        versions = by_label.get(NodeKind.MODEL_VERSION.value, [])
        datasets = by_label.get(NodeKind.DATASET_VERSION.value, [])
        runs = by_label.get(NodeKind.RUN.value, [])

        now = to_iso(datetime.now(timezone.utc))
        deployments: dict[str, Node] = {}
        for d in by_label.get(NodeKind.DEPLOYMENT.value, []):  # the root itself
            if d.props.get("status") != DeploymentStatus.RETIRED.value:
                deployments[d.id] = d
        serving = self.store.neighbors(
            [v.id for v in versions],
            Direction.DOWNSTREAM,
            [EdgeKind.SERVES.value],
            [NodeKind.DEPLOYMENT.value],
        )
        for adjacent in serving.values():
            for adj in adjacent:
                valid_to = adj.edge.props.get("valid_to")
                current = valid_to is None or (isinstance(valid_to, str) and valid_to > now)
                retired = adj.node.props.get("status") == DeploymentStatus.RETIRED.value
                if current and not retired:
                    deployments[adj.node.id] = adj.node

        targets = [n.id for n in (*versions, *datasets, *deployments.values())]
        about = self.store.neighbors(
            targets, Direction.DOWNSTREAM, [EdgeKind.ABOUT.value], [NodeKind.ALERT.value]
        )
        alerts = {
            adj.node.id: adj.node
            for adjacent in about.values()
            for adj in adjacent
            if adj.node.props.get("state") != "resolved"
        }

        owned = [n.id for n in (*versions, *datasets)]
        owned += sorted({f"model:{v.props['model']}" for v in versions if "model" in v.props})
        owned += sorted({i for i in (_dataset_id(d) for d in datasets) if i is not None})
        owned += [n.id for n in by_label.get(NodeKind.MODEL.value, [])]
        owned += [n.id for n in by_label.get(NodeKind.DATASET.value, [])]
        run_ids = {r.id for r in runs}
        owners: dict[str, Node] = {}
        found = self.store.neighbors(
            list(dict.fromkeys([*owned, *run_ids])),
            Direction.UPSTREAM,
            [EdgeKind.ATTRIBUTED_TO.value, EdgeKind.ASSOCIATED_WITH.value],
            [NodeKind.AGENT.value],
        )
        for node_id, adjacent in found.items():
            for adj in adjacent:
                if adj.edge.kind == EdgeKind.ATTRIBUTED_TO.value or (
                    node_id in run_ids
                    and adj.edge.props.get("role") == AssociationRole.LAUNCHER.value
                ):
                    owners[adj.node.id] = adj.node

        return Impact(
            root=root,
            model_versions=tuple(sorted(versions, key=_version_key)),
            deployments=_sorted(deployments.values()),
            open_alerts=_sorted(alerts.values()),
            runs=_sorted(runs),
            dataset_versions=_sorted(datasets),
            owners=_sorted(owners.values()),
            truncated=sub.truncated,
            truncation_reason=sub.truncation_reason,
        )

    # --- paths -----------------------------------------------------------------------------

    def path(
        self,
        from_ref: str,
        to_ref: str,
        max_depth: int = 8,
        *,
        edge_kinds: Sequence[EdgeKind | str] | None = None,
        connected: bool = True,
        max_nodes: int = 10_000,
    ) -> list[list[Edge]]:
        """Why ``from_ref`` is upstream of ``to_ref``: the shortest paths (at most
        ``max_depth`` edges, at most 100 of them) as lists of edges read from ``from`` to
        ``to``; ``[]`` when there is none. See :meth:`find_paths`, which also says which
        relation the paths show and whether the search was cut by the node budget."""
        found = self.find_paths(
            from_ref,
            to_ref,
            max_depth,
            edge_kinds=edge_kinds,
            connected=connected,
            max_nodes=max_nodes,
        )
        return [list(p) for p in found.paths]

    def find_paths(
        self,
        from_ref: str,
        to_ref: str,
        max_depth: int = 8,
        *,
        edge_kinds: Sequence[EdgeKind | str] | None = None,
        connected: bool = True,
        max_nodes: int = 10_000,
    ) -> Paths:
        """The shortest paths between two nodes along lineage edges (``edge_kinds``).

        First the directed answers: ``from`` upstream of ``to`` (following edges forward
        from ``to`` reaches ``from``), else ``to`` upstream of ``from``; then, with
        ``connected``, the shortest undirected paths (a shared dataset, commit, agent...).
        Each is a bidirectional frontier search that expands the smaller side one level per
        query, so it costs at most ``max_depth`` levels of batched queries and visits at
        most ``max_nodes`` nodes (else ``truncated``).
        """
        depth = _check_int(max_depth, "max_depth", 1, self.max_depth)
        budget = _check_int(max_nodes, "max_nodes", 2, self.max_nodes)
        kinds = _edge_kinds(edge_kinds, "edge_kinds")
        source, target = self.resolve_many([from_ref, to_ref])
        if source == target:
            raise ValidationError("from and to are the same node", field="to")
        searches = [
            ("upstream", Direction.DOWNSTREAM, Direction.UPSTREAM),
            ("downstream", Direction.UPSTREAM, Direction.DOWNSTREAM),
        ]
        if connected:
            searches.append(("connected", Direction.BOTH, Direction.BOTH))
        truncated = False
        for relation, from_dir, to_dir in searches:
            paths, cut = self._search(source, target, from_dir, to_dir, kinds, depth, budget)
            truncated = truncated or cut
            if paths:
                return Paths(
                    from_id=source,
                    to_id=target,
                    relation=relation,
                    length=len(paths[0]),
                    paths=paths,
                    truncated=truncated,
                    truncation_reason=TruncationReason.MAX_NODES if truncated else None,
                )
        return Paths(
            from_id=source,
            to_id=target,
            relation=None,
            length=None,
            paths=(),
            truncated=truncated,
            truncation_reason=TruncationReason.MAX_NODES if truncated else None,
        )

    def _search(
        self,
        source: str,
        target: str,
        from_dir: Direction,
        to_dir: Direction,
        kinds: list[str] | None,
        max_depth: int,
        max_nodes: int,
    ) -> tuple[tuple[tuple[Edge, ...], ...], bool]:
        """All shortest paths source ... target where the source side walks ``from_dir``
        and the target side ``to_dir`` (a bidirectional BFS; one batched neighbour query per
        level). Returns the paths (edges read from source to target) and whether the node
        budget cut the search."""
        sides = [_Side(source, from_dir), _Side(target, to_dir)]
        while all(s.frontier for s in sides) and sides[0].depth + sides[1].depth < max_depth:
            i = 0 if len(sides[0].frontier) <= len(sides[1].frontier) else 1
            side, other = sides[i], sides[1 - i]
            found = self.store.neighbors(side.frontier, side.direction, kinds)
            new: list[str] = []
            for origin in side.frontier:
                for adj in found.get(origin, []):
                    n = adj.node.id
                    known = side.dist.get(n)
                    if known is None:
                        side.dist[n] = side.depth + 1
                        side.parents[n] = [(adj.edge, origin)]
                        new.append(n)
                    elif known == side.depth + 1:
                        side.parents[n].append((adj.edge, origin))
            side.frontier = new
            side.depth += 1
            meeting = [n for n in new if n in other.dist]
            if meeting:
                from_side, to_side = sides
                paths: list[tuple[Edge, ...]] = []
                seen: set[tuple[str, ...]] = set()
                for m in meeting:
                    for head in from_side.chains(m):
                        for tail in to_side.chains(m):
                            p = (*head, *reversed(tail))
                            key = tuple(e.id for e in p)
                            if key not in seen:
                                seen.add(key)
                                paths.append(p)
                            if len(paths) >= MAX_PATHS:
                                return tuple(paths), False
                return tuple(paths), False
            if len(sides[0].dist) + len(sides[1].dist) > max_nodes:
                return (), True
        return (), False

    # --- comparisons -----------------------------------------------------------------------

    def compare_runs(self, run_ids: Sequence[str]) -> RunComparison:
        """Compare 2 to 50 runs side by side: every param (one value per run, ``differs``
        when not all equal), every metric (last, min, max per run from the metric series,
        or the value on the run when it has no series), the inputs each used (with roles;
        the ones only some used), the code commit and the environment of each.

        Unknown runs: :class:`NotFoundError` naming them. Four store queries.
        """
        if isinstance(run_ids, str) or not isinstance(run_ids, Sequence):
            raise ValidationError("run_ids must be a list of run ids", field="run_ids")
        ids = list(run_ids)
        if not 2 <= len(ids) <= MAX_COMPARED_RUNS:
            raise ValidationError(
                f"run_ids: compare between 2 and {MAX_COMPARED_RUNS} runs, got {len(ids)}",
                field="run_ids",
            )
        for run_id in ids:
            _check_ref(run_id, "run_ids")
        if len(set(ids)) != len(ids):
            dup = sorted({x for x in ids if ids.count(x) > 1})
            raise ValidationError(f"run_ids: {', '.join(dup)} given twice", field="run_ids")
        nodes = self.store.get_nodes(ids)
        missing = [i for i, n in zip(ids, nodes) if n is None]
        if missing:
            raise NotFoundError(f"no run with id {', '.join(map(repr, missing))}", ids=missing)
        runs = [n for n in nodes if n is not None]
        not_runs = [n.id for n in runs if n.label != NodeKind.RUN.value]
        if not_runs:
            raise ValidationError(f"run_ids: {', '.join(not_runs)} are not runs", field="run_ids")

        # params
        all_params = [_mapping(r.props.get("params")) for r in runs]
        param_rows = []
        for key in sorted({k for p in all_params for k in p}):
            present = tuple(key in p for p in all_params)
            values = tuple(p.get(key) for p in all_params)
            differs = len({(ok, _canonical(v)) for ok, v in zip(present, values)}) > 1
            param_rows.append(ParamRow(key, values, present, differs))

        # metrics
        summaries = self.store.series_summary(ids)
        logged = [_mapping(r.props.get("metrics")) for r in runs]
        metric_rows = []
        keys = {k for s in summaries.values() for k in s} | {k for m in logged for k in m}
        for key in sorted(keys):
            last: list[float | None] = []
            lo: list[float | None] = []
            hi: list[float | None] = []
            for run, on_run in zip(runs, logged):
                summary = summaries.get(run.id, {}).get(key)
                if summary is not None:
                    last.append(summary.last)
                    lo.append(summary.min)
                    hi.append(summary.max)
                else:
                    v = _number(on_run.get(key))
                    last.append(v)
                    lo.append(v)
                    hi.append(v)
            differs = len({_metric_key(v) for v in last}) > 1
            metric_rows.append(MetricRow(key, tuple(last), tuple(lo), tuple(hi), differs))

        # inputs, code, environment
        kinds = [EdgeKind.USED.value, EdgeKind.RAN_CODE.value, EdgeKind.RAN_IN.value]
        found = self.store.neighbors(ids, Direction.UPSTREAM, kinds)
        used: dict[str, Node] = {}
        roles: dict[str, list[set[str]]] = {}
        code: list[str | None] = []
        envs: list[str | None] = []
        for i, run_id in enumerate(ids):
            commit = env = None
            for adj in found[run_id]:
                if adj.edge.kind == EdgeKind.USED.value:
                    used[adj.node.id] = adj.node
                    per_run = roles.setdefault(adj.node.id, [set() for _ in ids])
                    per_run[i].add(str(adj.edge.props.get("role", "")))
                elif adj.edge.kind == EdgeKind.RAN_CODE.value:
                    commit = commit or adj.node.id
                else:
                    env = env or adj.node.id
            code.append(commit)
            envs.append(env)
        inputs = []
        only_in: list[list[str]] = [[] for _ in ids]
        for node_id in sorted(used):
            run_roles = roles[node_id]
            by_all = all(run_roles)
            inputs.append(
                InputRow(used[node_id], tuple(tuple(sorted(r)) for r in run_roles), by_all)
            )
            if not by_all:
                for i, r in enumerate(run_roles):
                    if r:
                        only_in[i].append(node_id)
        return RunComparison(
            runs=tuple(runs),
            params=tuple(param_rows),
            metrics=tuple(metric_rows),
            inputs=tuple(inputs),
            inputs_only_in=tuple(tuple(x) for x in only_in),
            code=tuple(code),
            code_differs=len(set(code)) > 1,
            environments=tuple(envs),
            environment_differs=len(set(envs)) > 1,
        )

    def compare_model_versions(
        self, a_ref: str, b_ref: str, depth: int = 10, *, max_nodes: int = 10_000
    ) -> LineageDiff:
        """The difference between the upstream lineage of two model versions (``depth``
        hops along lineage edges): the datasets, commits, environments, runs and other
        nodes only one of them came from; the pairs among those that are the same logical
        thing changed (a dataset's version, a repository's commit...); the producing
        training runs' params added, removed, changed; the deltas of the versions' metric
        snapshots. Two walks upstream, one query per level each, plus one look-up.
        """
        depth = _check_int(depth, "depth", 1, self.max_depth)
        budget = _check_int(max_nodes, "max_nodes", 1, self.max_nodes)
        a_id, b_id = self.resolve_many([a_ref, b_ref])
        a_node, b_node = self.store.get_nodes([a_id, b_id])
        assert a_node is not None and b_node is not None
        for node, name in ((a_node, "a"), (b_node, "b")):
            if node.label != NodeKind.MODEL_VERSION.value:
                raise ValidationError(
                    f"{name}: {node.id!r} is a {node.label}, not a ModelVersion", field=name
                )
        subs = [
            self.store.traverse(
                [i], Direction.UPSTREAM, depth, edge_kinds=_LINEAGE_KINDS, max_nodes=budget
            )
            for i in (a_id, b_id)
        ]
        ups = [{i: t.node for i, t in s.nodes.items() if i not in (a_id, b_id)} for s in subs]
        removed = _sorted(n for i, n in ups[0].items() if i not in ups[1])
        added = _sorted(n for i, n in ups[1].items() if i not in ups[0])

        def per(label: NodeKind) -> NodeSetDiff:
            return NodeSetDiff(
                tuple(n for n in added if n.label == label.value),
                tuple(n for n in removed if n.label == label.value),
            )

        trainers = [_producer(s, root) for s, root in ((subs[0], a_id), (subs[1], b_id))]
        changed = _pair_changes(removed, added, trainers[0], trainers[1])

        pa = _mapping(ups[0][trainers[0]].props.get("params")) if trainers[0] else {}
        pb = _mapping(ups[1][trainers[1]].props.get("params")) if trainers[1] else {}
        params_added = tuple(ParamChange(k, None, pb[k]) for k in sorted(pb.keys() - pa.keys()))
        params_removed = tuple(ParamChange(k, pa[k], None) for k in sorted(pa.keys() - pb.keys()))
        params_changed = tuple(
            ParamChange(k, pa[k], pb[k])
            for k in sorted(pa.keys() & pb.keys())
            if _canonical(pa[k]) != _canonical(pb[k])
        )

        ma = _mapping(a_node.props.get("metrics"))
        mb = _mapping(b_node.props.get("metrics"))
        deltas = []
        for key in sorted(ma.keys() | mb.keys()):
            va, vb = _number(ma.get(key)), _number(mb.get(key))
            delta = vb - va if va is not None and vb is not None else None
            deltas.append(MetricDelta(key, va, vb, delta))

        cut = next((s for s in subs if s.truncated), None)
        return LineageDiff(
            a=a_node,
            b=b_node,
            added=added,
            removed=removed,
            datasets=per(NodeKind.DATASET_VERSION),
            commits=per(NodeKind.CODE_COMMIT),
            environments=per(NodeKind.ENVIRONMENT),
            runs=per(NodeKind.RUN),
            changed=changed,
            training_runs=(trainers[0], trainers[1]),
            params_added=params_added,
            params_removed=params_removed,
            params_changed=params_changed,
            metric_deltas=tuple(deltas),
            truncated=cut is not None,
            truncation_reason=cut.truncation_reason if cut is not None else None,
        )


# --- helpers ---------------------------------------------------------------------------------


class _Side:
    """One side of a bidirectional search: distances, every shortest-path parent, frontier."""

    def __init__(self, start: str, direction: Direction) -> None:
        self.direction = direction
        self.dist: dict[str, int] = {start: 0}
        self.parents: dict[str, list[tuple[Edge, str]]] = {start: []}
        self.frontier = [start]
        self.depth = 0

    def chains(self, node: str) -> Iterator[tuple[Edge, ...]]:
        """Every shortest chain of edges from the start to ``node``, start first."""
        parents = self.parents[node]
        if not parents:
            yield ()
            return
        for edge, prev in parents:
            for head in self.chains(prev):
                yield (*head, edge)


def _check_ref(ref: Any, field: str) -> str:
    if not isinstance(ref, str) or not ref or len(ref) > MAX_ID_LENGTH or "\x00" in ref:
        raise ValidationError(
            f"{field}: expected a reference (a non-empty string of at most {MAX_ID_LENGTH} "
            f"characters), got {ref!r:.100}",
            field=field,
        )
    return ref


def _check_int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(
            f"{field} must be an integer between {low} and {high}, got {value!r:.50}",
            field=field,
        )
    return value


def _members(enum: Any, kinds: Any, field: str, what: str) -> list[str]:
    """Validate kinds (one, or a list) against ``enum``, naming ``field`` on a bad one."""
    if isinstance(kinds, (str, enum)):
        kinds = [kinds]
    result = []
    for k in kinds:
        try:
            result.append(enum(k).value)
        except ValueError:
            raise ValidationError(
                f"{field}: {k!r:.100} is not {what} ({', '.join(x.value for x in enum)})",
                field=field,
            ) from None
    return result


def _node_kinds(kinds: Sequence[NodeKind | str] | None, field: str) -> list[str] | None:
    return None if kinds is None else _members(NodeKind, kinds, field, "a node kind")


def _edge_kinds(kinds: Sequence[EdgeKind | str] | None, field: str) -> list[str]:
    if kinds is None:
        return list(_LINEAGE_KINDS)
    return _members(EdgeKind, kinds, field, "an edge kind")


def _unescape(component: str) -> str:
    """The inverse of the vocabulary's ``_esc`` (``%2F`` -> ``/``, ``%25`` -> ``%``)."""
    return re.sub(r"%(25|2[Ff])", lambda m: "%" if m[1] == "25" else "/", component)


def _dataset_candidates(key: str) -> list[tuple[str, str]]:
    """The (namespace, name) pairs ``<namespace>/<name>`` may mean, cleaned as the vocabulary
    cleans them: namespaces and names may both contain ``/``."""
    result: dict[tuple[str, str], None] = {}
    for i, ch in enumerate(key):
        if ch != "/":
            continue
        ns, name = key[:i], key[i + 1 :]
        if not ns or not name:
            continue
        try:
            ds = Dataset(namespace=_unescape(ns), name=name)
        except ValidationError:
            continue
        result[(ds.namespace, ds.name)] = None
    return list(result)


def _dataset_id(version: Node) -> str | None:
    ns, name = version.props.get("namespace"), version.props.get("name")
    if not isinstance(ns, str) or not isinstance(name, str):
        return None
    try:
        return Dataset(namespace=ns, name=name).node_id
    except ValidationError:
        return None


def _sorted(nodes: Iterable[Node]) -> tuple[Node, ...]:
    return tuple(sorted(nodes, key=lambda n: n.id))


def _version_key(node: Node) -> tuple[str, int, str]:
    version = node.props.get("version")
    return (
        str(node.props.get("model", "")),
        version if isinstance(version, int) else 0,
        node.id,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _metric_key(value: float | None) -> Any:
    if value is None:
        return None
    return "nan" if math.isnan(value) else value


def _canonical(value: Any) -> str:
    """Equal params compare equal: 5 and 5.0 alike, but not True and 1."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"n:{float(value)!r}"
    return json.dumps(value, sort_keys=True)


def _producer(sub: Subgraph, root: str) -> str | None:
    """The run that generated ``root`` (the first by id if several did)."""
    runs = sorted(
        e.target
        for e in sub.edges
        if e.source == root
        and e.kind == EdgeKind.GENERATED_BY.value
        and e.target in sub.nodes
        and sub.nodes[e.target].node.label == NodeKind.RUN.value
    )
    return runs[0] if runs else None


def _identity(node: Node) -> str | None:
    """What makes two different nodes "the same thing changed" (None: nothing does)."""
    p = node.props
    if node.label == NodeKind.DATASET_VERSION.value:
        return _dataset_id(node)
    if node.label == NodeKind.CODE_COMMIT.value:
        return "repo:" + node.id.partition(":")[2].rpartition("@")[0]
    if node.label == NodeKind.ENVIRONMENT.value:
        return "environment"
    if node.label == NodeKind.MODEL_VERSION.value:
        return f"model:{p.get('model')}"
    if node.label == NodeKind.RUN.value:
        return f"run:{p.get('kind')}/{p.get('name')}"
    return None


def _pair_changes(
    removed: Sequence[Node], added: Sequence[Node], trainer_a: str | None, trainer_b: str | None
) -> tuple[NodeChange, ...]:
    """Pair each removed node with the added node that is the same logical thing (when the
    pairing is one to one), and list their property differences."""
    groups: dict[tuple[str, str], tuple[list[Node], list[Node]]] = {}
    for side, nodes in ((0, removed), (1, added)):
        for n in nodes:
            if n.id in (trainer_a, trainer_b):
                key = "training run"
            else:
                ident = _identity(n)
                if ident is None:
                    continue
                key = ident
            groups.setdefault((n.label, key), ([], []))[side].append(n)
    changes = []
    for (label, key), (olds, news) in sorted(groups.items()):
        if len(olds) == 1 and len(news) == 1:
            a, b = olds[0], news[0]
            changes.append(NodeChange(label, key, a, b, _property_changes(a.props, b.props)))
    return tuple(changes)


def _flatten(props: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in props.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _property_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[PropertyChange, ...]:
    fa, fb = _flatten(a), _flatten(b)
    return tuple(
        PropertyChange(k, fa.get(k), fb.get(k))
        for k in sorted(fa.keys() | fb.keys())
        if (k in fa) != (k in fb) or _canonical(fa.get(k)) != _canonical(fb.get(k))
    )
