"""The compound questions: impact, path, compareRuns, compareModelVersions.

Thin mappings of :mod:`lineagehub.services.lineage`'s results; the service does the work in a bounded
number of store queries.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import Node
from lineagehub.schema.authz import viewable
from lineagehub.schema.query import TruncationReason
from lineagehub.schema.scalars import MetricValue
from lineagehub.schema.types import I, LineageEdge, NodeInterface, edge_of, wrap


def _nodes(nodes: tuple[Node, ...]) -> list[NodeInterface]:
    return [wrap(n) for n in nodes]


@strawberry.type(description="Everything downstream of a dataset version, commit or any node.")
class Impact:
    root: strawberry.ID
    model_versions: list[NodeInterface]
    deployments: list[NodeInterface] = strawberry.field(
        description="Deployments currently serving an affected model version."
    )
    open_alerts: list[NodeInterface]
    runs: list[NodeInterface]
    dataset_versions: list[NodeInterface]
    owners: list[NodeInterface]
    truncated: bool
    truncation_reason: TruncationReason | None  # type: ignore[valid-type]
    withheld: int = strawberry.field(
        default=0, description="How many nodes were left out: the caller may not view them."
    )


@strawberry.type
class LineagePath:
    edges: list[LineageEdge]


@strawberry.type(description="Why two nodes are related: the shortest paths between them.")
class Paths:
    relation: str | None = strawberry.field(
        description='"upstream" (from is upstream of to), "downstream", "connected" or null.'
    )
    length: int | None
    paths: list[LineagePath]
    truncated: bool
    withheld: int = strawberry.field(
        default=0,
        description="How many paths were left out: they pass through a node the caller may "
        "not view.",
    )


@strawberry.type
class ParamDiff:
    key: str
    values: list[JSON | None] = strawberry.field(description="One per run, null if absent.")
    present: list[bool] = strawberry.field(
        description="One per run: whether it has the key (a logged null is present)."
    )
    differs: bool


@strawberry.type
class MetricComparison:
    key: str
    last: list[MetricValue | None] = strawberry.field(
        description='One per run (null: absent; "NaN", "Infinity" as logged).'
    )
    min: list[MetricValue | None]
    max: list[MetricValue | None]
    differs: bool


@strawberry.type
class InputComparison:
    node: NodeInterface
    roles: list[list[str]] = strawberry.field(description="The roles each run used it in.")
    used_by_all: bool


@strawberry.type
class RunComparison:
    runs: list[NodeInterface]
    params: list[ParamDiff]
    metrics: list[MetricComparison]
    inputs: list[InputComparison]
    inputs_only_in: list[list[strawberry.ID]] = strawberry.field(
        description="Per run: the inputs not every run used."
    )
    code: list[strawberry.ID | None]
    code_differs: bool
    environments: list[strawberry.ID | None]
    environment_differs: bool


@strawberry.type
class NodeSetDiff:
    added: list[NodeInterface]
    removed: list[NodeInterface]


@strawberry.type
class PropertyChange:
    path: str
    a: JSON | None
    b: JSON | None


@strawberry.type
class NodeChange:
    label: str
    key: str
    a: NodeInterface
    b: NodeInterface
    properties: list[PropertyChange]


@strawberry.type
class ParamChange:
    key: str
    a: JSON | None
    b: JSON | None


@strawberry.type
class MetricDelta:
    key: str
    a: float | None
    b: float | None
    delta: float | None


@strawberry.type(description="The diff of two model versions' upstream graphs.")
class LineageDiff:
    a: NodeInterface
    b: NodeInterface
    added: list[NodeInterface]
    removed: list[NodeInterface]
    datasets: NodeSetDiff
    commits: NodeSetDiff
    environments: NodeSetDiff
    runs: NodeSetDiff
    changed: list[NodeChange]
    params_added: list[ParamChange]
    params_removed: list[ParamChange]
    params_changed: list[ParamChange]
    metric_deltas: list[MetricDelta]
    training_runs: list[strawberry.ID | None] = strawberry.field(
        description="The runs that generated a and b (null: none recorded)."
    )
    truncated: bool
    truncation_reason: TruncationReason | None  # type: ignore[valid-type]
    withheld: int = strawberry.field(
        default=0,
        description="How many upstream nodes were left out: the caller may not view them.",
    )


def _set(diff: Any, ok: set[str] | None = None) -> NodeSetDiff:
    return NodeSetDiff(added=_only(diff.added, ok), removed=_only(diff.removed, ok))


def _only(nodes: tuple[Node, ...], ok: set[str] | None) -> list[NodeInterface]:
    """``nodes`` without those not in ``ok`` (``None``: all may be viewed)."""
    return _nodes(nodes if ok is None else tuple(n for n in nodes if n.id in ok))


def _params(rows: Any) -> list[ParamChange]:
    return [ParamChange(key=r.key, a=r.a, b=r.b) for r in rows]


@strawberry.type
class CompareQuery:
    @strawberry.field(
        description="The model versions, deployments, open alerts, runs and owners downstream "
        "of a dataset version, commit or any node. asOf: as the hub knew it then (the "
        "deployments serving then, the alerts open then; ref read as its name was then)."
    )
    async def impact(
        self, info: I, ref: str, depth: int = 10, as_of: datetime | None = None
    ) -> Impact:
        ctx = info.context
        result = await ctx.call(
            functools.partial(ctx.services.lineage.impact, ref, depth, as_of=as_of)
        )
        lists = (
            result.model_versions,
            result.deployments,
            result.open_alerts,
            result.runs,
            result.dataset_versions,
            result.owners,
        )
        every = {n.id: n for nodes in lists for n in nodes}
        ok = await ctx.call(viewable, ctx.services, ctx.principal, every.values())

        def kept(nodes: tuple[Node, ...]) -> list[NodeInterface]:
            return _nodes(nodes if ok is None else tuple(n for n in nodes if n.id in ok))

        return Impact(
            root=strawberry.ID(result.root),
            model_versions=kept(result.model_versions),
            deployments=kept(result.deployments),
            open_alerts=kept(result.open_alerts),
            runs=kept(result.runs),
            dataset_versions=kept(result.dataset_versions),
            owners=kept(result.owners),
            truncated=result.truncated,
            truncation_reason=result.truncation_reason,
            withheld=0 if ok is None else len(every.keys() - ok),
        )

    @strawberry.field(
        description="Why is `from` upstream of `to`: the shortest paths. asOf: in the graph "
        "as the hub knew it then (names read as they were then)."
    )
    async def path(
        self,
        info: I,
        from_: Annotated[str, strawberry.argument(name="from")],
        to: str,
        max_depth: int = 8,
        as_of: datetime | None = None,
    ) -> Paths:
        ctx = info.context
        result = await ctx.call(
            functools.partial(ctx.services.lineage.find_paths, from_, to, max_depth, as_of=as_of)
        )
        paths = list(result.paths)
        if ctx.principal is not None and not ctx.principal.sees_everything:
            ids = list(dict.fromkeys(i for p in paths for e in p for i in (e.source, e.target)))
            nodes = await ctx.call(ctx.store.get_nodes, ids)
            present = [n for n in nodes if n is not None]
            ok = await ctx.call(viewable, ctx.services, ctx.principal, present) or set()
            paths = [p for p in paths if all(e.source in ok and e.target in ok for e in p)]
        return Paths(
            relation=result.relation,
            length=result.length,
            paths=[LineagePath(edges=[edge_of(e) for e in p]) for p in paths],
            truncated=result.truncated,
            withheld=len(result.paths) - len(paths),
        )

    @strawberry.field(description="Params, metrics, inputs, code and environment side by side.")
    async def compare_runs(self, info: I, ids: list[str]) -> RunComparison:
        ctx = info.context
        r = await ctx.call(ctx.services.lineage.compare_runs, ids)
        ok = await ctx.call(viewable, ctx.services, ctx.principal, (i.node for i in r.inputs))
        return RunComparison(
            runs=_nodes(r.runs),
            params=[
                ParamDiff(
                    key=p.key, values=list(p.values), present=list(p.present), differs=p.differs
                )
                for p in r.params
            ],
            metrics=[
                MetricComparison(
                    key=m.key,
                    last=[MetricValue(v) if v is not None else None for v in m.last],
                    min=[MetricValue(v) if v is not None else None for v in m.min],
                    max=[MetricValue(v) if v is not None else None for v in m.max],
                    differs=m.differs,
                )
                for m in r.metrics
            ],
            inputs=[
                InputComparison(
                    node=wrap(i.node),
                    roles=[list(roles) for roles in i.roles],
                    used_by_all=i.used_by_all,
                )
                for i in r.inputs
                if ok is None or i.node.id in ok
            ],
            inputs_only_in=[
                [strawberry.ID(x) for x in only if ok is None or x in ok]
                for only in r.inputs_only_in
            ],
            code=[strawberry.ID(c) if c else None for c in r.code],
            code_differs=r.code_differs,
            environments=[strawberry.ID(e) if e else None for e in r.environments],
            environment_differs=r.environment_differs,
        )

    @strawberry.field(
        description="The diff of two model versions' upstream graphs: data, code, params, "
        "environment added / removed / changed, and metric deltas."
    )
    async def compare_model_versions(self, info: I, a: str, b: str) -> LineageDiff:
        ctx = info.context
        d = await ctx.call(ctx.services.lineage.compare_model_versions, a, b)
        sets = (d.datasets, d.commits, d.environments, d.runs)
        every = {
            n.id: n
            for nodes in (d.added, d.removed, *(x for s in sets for x in (s.added, s.removed)))
            for n in nodes
        }
        every.update({n.id: n for c in d.changed for n in (c.a, c.b)})
        ok = await ctx.call(viewable, ctx.services, ctx.principal, every.values())
        return LineageDiff(
            a=wrap(d.a),
            b=wrap(d.b),
            added=_only(d.added, ok),
            removed=_only(d.removed, ok),
            datasets=_set(d.datasets, ok),
            commits=_set(d.commits, ok),
            environments=_set(d.environments, ok),
            runs=_set(d.runs, ok),
            withheld=0 if ok is None else len(every.keys() - ok),
            changed=[
                NodeChange(
                    label=c.label,
                    key=c.key,
                    a=wrap(c.a),
                    b=wrap(c.b),
                    properties=[PropertyChange(path=p.path, a=p.a, b=p.b) for p in c.properties],
                )
                for c in d.changed
                if ok is None or (c.a.id in ok and c.b.id in ok)
            ],
            params_added=_params(d.params_added),
            params_removed=_params(d.params_removed),
            params_changed=_params(d.params_changed),
            metric_deltas=[
                MetricDelta(key=m.key, a=m.a, b=m.b, delta=m.delta) for m in d.metric_deltas
            ],
            training_runs=[strawberry.ID(r) if r else None for r in d.training_runs],
            truncated=d.truncated,
            truncation_reason=d.truncation_reason,
        )
