"""Queries: look-ups, filtered listings (relay connections) and lineage."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import Node, Subgraph, ValidationError
from lineagehub.graph import TruncationReason as GraphTruncation
from lineagehub.graph.filters import encode_cursor, node_value, parse_order
from lineagehub.schema.authz import (
    SEALED,
    open_cursor,
    seal_cursor,
    viewable,
    visible_filter,
    withhold_subgraph,
)
from lineagehub.schema.types import (
    ALL_TYPES,
    Connection,
    ConnectionEdge,
    Dataset,
    DatasetVersion,
    Deployment,
    EdgeKind,
    I,
    LineageDirection,
    LineageEdge,
    Model,
    ModelVersion,
    NodeInterface,
    NodeKind,
    PageInfo,
    Run,
    edge_of,
    wrap,
    wrap_as,
)
from lineagehub.services.tracking import mentions_status


@strawberry.enum(description="A comparison of a filter condition.")
class FilterOp(enum.Enum):
    EQ = "$eq"
    NE = "$ne"
    LT = "$lt"
    LTE = "$lte"
    GT = "$gt"
    GTE = "$gte"
    IN = "$in"
    NIN = "$nin"
    EXISTS = "$exists"
    CONTAINS = "$contains"


@strawberry.input(
    description='One condition, typed inline: {path: "params.max_depth", op: GTE, value: 3}.'
)
class FilterCondition:
    path: str = strawberry.field(
        description='A property path ("metrics.auc", "params.max_depth") or id, _created_at.'
    )
    op: FilterOp = FilterOp.EQ
    value: JSON | None = strawberry.field(
        default=None, description="A JSON value (a list for IN and NIN, a boolean for EXISTS)."
    )


def _filter(where: Any, conditions: list[FilterCondition] | None) -> dict[str, Any] | None:
    """The filter of a listing: ``where`` (a JSON object, or that object as text, e.g. a
    block string) and every condition, all of which must hold."""
    import json

    if isinstance(where, str):
        try:
            where = json.loads(where)
        except ValueError as e:
            raise ValidationError(f"where: not a JSON object: {e}", field="where") from None
    if where is not None and not isinstance(where, dict):
        raise ValidationError("where must be a JSON object", field="where")
    parts = [where] if where else []
    parts += [{c.path: {c.op.value: c.value}} for c in conditions or ()]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


async def _page(
    info: I,
    label: str,
    where: JSON | None,
    order_by: list[str] | None,
    first: int,
    after: str | None,
    conditions: list[FilterCondition] | None = None,
) -> Connection[Any]:
    ctx = info.context
    if not 1 <= first <= ctx.services.max_page:
        raise ValidationError(f"first must be between 1 and {ctx.services.max_page}", field="first")
    condition = visible_filter(ctx.principal, label, _filter(where, conditions))
    if after is not None and after.startswith(SEALED):
        after = await ctx.call(open_cursor, ctx.services, after)
    if (
        label == "Run"
        and ctx.services.tracking is not None
        and mentions_status((condition, order_by))
    ):
        # stale RUNNING runs are shown as KILLED: a filter on status must see them so too
        await ctx.call(ctx.services.tracking.mark_stale_runs)
    page = await ctx.call(ctx.store.find_nodes, label, condition, order_by, after, first)
    items = page.items
    if label == "Run" and ctx.services.tracking is not None:
        # a RUNNING run whose heartbeat is stale is reported (and recorded) as KILLED
        items = await ctx.call(ctx.services.tracking.refresh_stale, items)
    order = parse_order(order_by)

    def cursor(node: Node) -> str:
        return encode_cursor([node_value(node, k.path) for k in order])

    # nodes in projects the caller may not view are left out (the cursor still moves past them)
    ok = await ctx.call(viewable, ctx.services, ctx.principal, items)
    shown = items if ok is None else [n for n in items if n.id in ok]
    for node in shown:  # prime the loader: relationship fields often come back to them
        ctx.nodes.prime(node.id, node)
    end = page.next_cursor
    if end is not None and ok is not None and items[-1].id not in ok:
        # the store's cursor is the last row's sort values and id: that row is withheld
        end = await ctx.call(seal_cursor, ctx.services, end)
    return Connection(
        edges=[ConnectionEdge(cursor=cursor(n), node=wrap(n)) for n in shown],
        page_info=PageInfo(has_next_page=page.next_cursor is not None, end_cursor=end),
        withheld=len(items) - len(shown),
    )


_WHERE = strawberry.argument(
    description='A filter: {"status": "FINISHED", "metrics.auc": {"$gte": 0.9}, '
    '"params.max_depth": {"$in": [3, 5]}, "$or": [...]}. Operators: $eq $ne $lt $lte $gt '
    "$gte $in $nin $exists $contains (text, case-insensitive: a search box's "
    '{"name": {"$contains": "churn"}}); $and $or $not. Keys are property paths or id, '
    "_created_at. "
    'A JSON variable, an inline object when the keys are plain names ({experiment: "x"}), '
    'or the same JSON as text, typed inline as a block string: """{"metrics.auc": '
    '{"$gte": 0.9}}""".'
)
_CONDITIONS = strawberry.argument(
    description="Conditions typed inline, all of which must hold (with where, too): "
    '[{path: "params.max_depth", op: GTE, value: 3}, {path: "kind", value: "train"}].'
)
_ORDER = strawberry.argument(
    description='Property paths, "-" for descending: ["-metrics.auc", "_created_at"].'
)


def _listing(label: str, node_type: type, description: str) -> Any:
    """A connection field listing nodes of one label (the same arguments for every kind)."""

    async def resolver(
        info: I,
        where: Annotated[JSON | None, _WHERE] = None,
        filter: Annotated[list[FilterCondition] | None, _CONDITIONS] = None,
        order_by: Annotated[list[str] | None, _ORDER] = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Any]:
        return await _page(info, label, where, order_by, first, after, filter)

    resolver.__annotations__ = {**resolver.__annotations__, "return": Connection[node_type]}  # type: ignore[valid-type]
    return strawberry.field(resolver=resolver, description=description)


@strawberry.type
class LineageNode:
    node: NodeInterface
    distance: int
    reached_from: strawberry.ID | None
    direction: LineageDirection | None  # type: ignore[valid-type]


TruncationReason = strawberry.enum(GraphTruncation, name="TruncationReason")


@strawberry.enum(description="Text formats of a lineage result (binary ones: /export/lineage).")
class ExportFormat(enum.Enum):
    DOT = "dot"
    SVG = "svg"
    MERMAID = "mmd"
    GRAPHML = "graphml"
    CYTOSCAPE_JSON = "json"
    PROV_JSON = "prov"
    OPENLINEAGE = "openlineage"


@strawberry.type
class Lineage:
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool
    truncation_reason: TruncationReason | None  # type: ignore[valid-type]
    sub: strawberry.Private[Subgraph]
    withheld: int = strawberry.field(
        default=0,
        description="How many nodes were left out (with their edges): the caller may not "
        "view them.",
    )

    @strawberry.field(
        description="This result as a file's text: a picture (DOT, SVG, Mermaid; the roots "
        "highlighted, sibling runs collapsed above collapseAbove nodes, null or 0: never; agents, "
        "environments and commits folded into the runs' labels unless contextNodes) or data "
        "(GraphML, Cytoscape JSON, PROV-JSON, OpenLineage events as JSON lines)."
    )
    async def export(
        self,
        info: I,
        format: ExportFormat,
        cluster: bool = False,
        collapse_above: int | None = 60,
        title: str | None = None,
        context_nodes: bool = False,
    ) -> str:
        from lineagehub.services.export import export_lineage

        data = await info.context.call(
            export_lineage,
            self.sub,
            format.value,
            focus=self.sub.roots,
            cluster=cluster,
            collapse_above=collapse_above,
            title=title,
            policies=getattr(info.context.services.registry, "policies", None),
            context_nodes=context_nodes,
        )
        return data.decode("utf-8")


def lineage_result(sub: Subgraph, withheld: int = 0) -> Lineage:
    return Lineage(
        withheld=withheld,
        sub=sub,
        nodes=[
            LineageNode(
                node=wrap(t.node),
                distance=t.distance,
                reached_from=strawberry.ID(t.reached_from) if t.reached_from else None,
                direction=t.direction,
            )
            for t in sub.nodes.values()
        ],
        edges=[edge_of(e) for e in sub.edges],
        truncated=sub.truncated,
        truncation_reason=sub.truncation_reason,
    )


@strawberry.input
class LineageInput:
    roots: list[str] = strawberry.field(
        description='Ids or references ("model:churn@3", "dataset:warehouse/customers@latest").'
    )
    direction: LineageDirection = LineageDirection.UPSTREAM  # type: ignore[valid-type]
    upstream_depth: int = 3
    downstream_depth: int = 3
    node_kinds: list[NodeKind] | None = strawberry.field(
        default=None, description="Only nodes of these kinds are entered (roots always are)."
    )
    edge_kinds: list[EdgeKind] | None = strawberry.field(
        default=None, description="Default: every lineage edge (grouping PART_OF is skipped)."
    )
    stop_at: list[NodeKind] | None = strawberry.field(
        default=None, description="Nodes of these kinds are returned but not expanded."
    )
    pass_through: list[NodeKind] | None = strawberry.field(
        default=None, description="Nodes of these kinds are walked through without counting a hop."
    )
    as_of: datetime | None = strawberry.field(
        default=None, description="The graph as the hub knew it then."
    )
    max_nodes: int = 5000


def _labels(kinds: list[NodeKind] | None) -> list[str] | None:
    return [k.value for k in kinds] if kinds is not None else None


def _referenced(services: Any, ref: str) -> Node | None:
    """The node ``ref`` names (as :attr:`Context.nodes` loads it: never a user or a token);
    ``None`` for an unknown one."""
    from lineagehub.graph import NotFoundError
    from lineagehub.services.identity import IDENTITY_LABELS

    try:
        found = services.lineage.resolve_node(ref)  # a version found by alias: read once
    except NotFoundError:  # an unknown ref (or one deleted meanwhile) is a null, not an error
        return None
    return found if found.label not in IDENTITY_LABELS else None


@strawberry.type
class Query:
    @strawberry.field(description="One node by id or reference; null if there is none.")
    async def node(self, info: I, ref: str) -> NodeInterface | None:
        ctx = info.context
        node = await ctx.read(_referenced, ctx.services, ref)
        if node is None:
            return None
        ctx.remember(node)  # as if loaded: later fields of the request reuse it
        return wrap(node)

    @strawberry.field(description="Nodes by id, in order; null where there is none.")
    async def nodes(self, info: I, ids: list[strawberry.ID]) -> list[NodeInterface | None]:
        if len(ids) > info.context.services.max_page:
            raise ValidationError("too many ids", field="ids")
        found = await info.context.nodes.load_many([str(i) for i in ids])
        return [wrap(n) if n is not None else None for n in found]

    @strawberry.field(
        description="One run by id (a stale RUNNING run is reported KILLED); error NOT_FOUND "
        "when there is none."
    )
    async def run(self, info: I, id: strawberry.ID) -> Run:
        ctx = info.context
        # a stale RUNNING run is recorded as KILLED first: that write takes it to a thread
        return wrap_as(await ctx.read(ctx.services.tracker.run_node, str(id)), Run)

    runs = _listing("Run", Run, "Runs, filtered and ordered, a page at a time.")
    datasets = _listing("Dataset", Dataset, "Logical datasets (namespace, name).")
    dataset_versions = _listing("DatasetVersion", DatasetVersion, "Versions of datasets.")
    models = _listing("Model", Model, "Registered models.")
    model_versions = _listing("ModelVersion", ModelVersion, "Versions of models.")
    deployments = _listing("Deployment", Deployment, "Deployments.")

    @strawberry.field(
        description="The lineage of one or more nodes: every node with its distance and the "
        "node it was reached from, every edge with its provenance, and an honest truncated flag."
    )
    async def lineage(self, info: I, input: LineageInput) -> Lineage:
        ctx = info.context
        sub = await ctx.call(
            ctx.services.lineage.lineage,
            input.roots,
            direction=input.direction,
            upstream_depth=input.upstream_depth,
            downstream_depth=input.downstream_depth,
            node_kinds=_labels(input.node_kinds),
            edge_kinds=[k.value for k in input.edge_kinds]
            if input.edge_kinds is not None
            else None,
            stop_at=_labels(input.stop_at),
            pass_through=_labels(input.pass_through),
            as_of=input.as_of,
            max_nodes=input.max_nodes,
        )
        sub, withheld = await ctx.call(withhold_subgraph, ctx.services, ctx.principal, sub)
        return lineage_result(sub, withheld)


__all__ = ["ALL_TYPES", "Lineage", "LineageInput", "Query", "lineage_result"]
