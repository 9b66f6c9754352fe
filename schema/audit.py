"""The audit log in the API: ``auditTrail`` and ``verifyAuditLog``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from lineagehub.graph import ValidationError
from lineagehub.graph.model import from_iso, to_iso
from lineagehub.schema.types import I
from lineagehub.services.audit import verify_log


@strawberry.type(description="One entry of the hash-chained audit log.")
class AuditEntry:
    seq: int
    time: datetime | None
    actor: str
    action: str
    target: str
    payload_digest: str
    prev_hash: str
    hash: str


@strawberry.type
class AuditPage:
    entries: list[AuditEntry]
    next_after: int | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last one."
    )


@strawberry.type
class AuditVerification:
    ok: bool
    checked: int
    first_bad_seq: int | None
    kind: str | None = strawberry.field(
        description='"altered", "deleted" or "inserted" (the chain), "truncated" (entries cut '
        'off the end), "rewritten" (a tree head\'s root differs), "head" (a head not signed '
        'with the server\'s key) or "record" (records changed outside the hub).'
    )
    problem: str | None
    heads_checked: int = strawberry.field(description="Signed tree heads checked.")
    heads_signed: bool = strawberry.field(
        description="Whether the heads' signatures were checked (the server has the key)."
    )
    records_checked: int = strawberry.field(description="Records compared with their last entry.")
    records: list[str] = strawberry.field(
        description="Each record changed outside the hub: the record, its fields, the entry."
    )


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Audit entries in sequence order: of one node (by id or reference) or of "
        "everything, optionally within a time range."
    )
    async def audit_trail(
        self,
        info: I,
        ref: str | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        after: int = 0,
        first: int = 100,
    ) -> AuditPage:
        ctx = info.context
        if not 1 <= first <= ctx.services.max_page:
            raise ValidationError(
                f"first must be between 1 and {ctx.services.max_page}", field="first"
            )
        target = await ctx.call(ctx.services.lineage.resolve, ref) if ref is not None else None
        low = to_iso(from_, "from") if from_ is not None else None
        high = to_iso(to, "to") if to is not None else None
        found: list[AuditEntry] = []
        cursor, more = after, True
        # Pages by sequence; the time range is checked here (entries are appended in time order,
        # so the scan stops at the first entry past `to`).
        while more and len(found) < first:
            page = await ctx.call(ctx.store.read_audit, cursor, first, target)
            more = len(page) == first
            for e in page:
                cursor = e.seq
                if high is not None and e.time > high:
                    more = False
                    break
                if low is None or e.time >= low:
                    found.append(_entry(e))
                    if len(found) == first:
                        break
        last = found[-1].seq if found else None
        return AuditPage(entries=found, next_after=last if more and last is not None else None)

    @strawberry.field(
        description="Check the audit log as `lineagehub audit verify` does: the hash chain, "
        "every stored tree head (signatures too, with the server's key), then (records: "
        "true) every record's current state against its last entry; name the first bad entry."
    )
    async def verify_audit_log(self, info: I, records: bool = True) -> AuditVerification:
        ctx = info.context
        v = await ctx.call(verify_log, ctx.store, ctx.services.audit_key, check_records=records)
        return AuditVerification(
            ok=v.ok,
            checked=v.checked,
            first_bad_seq=v.first_bad_seq,
            kind=v.kind,
            problem=v.problem,
            heads_checked=v.heads_checked,
            heads_signed=v.heads_signed,
            records_checked=v.records_checked,
            records=[f"{r.record}: {', '.join(r.fields)} (entry {r.seq})" for r in v.records],
        )


def _entry(e: object) -> AuditEntry:
    return AuditEntry(
        seq=e.seq,  # type: ignore[attr-defined]
        time=from_iso(e.time),  # type: ignore[attr-defined]
        actor=e.actor,  # type: ignore[attr-defined]
        action=e.action,  # type: ignore[attr-defined]
        target=e.target,  # type: ignore[attr-defined]
        payload_digest=e.payload_digest,  # type: ignore[attr-defined]
        prev_hash=e.prev_hash,  # type: ignore[attr-defined]
        hash=e.hash,  # type: ignore[attr-defined]
    )
