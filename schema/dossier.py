"""Model cards, compliance reports and the model inventory in the API.

Thin mappings of :mod:`lineagehub.services.cards` and :mod:`lineagehub.services.dossier`:
``setModelCard`` (audited, as the caller), ``modelCard``, ``complianceReport`` (the report
as JSON, with its audit proofs) and ``modelInventory``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import Direction, PermissionDenied
from lineagehub.graph.model import check_time
from lineagehub.schema.authz import viewable
from lineagehub.schema.types import I
from lineagehub.services.cards import CardService, InventoryRow, ModelCard
from lineagehub.services.dossier import MAX_NODES, UPSTREAM_DEPTH, compliance_report


@strawberry.type(description="A model version's card (one revision of it).")
class ModelCardType:
    version_id: str
    revision: int = strawberry.field(description="0: the version has no card.")
    updated_at: str | None
    updated_by: str | None = strawberry.field(description="Who made this revision (audited).")
    reason: str | None
    intended_use: str | None
    out_of_scope_uses: list[str]
    limitations: list[str]
    ethical_considerations: list[str]
    owners: list[str]
    risk_tier: str | None = strawberry.field(description="minimal, limited, high, unacceptable")
    validation_status: str | None = strawberry.field(
        description="not-validated, in-validation, validated, validated-with-findings, rejected"
    )
    next_review_date: str | None = strawberry.field(description="YYYY-MM-DD")
    data: JSON = strawberry.field(description="The whole card as one JSON object.")


def _card(card: ModelCard) -> ModelCardType:
    f = card.fields
    return ModelCardType(
        version_id=card.version_id,
        revision=card.revision,
        updated_at=card.updated_at,
        updated_by=card.updated_by,
        reason=card.reason,
        intended_use=f.get("intended_use"),
        out_of_scope_uses=list(f.get("out_of_scope_uses") or []),
        limitations=list(f.get("limitations") or []),
        ethical_considerations=list(f.get("ethical_considerations") or []),
        owners=list(f.get("owners") or []),
        risk_tier=f.get("risk_tier"),
        validation_status=f.get("validation_status"),
        next_review_date=f.get("next_review_date"),
        data=cast(JSON, card.to_dict()),
    )


@strawberry.type(name="InventoryEntry", description="A model version in production.")
class InventoryEntry:
    model: str
    version: int
    version_id: str
    stage: str
    deployments: list[str] = strawberry.field(description="Live deployments serving it.")
    owners: list[str]
    risk_tier: str | None
    validation_status: str | None
    next_review_date: str | None
    review_overdue: bool
    open_alerts: int


def _row(r: InventoryRow) -> InventoryEntry:
    return InventoryEntry(**r.to_dict())


@strawberry.type
class DossierQuery:
    @strawberry.field(description="A model version's card (now, or as it was at asOf).")
    async def model_card(self, info: I, ref: str, as_of: datetime | None = None) -> ModelCardType:
        ctx = info.context
        return _card(await ctx.call(CardService(ctx.store).card, ref, as_of))

    @strawberry.field(
        description="The compliance report of a model version (now, or reconstructed at asOf) "
        "as JSON: identity, card, data, code, evaluation, comparison, approvals, deployments, "
        "monitoring, a completeness checklist and the audit entries it cites with their "
        "Merkle inclusion proofs."
    )
    async def compliance_report(self, info: I, ref: str, as_of: datetime | None = None) -> JSON:
        ctx = info.context
        await ctx.call(_may_read_report, ctx.services, ctx.principal, ref, as_of)
        report: Any = await ctx.call(
            compliance_report, ctx.store, ref, as_of, lineage=ctx.services.lineage
        )
        return report

    @strawberry.field(
        description="Every model version in Production or served by a live deployment: "
        "owners, risk tier, validation status, next review and open alerts (of the models "
        "the caller may view)."
    )
    async def model_inventory(self, info: I) -> list[InventoryEntry]:
        ctx = info.context
        rows = await ctx.call(CardService(ctx.store).inventory)
        models = await ctx.call(
            ctx.store.get_nodes, [f"model:{m}" for m in {r.model for r in rows}]
        )
        ok = await ctx.call(viewable, ctx.services, ctx.principal, [n for n in models if n])
        # a model is governed in its project: its versions are listed to who may view it
        return [_row(r) for r in rows if ok is None or f"model:{r.model}" in ok]


@strawberry.type
class DossierMutation:
    @strawberry.mutation(
        description="Set fields of a model version's card (the others stay; null removes "
        "one), as a new audited revision."
    )
    async def set_model_card(
        self, info: I, ref: str, card: JSON, reason: str | None = None
    ) -> ModelCardType:
        ctx = info.context
        done = await ctx.call(CardService(ctx.store).set_card, ref, card, ctx.actor, reason)
        return _card(done)


__all__ = ["DossierMutation", "DossierQuery", "InventoryEntry", "ModelCardType"]


def _may_read_report(services: Any, principal: Any, ref: str, as_of: datetime | None) -> None:
    """A report is one document: who may not view every record it draws on (the version's
    upstream lineage, which it shows in its data, code, training and lineage sections) may
    not read it, rather than read one with parts of other projects in it, or with holes an
    auditor could not see."""
    if principal is None or principal.sees_everything or services.registry is None:
        return
    # the version the report is of (NotFoundError as the report's own)
    vid = services.registry.resolve_at(ref, as_of).node_id
    sub = services.store.traverse(
        [vid],
        Direction.UPSTREAM,
        UPSTREAM_DEPTH,
        max_nodes=MAX_NODES,
        as_of=check_time(as_of, "as_of") if as_of is not None else None,
    )
    ok = viewable(services, principal, (t.node for t in sub.nodes.values()))
    hidden = [i for i in sub.nodes if ok is not None and i not in ok]
    if hidden:
        raise PermissionDenied(
            f"{principal.name!r} may not read the compliance report of {vid}: it draws on"
            f" {len(hidden)} record(s) of projects it may not view"
        )
