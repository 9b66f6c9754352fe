"""Outgoing webhook deliveries in the API: ``webhookDeliveries``."""

from __future__ import annotations

from datetime import datetime

import strawberry

from lineagehub.graph import ValidationError
from lineagehub.graph.model import from_iso
from lineagehub.schema.types import I


@strawberry.type(description="One attempt to deliver a webhook event to one endpoint.")
class WebhookDelivery:
    delivery_id: str = strawberry.field(
        description="One per event and endpoint, the same on every retry."
    )
    event_id: str
    event: str = strawberry.field(description='The event name, e.g. "alias.moved".')
    url: str = strawberry.field(description="The endpoint, without credentials or query values.")
    attempt: int = strawberry.field(
        description="1-based (0: dropped before any attempt). A delivery given up on as the "
        'server stopped has a record of its own (error "abandoned: dispatcher closed"), with '
        "the number of attempts made."
    )
    at: datetime | None
    status_code: int | None
    error: str | None
    duration_ms: float
    outcome: str = strawberry.field(description='"delivered", "retrying" or "failed".')


@strawberry.type
class WebhookQuery:
    @strawberry.field(
        description="Recorded webhook delivery attempts, newest first: of one event and/or "
        "one endpoint URL."
    )
    async def webhook_deliveries(
        self,
        info: I,
        event_id: str | None = None,
        url: str | None = None,
        first: int = 100,
    ) -> list[WebhookDelivery]:
        from lineagehub.services.webhooks import GraphRecorder

        ctx = info.context
        if not 1 <= first <= ctx.services.max_page:
            raise ValidationError(
                f"first must be between 1 and {ctx.services.max_page}", field="first"
            )
        rows = await ctx.call(GraphRecorder(ctx.store).attempts, event_id, url, first)
        return [
            WebhookDelivery(
                delivery_id=str(r.get("delivery_id")),
                event_id=str(r.get("event_id")),
                event=str(r.get("event")),
                url=str(r.get("url")),
                attempt=int(r.get("attempt") or 0),
                at=from_iso(r["at"]) if r.get("at") else None,
                status_code=r.get("status_code"),
                error=r.get("error"),
                duration_ms=float(r.get("duration_ms") or 0.0),
                outcome=str(r.get("outcome")),
            )
            for r in rows
        ]
