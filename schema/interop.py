"""Column-level lineage in the API: ``columnLineage`` (from OpenLineage's columnLineage facet,
kept on ``DERIVED_FROM`` edges by :mod:`lineagehub.services.openlineage_in`)."""

from __future__ import annotations

from typing import cast

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import Direction
from lineagehub.schema.authz import viewable
from lineagehub.schema.types import I, LineageDirection


@strawberry.type(description="A column that depends on another (or that another depends on).")
class ColumnLink:
    version: strawberry.ID = strawberry.field(description="The DatasetVersion holding column.")
    namespace: str
    name: str = strawberry.field(description="The dataset's name.")
    column: str
    from_version: strawberry.ID = strawberry.field(
        description="The version of the column this one was reached from."
    )
    from_column: str
    distance: int = strawberry.field(description="Hops from the asked column (1: direct).")
    transformations: JSON = strawberry.field(
        description="How the value was derived, as the producer said (OpenLineage's "
        "transformations: type, subtype, description, masking)."
    )


@strawberry.type
class InteropQuery:
    @strawberry.field(
        description="Column-level lineage: with direction DOWNSTREAM (the default), which "
        "columns of which datasets depend on this column; UPSTREAM, which columns it comes "
        "from. dataset: a Dataset id (every version of it) or a DatasetVersion id."
    )
    async def column_lineage(
        self,
        info: I,
        dataset: strawberry.ID,
        column: str,
        direction: LineageDirection = Direction.DOWNSTREAM,  # type: ignore[valid-type]
        depth: int = 3,
    ) -> list[ColumnLink]:
        from lineagehub.services.openlineage_in import column_lineage

        ctx = info.context
        links = await ctx.call(
            column_lineage,
            ctx.store,
            str(dataset),
            column,
            downstream=direction is not Direction.UPSTREAM,
            depth=depth,
        )
        ids = list(dict.fromkeys(v for link in links for v in (link.version, link.from_version)))
        nodes = [n for n in await ctx.call(ctx.store.get_nodes, ids) if n is not None]
        ok = await ctx.call(viewable, ctx.services, ctx.principal, nodes)
        return [
            ColumnLink(
                version=strawberry.ID(link.version),
                namespace=link.namespace,
                name=link.name,
                column=link.column,
                from_version=strawberry.ID(link.from_version),
                from_column=link.from_column,
                distance=link.distance,
                transformations=cast(JSON, link.transformations),
            )
            for link in links
            if ok is None or (link.version in ok and link.from_version in ok)
        ]
